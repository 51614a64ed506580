//! Plausibility checks before anything is emitted for an authority.
//!
//! A truncated download must never become 600,000 sign-offs: when today's
//! list is empty while yesterday's was not, when its size moved by more than
//! a configured share, or when more than a configured share of yesterday's
//! keys changed, the authority is quarantined. Pure.

use crate::domain::diff::Changes;

/// Plausibility limits checked before anything is emitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// Largest allowed change in list size, as a share of yesterday's size.
    pub max_size_change: f64,
    /// Largest allowed number of changes, as a share of yesterday's size.
    pub max_changed_share: f64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_size_change: 0.05,
            max_changed_share: 0.5,
        }
    }
}

/// Why an authority was quarantined.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Trip {
    #[error("today's list is empty, yesterday's had {previous} keys")]
    Empty { previous: usize },
    #[error(
        "list size changed from {previous} to {today} keys ({:+.1} %, limit {:.1} %)",
        share * 100.0,
        limit * 100.0
    )]
    SizeChange {
        previous: usize,
        today: usize,
        share: f64,
        limit: f64,
    },
    #[error(
        "{changes} changes against {previous} keys yesterday ({:.1} %, limit {:.1} %)",
        share * 100.0,
        limit * 100.0
    )]
    TooManyChanges {
        changes: usize,
        previous: usize,
        share: f64,
        limit: f64,
    },
}

/// Checks today's list against yesterday's; `Err` means quarantine.
pub fn check(
    previous: usize,
    today: usize,
    changes: &Changes,
    cfg: &GuardConfig,
) -> Result<(), Trip> {
    if previous == 0 {
        return Ok(());
    }
    if today == 0 {
        return Err(Trip::Empty { previous });
    }
    let share = (today as f64 - previous as f64) / previous as f64;
    if share.abs() > cfg.max_size_change {
        return Err(Trip::SizeChange {
            previous,
            today,
            share,
            limit: cfg.max_size_change,
        });
    }
    let n_changes = changes.n_signed_up() + changes.n_signed_off();
    let changed = n_changes as f64 / previous as f64;
    if changed > cfg.max_changed_share {
        return Err(Trip::TooManyChanges {
            changes: n_changes,
            previous,
            share: changed,
            limit: cfg.max_changed_share,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::diff::KindChanges;

    fn changes(up: usize, off: usize) -> Changes {
        Changes {
            cpr: KindChanges {
                signed_up: vec![0; up],
                signed_off: vec![0; off],
            },
            cvr: KindChanges::default(),
        }
    }

    fn check_table(previous: usize, today: usize, up: usize, off: usize, ok: bool) {
        let got = check(previous, today, &changes(up, off), &GuardConfig::default());
        assert_eq!(
            got.is_ok(),
            ok,
            "{previous} -> {today}, +{up} -{off}: {got:?}"
        );
    }

    #[test]
    fn table() {
        check_table(0, 0, 0, 0, true);
        check_table(0, 1000, 1000, 0, true);
        check_table(1000, 0, 0, 1000, false);
        check_table(1000, 1050, 50, 0, true);
        check_table(1000, 1051, 51, 0, false);
        check_table(1000, 949, 0, 51, false);
        check_table(600_000, 300_000, 0, 300_000, false);
        check_table(1000, 1000, 200, 200, true);
        check_table(1000, 1000, 260, 260, false);
    }

    #[test]
    fn reasons_read_well() {
        let t = check(1000, 0, &changes(0, 1000), &GuardConfig::default()).unwrap_err();
        assert_eq!(
            t.to_string(),
            "today's list is empty, yesterday's had 1000 keys"
        );
        let t = check(1000, 900, &changes(0, 100), &GuardConfig::default()).unwrap_err();
        assert_eq!(
            t.to_string(),
            "list size changed from 1000 to 900 keys (-10.0 %, limit 5.0 %)"
        );
    }
}

//! The operator's view of the state (`status`): per authority the current
//! snapshot, how its last run ended, a quarantine and the command that
//! releases it, what is not yet published, and a change list still to be
//! deleted at the Register. Reads only; changes nothing.

use std::path::Path;

use crate::config::Config;
use crate::domain::keys::{self, KeyKind};
use crate::store::outbox;
use crate::store::state::{ChangeListRecord, State};

/// How an authority's last run ended (from the newest report naming it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LastRun {
    pub date: String,
    pub status: String,
    pub finished_at: String,
    pub message: Option<String>,
}

/// One authority's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthorityStatus {
    pub authority: String,
    pub name: String,
    /// The list date of the current snapshot.
    pub current: Option<String>,
    pub last_run: Option<LastRun>,
    /// Why the guard holds the authority back, and the command that
    /// releases it after an operator has looked.
    pub quarantine: Option<Quarantine>,
    pub unpublished_batches: u64,
    pub unpublished_events: u64,
    /// A change list applied but not yet deleted at the Register (the next
    /// run deletes it).
    pub pending_changelist_delete: Option<String>,
    /// Something here needs an operator.
    pub needs_operator: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quarantine {
    pub date: String,
    pub reason: String,
    pub release: String,
}

/// The whole state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusReport {
    pub state_dir: String,
    pub authorities: Vec<AuthorityStatus>,
    pub unpublished_batches: u64,
    pub unpublished_events: u64,
    pub needing_an_operator: usize,
}

/// The newest outcome per authority among the run and backfill reports.
fn last_runs(state: &State) -> std::collections::HashMap<String, LastRun> {
    let mut best: std::collections::HashMap<String, LastRun> = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir(state.reports()) else {
        return best;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("run-") || name.starts_with("backfill-")) || !name.ends_with(".json")
        {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            tracing::warn!(file = %entry.path().display(), "unreadable report: left out of status");
            continue;
        };
        let finished = v["finished_at"].as_str().unwrap_or_default().to_owned();
        for o in v["outcomes"].as_array().into_iter().flatten() {
            let (Some(a), Some(date), Some(status)) = (
                o["authority"].as_str(),
                o["date"].as_str(),
                o["status"].as_str(),
            ) else {
                continue;
            };
            let run = LastRun {
                date: date.to_owned(),
                status: status.to_owned(),
                finished_at: finished.clone(),
                message: o["message"].as_str().map(str::to_owned),
            };
            let newer = best
                .get(a)
                .is_none_or(|b| (&run.finished_at, &run.date) >= (&b.finished_at, &b.date));
            if newer {
                best.insert(a.to_owned(), run);
            }
        }
    }
    best
}

/// Collects the state of every configured authority.
pub fn collect(cfg: &Config, config_path: &Path) -> anyhow::Result<StatusReport> {
    let state = State::new(cfg.state_dir.clone());
    let runs = last_runs(&state);
    let unpublished = outbox::unpublished(&cfg.state_dir)?;
    let mut authorities = Vec::new();
    for a in &cfg.authorities {
        let cvr = keys::format(KeyKind::Cvr, a.cvr);
        let current = state.read_current(a.cvr)?;
        let last_run = runs.get(&cvr).cloned();
        let quarantine = last_run
            .as_ref()
            .filter(|r| r.status == "quarantined")
            .map(|r| Quarantine {
                date: r.date.clone(),
                reason: r.message.clone().unwrap_or_default(),
                release: format!(
                    "nemsms-diff run --config {} --date {} --authority {cvr} --accept-mass-change {cvr}",
                    config_path.display(),
                    r.date
                ),
            });
        let pending = ChangeListRecord::read(&state, a.cvr)?
            .filter(|r| !r.deleted && r.committed(current))
            .map(|r| format!("{} of {}", r.list_id, r.date));
        let (batches, events) = unpublished.get(&a.cvr).copied().unwrap_or_default();
        // A run that failed, or a quarantine, stays until a later run of
        // the same authority ends well.
        let needs_operator = last_run
            .as_ref()
            .is_some_and(|r| r.status == "failed" || r.status == "quarantined");
        authorities.push(AuthorityStatus {
            authority: cvr,
            name: a.name.clone(),
            current: current.map(|d| d.to_string()),
            last_run,
            quarantine,
            unpublished_batches: batches,
            unpublished_events: events,
            pending_changelist_delete: pending,
            needs_operator,
        });
    }
    Ok(StatusReport {
        state_dir: cfg.state_dir.display().to_string(),
        unpublished_batches: authorities.iter().map(|a| a.unpublished_batches).sum(),
        unpublished_events: authorities.iter().map(|a| a.unpublished_events).sum(),
        needing_an_operator: authorities.iter().filter(|a| a.needs_operator).count(),
        authorities,
    })
}

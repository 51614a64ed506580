//! `prune`: retention of the state directory.

use super::*;
use crate::store::prune::{self, Kind};

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The configuration file (or NEMSMS_DIFF_CONFIG).
    #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
    pub config: PathBuf,
    /// Remove published batches, reports and old snapshots older than this
    /// many days (default: [retention] keep_days).
    #[arg(long)]
    pub keep_days: Option<u32>,
    /// Print what would be removed; remove nothing (takes no lock).
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Wait this many seconds for another run's state lock (exit 5).
    #[arg(long, default_value_t = 10)]
    pub lock_wait: u64,
}

/// Plans under the state lock, prints each file, removes them (unless
/// `--dry-run`) and records what it removed in `STATE/reports/`.
pub(super) fn prune_command(a: &PruneArgs) -> anyhow::Result<u8> {
    let started_at = crate::nightly::report::now_rfc3339();
    let cfg = load_config(&a.config)?;
    let Some(keep_days) = a.keep_days.or(cfg.retention.keep_days) else {
        bail!(UsageError(format!(
            "how long to keep? give --keep-days N or set [retention] keep_days in {}",
            cfg.path.display()
        )));
    };
    let state = crate::store::state::State::new(cfg.state_dir.clone());
    let now = crate::register::fetch::now();
    let policy = prune::Policy {
        today: now
            .in_tz("Europe/Copenhagen")
            .unwrap_or_else(|_| now.clone())
            .date(),
        now: now.timestamp().as_second(),
        keep_days,
        backfill_window_days: cfg.retention.backfill_window_days,
    };
    let _lock = if a.dry_run {
        None
    } else {
        Some(state.lock_waiting(std::time::Duration::from_secs(a.lock_wait))?)
    };
    let plan = prune::plan(&state, &policy)?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    if !a.dry_run {
        prune::apply(&state, &plan)?;
    }
    let summary = |k: Kind| {
        let (n, b) = plan.count(k);
        let plural = match k {
            Kind::Batch => "batches",
            Kind::Snapshot => "snapshots",
            Kind::Cursor => "cursors",
            Kind::Report => "reports",
            Kind::Leftover => "leftovers",
        };
        format!("{n} {plural} ({})", human_bytes(b))
    };
    let mut out = BufWriter::new(io::stdout().lock());
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "kind": "prune",
                "dry_run": a.dry_run,
                "keep_days": keep_days,
                "backfill_window_days": policy.backfill_window_days,
                "removed": plan.items,
                "bytes": plan.bytes(),
                "unpublished_kept": plan.unpublished_kept,
            })
        )?;
    } else {
        for i in &plan.items {
            match i.events {
                Some(e) => writeln!(
                    out,
                    "{verb} {:<8} {} ({e} events, all published)",
                    i.kind.as_str(),
                    i.path.display()
                )?,
                None => writeln!(out, "{verb} {:<8} {}", i.kind.as_str(), i.path.display())?,
            }
        }
        writeln!(
            out,
            "{verb} {}, {}, {}, {}, {}: {} in all (kept: older than {keep_days} days but unpublished, {} batches)",
            summary(Kind::Snapshot),
            summary(Kind::Batch),
            summary(Kind::Cursor),
            summary(Kind::Report),
            summary(Kind::Leftover),
            human_bytes(plan.bytes()),
            plan.unpublished_kept,
        )?;
    }
    out.flush()?;
    if !a.dry_run && !plan.items.is_empty() {
        let mut record = crate::nightly::report::header("prune", &started_at, &cfg.path);
        record["keep_days"] = keep_days.into();
        record["backfill_window_days"] = policy.backfill_window_days.into();
        record["removed"] = serde_json::to_value(&plan.items)?;
        record["bytes"] = plan.bytes().into();
        let path = crate::nightly::report::report_file(&state.reports(), "prune", None);
        crate::nightly::report::write_report(&path, &record)?;
    }
    Ok(exit::OK)
}

/// 1234567 → "1.2 MB".
pub(super) fn human_bytes(b: u64) -> String {
    match b {
        0..1_000 => format!("{b} B"),
        1_000..1_000_000 => format!("{:.1} KB", b as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        _ => format!("{:.1} GB", b as f64 / 1e9),
    }
}

//! `republish`: send one batch again, with the same BeskedIds.

use super::*;

#[derive(Debug, Args)]
pub struct RepublishArgs {
    /// The configuration file (or NEMSMS_DIFF_CONFIG).
    #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
    pub config: PathBuf,
    /// The batch's authority (CVR).
    #[arg(long, value_parser = parse_cvr_arg)]
    pub authority: u32,
    /// The batch's list date.
    #[arg(long, value_parser = parse_date)]
    pub date: Date,
    /// Send again from this event on (1 = the first).
    #[arg(long, default_value_t = 1)]
    pub from_event: u64,
}

/// Moves the batch's publish cursor back to `--from-event` and records
/// that it did (`STATE/reports/republish-….json`); the next `publish`
/// sends those events again with the same BeskedIds. Holds the state lock
/// while it does (a `run` cannot start meanwhile); do not run it beside a
/// `publish`, whose cursor writes would undo it.
pub(super) fn republish_command(a: &RepublishArgs) -> anyhow::Result<u8> {
    let started_at = crate::nightly::report::now_rfc3339();
    let cfg = load_config(&a.config)?;
    let state = crate::store::state::State::new(cfg.state_dir.clone());
    let _lock = state.lock()?;
    let cvr = keys::format(KeyKind::Cvr, a.authority);
    if cfg.authority(a.authority).is_none() {
        bail!(UsageError(format!(
            "authority {cvr} is not in {}",
            cfg.path.display()
        )));
    }
    let batch = state.batch(a.authority, a.date);
    if !batch.exists() {
        bail!(UsageError(format!(
            "no batch for authority {cvr} on {}: {} does not exist (`outbox list` shows the batches)",
            a.date,
            batch.display()
        )));
    }
    let header = crate::store::outbox::read_header(&batch)?;
    if a.from_event == 0 || a.from_event > header.n_events.max(1) {
        bail!(UsageError(format!(
            "--from-event {}: the batch has events 1 to {}",
            a.from_event, header.n_events
        )));
    }
    let old = crate::store::outbox::read_cursor(&batch)
        .with_context(|| format!("{}", batch.display()))?;
    let new = (a.from_event - 1).min(old);
    crate::store::outbox::write_cursor(&batch, new)?;
    let mut record = crate::nightly::report::header("republish", &started_at, &cfg.path);
    record["authority"] = cvr.clone().into();
    record["date"] = a.date.to_string().into();
    record["events"] = header.n_events.into();
    record["cursor_before"] = old.into();
    record["cursor_after"] = new.into();
    let path = crate::nightly::report::report_file(
        &state.reports(),
        "republish",
        Some(&format!("{}-{cvr}", a.date)),
    );
    crate::nightly::report::write_report(&path, &record)?;
    println!(
        "batch {} of authority {cvr}: cursor {old} -> {new}; the next publish sends events {} to {} again (recorded in {})",
        a.date,
        new + 1,
        header.n_events,
        path.display()
    );
    Ok(exit::OK)
}

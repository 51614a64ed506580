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
    let cfg = load_config(&a.config)?;
    let state = crate::store::state::State::new(cfg.state_dir.clone());
    let _lock = state.lock()?;
    let cvr = keys::format(KeyKind::Cvr, a.authority);
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
    let record = serde_json::json!({
        "kind": "republish",
        "at": jiff::Timestamp::now().to_string(),
        "authority": cvr,
        "date": a.date.to_string(),
        "events": header.n_events,
        "cursor_before": old,
        "cursor_after": new,
    });
    let path = cfg.state_dir.join("reports").join(format!(
        "republish-{}-{cvr}-{}.json",
        jiff::Timestamp::now().as_second(),
        std::process::id()
    ));
    fsutil::create_dir_all(path.parent().expect("dir"))
        .and_then(|()| fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&record)?))
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "batch {} of authority {cvr}: cursor {old} -> {new}; the next publish sends events {} to {} again (recorded in {})",
        a.date,
        new + 1,
        header.n_events,
        path.display()
    );
    Ok(exit::OK)
}

//! `status`: the operator's view of the state.

use super::*;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The configuration file (or NEMSMS_DIFF_CONFIG).
    #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
    pub config: PathBuf,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints the state; exit 3 when an authority needs an operator (a
/// quarantine or a failed last run), so monitoring can call it.
pub(super) fn status_command(a: &StatusArgs) -> anyhow::Result<u8> {
    let cfg = load_config(&a.config)?;
    let report = crate::nightly::status::collect(&cfg, &a.config)?;
    let mut out = BufWriter::new(io::stdout().lock());
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "{:<10} {:<20} {:<11} {:<34} {:>11}",
            "authority", "name", "current", "last run", "unpublished"
        )?;
        for s in &report.authorities {
            let last = s.last_run.as_ref().map_or("never".to_owned(), |r| {
                format!(
                    "{} {} ({})",
                    r.status,
                    r.date,
                    &r.finished_at[..r.finished_at.len().min(16)]
                )
            });
            writeln!(
                out,
                "{:<10} {:<20} {:<11} {:<34} {:>11}",
                s.authority,
                s.name.chars().take(20).collect::<String>(),
                s.current.as_deref().unwrap_or("none"),
                last,
                if s.unpublished_events == 0 {
                    "-".to_owned()
                } else {
                    format!("{} events", s.unpublished_events)
                }
            )?;
            if let Some(q) = &s.quarantine {
                writeln!(out, "  QUARANTINED on {}: {}", q.date, q.reason)?;
                writeln!(out, "  release it once checked: {}", q.release)?;
            } else if s.needs_operator
                && let Some(r) = &s.last_run
            {
                writeln!(
                    out,
                    "  FAILED on {}: {}",
                    r.date,
                    r.message.as_deref().unwrap_or("(no message)")
                )?;
            }
            if let Some(p) = &s.pending_changelist_delete {
                writeln!(
                    out,
                    "  change list {p} still to be deleted at the Register (the next run does it)"
                )?;
            }
        }
        writeln!(
            out,
            "{} authorities; {} unpublished batches ({} events); {} need an operator",
            report.authorities.len(),
            report.unpublished_batches,
            report.unpublished_events,
            report.needing_an_operator
        )?;
    }
    out.flush()?;
    Ok(if report.needing_an_operator > 0 {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

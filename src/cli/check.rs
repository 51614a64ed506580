//! `check`: verify the state directory, changing nothing.

use super::*;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file (or NEMSMS_DIFF_CONFIG).
    #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
    pub config: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Lists every problem; exit 1 if there is one.
pub(super) fn check_command(a: &CheckArgs) -> anyhow::Result<u8> {
    let cfg = load_config(&a.config)?;
    let r = crate::store::check::check(&cfg.state_dir);
    let mut out = BufWriter::new(io::stdout().lock());
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
    } else {
        for p in &r.problems {
            writeln!(out, "PROBLEM {p}")?;
        }
        for n in &r.notes {
            writeln!(out, "note    {n}")?;
        }
        writeln!(
            out,
            "checked {} snapshots, {} pointers, {} batches ({} events), {} cursors: {} problems",
            r.snapshots,
            r.pointers,
            r.batches,
            r.events,
            r.cursors,
            r.problems.len()
        )?;
    }
    out.flush()?;
    Ok(if r.problems.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

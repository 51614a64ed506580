//! `publish`: the outbox to Beskedfordeler, or to a directory.

use super::*;

/// `--outage-deadline` over the config's.
pub(super) fn set_outage_deadline(cfg: &mut crate::config::Config, d: Option<std::time::Duration>) {
    if let (Some(d), Some(b)) = (d, cfg.beskedfordeler.as_mut()) {
        b.outage_deadline = d;
    }
}

pub(super) fn publish_command(
    config: &Path,
    to: Option<&str>,
    outage_deadline: Option<std::time::Duration>,
) -> anyhow::Result<u8> {
    let mut cfg = load_config(config)?;
    set_outage_deadline(&mut cfg, outage_deadline);
    if let Some(to) = to {
        let dir = to
            .strip_prefix("dir:")
            .ok_or_else(|| UsageError(format!("--to {to}: expected dir:PATH")))?;
        let n = crate::beskedfordeler::publish::publish_to_dir(&cfg.state_dir, Path::new(dir))?;
        println!("wrote {n} envelopes under {dir}");
        return Ok(exit::OK);
    }
    publish_and_report(&cfg)
}

/// Publishes, prints a table, writes a JSON report; the exit code.
pub(super) fn publish_and_report(cfg: &crate::config::Config) -> anyhow::Result<u8> {
    let bfo = bfo_config(cfg)?;
    let outcomes = crate::beskedfordeler::publish::publish_all(&cfg.state_dir, bfo)?;
    let mut out = BufWriter::new(io::stdout().lock());
    writeln!(
        out,
        "{:<30} {:>9} {:>9} {:>9}  status",
        "batch", "events", "published", "sent"
    )?;
    for o in &outcomes {
        write!(
            out,
            "{:<30} {:>9} {:>9} {:>9}  {}",
            o.batch,
            o.events,
            o.already_published + o.published,
            o.sent,
            serde_json::to_value(o.status)?.as_str().unwrap_or("?")
        )?;
        match &o.message {
            Some(m) => writeln!(out, ": {m}")?,
            None => writeln!(out)?,
        }
    }
    let incomplete = outcomes
        .iter()
        .any(|o| o.status != crate::beskedfordeler::publish::BatchStatus::Published);
    writeln!(
        out,
        "{} batches, {} events confirmed now{}",
        outcomes.len(),
        outcomes.iter().map(|o| o.published).sum::<u64>(),
        if incomplete {
            "; publish incomplete: rerun `publish` to resume"
        } else {
            ""
        }
    )?;
    out.flush()?;
    let stamp = jiff::Timestamp::now().as_second();
    let path = cfg
        .state_dir
        .join("reports")
        .join(format!("publish-{stamp}-{}.json", std::process::id()));
    fsutil::create_dir_all(path.parent().expect("dir"))
        .and_then(|()| {
            fsutil::write_atomic(
                &path,
                &serde_json::to_vec_pretty(&outcomes).expect("serializable"),
            )
        })
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(if incomplete {
        exit::PUBLISH_INCOMPLETE
    } else {
        exit::OK
    })
}

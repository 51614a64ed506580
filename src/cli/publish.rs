//! `publish`: the outbox to Beskedfordeler, or to a directory.

use super::*;
use crate::nightly::metrics::Metrics;

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The configuration file ([beskedfordeler]; or NEMSMS_DIFF_CONFIG).
    #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
    pub config: PathBuf,
    /// How long to ride out an outage without progress, e.g. 10m, 90s
    /// (default: [beskedfordeler] outage_deadline, itself 10m by default).
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub outage_deadline: Option<std::time::Duration>,
    /// `dir:PATH`: write the envelopes as files (mode 0600) instead;
    /// cursors untouched.
    #[arg(long)]
    pub to: Option<String>,
    /// With --to dir: only this authority's batches (CVR).
    #[arg(long, value_parser = parse_cvr_arg, requires = "to")]
    pub authority: Option<u32>,
    /// With --to dir: only this date's batches.
    #[arg(long, value_parser = parse_date, requires = "to")]
    pub date: Option<Date>,
    /// Write Prometheus metrics (text format, atomically) to this file,
    /// e.g. for node_exporter's textfile collector.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
}

/// `--outage-deadline` over the config's.
pub(super) fn set_outage_deadline(cfg: &mut crate::config::Config, d: Option<std::time::Duration>) {
    if let (Some(d), Some(b)) = (d, cfg.beskedfordeler.as_mut()) {
        b.outage_deadline = d;
    }
}

pub(super) fn publish_command(a: &PublishArgs) -> anyhow::Result<u8> {
    let mut cfg = load_config(&a.config)?;
    set_outage_deadline(&mut cfg, a.outage_deadline);
    if let Some(to) = &a.to {
        let dir = to
            .strip_prefix("dir:")
            .ok_or_else(|| UsageError(format!("--to {to}: expected dir:PATH")))?;
        if let Some(cvr) = a.authority
            && cfg.authority(cvr).is_none()
        {
            bail!(UsageError(format!(
                "authority {} is not in {}",
                keys::format(KeyKind::Cvr, cvr),
                cfg.path.display()
            )));
        }
        let n = crate::beskedfordeler::publish::publish_to_dir(
            &cfg.state_dir,
            Path::new(dir),
            a.authority,
            a.date,
        )?;
        if n == 0 && (a.authority.is_some() || a.date.is_some()) {
            eprintln!("warning: no batch matches --authority/--date (`outbox list` shows them)");
        }
        println!("wrote {n} envelopes under {dir}");
        return Ok(exit::OK);
    }
    let mut metrics = a.metrics_file.as_ref().map(|_| Metrics::new("publish"));
    let code = publish_and_report(&cfg, metrics.as_mut())?;
    if let (Some(m), Some(path)) = (metrics, &a.metrics_file) {
        m.write(path)?;
    }
    Ok(code)
}

/// Publishes, prints a table, writes a JSON report (and adds to the
/// metrics); the exit code.
pub(super) fn publish_and_report(
    cfg: &crate::config::Config,
    metrics: Option<&mut Metrics>,
) -> anyhow::Result<u8> {
    let bfo = bfo_config(cfg)?;
    let started_at = crate::nightly::report::now_rfc3339();
    let clock = std::time::Instant::now();
    let outcomes = crate::beskedfordeler::publish::publish_all(&cfg.state_dir, bfo)?;
    let duration = clock.elapsed().as_secs_f64();
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
            o.status.as_str()
        )?;
        match &o.message {
            Some(m) => writeln!(out, ": {m}")?,
            None => writeln!(out)?,
        }
    }
    let report = crate::nightly::report::PublishReport::new(&cfg.path, started_at, outcomes);
    let t = &report.totals;
    writeln!(
        out,
        "{} batches, {} events confirmed now{}",
        t.batches,
        t.confirmed_now,
        if t.complete {
            ""
        } else {
            "; publish incomplete: rerun `publish` to resume"
        }
    )?;
    out.flush()?;
    let path = crate::nightly::report::report_file(&cfg.state_dir.join("reports"), "publish", None);
    crate::nightly::report::write_report(&path, &report)?;
    tracing::info!(
        run_id = crate::nightly::report::run_id(),
        version = crate::nightly::report::VERSION,
        kind = "publish",
        n_batches = t.batches,
        n_confirmed = t.confirmed_now,
        n_sent = t.sent,
        complete = t.complete,
        duration_secs = duration,
        report = %path.display(),
        "summary"
    );
    if let Some(m) = metrics {
        m.add_publish(
            &report.batches,
            duration,
            crate::store::outbox::unpublished(&cfg.state_dir)?
                .values()
                .map(|(_, events)| events)
                .sum(),
        );
    }
    Ok(if t.complete {
        exit::OK
    } else {
        exit::PUBLISH_INCOMPLETE
    })
}

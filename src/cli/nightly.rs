//! `run` and `backfill`: the nightly job, then publishing if configured.

use super::alive::{alive_check, via_name};
use super::publish::{publish_and_report, set_outage_deadline};
use super::*;
use crate::nightly::metrics::Metrics;
use crate::nightly::report::{RunKind, Status};

#[derive(Debug, Args)]
pub struct CommonRunArgs {
    /// The configuration file.
    #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
    pub config: PathBuf,
    /// Only these authorities (CVR; repeatable). Default: all configured.
    #[arg(long = "authority", value_parser = parse_cvr_arg)]
    pub authorities: Vec<u32>,
    /// Release a quarantined authority for this run (CVR; repeatable).
    #[arg(long = "accept-mass-change", value_parser = parse_cvr_arg)]
    pub accept_mass_change: Vec<u32>,
    /// Inside NemSMS's service window (Sunday 00:00-04:00 Danish time),
    /// wait for it to end instead of failing.
    #[arg(long)]
    pub wait_for_service_window: bool,
    /// Diff across missed days: when the current snapshot is older than
    /// the day before, diff against it anyway (its changes get this
    /// date). Without it such an authority fails and names the backfill
    /// that fills the gap.
    #[arg(long)]
    pub allow_gap: bool,
    /// Do not publish after committing, even if the config says so.
    #[arg(long)]
    pub no_publish: bool,
    /// Wait this many seconds for another run's state lock before giving
    /// up (exit 5).
    #[arg(long, default_value_t = 10)]
    pub lock_wait: u64,
    /// When publishing after the run: how long to ride out a Beskedfordeler
    /// outage without progress, e.g. 10m, 90s (default: [beskedfordeler]
    /// outage_deadline, itself 10m by default).
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub outage_deadline: Option<std::time::Duration>,
    /// Write Prometheus metrics (text format, atomically) to this file,
    /// e.g. for node_exporter's textfile collector.
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonRunArgs,
    /// The list date, YYYY-MM-DD. Default: today in Denmark.
    #[arg(long, value_parser = parse_date)]
    pub date: Option<Date>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub common: CommonRunArgs,
    /// First date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    pub from: Date,
    /// Last date, YYYY-MM-DD (inclusive).
    #[arg(long, value_parser = parse_date)]
    pub to: Date,
}

/// Today's date in Denmark (Europe/Copenhagen), falling back to UTC.
pub fn today_in_denmark() -> Date {
    let zoned = jiff::ZonedDateTime::now();
    let local = zoned.in_tz("Europe/Copenhagen").unwrap_or(zoned);
    local.date()
}

pub(super) fn run_command(
    a: &CommonRunArgs,
    dates: Vec<Date>,
    kind: RunKind,
) -> anyhow::Result<u8> {
    let mut cfg = load_config(&a.config)?;
    set_outage_deadline(&mut cfg, a.outage_deadline);
    super::config_check::preflight_for_run(
        &cfg,
        cfg.beskedfordeler
            .as_ref()
            .is_some_and(|b| b.publish_after_run && !a.no_publish),
    )?;
    let req = crate::nightly::run::Request {
        dates,
        authorities: a.authorities.clone(),
        accept_mass_change: a.accept_mass_change.iter().copied().collect(),
        progress: kind == RunKind::Backfill,
        kind,
        wait_for_service_window: a.wait_for_service_window,
        lock_wait: std::time::Duration::from_secs(a.lock_wait),
        allow_gap: a.allow_gap,
    };
    let clock = std::time::Instant::now();
    let report = crate::nightly::run::execute(&cfg, &req)?;
    let duration = clock.elapsed().as_secs_f64();
    let mut metrics = a.metrics_file.as_ref().map(|_| {
        let mut m = Metrics::new(kind.as_str());
        m.add_run(
            &report,
            &crate::store::state::State::new(cfg.state_dir.clone()),
            duration,
        );
        m
    });
    tracing::info!(
        run_id = crate::nightly::report::run_id(),
        version = crate::nightly::report::VERSION,
        kind = kind.as_str(),
        n_authority_days = report.outcomes.len(),
        n_signed_up = report.signed_up,
        n_signed_off = report.signed_off,
        n_held_back = report.held_back,
        n_problems = report.n_problems,
        duration_secs = duration,
        report = %report.report_path.as_deref().map_or("-".into(), |p| p.display().to_string()),
        "summary"
    );
    let mut out = BufWriter::new(io::stdout().lock());
    writeln!(
        out,
        "{:<9} {:<20} {:<10} {:>9} {:>9} {:>9}  status",
        "authority", "name", "date", "keys", "tilmeldt", "afmeldt"
    )?;
    for o in &report.outcomes {
        let keys = o.keys.map_or("-".to_owned(), |k| k.to_string());
        let name: String = o.name.chars().take(20).collect();
        write!(
            out,
            "{:<9} {:<20} {:<10} {:>9} {:>9} {:>9}  {}",
            o.authority,
            name,
            o.date,
            keys,
            o.signed_up,
            o.signed_off,
            serde_json::to_value(o.status)?.as_str().unwrap_or("?")
        )?;
        match &o.message {
            Some(m) if o.status.is_problem() || o.status == Status::Gap => writeln!(out, ": {m}")?,
            _ => writeln!(out)?,
        }
    }
    writeln!(
        out,
        "{} authority-days, {} tilmeldt, {} afmeldt emitted{}, {} need an operator; report {}",
        report.outcomes.len(),
        report.signed_up,
        report.signed_off,
        if report.held_back > 0 {
            format!(", {} changes held back", report.held_back)
        } else {
            String::new()
        },
        report.n_problems,
        report
            .report_path
            .as_deref()
            .map_or("-".into(), |p| p.display().to_string())
    )?;
    out.flush()?;
    drop(out);
    let all_failed = !report.outcomes.is_empty()
        && report
            .outcomes
            .iter()
            .all(|o| o.status == crate::nightly::report::Status::Failed);
    let run_code = if report.n_problems == 0 {
        exit::OK
    } else if all_failed {
        exit::ALL_FAILED
    } else {
        exit::PARTIAL
    };
    let write_metrics = |m: Option<Metrics>| -> anyhow::Result<()> {
        match (m, &a.metrics_file) {
            (Some(m), Some(path)) => m.write(path),
            _ => Ok(()),
        }
    };
    let Some(bfo) = cfg
        .beskedfordeler
        .as_ref()
        .filter(|b| b.publish_after_run && !a.no_publish)
    else {
        write_metrics(metrics)?;
        return Ok(run_code);
    };
    if bfo.alive_check_before_publish {
        let via = cfg.alive.as_ref().map(|a| a.via).unwrap_or_default();
        let timeout = cfg.alive.as_ref().map_or(30, |a| a.timeout_secs);
        match alive_check(&cfg, via, timeout) {
            Ok(rtt) => {
                tracing::info!(
                    via = via_name(via),
                    rtt_ms = rtt.as_millis() as u64,
                    "AliveBesked round trip"
                )
            }
            Err(e) => {
                eprintln!("error: AliveBesked check failed, nothing published: {e:#}");
                write_metrics(metrics)?;
                return Ok(exit::PUBLISH_INCOMPLETE);
            }
        }
    }
    let publish_code = publish_and_report(&cfg, metrics.as_mut())?;
    write_metrics(metrics)?;
    Ok(run_code.max(publish_code))
}

pub(super) fn nightly_command(a: &RunArgs) -> anyhow::Result<u8> {
    let date = a.date.unwrap_or_else(today_in_denmark);
    run_command(&a.common, vec![date], RunKind::Run)
}

pub(super) fn backfill_command(a: &BackfillArgs) -> anyhow::Result<u8> {
    if a.from > a.to {
        bail!(UsageError("--from must not be after --to".into()));
    }
    let mut dates = Vec::new();
    let mut d = a.from;
    while d <= a.to {
        dates.push(d);
        d = crate::domain::dates::next_day(d).expect("dates within range");
    }
    run_command(&a.common, dates, RunKind::Backfill)
}

//! What a run reports: one outcome per (authority, date), the whole run's
//! report (printed as a table, written as JSON), progress and log lines.

use std::io;
use std::path::PathBuf;

use jiff::civil::Date;

use crate::config::Authority;
use crate::domain::keys::{self, KeyKind};

/// `--quiet` or `--log-format json`: no progress bar.
pub static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The progress bar on screen, if any: log lines are written around it
/// ([`write_log`]), never through it.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Writes one formatted log line to stderr, hiding the progress bar (if
/// one is drawn) while it does, so that neither garbles the other.
pub fn write_log(buf: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(|| io::stderr().lock().write_all(buf)),
        None => io::stderr().lock().write_all(buf),
    }
}

/// Forgets the bar (it is finished).
pub fn clear_bar() {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// `run` or `backfill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Run,
    Backfill,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Run => "run",
            RunKind::Backfill => "backfill",
        }
    }
}

/// How one (authority, date) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Snapshot, batch and pointer committed.
    Committed,
    /// First run: snapshot stored as the baseline.
    Baseline,
    /// Already committed by an earlier run.
    Skipped,
    /// An earlier run crashed after its batch; the pointer was moved now.
    Recovered,
    /// The guard stopped it; nothing emitted.
    Quarantined,
    /// The list could not be read or was invalid; nothing emitted.
    Failed,
    /// Asked for a date before the current snapshot that has no batch and
    /// no snapshot: never committed (a later diff spanned it), or pruned.
    Gap,
}

impl Status {
    /// The name reports, logs and metrics use (`committed`, `baseline`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Committed => "committed",
            Status::Baseline => "baseline",
            Status::Skipped => "skipped",
            Status::Recovered => "recovered",
            Status::Quarantined => "quarantined",
            Status::Failed => "failed",
            Status::Gap => "gap",
        }
    }

    /// Every status, in the order above.
    pub const ALL: [Status; 7] = [
        Status::Committed,
        Status::Baseline,
        Status::Skipped,
        Status::Recovered,
        Status::Quarantined,
        Status::Failed,
        Status::Gap,
    ];

    /// True for the outcomes that need an operator.
    pub fn is_problem(self) -> bool {
        matches!(self, Status::Quarantined | Status::Failed)
    }
}

/// The report line of one (authority, date).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub authority: String,
    pub name: String,
    pub date: String,
    pub status: Status,
    pub keys_before: Option<u64>,
    pub keys: Option<u64>,
    pub signed_up: u64,
    pub signed_off: u64,
    pub duplicates: u64,
    /// Change-list entries that changed nothing (sign-up of a present key, …).
    pub anomalies: u64,
    pub batch_bytes: Option<u64>,
    /// The date of the snapshot this date's diff was taken against (none
    /// for a baseline; on a gap, not the day before).
    pub base_date: Option<String>,
    /// Wall time spent on this (authority, date), milliseconds.
    pub duration_ms: u64,
    pub message: Option<String>,
}

/// The version of every report's shape (README, "Reports").
pub const SCHEMA: u32 = 1;

/// This invocation's id: in every report and in the final summary event.
pub fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// The program's version, as reports and metrics give it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The fields every report starts with (README, "Reports").
#[derive(Debug, Clone, serde::Serialize)]
pub struct Header {
    pub schema: u32,
    pub kind: String,
    pub run_id: String,
    pub version: String,
    pub started_at: String,
    pub finished_at: String,
    pub config: String,
}

impl Header {
    /// A header of `kind` finishing now.
    pub fn new(kind: &str, started_at: String, config: &std::path::Path) -> Header {
        Header {
            schema: SCHEMA,
            kind: kind.to_owned(),
            run_id: run_id().to_owned(),
            version: VERSION.to_owned(),
            started_at,
            finished_at: now_rfc3339(),
            config: config.display().to_string(),
        }
    }
}

/// The whole run's report (also written as JSON into the state directory).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub header: Header,
    pub dates: Vec<String>,
    pub outcomes: Vec<Outcome>,
    pub n_problems: usize,
    /// Sign-ups and sign-offs emitted (quarantined and failed ones left out).
    pub signed_up: u64,
    pub signed_off: u64,
    /// Changes found but held back (quarantined): not emitted.
    pub held_back: u64,
    pub report_path: Option<PathBuf>,
}

/// A fresh outcome of (authority, date) with `status`.
pub fn outcome(a: &Authority, date: Date, status: Status) -> Outcome {
    Outcome {
        authority: keys::format(KeyKind::Cvr, a.cvr),
        name: a.name.clone(),
        date: date.to_string(),
        status,
        keys_before: None,
        keys: None,
        signed_up: 0,
        signed_off: 0,
        duplicates: 0,
        anomalies: 0,
        batch_bytes: None,
        base_date: None,
        duration_ms: 0,
        message: None,
    }
}

pub fn progress_bar(
    show: bool,
    n_authorities: usize,
    n_dates: usize,
) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !show || !io::stderr().is_terminal() || QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let bar = indicatif::ProgressBar::new((n_authorities * n_dates) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} authority-days, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    Some(bar)
}

pub fn log_outcome(o: &Outcome) {
    match o.status {
        Status::Failed | Status::Quarantined => tracing::warn!(
            authority_cvr = %o.authority,
            date = %o.date,
            status = %o.status.as_str(),
            reason = o.message.as_deref().unwrap_or(""),
            "authority not committed"
        ),
        _ => tracing::info!(
            authority_cvr = %o.authority,
            date = %o.date,
            status = %o.status.as_str(),
            base_date = %o.base_date.as_deref().unwrap_or("-"),
            n_keys = o.keys,
            n_signed_up = o.signed_up,
            n_signed_off = o.signed_off,
            "authority done"
        ),
    }
}

/// A report's file: `<kind>-[<what>-]<UTC stamp>-<pid>.json`, the one
/// naming scheme of every report (`run-2026-01-02-20260102T020000Z-77.json`,
/// `publish-20260102T020500Z-78.json`).
pub fn report_file(dir: &std::path::Path, kind: &str, what: Option<&str>) -> PathBuf {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    let what = what.map_or(String::new(), |w| format!("{w}-"));
    dir.join(format!("{kind}-{what}{stamp}-{}.json", std::process::id()))
}

pub fn report_path(dir: &std::path::Path, kind: RunKind, dates: &[Date]) -> PathBuf {
    let dates = match (dates.first(), dates.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}..{b}"),
        (Some(a), _) => a.to_string(),
        _ => "none".into(),
    };
    report_file(dir, kind.as_str(), Some(&dates))
}

/// Writes a report (JSON, atomically, mode 0600) into `STATE/reports/`.
pub fn write_report(path: &std::path::Path, report: &impl serde::Serialize) -> anyhow::Result<()> {
    use anyhow::Context;
    crate::fsutil::create_dir_all(path.parent().expect("reports dir"))
        .and_then(|()| {
            crate::fsutil::write_atomic(
                path,
                &serde_json::to_vec_pretty(report).expect("serializable"),
            )
        })
        .with_context(|| format!("cannot write report {}", path.display()))
}

/// A [`Header`] as a JSON object to extend (republish, prune records).
pub fn header(kind: &str, started_at: &str, config: &std::path::Path) -> serde_json::Value {
    serde_json::to_value(Header::new(kind, started_at.to_owned(), config)).expect("serializable")
}

/// A publish's report: the same header fields as a run's, each batch's
/// outcome, and totals.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishReport {
    #[serde(flatten)]
    pub header: Header,
    pub batches: Vec<crate::beskedfordeler::publish::BatchOutcome>,
    pub totals: PublishTotals,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishTotals {
    pub batches: usize,
    pub events: u64,
    pub confirmed_now: u64,
    pub sent: u64,
    pub complete: bool,
}

impl PublishReport {
    pub fn new(
        config: &std::path::Path,
        started_at: String,
        batches: Vec<crate::beskedfordeler::publish::BatchOutcome>,
    ) -> PublishReport {
        let totals = PublishTotals {
            batches: batches.len(),
            events: batches.iter().map(|o| o.events).sum(),
            confirmed_now: batches.iter().map(|o| o.published).sum(),
            sent: batches.iter().map(|o| o.sent).sum(),
            complete: batches
                .iter()
                .all(|o| o.status == crate::beskedfordeler::publish::BatchStatus::Published),
        };
        PublishReport {
            header: Header::new("publish", started_at, config),
            batches,
            totals,
        }
    }
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

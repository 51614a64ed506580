//! What a run reports: one outcome per (authority, date), the whole run's
//! report (printed as a table, written as JSON), progress and log lines.

use std::io;
use std::path::PathBuf;

use jiff::civil::Date;

use crate::config::Authority;
use crate::domain::keys::{self, KeyKind};

/// `--quiet`: no progress bar.
pub static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
}

impl Status {
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
    pub message: Option<String>,
}

/// The whole run's report (also written as JSON into the state directory).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub kind: String,
    pub started_at: String,
    pub finished_at: String,
    pub config: String,
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
    Some(bar)
}

pub fn log_outcome(o: &Outcome) {
    match o.status {
        Status::Failed | Status::Quarantined => tracing::warn!(
            authority_cvr = %o.authority,
            date = %o.date,
            status = ?o.status,
            reason = o.message.as_deref().unwrap_or(""),
            "authority not committed"
        ),
        _ => tracing::info!(
            authority_cvr = %o.authority,
            date = %o.date,
            status = ?o.status,
            n_keys = o.keys,
            n_signed_up = o.signed_up,
            n_signed_off = o.signed_off,
            "authority done"
        ),
    }
}

pub fn report_path(dir: &std::path::Path, kind: RunKind, dates: &[Date]) -> PathBuf {
    let dates = match (dates.first(), dates.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}..{b}"),
        (Some(a), _) => a.to_string(),
        _ => "none".into(),
    };
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    dir.join(format!(
        "{}-{dates}-{stamp}-{}.json",
        kind.as_str(),
        std::process::id()
    ))
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

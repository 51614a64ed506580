//! The nightly run and backfills: per authority and date, the commit protocol.
//!
//! State directory:
//!
//! ```text
//! STATE/lock                              held (flock) while a run works
//! STATE/snapshots/<cvr>/<date>.snap       every snapshot taken
//! STATE/current/<cvr>                     the date of the authority's current snapshot
//! STATE/outbox/<date>/<cvr>.batch         the events of (authority, date)
//! STATE/reports/<kind>-<dates>-<stamp>.json   one report per run
//! ```
//!
//! Commit of (authority, date), after [`crate::crash`]'s points:
//! 1. read and verify the list (nothing is written for a bad list);
//! 2. write today's snapshot atomically — `after-snapshot`;
//! 3. diff against the current snapshot and run the guard (quarantine: stop
//!    here, the current snapshot stays current);
//! 4. write the outbox batch atomically — `mid-outbox-write`,
//!    `after-outbox-before-pointer`;
//! 5. move the current pointer to today — `after-pointer`.
//!
//! A rerun skips dates at or before the current pointer, and finishes a
//! commit whose batch exists but whose pointer did not move. Any error while
//! writing state (fsync, rename) is fatal for the run.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use rayon::prelude::*;
use time::Date;

use crate::config::{Authority, Config, FirstRun};
use crate::diff::{self, Changes};
use crate::envelope::{BatchContext, Event, Renderer};
use crate::keys::{self, KeyKind};
use crate::{crash, fsutil, guard, outbox, parse, snapshot};

/// How long a run waits for another run's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct Request {
    /// The dates, ascending; each authority takes them in order.
    pub dates: Vec<Date>,
    /// Only these authorities (empty: all configured).
    pub authorities: Vec<u32>,
    /// Authorities whose mass change the operator accepts for this run.
    pub accept_mass_change: BTreeSet<u32>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// `run` or `backfill`, for the report's name.
    pub kind: &'static str,
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
    pub signed_up: u64,
    pub signed_off: u64,
    pub report_path: Option<PathBuf>,
}

/// Paths inside the state directory.
#[derive(Debug, Clone)]
pub struct State {
    pub root: PathBuf,
}

impl State {
    pub fn snapshot(&self, authority: u32, date: Date) -> PathBuf {
        self.root
            .join("snapshots")
            .join(cvr(authority))
            .join(format!("{date}.snap"))
    }

    pub fn current(&self, authority: u32) -> PathBuf {
        self.root.join("current").join(cvr(authority))
    }

    /// The date of the authority's current snapshot, if any.
    pub fn read_current(&self, authority: u32) -> anyhow::Result<Option<Date>> {
        let path = self.current(authority);
        match fs::read_to_string(&path) {
            Ok(text) => crate::cli::parse_date(text.trim())
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{}: corrupt current pointer: {e}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

fn cvr(authority: u32) -> String {
    keys::format(KeyKind::Cvr, authority)
}

/// An error writing state: ends the run.
#[derive(Debug, thiserror::Error)]
#[error("cannot write state: {0:#}")]
pub struct Fatal(anyhow::Error);

fn fatal<E: Into<anyhow::Error>>(what: String) -> impl FnOnce(E) -> Fatal {
    move |e| Fatal(e.into().context(what))
}

/// Runs the request; `Err` only for fatal errors (state not writable,
/// another run holding the lock).
pub fn execute(cfg: &Config, req: &Request) -> anyhow::Result<Report> {
    let started = now_rfc3339();
    let state = State {
        root: cfg.state_dir.clone(),
    };
    fsutil::create_dir_all(&state.root)
        .with_context(|| format!("cannot create state directory {}", state.root.display()))?;
    let lock_path = state.root.join("lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    // A run killed a moment ago may still be exiting (finishing an fsync):
    // wait a little for its lock before calling it a concurrent run.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    while let Err(e) = lock.try_lock() {
        match e {
            fs::TryLockError::WouldBlock if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            fs::TryLockError::WouldBlock => anyhow::bail!(
                "another run holds the lock {} (waited {} s)",
                lock_path.display(),
                LOCK_WAIT.as_secs()
            ),
            fs::TryLockError::Error(e) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
    }
    remove_stale_temp_files(&state.root)?;

    let selected: Vec<&Authority> = if req.authorities.is_empty() {
        cfg.authorities.iter().collect()
    } else {
        req.authorities
            .iter()
            .map(|&a| {
                cfg.authority(a).ok_or_else(|| {
                    anyhow::Error::new(crate::cli::UsageError(format!(
                        "authority {} is not in {}",
                        cvr(a),
                        cfg.path.display()
                    )))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let bar = progress_bar(req, selected.len());
    let stop = AtomicBool::new(false);
    let per_authority: Vec<Result<Vec<Outcome>, Fatal>> = selected
        .par_iter()
        .map(|a| {
            let mut outcomes = Vec::new();
            for &date in &req.dates {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let outcome = commit(
                    cfg,
                    &state,
                    a,
                    date,
                    req.accept_mass_change.contains(&a.cvr),
                )
                .inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
                log_outcome(&outcome);
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
                let problem = outcome.status.is_problem();
                outcomes.push(outcome);
                if problem {
                    // Later dates would diff against a snapshot that skipped
                    // this one: stop here; a rerun resumes.
                    if let Some(bar) = &bar {
                        bar.inc((req.dates.len() - outcomes.len()) as u64);
                    }
                    break;
                }
            }
            Ok(outcomes)
        })
        .collect();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut outcomes = Vec::new();
    for r in per_authority {
        outcomes.extend(r?);
    }
    let mut report = Report {
        kind: req.kind.to_owned(),
        started_at: started,
        finished_at: now_rfc3339(),
        config: cfg.path.display().to_string(),
        dates: req.dates.iter().map(Date::to_string).collect(),
        n_problems: outcomes.iter().filter(|o| o.status.is_problem()).count(),
        signed_up: outcomes.iter().map(|o| o.signed_up).sum(),
        signed_off: outcomes.iter().map(|o| o.signed_off).sum(),
        outcomes,
        report_path: None,
    };
    let path = report_path(&state.root, req);
    fsutil::create_dir_all(path.parent().expect("reports dir"))
        .and_then(|()| {
            fsutil::write_atomic(
                &path,
                &serde_json::to_vec_pretty(&report).expect("serializable"),
            )
        })
        .with_context(|| format!("cannot write report {}", path.display()))?;
    report.report_path = Some(path);
    drop(lock);
    Ok(report)
}

fn progress_bar(req: &Request, n_authorities: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !req.progress || !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new((n_authorities * req.dates.len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} authority-days, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    Some(bar)
}

fn log_outcome(o: &Outcome) {
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

fn report_path(root: &Path, req: &Request) -> PathBuf {
    let dates = match (req.dates.first(), req.dates.last()) {
        (Some(a), Some(b)) if a != b => format!("{a}..{b}"),
        (Some(a), _) => a.to_string(),
        _ => "none".into(),
    };
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("formattable");
    root.join("reports").join(format!(
        "{}-{dates}-{stamp}-{}.json",
        req.kind,
        std::process::id()
    ))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Removes temp files a crashed run left behind (`.<name>.tmp.<pid>`).
fn remove_stale_temp_files(root: &Path) -> anyhow::Result<()> {
    for sub in ["snapshots", "outbox", "current"] {
        let dir = root.join(sub);
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    stack.push(path);
                } else if name.starts_with('.') && name.contains(".tmp.") {
                    fs::remove_file(&path)
                        .with_context(|| format!("cannot remove stale {}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}

fn outcome(a: &Authority, date: Date, status: Status) -> Outcome {
    Outcome {
        authority: cvr(a.cvr),
        name: a.name.clone(),
        date: date.to_string(),
        status,
        keys_before: None,
        keys: None,
        signed_up: 0,
        signed_off: 0,
        duplicates: 0,
        batch_bytes: None,
        message: None,
    }
}

/// Commits one (authority, date). `Err` only for fatal state errors.
fn commit(
    cfg: &Config,
    state: &State,
    a: &Authority,
    date: Date,
    accept: bool,
) -> Result<Outcome, Fatal> {
    let failed = |message: String| {
        let mut o = outcome(a, date, Status::Failed);
        o.message = Some(message);
        o
    };
    let current = match state.read_current(a.cvr) {
        Ok(c) => c,
        Err(e) => return Ok(failed(format!("{e:#}"))),
    };
    if let Some(cur) = current.filter(|&c| c >= date) {
        let mut o = outcome(a, date, Status::Skipped);
        o.message = Some(format!("already committed (current snapshot is {cur})"));
        return Ok(o);
    }
    let batch = outbox::batch_path(&state.root, a.cvr, date);
    let snap_path = state.snapshot(a.cvr, date);
    if batch.exists() {
        return recover(state, a, date, &batch, &snap_path);
    }

    // 1. The list.
    let source = cfg.source_path(a.cvr, date);
    let list = match parse::read_list(&source) {
        Ok(l) => l,
        Err(parse::ListFileError::Io { path, source })
            if source.kind() == io::ErrorKind::NotFound =>
        {
            return Ok(failed(format!(
                "no list: {} does not exist",
                path.display()
            )));
        }
        Err(e) => return Ok(failed(e.to_string())),
    };
    let taken_at = match crate::cli::mtime(&source) {
        Ok(t) => t,
        Err(e) => return Ok(failed(format!("{e:#}"))),
    };
    let previous = match current {
        Some(d) => match snapshot::read(&state.snapshot(a.cvr, d)) {
            Ok(s) => Some(s),
            Err(e) => return Ok(failed(format!("previous snapshot: {e}"))),
        },
        None => None,
    };

    // 2. Today's snapshot.
    let today = snapshot::Snapshot {
        meta: snapshot::Meta {
            authority: a.cvr,
            date,
            taken_at,
            n_rows: list.n_rows,
            n_duplicates: list.n_duplicates,
        },
        keys: list.keys,
    };
    let dir = snap_path.parent().expect("snapshot dir");
    fsutil::create_dir_all(dir)
        .and_then(|()| snapshot::write(&snap_path, &today).map(|_| ()))
        .map_err(fatal(format!("snapshot {}", snap_path.display())))?;
    crash::point("after-snapshot");

    // 3. Diff and guard.
    let mut o = outcome(a, date, Status::Committed);
    o.keys = Some(today.keys.len() as u64);
    o.duplicates = list.n_duplicates;
    let changes = match &previous {
        Some(prev) => {
            o.keys_before = Some(prev.keys.len() as u64);
            let changes = diff::diff(&prev.keys, &today.keys);
            if let Err(trip) = guard::check(prev.keys.len(), today.keys.len(), &changes, &cfg.guard)
            {
                if accept {
                    tracing::warn!(authority_cvr = %o.authority, reason = %trip, "mass change accepted by the operator");
                    o.message = Some(format!("accepted by --accept-mass-change: {trip}"));
                } else {
                    o.status = Status::Quarantined;
                    o.message = Some(format!(
                        "{trip}; nothing emitted, {} stays current (release with --accept-mass-change {})",
                        prev.meta.date, o.authority
                    ));
                    o.signed_up = changes.n_signed_up() as u64;
                    o.signed_off = changes.n_signed_off() as u64;
                    return Ok(o);
                }
            }
            changes
        }
        None => {
            o.status = Status::Baseline;
            match cfg.first_run {
                FirstRun::Baseline => Changes::default(),
                FirstRun::EmitAll => Changes::all_signed_up(&today.keys),
            }
        }
    };
    o.signed_up = changes.n_signed_up() as u64;
    o.signed_off = changes.n_signed_off() as u64;

    // 4. The outbox batch.
    let renderer = Renderer::new(
        &cfg.envelope,
        BatchContext {
            authority: a.cvr,
            date,
            taken_at,
        },
    );
    let n_events = changes.n_signed_up() + changes.n_signed_off();
    let events = ExactLen {
        inner: changes
            .events()
            .map(|(kind, key, change)| Event { kind, key, change }),
        len: n_events,
    };
    let header = outbox::write_batch(&batch, &renderer, a.cvr, date, events)
        .map_err(fatal(format!("outbox batch {}", batch.display())))?;
    o.batch_bytes = Some(header.payload_bytes + 72);
    crash::point("after-outbox-before-pointer");

    // 5. The pointer.
    move_pointer(state, a.cvr, date)?;
    crash::point("after-pointer");
    Ok(o)
}

fn move_pointer(state: &State, authority: u32, date: Date) -> Result<(), Fatal> {
    let path = state.current(authority);
    fsutil::create_dir_all(path.parent().expect("current dir"))
        .and_then(|()| fsutil::write_atomic(&path, format!("{date}\n").as_bytes()))
        .map_err(fatal(format!("current pointer {}", path.display())))
}

/// Finishes a commit whose batch was written but whose pointer was not moved.
fn recover(
    state: &State,
    a: &Authority,
    date: Date,
    batch: &Path,
    snap: &Path,
) -> Result<Outcome, Fatal> {
    let mut o = outcome(a, date, Status::Recovered);
    let header = match outbox::read_header(batch) {
        Ok(h) => h,
        Err(e) => {
            o.status = Status::Failed;
            o.message = Some(format!("{e}; move it aside to redo this date"));
            return Ok(o);
        }
    };
    match snapshot::read(snap) {
        Ok(s) => o.keys = Some(s.keys.len() as u64),
        Err(e) => {
            o.status = Status::Failed;
            o.message = Some(format!("batch exists but its snapshot does not read: {e}"));
            return Ok(o);
        }
    }
    o.signed_up = header.n_signed_up;
    o.signed_off = header.n_signed_off;
    o.batch_bytes = Some(header.payload_bytes + 72);
    o.message = Some("finished a commit an earlier run left before its pointer".into());
    move_pointer(state, a.cvr, date)?;
    crash::point("after-pointer");
    Ok(o)
}

/// An iterator with a known length (for the batch writer's progress points).
struct ExactLen<I> {
    inner: I,
    len: usize,
}

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        self.len -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

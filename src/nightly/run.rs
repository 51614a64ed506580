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

use crate::config::{Authority, Config, FirstRun, ListMode, Source};
use crate::domain::diff::{self, Changes};
use crate::domain::envelope::{BatchContext, Event, Renderer};
use crate::domain::keys::{self, KeyKind, KeySet};
use crate::{
    crash, domain::guard, domain::parse, fsutil, register::fetch, register::wire, store::outbox,
    store::snapshot,
};

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
    /// Inside the register's service window, wait for its end instead of failing.
    pub wait_for_service_window: bool,
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
            Ok(text) => crate::domain::dates::parse_date(text.trim())
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
    let lock = fsutil::open_private_append(&lock_path)
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
                    anyhow::Error::new(crate::exit::UsageError(format!(
                        "authority {} is not in {}",
                        cvr(a),
                        cfg.path.display()
                    )))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let blocked = service_window(cfg, req)?;
    let sources = Sources::default();
    let bar = progress_bar(req, selected.len());
    let stop = AtomicBool::new(false);
    // Network sources wait on I/O: give them more threads than cores.
    let threads = match (&cfg.source, &cfg.register) {
        (Source::Files(_), _) | (_, None) => rayon::current_num_threads(),
        (_, Some(r)) => r.parallel_authorities,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")?;
    let per_authority: Vec<Result<Vec<Outcome>, Fatal>> = pool.install(|| {
        selected
            .par_iter()
            .map(|a| {
                let mut outcomes = Vec::new();
                for &date in &req.dates {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(reason) = &blocked {
                        let mut o = outcome(a, date, Status::Failed);
                        o.message = Some(reason.clone());
                        outcomes.push(o);
                        break;
                    }
                    let outcome = commit(
                        cfg,
                        &state,
                        &sources,
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
            .collect()
    });
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

/// Inside NemSMS's service window the register is not called: `Some`
/// reason fails every authority, unless the request waits for the window to end.
fn service_window(cfg: &Config, req: &Request) -> anyhow::Result<Option<String>> {
    if matches!(cfg.source, Source::Files(_)) {
        return Ok(None);
    }
    let now = fetch::now();
    let Some(end) = fetch::service_window_end(&now) else {
        return Ok(None);
    };
    let until = end.strftime("%H:%M %Z").to_string();
    if !req.wait_for_service_window {
        return Ok(Some(format!(
            "NemSMS is in its service window (Sunday 00:00-04:00 Danish time) until {until}; \
             the register was not called (rerun later, or pass --wait-for-service-window)"
        )));
    }
    let wait = now.duration_until(&end);
    let secs = wait.as_secs().max(0) as u64;
    tracing::warn!(until = %until, wait_secs = secs, "NemSMS is in its service window: waiting");
    std::thread::sleep(std::time::Duration::from_secs(secs));
    Ok(None)
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

/// Removes what a crashed run left behind: downloads under `STATE/tmp/`
/// (the lock is held, so none is in progress) and temp files
/// (`.<name>.tmp.<pid>`) everywhere else.
fn remove_stale_temp_files(root: &Path) -> anyhow::Result<()> {
    let tmp = root.join("tmp");
    match fs::remove_dir_all(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot remove stale {}", tmp.display()));
        }
    }
    for sub in [
        "snapshots",
        "outbox",
        "current",
        "changelists",
        "reports",
        "taken",
    ] {
        let dir = root.join(sub);
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                // file_type() does not follow symlinks: a symlinked directory
                // is never walked into.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                } else if name.starts_with('.') && name.contains(".tmp.") && !writer_alive(&name) {
                    fs::remove_file(&path)
                        .with_context(|| format!("cannot remove stale {}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Whether the process that is writing temp file `name`
/// (`.<name>.tmp.<pid>`) is still running (a `publish` does not take the
/// run's lock).
fn writer_alive(name: &str) -> bool {
    name.rsplit(".tmp.")
        .next()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| {
            pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists()
        })
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
        anomalies: 0,
        batch_bytes: None,
        message: None,
    }
}

/// Commits one (authority, date). `Err` only for fatal state errors.
fn commit(
    cfg: &Config,
    state: &State,
    sources: &Sources,
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
    let mut pending = outcome(a, date, Status::Skipped);
    if a.list_mode == ListMode::Delta {
        // A crash between commit and delete left a committed change list.
        delete_pending_change_list(cfg, state, sources, a, current, &mut pending)?;
        // Never fetch the next change list while a committed one is still
        // at the Register: it could be served again, or lost from view.
        if current.is_none_or(|c| c < date)
            && let Ok(Some(r)) = ChangeListRecord::read(state, a.cvr)
            && !r.deleted
            && r.committed(current)
        {
            let mut o = outcome(a, date, Status::Failed);
            o.message = Some(format!(
                "the change list of {} is committed but not yet deleted at the register ({}); \
                 nothing fetched for {date}: rerun",
                r.date,
                pending.message.as_deref().unwrap_or("delete failed")
            ));
            return Ok(o);
        }
    }
    if let Some(cur) = current.filter(|&c| c >= date) {
        // A run stopped between the pointer and the stamp's removal.
        let _ = fs::remove_file(taken_stamp_path(state, a.cvr, date));
        let mut o = pending;
        o.message = Some(o.message.map_or(
            format!("already committed (current snapshot is {cur})"),
            |m| format!("already committed (current snapshot is {cur}); {m}"),
        ));
        return Ok(o);
    }
    let batch = outbox::batch_path(&state.root, a.cvr, date);
    let snap_path = state.snapshot(a.cvr, date);
    if batch.exists() {
        let mut o = recover(state, a, date, &batch, &snap_path)?;
        if a.list_mode == ListMode::Delta && o.status == Status::Recovered {
            delete_pending_change_list(cfg, state, sources, a, Some(date), &mut o)?;
        }
        return Ok(o);
    }

    // 1. The list (the previous snapshot first: a change list applies to it).
    let previous = match current {
        Some(d) => match snapshot::read(&state.snapshot(a.cvr, d)) {
            Ok(s) => Some(s),
            Err(e) => return Ok(failed(format!("previous snapshot: {e}"))),
        },
        None => None,
    };
    let loaded = match load_today(cfg, state, sources, a, date, previous.as_ref()) {
        Ok(l) => l,
        Err(message) => return Ok(failed(message)),
    };
    let taken_at = loaded.taken_at;

    // 2. Today's snapshot.
    let today = snapshot::Snapshot {
        meta: snapshot::Meta {
            authority: a.cvr,
            date,
            taken_at,
            n_rows: loaded.n_rows,
            n_duplicates: loaded.n_duplicates,
        },
        keys: loaded.keys,
    };
    let dir = snap_path.parent().expect("snapshot dir");
    fsutil::create_dir_all(dir)
        .and_then(|()| snapshot::write(&snap_path, &today).map(|_| ()))
        .map_err(fatal(format!("snapshot {}", snap_path.display())))?;
    crash::point("after-snapshot");

    // 3. Diff and guard.
    let mut o = outcome(a, date, Status::Committed);
    o.keys = Some(today.keys.len() as u64);
    o.duplicates = loaded.n_duplicates;
    o.anomalies = loaded.anomalies;
    if let Some(list_id) = &loaded.change_list {
        let record = ChangeListRecord {
            list_id: list_id.clone(),
            date: date.to_string(),
            deleted: false,
        };
        record.write(state, a.cvr)?;
    }
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
    let events: Vec<Event> = changes
        .events()
        .map(|(kind, key, change)| Event { kind, key, change })
        .collect();
    let header = outbox::write_batch(&batch, &renderer, a.cvr, date, &events)
        .map_err(fatal(format!("outbox batch {}", batch.display())))?;
    o.batch_bytes = Some(header.payload_bytes + 72);
    crash::point("after-outbox-before-pointer");

    // 5. The pointer.
    move_pointer(state, a.cvr, date)?;
    crash::point("after-pointer");

    // 6. Only now may the register delete the change list.
    if a.list_mode == ListMode::Delta {
        delete_pending_change_list(cfg, state, sources, a, Some(date), &mut o)?;
    }
    Ok(o)
}

/// Today's keys and what the report says about them.
struct Loaded {
    keys: KeySet,
    taken_at: i64,
    n_rows: u64,
    n_duplicates: u64,
    anomalies: u64,
    change_list: Option<String>,
}

/// Reads today's list from the configured source. `Err` is a message for
/// the report: the authority fails, nothing is written.
fn load_today(
    cfg: &Config,
    state: &State,
    sources: &Sources,
    a: &Authority,
    date: Date,
    previous: Option<&snapshot::Snapshot>,
) -> Result<Loaded, String> {
    let from_list = |list: parse::ParsedList, taken_at| Loaded {
        keys: list.keys,
        taken_at,
        n_rows: list.n_rows,
        n_duplicates: list.n_duplicates,
        anomalies: 0,
        change_list: None,
    };
    let tmp = state
        .root
        .join("tmp")
        .join(format!("{}-{date}", cvr(a.cvr)));
    match &cfg.source {
        Source::Files(_) => {
            let path = cfg.source_path(a.cvr, date).expect("file source");
            let list = match parse::read_list(&path) {
                Ok(l) => l,
                Err(parse::ListFileError::Io { path, source })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    return Err(format!("no list: {} does not exist", path.display()));
                }
                Err(e) => return Err(e.to_string()),
            };
            let taken_at = crate::fsutil::mtime(&path).map_err(|e| format!("{e:#}"))?;
            Ok(from_list(list, taken_at))
        }
        Source::Https(template) => {
            let url = Config::expand(template, a.cvr, date);
            let client = sources.client(cfg, a).map_err(|e| format!("{e:#}"))?;
            fsutil::create_dir_all(&tmp)
                .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
            let file = tmp.join("list.csv");
            let result = client
                .download(&url, &file)
                .map_err(|e| format!("{url}: {e}"))
                .and_then(|()| {
                    parse::read_list(&file).map_err(|e| {
                        format!(
                            "{url}: {}",
                            e.to_string()
                                .replacen(&file.display().to_string(), "", 1)
                                .trim_start_matches(": ")
                        )
                    })
                });
            let _ = fs::remove_dir_all(&tmp);
            let list = result?;
            let taken_at = taken_at_stamp(state, a.cvr, date).map_err(|e| format!("{e:#}"))?;
            Ok(from_list(list, taken_at))
        }
        Source::Oiorest => {
            let client = sources.client(cfg, a).map_err(|e| format!("{e:#}"))?;
            let kind = match a.list_mode {
                ListMode::Full => wire::ListKind::Full,
                ListMode::Delta => wire::ListKind::Change,
            };
            let fetched = client
                .fetch_list(&a.register_sysid, date, kind, &tmp)
                .map_err(|e| format!("register: {e}"))?;
            let taken_at = taken_at_stamp(state, a.cvr, date).map_err(|e| format!("{e:#}"))?;
            if kind == wire::ListKind::Full {
                return Ok(Loaded {
                    n_rows: fetched.n_entries,
                    n_duplicates: fetched.n_duplicates,
                    keys: fetched.up,
                    taken_at,
                    anomalies: 0,
                    change_list: None,
                });
            }
            let empty = KeySet::default();
            let prev = previous.map_or(&empty, |p| &p.keys);
            // A change list counts as applied only once the date it was
            // fetched for is committed (the current pointer reached it): a
            // list fetched by a run that crashed, failed or was quarantined
            // before its commit is applied afresh when the Register serves
            // it again.
            let current = previous.map(|p| p.meta.date);
            let applied = ChangeListRecord::read(state, a.cvr)
                .map_err(|e| format!("{e:#}"))?
                .is_some_and(|r| r.list_id == fetched.list_id && r.committed(current));
            let (keys, anomalies) = if applied {
                tracing::warn!(authority_cvr = %cvr(a.cvr), "the register sent a change list that was already applied: nothing emitted for it");
                (prev.clone(), 0)
            } else {
                diff::apply_delta(prev, &fetched.up, &fetched.off)
            };
            Ok(Loaded {
                keys,
                taken_at,
                n_rows: fetched.n_entries,
                n_duplicates: fetched.n_duplicates,
                anomalies,
                change_list: Some(fetched.list_id),
            })
        }
    }
}

/// When (authority, date)'s list was first taken from the network:
/// `STATE/taken/<cvr>/<date>`, written once (atomically) and reused by a
/// rerun after a crash, so that its snapshot and batch are byte-identical
/// to the first attempt's. Removed once the date is committed.
fn taken_at_stamp(state: &State, authority: u32, date: Date) -> anyhow::Result<i64> {
    let path = taken_stamp_path(state, authority, date);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{}: not a time stamp", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let now = fetch::now().timestamp().as_second();
            fsutil::create_dir_all(path.parent().expect("dir"))
                .and_then(|()| fsutil::write_atomic(&path, format!("{now}\n").as_bytes()))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(now)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn taken_stamp_path(state: &State, authority: u32, date: Date) -> PathBuf {
    state
        .root
        .join("taken")
        .join(cvr(authority))
        .join(date.to_string())
}

/// The change list last applied for an authority: `STATE/changelists/<cvr>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ChangeListRecord {
    list_id: String,
    date: String,
    deleted: bool,
}

impl ChangeListRecord {
    /// Whether the date it was fetched for is committed, given the
    /// authority's current snapshot date.
    fn committed(&self, current: Option<Date>) -> bool {
        current.is_some_and(|c| crate::domain::dates::parse_date(&self.date).is_ok_and(|d| d <= c))
    }

    fn path(state: &State, authority: u32) -> PathBuf {
        state.root.join("changelists").join(cvr(authority))
    }

    fn read(state: &State, authority: u32) -> anyhow::Result<Option<ChangeListRecord>> {
        let path = Self::path(state, authority);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{}: corrupt change-list record", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn write(&self, state: &State, authority: u32) -> Result<(), Fatal> {
        let path = Self::path(state, authority);
        fsutil::create_dir_all(path.parent().expect("dir"))
            .and_then(|()| {
                fsutil::write_atomic(&path, &serde_json::to_vec(self).expect("serializable"))
            })
            .map_err(fatal(format!("change-list record {}", path.display())))
    }
}

/// Deletes the recorded change list at the register if it is committed
/// (its date at or before the current pointer) and not deleted yet. A
/// failure is reported on the outcome; the next run tries again.
fn delete_pending_change_list(
    cfg: &Config,
    state: &State,
    sources: &Sources,
    a: &Authority,
    current: Option<Date>,
    o: &mut Outcome,
) -> Result<(), Fatal> {
    let record = match ChangeListRecord::read(state, a.cvr) {
        Ok(Some(r)) if !r.deleted => r,
        Ok(_) => return Ok(()),
        Err(e) => {
            o.message = Some(format!("{e:#}"));
            return Ok(());
        }
    };
    if !record.committed(current) {
        return Ok(());
    }
    let result = sources
        .client(cfg, a)
        .map_err(|e| format!("{e:#}"))
        .and_then(|c| {
            c.delete_change_list(&a.register_sysid, &record.list_id)
                .map_err(|e| e.to_string())
        });
    if result.is_ok() {
        crash::step("change list deleted at the register");
    }
    match result {
        Ok(()) => ChangeListRecord {
            deleted: true,
            ..record
        }
        .write(state, a.cvr),
        Err(e) => {
            tracing::warn!(authority_cvr = %cvr(a.cvr), error = %e, "change list not deleted");
            o.message = Some(format!(
                "change list not deleted at the register ({e}); the next run deletes it"
            ));
            Ok(())
        }
    }
}

/// Register clients, one per client certificate, made when first needed.
#[derive(Default)]
pub struct Sources {
    clients: std::sync::Mutex<
        std::collections::HashMap<(PathBuf, PathBuf), std::sync::Arc<fetch::Client>>,
    >,
}

impl Sources {
    fn client(&self, cfg: &Config, a: &Authority) -> anyhow::Result<std::sync::Arc<fetch::Client>> {
        let register = cfg
            .register
            .as_ref()
            .context("no [register] section in the config")?;
        let (cert, key) = a
            .client_cert
            .clone()
            .unwrap_or_else(|| (register.client_cert.clone(), register.client_key.clone()));
        let mut clients = self.clients.lock().expect("lock");
        if let Some(c) = clients.get(&(cert.clone(), key.clone())) {
            return Ok(c.clone());
        }
        let client = std::sync::Arc::new(fetch::Client::new(register, &cert, &key)?);
        clients.insert((cert, key), client.clone());
        Ok(client)
    }
}

fn move_pointer(state: &State, authority: u32, date: Date) -> Result<(), Fatal> {
    let path = state.current(authority);
    fsutil::create_dir_all(path.parent().expect("current dir"))
        .and_then(|()| fsutil::write_atomic(&path, format!("{date}\n").as_bytes()))
        .map_err(fatal(format!("current pointer {}", path.display())))?;
    // Committed: the date's taken-at stamp has served its purpose.
    let _ = fs::remove_file(taken_stamp_path(state, authority, date));
    Ok(())
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

//! The nightly run and backfills: per authority and date, the commit protocol.
//!
//! The state directory is laid out in [`crate::store::state`].
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
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use jiff::civil::Date;

use crate::config::{Authority, Config, FirstRun, ListMode, Source};
use crate::domain::diff::{self, Changes};
use crate::domain::envelope::{BatchContext, Event, IdKey, Renderer};
use crate::domain::guard;
use crate::domain::keys::{self, KeyKind};
use crate::nightly::report::{
    Outcome, Report, RunKind, Status, log_outcome, now_rfc3339, outcome, progress_bar, report_path,
};
use crate::nightly::sources::{ListSource, Sources};
use crate::register::fetch;
use crate::store::state::{ChangeListRecord, State};
use crate::store::{outbox, snapshot};
use crate::{crash, fsutil};

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
    pub kind: RunKind,
    /// Inside the register's service window, wait for its end instead of failing.
    pub wait_for_service_window: bool,
    /// How long to wait for another run's state lock.
    pub lock_wait: std::time::Duration,
    /// Diff across missed days (the current snapshot older than the day
    /// before): without it such a date fails and names the fix.
    pub allow_gap: bool,
}

/// What every step of a run needs: the config, the state directory and
/// where lists come from.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub state: &'a State,
    pub source: &'a dyn ListSource,
    /// The installation's key for event ids.
    pub id_key: IdKey,
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
    let state = State::new(cfg.state_dir.clone());
    let lock = state.lock_waiting(req.lock_wait)?;
    state.sweep()?;
    let id_key = crate::store::secret::id_key(&cfg.id_key_file)?;

    let selected: Vec<&Authority> = if req.authorities.is_empty() {
        cfg.authorities.iter().collect()
    } else {
        req.authorities
            .iter()
            .map(|&a| {
                cfg.authority(a).ok_or_else(|| {
                    anyhow::Error::new(crate::exit::UsageError(format!(
                        "authority {} is not in {}",
                        keys::format(KeyKind::Cvr, a),
                        cfg.path.display()
                    )))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let blocked = service_window(cfg, req)?;
    let sources = Sources::default();
    let ctx = Ctx {
        cfg,
        state: &state,
        source: &sources,
        id_key,
    };
    let bar = progress_bar(req.progress, selected.len(), req.dates.len());
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
    // Largest authority first (by its current snapshot's size): started
    // late, the biggest list would run alone at the end on one core.
    let sizes: std::collections::HashMap<u32, u64> = selected
        .iter()
        .map(|a| {
            let size = state
                .read_current(a.cvr)
                .ok()
                .flatten()
                .and_then(|d| std::fs::metadata(state.snapshot(a.cvr, d)).ok())
                .map_or(0, |m| m.len());
            (a.cvr, size)
        })
        .collect();
    let size = |a: &Authority| sizes.get(&a.cvr).copied().unwrap_or(0);
    let work = |a: &Authority| -> Result<Vec<Outcome>, Fatal> {
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
            let started = std::time::Instant::now();
            let mut outcome =
                commit(&ctx, a, date, req).inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
            outcome.duration_ms = started.elapsed().as_millis() as u64;
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
    };
    // The order the workers take them in (largest_first's).
    let mut order: Vec<&Authority> = selected.to_vec();
    order.sort_by_key(|a| std::cmp::Reverse(size(a)));
    let per_authority: Vec<Result<Vec<Outcome>, Fatal>> = std::thread::scope(|scope| {
        // Over OIOREST, the next authorities' reference collections are
        // fetched while the workers download and diff (half as many
        // threads, at most one round of workers ahead).
        let _ahead = req
            .dates
            .first()
            .map(|&date| sources.read_ahead(scope, cfg, order, date, threads.div_ceil(2), threads));
        pool.install(|| crate::rt::largest_first(&selected, |a| size(a), |a| work(a)))
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
        crate::nightly::report::clear_bar();
    }
    let mut outcomes = Vec::new();
    for r in per_authority {
        outcomes.extend(r?);
    }
    let mut report = Report {
        header: crate::nightly::report::Header::new(req.kind.as_str(), started, &cfg.path),
        dates: req.dates.iter().map(Date::to_string).collect(),
        n_problems: outcomes.iter().filter(|o| o.status.is_problem()).count(),
        // Totals count what was emitted; a quarantine's changes are held back.
        signed_up: outcomes
            .iter()
            .filter(|o| !o.status.is_problem())
            .map(|o| o.signed_up)
            .sum(),
        signed_off: outcomes
            .iter()
            .filter(|o| !o.status.is_problem())
            .map(|o| o.signed_off)
            .sum(),
        held_back: outcomes
            .iter()
            .filter(|o| o.status.is_problem())
            .map(|o| o.signed_up + o.signed_off)
            .sum(),
        outcomes,
        report_path: None,
    };
    let path = report_path(&state.reports(), req.kind, &req.dates);
    crate::nightly::report::write_report(&path, &report)?;
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

/// Commits one (authority, date). `Err` only for fatal state errors.
fn commit(ctx: &Ctx, a: &Authority, date: Date, req: &Request) -> Result<Outcome, Fatal> {
    let (cfg, state) = (ctx.cfg, ctx.state);
    let accept = req.accept_mass_change.contains(&a.cvr);
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
        delete_pending_change_list(ctx, a, current, &mut pending)?;
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
        state.remove_taken(a.cvr, date);
        if !state.batch(a.cvr, date).exists() && !state.snapshot(a.cvr, date).exists() {
            let mut o = outcome(a, date, Status::Gap);
            o.message = Some(format!(
                "nothing was committed for {date} (no batch, no snapshot: never run, and a later \
                 diff spanned it, or pruned); the current snapshot is {cur}"
            ));
            return Ok(o);
        }
        let mut o = pending;
        o.message = Some(o.message.map_or(
            format!("already committed (current snapshot is {cur})"),
            |m| format!("already committed (current snapshot is {cur}); {m}"),
        ));
        return Ok(o);
    }
    let batch = state.batch(a.cvr, date);
    let snap_path = state.snapshot(a.cvr, date);
    if batch.exists() {
        let mut o = recover(state, a, date, &batch, &snap_path)?;
        if a.list_mode == ListMode::Delta && o.status == Status::Recovered {
            delete_pending_change_list(ctx, a, Some(date), &mut o)?;
        }
        return Ok(o);
    }

    // A missed day: diffing against an older snapshot would date several
    // days of changes today. Refused unless the operator allows it.
    if let Some(cur) = current
        && crate::domain::dates::next_day(cur).is_some_and(|next| next < date)
        && !req.allow_gap
    {
        let mut o = outcome(a, date, Status::Failed);
        o.base_date = Some(cur.to_string());
        o.message = Some(format!(
            "gap: the current snapshot is {cur}, so {date}'s diff would span the missed days \
             and date their changes {date}; fill them with `backfill --from {} --to {date}` if \
             their lists exist, or pass --allow-gap",
            crate::domain::dates::next_day(cur).expect("checked")
        ));
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
    let loaded = match ctx.source.load(cfg, state, a, date, previous.as_ref()) {
        Ok(l) => l,
        Err(e) => return Ok(failed(e.to_string())),
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
        record.write(state, a.cvr).map_err(Fatal)?;
    }
    let changes = match &previous {
        Some(prev) => {
            o.keys_before = Some(prev.keys.len() as u64);
            o.base_date = Some(prev.meta.date.to_string());
            if crate::domain::dates::next_day(prev.meta.date) != Some(date) {
                tracing::warn!(
                    authority_cvr = %o.authority,
                    date = %date,
                    base_date = %prev.meta.date,
                    "diff across a gap (--allow-gap): its changes are dated {date}"
                );
            }
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
            id_key: ctx.id_key,
        },
    );
    let events: Vec<Event> = changes
        .events()
        .map(|(kind, key, change)| Event { kind, key, change })
        .collect();
    let header = outbox::write_batch(&batch, &renderer, a.cvr, date, &events)
        .map_err(fatal(format!("outbox batch {}", batch.display())))?;
    o.batch_bytes = Some(header.file_bytes());
    crash::point("after-outbox-before-pointer");

    // 5. The pointer.
    state.move_pointer(a.cvr, date).map_err(Fatal)?;
    crash::point("after-pointer");

    // 6. Only now may the register delete the change list.
    if a.list_mode == ListMode::Delta {
        delete_pending_change_list(ctx, a, Some(date), &mut o)?;
    }
    Ok(o)
}

/// Deletes the recorded change list at the register if it is committed
/// (its date at or before the current pointer) and not deleted yet. A
/// failure is reported on the outcome; the next run tries again.
fn delete_pending_change_list(
    ctx: &Ctx,
    a: &Authority,
    current: Option<Date>,
    o: &mut Outcome,
) -> Result<(), Fatal> {
    let record = match ChangeListRecord::read(ctx.state, a.cvr) {
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
    let result = ctx.source.delete_change_list(ctx.cfg, a, &record.list_id);
    if result.is_ok() {
        crash::step("change list deleted at the register");
    }
    match result {
        Ok(()) => ChangeListRecord {
            deleted: true,
            ..record
        }
        .write(ctx.state, a.cvr)
        .map_err(Fatal),
        Err(e) => {
            tracing::warn!(authority_cvr = %keys::format(KeyKind::Cvr, a.cvr), error = format!("{e:#}"), "change list not deleted");
            o.message = Some(format!(
                "change list not deleted at the register ({e:#}); the next run deletes it"
            ));
            Ok(())
        }
    }
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
    o.batch_bytes = Some(header.file_bytes());
    o.message = Some("finished a commit an earlier run left before its pointer".into());
    state.move_pointer(a.cvr, date).map_err(Fatal)?;
    crash::point("after-pointer");
    Ok(o)
}

#[cfg(test)]
mod tests {
    //! The commit protocol through its seams: a [`Ctx`] over a temp state
    //! directory and a [`ListSource`] that hands out lists from memory.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::domain::keys::KeySet;
    use crate::nightly::sources::{LoadError, Loaded};
    use crate::store::snapshot::Snapshot;

    const AUTHORITY: u32 = 29189846;

    /// Lists by date; a missing date fails like a missing file.
    #[derive(Default)]
    struct Lists(Mutex<HashMap<Date, KeySet>>);

    impl ListSource for Lists {
        fn load(
            &self,
            _cfg: &Config,
            _state: &State,
            _a: &Authority,
            date: Date,
            _previous: Option<&Snapshot>,
        ) -> Result<Loaded, LoadError> {
            let keys = self
                .0
                .lock()
                .unwrap()
                .get(&date)
                .cloned()
                .ok_or_else(|| LoadError::NoList(format!("{date}.csv").into()))?;
            Ok(Loaded {
                n_rows: keys.len() as u64,
                keys,
                taken_at: 1_767_225_600,
                n_duplicates: 0,
                anomalies: 0,
                change_list: None,
            })
        }

        fn delete_change_list(&self, _: &Config, _: &Authority, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn config(state: &Path) -> Config {
        Config::parse(
            &format!(
                r#"
state_dir = "{}"
source = "file://lists/{{date}}/{{authority}}.csv"
[envelope]
beskedtype = "11111111-1111-4111-8111-111111111111"
beskedansvarlig_aktoer = "22222222-2222-4222-8222-222222222222"
objekttype_virksomhed = "33333333-3333-4333-8333-333333333333"
handling_tilmeldt = "44444444-4444-4444-8444-444444444444"
handling_afmeldt = "55555555-5555-4555-8555-555555555555"
[[authority]]
cvr = "{AUTHORITY}"
name = "Aarhus"
register_sysid = "1"
"#,
                state.display()
            ),
            Path::new("/etc/nemsms.toml"),
        )
        .unwrap()
    }

    fn keys(cpr: std::ops::Range<u32>) -> KeySet {
        KeySet::from_unsorted(cpr.map(|k| 101_900_000 + k).collect(), vec![]).0
    }

    fn day(d: u8) -> Date {
        jiff::civil::date(2026, 1, d as i8)
    }

    struct World {
        _dir: tempfile::TempDir,
        cfg: Config,
        state: State,
        lists: Lists,
    }

    impl World {
        fn new() -> World {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(&dir.path().join("state"));
            let state = State::new(cfg.state_dir.clone());
            World {
                _dir: dir,
                cfg,
                state,
                lists: Lists::default(),
            }
        }

        fn list(&self, d: u8, k: KeySet) {
            self.lists.0.lock().unwrap().insert(day(d), k);
        }

        fn commit(&self, d: u8, accept: bool) -> Outcome {
            let ctx = Ctx {
                cfg: &self.cfg,
                state: &self.state,
                source: &self.lists,
                id_key: IdKey([7; 32]),
            };
            let a = &self.cfg.authorities[0];
            let req = Request {
                dates: vec![day(d)],
                authorities: vec![],
                accept_mass_change: if accept {
                    BTreeSet::from([a.cvr])
                } else {
                    BTreeSet::new()
                },
                progress: false,
                kind: RunKind::Run,
                wait_for_service_window: false,
                lock_wait: std::time::Duration::ZERO,
                allow_gap: false,
            };
            commit(&ctx, a, day(d), &req).unwrap()
        }
    }

    #[test]
    fn baseline_then_the_changes_in_one_batch_then_the_pointer() {
        let w = World::new();
        w.list(1, keys(0..1000));
        w.list(2, keys(10..1005));
        let o = w.commit(1, false);
        assert_eq!((o.status, o.keys), (Status::Baseline, Some(1000)));
        assert_eq!(w.state.read_current(AUTHORITY).unwrap(), Some(day(1)));
        let o = w.commit(2, false);
        assert_eq!(o.status, Status::Committed);
        assert_eq!((o.signed_up, o.signed_off), (5, 10));
        let header = outbox::read_header(&w.state.batch(AUTHORITY, day(2))).unwrap();
        assert_eq!((header.n_signed_up, header.n_signed_off), (5, 10));
        assert_eq!(w.state.read_current(AUTHORITY).unwrap(), Some(day(2)));
        // A rerun of a committed date changes nothing.
        let batch = std::fs::read(w.state.batch(AUTHORITY, day(2))).unwrap();
        assert_eq!(w.commit(2, false).status, Status::Skipped);
        assert_eq!(
            std::fs::read(w.state.batch(AUTHORITY, day(2))).unwrap(),
            batch
        );
    }

    #[test]
    fn a_missing_list_writes_nothing_and_keeps_yesterday_current() {
        let w = World::new();
        w.list(1, keys(0..1000));
        w.commit(1, false);
        let o = w.commit(2, false);
        assert_eq!(o.status, Status::Failed);
        assert!(o.message.unwrap().contains("no list"));
        assert!(!w.state.batch(AUTHORITY, day(2)).exists());
        assert!(!w.state.snapshot(AUTHORITY, day(2)).exists());
        assert_eq!(w.state.read_current(AUTHORITY).unwrap(), Some(day(1)));
    }

    #[test]
    fn a_truncated_list_is_quarantined_until_accepted() {
        let w = World::new();
        w.list(1, keys(0..1000));
        w.commit(1, false);
        w.list(2, keys(0..100));
        let o = w.commit(2, false);
        assert_eq!(o.status, Status::Quarantined);
        assert!(
            !w.state.batch(AUTHORITY, day(2)).exists(),
            "nothing emitted"
        );
        assert_eq!(w.state.read_current(AUTHORITY).unwrap(), Some(day(1)));
        let o = w.commit(2, true);
        assert_eq!((o.status, o.signed_off), (Status::Committed, 900));
        assert_eq!(w.state.read_current(AUTHORITY).unwrap(), Some(day(2)));
    }

    #[test]
    fn a_batch_without_its_pointer_is_recovered_not_redone() {
        let w = World::new();
        w.list(1, keys(0..1000));
        w.list(2, keys(3..1001));
        w.commit(1, false);
        w.commit(2, false);
        // As if the run had died after the batch and before the pointer.
        w.state.move_pointer(AUTHORITY, day(1)).unwrap();
        let batch = std::fs::read(w.state.batch(AUTHORITY, day(2))).unwrap();
        w.list(2, keys(500..600)); // a different list now: must not matter
        let o = w.commit(2, false);
        assert_eq!(
            (o.status, o.signed_up, o.signed_off),
            (Status::Recovered, 1, 3)
        );
        assert_eq!(
            std::fs::read(w.state.batch(AUTHORITY, day(2))).unwrap(),
            batch
        );
        assert_eq!(w.state.read_current(AUTHORITY).unwrap(), Some(day(2)));
    }
}

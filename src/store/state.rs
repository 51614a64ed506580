//! The state directory's layout in one place, and the small files in it:
//! the lock, the current pointers, the taken-at stamps and the change-list
//! records. Snapshots and batches have their own modules.
//!
//! ```text
//! STATE/lock                              held (flock) while a run works
//! STATE/snapshots/<cvr>/<date>.snap       every snapshot taken
//! STATE/current/<cvr>                     the date of the authority's current snapshot
//! STATE/outbox/<date>/<cvr>.batch         the events of (authority, date)
//! STATE/outbox/<date>/<cvr>.cursor        how many of them Beskedfordeler confirmed
//! STATE/changelists/<cvr>                 the change list last applied, and whether deleted
//! STATE/taken/<cvr>/<date>                when a network list was first taken
//! STATE/reports/<kind>-[<what>-]<stamp>-<pid>.json   one report per run, backfill, publish, republish, prune
//! STATE/tmp/<cvr>-<date>/                 downloads in progress
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use jiff::civil::Date;

use crate::domain::keys::{self, KeyKind};
use crate::fsutil;

/// How long a run waits for another run's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Paths inside the state directory.
#[derive(Debug, Clone)]
pub struct State {
    pub root: PathBuf,
}

fn cvr(authority: u32) -> String {
    keys::format(KeyKind::Cvr, authority)
}

impl State {
    pub fn new(root: PathBuf) -> State {
        State { root }
    }

    pub fn snapshot(&self, authority: u32, date: Date) -> PathBuf {
        self.root
            .join("snapshots")
            .join(cvr(authority))
            .join(format!("{date}.snap"))
    }

    pub fn current(&self, authority: u32) -> PathBuf {
        self.root.join("current").join(cvr(authority))
    }

    pub fn batch(&self, authority: u32, date: Date) -> PathBuf {
        crate::store::outbox::batch_path(&self.root, authority, date)
    }

    /// Where (authority, date)'s downloads go while they are fetched.
    pub fn tmp(&self, authority: u32, date: Date) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{}-{date}", cvr(authority)))
    }

    pub fn taken(&self, authority: u32, date: Date) -> PathBuf {
        self.root
            .join("taken")
            .join(cvr(authority))
            .join(date.to_string())
    }

    pub fn changelist(&self, authority: u32) -> PathBuf {
        self.root.join("changelists").join(cvr(authority))
    }

    pub fn reports(&self) -> PathBuf {
        self.root.join("reports")
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

    /// Moves the authority's current pointer to `date` (atomically): the
    /// commit point. The date's taken-at stamp has then served its purpose.
    pub fn move_pointer(&self, authority: u32, date: Date) -> anyhow::Result<()> {
        let path = self.current(authority);
        fsutil::create_dir_all(path.parent().expect("current dir"))
            .and_then(|()| fsutil::write_atomic(&path, format!("{date}\n").as_bytes()))
            .with_context(|| format!("current pointer {}", path.display()))?;
        self.remove_taken(authority, date);
        Ok(())
    }

    /// Removes (authority, date)'s taken-at stamp, if any.
    pub fn remove_taken(&self, authority: u32, date: Date) {
        let _ = fs::remove_file(self.taken(authority, date));
    }

    /// When (authority, date)'s list was first taken from the network:
    /// `STATE/taken/<cvr>/<date>`, written once (atomically, `now()`) and
    /// reused by a rerun after a crash, so that its snapshot and batch are
    /// byte-identical to the first attempt's. Removed once the date is
    /// committed.
    pub fn taken_at_stamp(
        &self,
        authority: u32,
        date: Date,
        now: impl FnOnce() -> i64,
    ) -> anyhow::Result<i64> {
        let path = self.taken(authority, date);
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .with_context(|| format!("{}: not a time stamp", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let now = now();
                fsutil::create_dir_all(path.parent().expect("dir"))
                    .and_then(|()| fsutil::write_atomic(&path, format!("{now}\n").as_bytes()))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(now)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Takes the run lock (`STATE/lock`, flock), creating the state
    /// directory if needed. A run killed a moment ago may still be exiting
    /// (finishing an fsync): its lock is waited for a little before this
    /// calls it a concurrent run. Held until the returned file is dropped.
    pub fn lock(&self) -> anyhow::Result<fs::File> {
        self.lock_waiting(LOCK_WAIT)
    }

    /// Takes the state lock, waiting up to `wait` for another holder; the
    /// holder's pid is written into the lock file, and a refusal
    /// ([`crate::exit::LockHeld`], exit code 5) names it.
    pub fn lock_waiting(&self, wait: std::time::Duration) -> anyhow::Result<fs::File> {
        use std::io::Write;
        fsutil::create_dir_all(&self.root)
            .with_context(|| format!("cannot create state directory {}", self.root.display()))?;
        let lock_path = self.root.join("lock");
        let mut lock = fsutil::open_private_append(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        let deadline = std::time::Instant::now() + wait;
        while let Err(e) = lock.try_lock() {
            match e {
                fs::TryLockError::WouldBlock if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                fs::TryLockError::WouldBlock => {
                    let holder = fs::read_to_string(&lock_path)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok())
                        .map_or("another process".to_owned(), |pid| format!("pid {pid}"));
                    return Err(crate::exit::LockHeld(format!(
                        "another run ({holder}) holds the state lock {} (waited {} s; --lock-wait SECONDS waits longer)",
                        lock_path.display(),
                        wait.as_secs()
                    ))
                    .into());
                }
                fs::TryLockError::Error(e) => {
                    return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
                }
            }
        }
        // Ours now: say who holds it (append mode: truncate, then write).
        let _ = lock
            .set_len(0)
            .and_then(|()| writeln!(lock, "{}", std::process::id()));
        Ok(lock)
    }

    /// Removes what a crashed run left behind: downloads under `STATE/tmp/`
    /// (the lock is held, so none is in progress) and temp files
    /// ([`fsutil::temp_path`]) everywhere else whose writer is gone (a
    /// `publish` does not take the run's lock). Symlinks are never followed.
    pub fn sweep(&self) -> anyhow::Result<()> {
        let tmp = self.root.join("tmp");
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
            let mut stack = vec![self.root.join(sub)];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    // file_type() does not follow symlinks: a symlinked
                    // directory is never walked into.
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(path);
                    } else if stale_temp(&path) {
                        fs::remove_file(&path)
                            .with_context(|| format!("cannot remove stale {}", path.display()))?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// A temp file ([`fsutil::temp_path`]) whose writer is gone (or is this
/// process, which calls this before it writes any): safe to remove under
/// the state lock.
pub fn stale_temp(path: &Path) -> bool {
    fsutil::temp_writer(path).is_some_and(|pid| pid == std::process::id() || !pid_alive(pid))
}

/// The change list last applied for an authority: `STATE/changelists/<cvr>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeListRecord {
    pub list_id: String,
    pub date: String,
    pub deleted: bool,
}

impl ChangeListRecord {
    /// Whether the date it was fetched for is committed, given the
    /// authority's current snapshot date.
    pub fn committed(&self, current: Option<Date>) -> bool {
        current.is_some_and(|c| crate::domain::dates::parse_date(&self.date).is_ok_and(|d| d <= c))
    }

    pub fn read(state: &State, authority: u32) -> anyhow::Result<Option<ChangeListRecord>> {
        let path = state.changelist(authority);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{}: corrupt change-list record", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn write(&self, state: &State, authority: u32) -> anyhow::Result<()> {
        let path = state.changelist(authority);
        fsutil::create_dir_all(path.parent().expect("dir"))
            .and_then(|()| {
                fsutil::write_atomic(&path, &serde_json::to_vec(self).expect("serializable"))
            })
            .with_context(|| format!("change-list record {}", path.display()))
    }
}

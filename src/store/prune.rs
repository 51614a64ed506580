//! `prune`: retention. Removes what the job no longer needs from a state
//! directory (data minimisation: snapshots and batches are full of CPR
//! numbers), and nothing it still needs:
//!
//! - a **snapshot** goes when it is older than the current one, older than
//!   `keep_days` and older than the backfill window before the current
//!   one, and no unpublished batch needs it (a batch needs the snapshot of
//!   its date and the one before, its diff's base). The current snapshot,
//!   and any newer one (a crashed run's, which its rerun commits), stay;
//! - a **batch** goes when every event is confirmed (cursor = events), it
//!   is committed (its date is not after the current snapshot's) and older
//!   than `keep_days`; its cursor goes right after it. An unpublished
//!   batch is never removed, however old;
//! - **reports** older than `keep_days` (by modification time);
//! - **leftovers**: taken-at stamps of committed dates, temp files whose
//!   writer is gone, downloads under `tmp/`, and cursors whose batch is
//!   gone (what an interrupted prune leaves).
//!
//! Crash safety: every removal is one `unlink`, each a crash step
//! ([`crate::crash::step`]), and the order keeps every intermediate state
//! valid: a batch is removed before its cursor (a cursor without its batch
//! is harmless and removed by the next prune; a batch without its cursor
//! would be sent again). A rerun after a crash completes the job. The
//! directories touched are fsynced at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use jiff::civil::Date;

use crate::domain::dates::parse_date;
use crate::domain::keys;
use crate::store::outbox;
use crate::store::state::{State, stale_temp};

/// What prune keeps.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Today (Denmark): dates before `today - keep_days` are old.
    pub today: Date,
    /// Now, Unix seconds: reports older than `keep_days` days go.
    pub now: i64,
    pub keep_days: u32,
    /// Snapshots dated within this many days before the current one stay.
    pub backfill_window_days: u32,
}

/// The kind of a file prune removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Snapshot,
    Batch,
    Cursor,
    Report,
    Leftover,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Batch => "batch",
            Kind::Cursor => "cursor",
            Kind::Report => "report",
            Kind::Leftover => "leftover",
        }
    }
}

/// One file (or leftover download folder) to remove.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Item {
    pub kind: Kind,
    pub path: PathBuf,
    pub bytes: u64,
    /// For batches: the events it held (all confirmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
}

/// What prune removes, in the order it removes it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Plan {
    pub items: Vec<Item>,
    /// Batches kept although old, because not every event is confirmed.
    pub unpublished_kept: u64,
}

impl Plan {
    /// (files, bytes) of one kind.
    pub fn count(&self, kind: Kind) -> (u64, u64) {
        self.items
            .iter()
            .filter(|i| i.kind == kind)
            .fold((0, 0), |(n, b), i| (n + 1, b + i.bytes))
    }

    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }
}

fn entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v = Vec::new();
            for e in rd {
                v.push(e?.path());
            }
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn size(p: &Path) -> u64 {
    fs::symlink_metadata(p).map_or(0, |m| m.len())
}

fn days_before(d: Date, n: u32) -> Date {
    d.checked_sub(jiff::Span::new().days(i64::from(n)))
        .unwrap_or(Date::MIN)
}

/// Works out what to remove. Reads only. Files it cannot make sense of
/// (a corrupt batch, an unreadable cursor) are kept, and `check` names
/// them.
pub fn plan(state: &State, policy: &Policy) -> anyhow::Result<Plan> {
    let root = &state.root;
    let old = days_before(policy.today, policy.keep_days);
    let mut plan = Plan::default();
    let ctx = |p: &Path| format!("cannot read {}", p.display());

    // Current dates, per authority folder found in the state.
    let mut current: BTreeMap<u32, Option<Date>> = BTreeMap::new();
    for dir in entries(&root.join("snapshots")).with_context(|| ctx(&root.join("snapshots")))? {
        if let Ok(cvr) = keys::parse_cvr_str(file_name(&dir)) {
            current.insert(cvr, state.read_current(cvr)?);
        }
    }

    // Batches: what is removable, and which dates unpublished ones need.
    let mut unpublished: BTreeMap<u32, BTreeSet<Date>> = BTreeMap::new();
    let mut batch_items = Vec::new();
    let outbox_root = root.join("outbox");
    for dir in entries(&outbox_root).with_context(|| ctx(&outbox_root))? {
        let Ok(date) = parse_date(file_name(&dir)) else {
            continue;
        };
        let files = entries(&dir).with_context(|| ctx(&dir))?;
        for file in &files {
            let name = file_name(file);
            if let Some(cvr) = name.strip_suffix(".batch") {
                let Ok(cvr) = keys::parse_cvr_str(cvr) else {
                    continue;
                };
                let (Ok(h), Ok(cursor)) = (outbox::read_header(file), outbox::read_cursor(file))
                else {
                    // Unreadable: keep it, and what it may need.
                    unpublished.entry(cvr).or_default().insert(date);
                    continue;
                };
                let published = cursor >= h.n_events;
                let committed = current
                    .get(&cvr)
                    .copied()
                    .flatten()
                    .is_some_and(|c| date <= c);
                if !published {
                    unpublished.entry(cvr).or_default().insert(date);
                    if date < old {
                        plan.unpublished_kept += 1;
                    }
                } else if committed && date < old {
                    batch_items.push(Item {
                        kind: Kind::Batch,
                        path: file.clone(),
                        bytes: size(file),
                        events: Some(h.n_events),
                    });
                    let cursor = outbox::cursor_path(file);
                    if cursor.exists() {
                        batch_items.push(Item {
                            kind: Kind::Cursor,
                            bytes: size(&cursor),
                            path: cursor,
                            events: None,
                        });
                    }
                }
            } else if let Some(stem) = name.strip_suffix(".cursor") {
                // A cursor whose batch is gone: an interrupted prune's.
                if !dir.join(format!("{stem}.batch")).exists() {
                    batch_items.push(Item {
                        kind: Kind::Cursor,
                        path: file.clone(),
                        bytes: size(file),
                        events: None,
                    });
                }
            } else if stale_temp(file) {
                batch_items.push(leftover(file));
            }
        }
    }

    // Snapshots.
    for (&cvr, &cur) in &current {
        let Some(cur) = cur else {
            continue; // never committed: keep everything
        };
        let dir = state.snapshot(cvr, cur);
        let dir = dir.parent().expect("snapshot folder");
        let mut dates = Vec::new();
        for file in entries(dir).with_context(|| ctx(dir))? {
            match file_name(&file).strip_suffix(".snap").map(parse_date) {
                Some(Ok(d)) => dates.push((d, file)),
                _ if stale_temp(&file) => plan.items.push(leftover(&file)),
                _ => {}
            }
        }
        // A batch needs its date's snapshot and the one before it.
        let mut needed = BTreeSet::new();
        for &d in unpublished.get(&cvr).into_iter().flatten() {
            needed.insert(d);
            if let Some((base, _)) = dates.iter().rev().find(|(s, _)| *s < d) {
                needed.insert(*base);
            }
        }
        let window = days_before(cur, policy.backfill_window_days);
        for (d, file) in dates {
            if d < cur && d < old && d < window && !needed.contains(&d) {
                plan.items.push(Item {
                    kind: Kind::Snapshot,
                    path: file.clone(),
                    bytes: size(&file),
                    events: None,
                });
            }
        }
    }
    plan.items.extend(batch_items);

    // Reports.
    let reports = state.reports();
    for file in entries(&reports).with_context(|| ctx(&reports))? {
        if stale_temp(&file) {
            plan.items.push(leftover(&file));
        } else if file_name(&file).ends_with(".json")
            && crate::fsutil::mtime(&file)
                .is_ok_and(|t| t < policy.now - i64::from(policy.keep_days) * 86_400)
        {
            plan.items.push(Item {
                kind: Kind::Report,
                path: file.clone(),
                bytes: size(&file),
                events: None,
            });
        }
    }

    // Leftovers: stamps of committed dates, temp files, downloads.
    let taken = root.join("taken");
    for dir in entries(&taken).with_context(|| ctx(&taken))? {
        let Ok(cvr) = keys::parse_cvr_str(file_name(&dir)) else {
            continue;
        };
        let cur = current.get(&cvr).copied().flatten();
        for file in entries(&dir).with_context(|| ctx(&dir))? {
            let committed = parse_date(file_name(&file)).is_ok_and(|d| cur.is_some_and(|c| d <= c));
            if committed || stale_temp(&file) {
                plan.items.push(leftover(&file));
            }
        }
    }
    for sub in ["current", "changelists"] {
        let dir = root.join(sub);
        for file in entries(&dir).with_context(|| ctx(&dir))? {
            if stale_temp(&file) {
                plan.items.push(leftover(&file));
            }
        }
    }
    for path in entries(&root.join("tmp")).with_context(|| ctx(&root.join("tmp")))? {
        plan.items.push(leftover(&path));
    }
    Ok(plan)
}

fn leftover(p: &Path) -> Item {
    Item {
        kind: Kind::Leftover,
        path: p.to_owned(),
        bytes: size(p),
        events: None,
    }
}

/// Removes the plan's files in order (the caller holds the state lock),
/// then fsyncs the folders it touched and removes outbox date folders left
/// empty. Stops at the first error: what is removed stays removed, a rerun
/// continues.
pub fn apply(state: &State, plan: &Plan) -> anyhow::Result<()> {
    let mut touched = BTreeSet::new();
    for item in &plan.items {
        let result = if item.path.is_dir() && !item.path.is_symlink() {
            fs::remove_dir_all(&item.path)
        } else {
            fs::remove_file(&item.path)
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot remove {}", item.path.display()));
            }
        }
        crate::crash::step("removed");
        if let Some(dir) = item.path.parent() {
            touched.insert(dir.to_owned());
        }
    }
    let outbox_root = state.root.join("outbox");
    for dir in &touched {
        if dir.parent() == Some(outbox_root.as_path()) && entries(dir).is_ok_and(|e| e.is_empty()) {
            match fs::remove_dir(dir) {
                Ok(()) => crate::crash::step("removed"),
                // A run or publish put something there meanwhile.
                Err(_) => continue,
            }
            crate::fsutil::sync_dir(&outbox_root)
                .with_context(|| format!("cannot sync {}", outbox_root.display()))?;
        } else if dir.exists() {
            crate::fsutil::sync_dir(dir)
                .with_context(|| format!("cannot sync {}", dir.display()))?;
        }
        crate::crash::step("directory synced");
    }
    Ok(())
}

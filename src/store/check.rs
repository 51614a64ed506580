//! `check`: verifies every file of a state directory, like `restic check`,
//! and lists each problem. Reads only: it takes no lock, sweeps nothing
//! and writes nothing.
//!
//! - snapshots decode and verify (header and payload checksums, every
//!   key), and their header names the authority and date of their path;
//! - current pointers hold a date whose snapshot exists;
//! - batches verify (checksums, every record readable, the declared count)
//!   and their header matches their path; cursors parse and lie within
//!   their batch; a cursor without its batch is an orphan;
//! - change-list records parse;
//! - anything else in these folders is an orphan; leftover downloads under
//!   `tmp/` are noted (the next run sweeps them), not counted as problems.

use std::fs;
use std::path::{Path, PathBuf};

use crate::domain::dates::parse_date;
use crate::domain::keys::{self, KeyKind};
use crate::store::{outbox, snapshot, state::ChangeListRecord, state::State};

/// What `check` found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub pointers: u64,
    pub batches: u64,
    pub cursors: u64,
    pub events: u64,
    /// Each problem: the file and what is wrong with it.
    pub problems: Vec<String>,
    /// Worth knowing, not wrong (leftovers the next run removes).
    pub notes: Vec<String>,
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks the state directory at `root`.
pub fn check(root: &Path) -> CheckReport {
    let mut r = CheckReport::default();
    let state = State::new(root.to_owned());
    let problem = |r: &mut CheckReport, p: &Path, what: String| {
        r.problems.push(format!("{}: {what}", p.display()));
    };

    // Snapshots: snapshots/<cvr>/<date>.snap
    for dir in entries(&root.join("snapshots")) {
        let Ok(cvr) = keys::parse_cvr_str(&name(&dir)) else {
            problem(&mut r, &dir, "not an authority's folder (orphan)".into());
            continue;
        };
        for file in entries(&dir) {
            let date = name(&file)
                .strip_suffix(".snap")
                .and_then(|d| parse_date(d).ok());
            let Some(date) = date else {
                if fsutil_temp(&file) {
                    r.notes
                        .push(format!("{}: leftover temp file", file.display()));
                } else {
                    problem(&mut r, &file, "not a snapshot name (orphan)".into());
                }
                continue;
            };
            r.snapshots += 1;
            match snapshot::read(&file) {
                Ok(s) if s.meta.authority != cvr || s.meta.date != date => problem(
                    &mut r,
                    &file,
                    format!(
                        "its header says authority {} date {}",
                        keys::format(KeyKind::Cvr, s.meta.authority),
                        s.meta.date
                    ),
                ),
                Ok(_) => {}
                Err(e) => r.problems.push(e.to_string()),
            }
        }
    }

    // Current pointers: current/<cvr>
    for file in entries(&root.join("current")) {
        let Ok(cvr) = keys::parse_cvr_str(&name(&file)) else {
            if fsutil_temp(&file) {
                r.notes
                    .push(format!("{}: leftover temp file", file.display()));
            } else {
                problem(&mut r, &file, "not an authority's pointer (orphan)".into());
            }
            continue;
        };
        r.pointers += 1;
        match state.read_current(cvr) {
            Ok(Some(date)) if !state.snapshot(cvr, date).exists() => problem(
                &mut r,
                &file,
                format!("points to {date}, whose snapshot does not exist"),
            ),
            Ok(_) => {}
            Err(e) => r.problems.push(format!("{e:#}")),
        }
    }

    // Batches and cursors: outbox/<date>/<cvr>.batch and .cursor
    for dir in entries(&root.join("outbox")) {
        let Ok(date) = parse_date(&name(&dir)) else {
            problem(&mut r, &dir, "not a date's folder (orphan)".into());
            continue;
        };
        for file in entries(&dir) {
            let n = name(&file);
            if let Some(cvr) = n.strip_suffix(".batch") {
                r.batches += 1;
                match outbox::open(&file) {
                    Err(e) => r.problems.push(e.to_string()),
                    Ok((h, records)) => {
                        if keys::format(KeyKind::Cvr, h.authority) != cvr || h.date != date {
                            problem(
                                &mut r,
                                &file,
                                format!(
                                    "its header says authority {} date {}",
                                    keys::format(KeyKind::Cvr, h.authority),
                                    h.date
                                ),
                            );
                        }
                        let mut n_read = 0u64;
                        for rec in records {
                            match rec {
                                Ok(_) => n_read += 1,
                                Err(e) => {
                                    r.problems.push(e.to_string());
                                    break;
                                }
                            }
                        }
                        r.events += n_read;
                        if n_read != h.n_events {
                            problem(
                                &mut r,
                                &file,
                                format!("declares {} events, holds {n_read}", h.n_events),
                            );
                        }
                    }
                }
            } else if let Some(cvr) = n.strip_suffix(".cursor") {
                r.cursors += 1;
                let batch = dir.join(format!("{cvr}.batch"));
                if !batch.exists() {
                    problem(&mut r, &file, "a cursor without its batch (orphan)".into());
                    continue;
                }
                match (outbox::read_cursor(&batch), outbox::read_header(&batch)) {
                    (Ok(c), Ok(h)) if c > h.n_events => problem(
                        &mut r,
                        &file,
                        format!("cursor {c} beyond the batch's {} events", h.n_events),
                    ),
                    (Err(e), _) => problem(&mut r, &file, e.to_string()),
                    _ => {}
                }
            } else if fsutil_temp(&file) {
                r.notes
                    .push(format!("{}: leftover temp file", file.display()));
            } else {
                problem(&mut r, &file, "unknown file in the outbox (orphan)".into());
            }
        }
    }

    // Change-list records: changelists/<cvr>
    for file in entries(&root.join("changelists")) {
        match keys::parse_cvr_str(&name(&file)) {
            Ok(cvr) => {
                if let Err(e) = ChangeListRecord::read(&state, cvr) {
                    r.problems.push(format!("{e:#}"));
                }
            }
            Err(_) if fsutil_temp(&file) => r
                .notes
                .push(format!("{}: leftover temp file", file.display())),
            Err(_) => problem(&mut r, &file, "not an authority's record (orphan)".into()),
        }
    }

    for file in entries(&root.join("tmp")) {
        r.notes.push(format!(
            "{}: leftover download (the next run removes it)",
            file.display()
        ));
    }
    r
}

/// A temp file of [`crate::fsutil::temp_path`] (`.NAME.tmp.PID`).
fn fsutil_temp(p: &Path) -> bool {
    crate::fsutil::temp_writer(p).is_some()
}

//! Full and read-only disks: the state directory on a small tmpfs (root
//! mounts it) that fills up mid-run, or is read-only: the run fails with an
//! error naming the file, nothing is half-committed, and once space is
//! freed (or the disk writable again) a rerun completes with exactly the
//! expected events. The same for publish cursors.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Setup;
use crate::batch_rows;
use crate::{Flow, assert_same};
use crate::{assert_code, run, stderr, stdout};

/// A tmpfs mounted at `dir` (unmounted on drop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let s = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            s.success(),
            "mounting a tmpfs needs root (these tests run as root in CI)"
        );
        Tmpfs(dir.to_owned())
    }

    fn remount(&self, opts: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success());
    }

    /// Fills the file system up to `leave` bytes free.
    fn fill(&self, leave: u64) -> PathBuf {
        let free = free_bytes(&self.0);
        let filler = self.0.join("filler");
        let n = free.saturating_sub(leave);
        let f = fs::File::create(&filler).unwrap();
        // tmpfs allocates on write: write zeros in chunks.
        use std::io::Write;
        let mut w = std::io::BufWriter::new(f);
        let chunk = vec![0u8; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len() as u64) as usize;
            if w.write_all(&chunk[..k]).is_err() {
                break;
            }
            left -= k as u64;
        }
        let _ = w.flush();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn expected_rows(s: &Setup, a: &str) -> Vec<String> {
    let out = run(
        s.path(),
        &[
            "diff",
            &format!("lists/2026-01-01/{a}.csv"),
            &format!("lists/2026-01-02/{a}.csv"),
        ],
    );
    stdout(&out).lines().skip(1).map(str::to_owned).collect()
}

/// Every authority either still at day 1 with no day-2 batch, or at day 2
/// with a complete batch: nothing half-committed.
fn nothing_half_committed(s: &Setup) {
    for a in &s.authorities {
        let current = fs::read_to_string(s.path().join("state/current").join(a)).unwrap();
        let batch = s.path().join(format!("state/outbox/2026-01-02/{a}.batch"));
        if current.trim() == "2026-01-02" || batch.exists() {
            assert_eq!(batch_rows(s.path(), a, "2026-01-02"), expected_rows(s, a));
        } else {
            assert_eq!(current.trim(), "2026-01-01");
        }
    }
}

#[test]
fn full_and_read_only_disks_fail_clearly_and_lose_nothing() {
    let s = Setup::new(6, 600_000, 2, 0.01);
    let disk = Tmpfs::mount(&s.path().join("state"), "64m");
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);

    // Full mid-run: room for some of day 2's files, not all.
    let filler = disk.fill(400 << 10);
    let out = s.run(&["--date", "2026-01-02"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("No space left on device") && err.contains("state/"),
        "the error names the file: {err}"
    );
    nothing_half_committed(&s);
    fs::remove_file(&filler).unwrap();
    assert_code(&s.run(&["--date", "2026-01-02"]), 0);
    nothing_half_committed(&s);
    for a in &s.authorities {
        assert!(
            s.path()
                .join(format!("state/outbox/2026-01-02/{a}.batch"))
                .exists()
        );
    }

    // Read-only: the run fails naming the file and changes nothing.
    let again = Setup::new(6, 600_000, 2, 0.01);
    let disk2 = Tmpfs::mount(&again.path().join("state"), "64m");
    assert_code(&again.run(&["--date", "2026-01-01"]), 0);
    disk2.remount("ro");
    let out = again.run(&["--date", "2026-01-02"]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("Read-only file system") && stderr(&out).contains("state/"),
        "{}",
        stderr(&out)
    );
    disk2.remount("rw");
    nothing_half_committed(&again);
    assert_code(&again.run(&["--date", "2026-01-02"]), 0);
    nothing_half_committed(&again);
}

#[test]
fn publish_cursors_on_a_full_disk_lose_nothing() {
    let flow = Flow::new(2, 200_000, 0.02, "in_flight = 200");
    // Move the state onto a small tmpfs.
    let state = flow.path().join("state");
    let saved = flow.path().join("state-saved");
    fs::rename(&state, &saved).unwrap();
    let disk = Tmpfs::mount(&state, "32m");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", saved.display()))
        .arg(&state)
        .status()
        .unwrap();
    assert!(cp.success());
    let _emulator = flow.emulator(&[]);
    let filler = disk.fill(0);
    let out = flow.publish();
    assert_ne!(out.status.code(), Some(0), "a cursor cannot be written");
    assert!(
        stderr(&out).contains("cannot write the publish cursor")
            && stderr(&out).contains(".cursor"),
        "{}",
        stderr(&out)
    );
    fs::remove_file(&filler).unwrap();
    assert_code(&flow.publish(), 0);
    assert_same(flow.delivered().into_iter().collect(), &flow.outbox_ids());
}

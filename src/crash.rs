//! Crash points for crash-safety tests; compiled in only with the
//! `crash-points` feature (the tests' build), never in production binaries.
//!
//! When the environment variable `NEMSMS_DIFF_CRASH_AT` is set, the process
//! aborts (as a power cut would stop it: no destructors, no flushing) right
//! after the step it names:
//!
//! - `step:N`: the Nth durable side effect of this process, counted across
//!   all threads in the order they happen: every temp file written and
//!   fsynced, rename, directory fsync, new directory, remote DELETE of a
//!   change list, and every event Beskedfordeler confirmed. A test that
//!   arms N = 1, 2, … until the process completes has crashed it after
//!   every durable step it takes.
//! - a name, kept as an alias of the step it stands for: `after-snapshot`,
//!   `mid-outbox-write`, `after-outbox-before-pointer`, `after-pointer`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a crash point.
pub const ENV: &str = "NEMSMS_DIFF_CRASH_AT";

/// Every named crash point, in the order a commit passes them.
pub const POINTS: [&str; 4] = [
    "after-snapshot",
    "mid-outbox-write",
    "after-outbox-before-pointer",
    "after-pointer",
];

enum Armed {
    Name(String),
    Step(u64),
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var(ENV).ok()?;
            Some(match v.strip_prefix("step:").map(str::parse::<u64>) {
                Some(Ok(n)) => Armed::Step(n),
                _ => Armed::Name(v),
            })
        })
        .as_ref()
}

static STEPS: AtomicU64 = AtomicU64::new(0);

/// Aborts the process if `name` is the armed crash point (only in builds
/// with the `crash-points` feature, which `cargo test` turns on).
pub fn point(name: &str) {
    if !cfg!(feature = "crash-points") {
        return;
    }
    if let Some(Armed::Name(n)) = armed()
        && n == name
    {
        eprintln!("crash point {name} reached: aborting");
        std::process::abort();
    }
}

/// Counts one durable side effect; aborts if it is the armed step (only in
/// builds with the `crash-points` feature).
pub fn step(what: &str) {
    if !cfg!(feature = "crash-points") {
        return;
    }
    if let Some(Armed::Step(armed)) = armed() {
        let n = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
        if n == *armed {
            eprintln!("crash point step:{n} reached ({what}): aborting");
            std::process::abort();
        }
    }
}

//! Named crash points for crash-safety tests.
//!
//! When the environment variable `NEMSMS_DIFF_CRASH_AT` names a point, the
//! process aborts there (as a power cut would stop it: no destructors, no
//! flushing). Points: `after-snapshot`, `mid-outbox-write`,
//! `after-outbox-before-pointer`, `after-pointer`.

use std::sync::OnceLock;

/// The environment variable that arms a crash point.
pub const ENV: &str = "NEMSMS_DIFF_CRASH_AT";

/// Every crash point, in the order a commit passes them.
pub const POINTS: [&str; 4] = [
    "after-snapshot",
    "mid-outbox-write",
    "after-outbox-before-pointer",
    "after-pointer",
];

/// Aborts the process if `name` is the armed crash point.
pub fn point(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    if ARMED.get_or_init(|| std::env::var(ENV).ok()).as_deref() == Some(name) {
        eprintln!("crash point {name} reached: aborting");
        std::process::abort();
    }
}

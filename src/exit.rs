//! Process exit codes (README, "Exit codes") and the usage error that maps
//! to exit code 2.

/// Everything worked.
pub const OK: u8 = 0;
/// The command failed: bad input, a corrupt file, an I/O error.
pub const FAILURE: u8 = 1;
/// The command line or the configuration is wrong.
pub const USAGE: u8 = 2;
/// Some items (pairs, authorities) failed; the others completed.
pub const PARTIAL: u8 = 3;
/// Publishing stopped before every batch was confirmed (rerun resumes).
pub const PUBLISH_INCOMPLETE: u8 = 4;

/// Another run holds the state lock (`--lock-wait` to wait longer).
pub const LOCKED: u8 = 5;
/// `run`/`backfill`: every authority failed (nothing was committed).
pub const ALL_FAILED: u8 = 6;

/// Another process holds the state lock (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LockHeld(pub String);

/// An error in how the program was called or configured (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

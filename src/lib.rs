//! nemsms-diff: the nightly NemSMS registration-list job of the Danish
//! municipalities' integration platform.
//!
//! Lists are parsed ([`parse`]) into validated keys ([`keys`]), kept as
//! compact snapshots ([`snapshot`], [`codec`]) and compared ([`diff`]).
//! `ARCHITECTURE.md` has the bird's-eye view and the invariants.

pub mod alive;
pub mod besked;
pub mod cli;
pub mod codec;
pub mod config;
pub mod crash;
pub mod diff;
pub mod emulator;
pub mod envelope;
pub mod fetch;
pub mod fsutil;
pub mod generate;
pub mod guard;
pub mod harden;
pub mod keys;
pub mod outbox;
pub mod parse;
pub mod proxy;
pub mod publish;
pub mod run;
pub mod secret;
pub mod simulate;
pub mod snapshot;
pub mod sts;
pub mod tls;
pub mod wire;

/// Process exit codes (README, "Exit codes").
pub mod exit {
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
}

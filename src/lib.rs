//! nemsms-diff: the nightly NemSMS registration-list job of the Danish
//! municipalities' integration platform.
//!
//! Lists are parsed ([`domain::parse`]) into validated keys
//! ([`domain::keys`]), kept as compact snapshots ([`store::snapshot`],
//! [`domain::codec`]) and compared ([`domain::diff`]); the nightly run
//! ([`nightly`]) fetches them from the Register ([`register`]) and writes
//! the events to the outbox ([`store::outbox`]), which the publisher
//! ([`beskedfordeler::publish`]) sends on. `ARCHITECTURE.md` has the
//! bird's-eye view, the dependency rule and the invariants.

// Layers, each importing only those below it (tests/it/arch.rs checks):
//   cli → nightly → config → beskedfordeler → {register, store} → domain,
// with the leaf utilities (exit, fsutil, crash, secret, tls, harden) under
// everything, and `sim` (the test doubles, cargo feature `sim`) beside the
// product: it may use anything, nothing but the `simulate` and `generate`
// commands use it.
pub mod beskedfordeler;
pub mod cli;
pub mod config;
pub mod crash;
pub mod domain;
pub mod fsutil;
pub mod harden;
pub mod nightly;
pub mod register;
pub mod secret;
pub mod sim;
pub mod store;
pub mod tls;

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

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
pub mod exit;
pub mod fsutil;
pub mod harden;
pub mod http;
pub mod nightly;
pub mod register;
pub mod rt;
pub mod secret;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod tls;

//! Integration tests: drive the real `nemsms-diff` binary in temp dirs.
//! What the modules share is in `support`.

mod arch;
mod bfo;
mod cli;
mod crash;
mod deploy;
mod disk;
mod faults;
mod login;
mod ops;
mod prune;
mod register;
mod run;
mod security;
mod support;

pub use support::*;

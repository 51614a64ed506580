//! The one way an async runtime is made: the publisher, AliveBesked, the
//! push receiver and the lab's servers each run on a two-thread tokio
//! runtime (the machines this runs on have two cores; the work is I/O).

use anyhow::Context;

/// A multi-thread tokio runtime with two workers, I/O and timers enabled.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

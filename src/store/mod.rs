//! The state directory and the files in it: snapshots, outbox batches and
//! their publish cursors.

pub mod outbox;
pub mod snapshot;

//! Files on disk: the state directory and what is in it (layout, lock,
//! pointers and records, snapshots, outbox batches and their publish
//! cursors), and the list files the job reads.

pub mod check;
pub mod lists;
pub mod outbox;
pub mod prune;
pub mod secret;
pub mod snapshot;
pub mod state;

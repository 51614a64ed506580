//! The nightly run and backfill: per authority and date, fetch, snapshot,
//! diff, guard and write the batch under the commit protocol.

pub mod metrics;
pub mod preflight;
pub mod report;
pub mod run;
pub mod sources;
pub mod status;

//! The lab: test doubles that speak the real protocols over loopback (the
//! register simulator, the STS simulator, the Beskedfordeler emulator, the
//! fault proxy), test certificates and the data generator. Not the product.

pub mod certs;
pub mod emulator;
pub mod frontdoor;
pub mod generate;
pub mod proxy;
pub mod simulate;
pub mod sts;

/// Appends one JSON line to a simulator's `--record` file in a single
/// write: `writeln!` on a File writes in pieces, and a test reading the
/// record meanwhile saw half a line. What fails is not the simulator's
/// business (the test reading the record finds it short).
pub(crate) fn record_line(file: &mut std::fs::File, line: &serde_json::Value) {
    use std::io::Write;
    let _ = file.write_all(format!("{line}\n").as_bytes());
}

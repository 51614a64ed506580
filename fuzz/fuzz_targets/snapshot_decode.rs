//! Snapshot decoding: any bytes give a snapshot or an error, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nemsms_diff::store::snapshot::decode(data);
});

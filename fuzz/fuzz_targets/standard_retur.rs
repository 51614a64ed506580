//! Beskedfordeler's answer (StandardRetur).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nemsms_diff::beskedfordeler::besked::parse_standard_retur(data);
});

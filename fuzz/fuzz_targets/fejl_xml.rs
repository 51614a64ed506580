//! The Register's error body (Fejl).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nemsms_diff::register::wire::parse_fejl(data);
});

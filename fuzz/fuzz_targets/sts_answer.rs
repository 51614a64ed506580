//! The STS answer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nemsms_diff::beskedfordeler::sts::parse_response(data);
});

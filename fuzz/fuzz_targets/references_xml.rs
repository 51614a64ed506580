//! The Register's reference collection (SlutbrugerSamlingReferenceSamling).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nemsms_diff::register::wire::parse_references(data);
});

//! The list CSV parser (a list file is outside bytes).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(list) = nemsms_diff::domain::parse::parse_list(data) {
        // What parses is sorted and unique.
        assert!(list.keys.cpr.windows(2).all(|w| w[0] < w[1]));
        assert!(list.keys.cvr.windows(2).all(|w| w[0] < w[1]));
    }
});

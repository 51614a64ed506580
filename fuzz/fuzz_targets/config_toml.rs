//! The configuration file.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nemsms_diff::config::Config::parse(text, std::path::Path::new("/fuzz/config.toml"));
    }
});

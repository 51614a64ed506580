//! A push delivery (ModtagBeskedInput) and the envelope inside.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nemsms_diff::beskedfordeler::besked::inspect(data).map(|i| i.validate());
    if let Ok(envelope) = nemsms_diff::beskedfordeler::besked::unwrap_modtag_besked_input(data) {
        let _ = nemsms_diff::beskedfordeler::besked::inspect(&envelope);
    }
});

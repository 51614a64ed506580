//! A delliste (SlutbrugerSamling), as a full list and as a change list.
#![no_main]
use nemsms_diff::register::wire::{ListKind, parse_delliste};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = parse_delliste(data, ListKind::Full);
    let _ = parse_delliste(data, ListKind::Change);
});

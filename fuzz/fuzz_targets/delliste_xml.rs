//! A delliste (SlutbrugerSamling), as a full list and as a change list: the
//! streaming parser never panics and agrees with the generic reader.
#![no_main]
use nemsms_diff::register::wire::{ListKind, parse_delliste, parse_delliste_generic};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for kind in [ListKind::Full, ListKind::Change] {
        assert_eq!(parse_delliste(data, kind), parse_delliste_generic(data, kind));
    }
});

//! A delliste (SlutbrugerSamling), as a full list and as a change list: the
//! streaming parser never panics and agrees with the generic reader (the
//! same entries, or the same error at the same byte; quick-xml's message may
//! count within its own buffer, which differs).
#![no_main]
use nemsms_diff::register::wire::{ListKind, WireError, parse_delliste, parse_delliste_generic};
fn same_place(
    r: Result<nemsms_diff::register::wire::Delliste, WireError>,
) -> Result<nemsms_diff::register::wire::Delliste, WireError> {
    r.map_err(|e| match e {
        WireError::Xml { position, .. } => WireError::Xml {
            position,
            message: String::new(),
        },
        e => e,
    })
}
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for kind in [ListKind::Full, ListKind::Change] {
        assert_eq!(
            same_place(parse_delliste(data, kind)),
            same_place(parse_delliste_generic(data, kind))
        );
    }
});

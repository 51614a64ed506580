//! The pure stages: bytes and values in, values out, no I/O.
//!
//! [`keys`] validates and encodes CPR/CVR numbers, [`parse`] turns list
//! bytes into a `KeySet`, [`codec`] packs keys for snapshots, [`diff`]
//! compares two days, [`guard`] judges whether a day is plausible, and
//! [`envelope`] renders one `Haendelsesbesked` per change.

pub mod codec;
pub mod dates;
pub mod diff;
pub mod envelope;
pub mod guard;
pub mod keys;
pub mod parse;
pub mod sms;
pub mod xml;

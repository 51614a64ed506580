//! Snapshot files: one authority's list on one date.
//!
//! Layout (little-endian, README "Snapshot format"):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `NEMSSNAP` |
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | reserved, 0 |
//! | 12 | 4 | authority CVR |
//! | 16 | 4 | list date as `YYYYMMDD` |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 8 | when the list was taken, Unix seconds UTC |
//! | 32 | 8 | CPR keys |
//! | 40 | 8 | CVR keys |
//! | 48 | 8 | rows in the source list |
//! | 56 | 8 | duplicate rows in the source list |
//! | 64 | 8 | CPR payload bytes |
//! | 72 | 8 | CVR payload bytes |
//! | 80 | 8 | XXH3-64 of the payload |
//! | 88 | 8 | XXH3-64 of bytes 0..88 |
//! | 96 | … | CPR payload, then CVR payload ([`crate::domain::codec`]) |
//!
//! [`decode`] verifies magic, version, length and both checksums and every
//! key; anything else is a [`SnapshotError`], never a panic.

use std::path::{Path, PathBuf};

use jiff::civil::Date;

use crate::domain::codec;
use crate::domain::keys::{KeyKind, KeySet};

/// The first eight bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"NEMSSNAP";
/// The format version this build writes and reads.
pub const VERSION: u16 = 1;
const HEADER_LEN: usize = 96;

/// What a snapshot says about its list, besides the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The authority's CVR number.
    pub authority: u32,
    /// The list date.
    pub date: Date,
    /// When the list was taken (Unix seconds, UTC).
    pub taken_at: i64,
    /// Rows in the source list.
    pub n_rows: u64,
    /// Duplicate rows collapsed while parsing.
    pub n_duplicates: u64,
}

/// A decoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Header fields.
    pub meta: Meta,
    /// The keys.
    pub keys: KeySet,
}

/// Header facts for `snapshot inspect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub authority: String,
    pub date: String,
    pub taken_at: String,
    pub n_cpr: u64,
    pub n_cvr: u64,
    pub n_rows: u64,
    pub n_duplicates: u64,
    pub file_bytes: u64,
    pub bytes_per_key: f64,
    pub checksum: String,
}

/// A snapshot that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a snapshot file (bad magic)")]
    BadMagic,
    #[error("unsupported snapshot format version {0} (this build reads {VERSION})")]
    UnsupportedVersion(u16),
    #[error("truncated: {found} bytes, the header promises {expected}")]
    Truncated { expected: u64, found: u64 },
    #[error("corrupt header (checksum mismatch)")]
    HeaderChecksum,
    #[error("corrupt payload (checksum mismatch)")]
    PayloadChecksum,
    #[error("corrupt header: {0}")]
    BadField(&'static str),
    #[error(transparent)]
    Payload(#[from] codec::CorruptPayload),
}

/// A snapshot file that could not be read; names the file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Corrupt {
        path: PathBuf,
        source: SnapshotError,
    },
}

/// True when `bytes` start like a snapshot file.
pub fn is_snapshot(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

fn date_to_u32(d: Date) -> u32 {
    crate::domain::dates::to_yyyymmdd(d)
}

fn date_from_u32(v: u32) -> Option<Date> {
    crate::domain::dates::from_yyyymmdd(v)
}

/// Encodes a snapshot to bytes.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let keys = &snapshot.keys;
    let (cpr, cvr) = rayon::join(
        || codec::encode(KeyKind::Cpr, &keys.cpr),
        || codec::encode(KeyKind::Cvr, &keys.cvr),
    );
    let m = &snapshot.meta;
    let mut out = Vec::with_capacity(HEADER_LEN + cpr.len() + cvr.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&m.authority.to_le_bytes());
    out.extend_from_slice(&date_to_u32(m.date).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&m.taken_at.to_le_bytes());
    for v in [
        keys.cpr.len() as u64,
        keys.cvr.len() as u64,
        m.n_rows,
        m.n_duplicates,
        cpr.len() as u64,
        cvr.len() as u64,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let payload_sum =
        xxhash_rust::xxh3::xxh3_64(&cpr) ^ xxhash_rust::xxh3::xxh3_64(&cvr).rotate_left(1);
    out.extend_from_slice(&payload_sum.to_le_bytes());
    let header_sum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&header_sum.to_le_bytes());
    out.extend_from_slice(&cpr);
    out.extend_from_slice(&cvr);
    out
}

struct Header {
    meta: Meta,
    n_cpr: u64,
    n_cvr: u64,
    cpr_len: u64,
    cvr_len: u64,
    payload_sum: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn read_header(bytes: &[u8]) -> Result<Header, SnapshotError> {
    if !bytes.starts_with(MAGIC) {
        return Err(SnapshotError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::Truncated {
            expected: HEADER_LEN as u64,
            found: bytes.len() as u64,
        });
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    if xxhash_rust::xxh3::xxh3_64(&bytes[..88]) != u64_at(bytes, 88) {
        return Err(SnapshotError::HeaderChecksum);
    }
    let date = date_from_u32(u32_at(bytes, 16)).ok_or(SnapshotError::BadField("list date"))?;
    let header = Header {
        meta: Meta {
            authority: u32_at(bytes, 12),
            date,
            taken_at: u64_at(bytes, 24) as i64,
            n_rows: u64_at(bytes, 48),
            n_duplicates: u64_at(bytes, 56),
        },
        n_cpr: u64_at(bytes, 32),
        n_cvr: u64_at(bytes, 40),
        cpr_len: u64_at(bytes, 64),
        cvr_len: u64_at(bytes, 72),
        payload_sum: u64_at(bytes, 80),
    };
    let expected = (HEADER_LEN as u64)
        .checked_add(header.cpr_len)
        .and_then(|v| v.checked_add(header.cvr_len))
        .ok_or(SnapshotError::BadField("payload length"))?;
    if expected != bytes.len() as u64 {
        return Err(SnapshotError::Truncated {
            expected,
            found: bytes.len() as u64,
        });
    }
    // A key needs at least one bit: reject counts no payload could hold.
    if header.n_cpr > header.cpr_len * 8 + 1 || header.n_cvr > header.cvr_len * 8 + 1 {
        return Err(SnapshotError::BadField("key count"));
    }
    Ok(header)
}

fn payloads<'a>(bytes: &'a [u8], h: &Header) -> (&'a [u8], &'a [u8]) {
    let cpr_end = HEADER_LEN + h.cpr_len as usize;
    (&bytes[HEADER_LEN..cpr_end], &bytes[cpr_end..])
}

fn verify_payload(bytes: &[u8], h: &Header) -> Result<(), SnapshotError> {
    let (cpr, cvr) = payloads(bytes, h);
    let sum = xxhash_rust::xxh3::xxh3_64(cpr) ^ xxhash_rust::xxh3::xxh3_64(cvr).rotate_left(1);
    if sum != h.payload_sum {
        return Err(SnapshotError::PayloadChecksum);
    }
    Ok(())
}

/// Decodes and verifies a snapshot.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let h = read_header(bytes)?;
    verify_payload(bytes, &h)?;
    let (cpr, cvr) = payloads(bytes, &h);
    let (cpr, cvr) = rayon::join(
        || codec::decode(KeyKind::Cpr, cpr, h.n_cpr as usize),
        || codec::decode(KeyKind::Cvr, cvr, h.n_cvr as usize),
    );
    Ok(Snapshot {
        meta: h.meta,
        keys: KeySet {
            cpr: cpr?,
            cvr: cvr?,
        },
    })
}

/// Reads the header and checks the checksums without decoding the keys.
pub fn summarize(bytes: &[u8]) -> Result<Summary, SnapshotError> {
    let h = read_header(bytes)?;
    let checksum = match verify_payload(bytes, &h) {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.to_string(),
    };
    let n_keys = h.n_cpr + h.n_cvr;
    let taken_at =
        crate::domain::dates::rfc3339(h.meta.taken_at).unwrap_or_else(|| "invalid".into());
    Ok(Summary {
        authority: crate::domain::keys::format(KeyKind::Cvr, h.meta.authority),
        date: h.meta.date.to_string(),
        taken_at,
        n_cpr: h.n_cpr,
        n_cvr: h.n_cvr,
        n_rows: h.meta.n_rows,
        n_duplicates: h.meta.n_duplicates,
        file_bytes: bytes.len() as u64,
        bytes_per_key: if n_keys == 0 {
            0.0
        } else {
            bytes.len() as f64 / n_keys as f64
        },
        checksum,
    })
}

/// Reads and verifies a snapshot file.
pub fn read(path: &Path) -> Result<Snapshot, SnapshotFileError> {
    let bytes = std::fs::read(path).map_err(|source| SnapshotFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    decode(&bytes).map_err(|source| SnapshotFileError::Corrupt {
        path: path.to_owned(),
        source,
    })
}

/// Encodes and writes a snapshot atomically and durably (mode 0600).
pub fn write(path: &Path, snapshot: &Snapshot) -> std::io::Result<u64> {
    let bytes = encode(snapshot);
    crate::fsutil::write_atomic(path, &bytes)?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            meta: Meta {
                authority: 29189846,
                date: jiff::civil::date(2026, 11, 24),
                taken_at: 1_795_000_000,
                n_rows: 5,
                n_duplicates: 1,
            },
            keys: KeySet {
                cpr: vec![101901234, 707614285, 3112999999],
                cvr: vec![13585628],
            },
        }
    }

    #[test]
    fn roundtrips() {
        let s = sample();
        let bytes = encode(&s);
        assert_eq!(decode(&bytes).unwrap(), s);
        let sum = summarize(&bytes).unwrap();
        assert_eq!((sum.n_cpr, sum.n_cvr, sum.checksum.as_str()), (3, 1, "ok"));
        assert_eq!(sum.authority, "29189846");
    }

    #[test]
    fn every_corruption_is_an_error() {
        let bytes = encode(&sample());
        assert_eq!(decode(b"nummer\n"), Err(SnapshotError::BadMagic));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                assert!(decode(&bad).is_err(), "flip at byte {i}");
            }
        }
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert_eq!(decode(&v2), Err(SnapshotError::UnsupportedVersion(2)));
    }

    #[test]
    fn empty_list_roundtrips() {
        let mut s = sample();
        s.keys = KeySet::default();
        assert_eq!(decode(&encode(&s)).unwrap(), s);
    }
}

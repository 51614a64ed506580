//! Snapshot files: one authority's list on one date.
//!
//! Layout (little-endian, README "Snapshot format"):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `NEMSSNAP` |
//! | 8 | 2 | format version (2; 1 is read too) |
//! | 10 | 2 | reserved, 0 |
//! | 12 | 4 | authority CVR |
//! | 16 | 4 | list date as `YYYYMMDD` |
//! | 20 | 4 | index bytes (version 2; 0 in version 1) |
//! | 24 | 8 | when the list was taken, Unix seconds UTC |
//! | 32 | 8 | CPR keys |
//! | 40 | 8 | CVR keys |
//! | 48 | 8 | rows in the source list |
//! | 56 | 8 | duplicate rows in the source list |
//! | 64 | 8 | CPR payload bytes |
//! | 72 | 8 | CVR payload bytes |
//! | 80 | 8 | XXH3-64 of the payload (and, in version 2, of the index) |
//! | 88 | 8 | XXH3-64 of bytes 0..88 |
//! | 96 | … | CPR payload, then CVR payload ([`crate::domain::codec`]) |
//! | … | … | version 2: the index, per kind (CPR, then CVR) a `u32` count and that many seek points (`u32` dense value after the last key before, `u32` keys before, `u64` bit offset), one per 1,024 keys |
//!
//! The index lets [`contains`] answer one key by decoding at most 1,024
//! keys; [`decode`] does not need it.
//!
//! [`decode`] verifies magic, version, length and both checksums and every
//! key; anything else is a [`SnapshotError`], never a panic.

use std::path::{Path, PathBuf};

use jiff::civil::Date;

use crate::domain::codec;
use crate::domain::keys::{KeyKind, KeySet};

/// The first eight bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"NEMSSNAP";
/// The format version this build writes (it reads 1 too).
pub const VERSION: u16 = 2;
/// Bytes of one seek point in the index.
const SEEK_LEN: usize = 16;
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
    #[error("unsupported snapshot format version {0} (this build reads 1 and {VERSION})")]
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
    let ((cpr, cpr_index), (cvr, cvr_index)) = rayon::join(
        || codec::encode_indexed(KeyKind::Cpr, &keys.cpr),
        || codec::encode_indexed(KeyKind::Cvr, &keys.cvr),
    );
    let mut index = Vec::with_capacity(8 + (cpr_index.len() + cvr_index.len()) * SEEK_LEN);
    for seeks in [&cpr_index, &cvr_index] {
        index.extend_from_slice(&(seeks.len() as u32).to_le_bytes());
        for s in seeks {
            index.extend_from_slice(&s.prev_plus1.to_le_bytes());
            index.extend_from_slice(&s.keys_before.to_le_bytes());
            index.extend_from_slice(&s.bit.to_le_bytes());
        }
    }
    let m = &snapshot.meta;
    let mut out = Vec::with_capacity(HEADER_LEN + cpr.len() + cvr.len() + index.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&m.authority.to_le_bytes());
    out.extend_from_slice(&date_to_u32(m.date).to_le_bytes());
    out.extend_from_slice(&(index.len() as u32).to_le_bytes());
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
    out.extend_from_slice(&payload_sum(VERSION, &cpr, &cvr, &index).to_le_bytes());
    let header_sum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&header_sum.to_le_bytes());
    out.extend_from_slice(&cpr);
    out.extend_from_slice(&cvr);
    out.extend_from_slice(&index);
    out
}

/// The payload checksum of a version: version 2 covers the index too.
fn payload_sum(version: u16, cpr: &[u8], cvr: &[u8], index: &[u8]) -> u64 {
    let sum = xxhash_rust::xxh3::xxh3_64(cpr) ^ xxhash_rust::xxh3::xxh3_64(cvr).rotate_left(1);
    if version >= 2 {
        sum ^ xxhash_rust::xxh3::xxh3_64(index).rotate_left(2)
    } else {
        sum
    }
}

struct Header {
    version: u16,
    index_len: u64,
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
    if version != 1 && version != VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    if xxhash_rust::xxh3::xxh3_64(&bytes[..88]) != u64_at(bytes, 88) {
        return Err(SnapshotError::HeaderChecksum);
    }
    let date = date_from_u32(u32_at(bytes, 16)).ok_or(SnapshotError::BadField("list date"))?;
    let header = Header {
        version,
        index_len: u64::from(u32_at(bytes, 20)),
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
        .and_then(|v| v.checked_add(header.index_len))
        .ok_or(SnapshotError::BadField("payload length"))?;
    if version == 1 && header.index_len != 0 {
        return Err(SnapshotError::BadField("reserved field"));
    }
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
    let cvr_end = cpr_end + h.cvr_len as usize;
    (&bytes[HEADER_LEN..cpr_end], &bytes[cpr_end..cvr_end])
}

fn index_bytes<'a>(bytes: &'a [u8], h: &Header) -> &'a [u8] {
    &bytes[bytes.len() - h.index_len as usize..]
}

/// The seek points of both kinds (empty for a version 1 file).
fn read_index(bytes: &[u8]) -> Result<[Vec<codec::Seek>; 2], SnapshotError> {
    let mut out = [Vec::new(), Vec::new()];
    let mut at = 0usize;
    if bytes.is_empty() {
        return Ok(out);
    }
    for seeks in &mut out {
        let n = bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or(SnapshotError::BadField("index"))?;
        at += 4;
        let end = n
            .checked_mul(SEEK_LEN)
            .and_then(|l| l.checked_add(at))
            .filter(|&e| e <= bytes.len())
            .ok_or(SnapshotError::BadField("index"))?;
        *seeks = bytes[at..end]
            .chunks_exact(SEEK_LEN)
            .map(|c| codec::Seek {
                prev_plus1: u32_at(c, 0),
                keys_before: u32_at(c, 4),
                bit: u64_at(c, 8),
            })
            .collect();
        at = end;
    }
    if at != bytes.len() {
        return Err(SnapshotError::BadField("index"));
    }
    Ok(out)
}

fn verify_payload(bytes: &[u8], h: &Header) -> Result<(), SnapshotError> {
    let (cpr, cvr) = payloads(bytes, h);
    let sum = payload_sum(h.version, cpr, cvr, index_bytes(bytes, h));
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

/// Whether `key` is in a snapshot, with the snapshot's metadata: the header
/// and checksums verified as for [`decode`], the key looked up without
/// decoding the set ([`codec::contains`]).
pub fn contains(bytes: &[u8], kind: KeyKind, key: u32) -> Result<(bool, Meta), SnapshotError> {
    let h = read_header(bytes)?;
    verify_payload(bytes, &h)?;
    let (cpr, cvr) = payloads(bytes, &h);
    let [cpr_index, cvr_index] = read_index(index_bytes(bytes, &h))?;
    let found = match kind {
        KeyKind::Cpr => codec::contains_indexed(kind, cpr, h.n_cpr as usize, &cpr_index, key),
        KeyKind::Cvr => codec::contains_indexed(kind, cvr, h.n_cvr as usize, &cvr_index, key),
    }?;
    Ok((found, h.meta))
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

/// [`contains`] on a snapshot file.
pub fn read_contains(
    path: &Path,
    kind: KeyKind,
    key: u32,
) -> Result<(bool, Meta), SnapshotFileError> {
    let bytes = std::fs::read(path).map_err(|source| SnapshotFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    contains(&bytes, kind, key).map_err(|source| SnapshotFileError::Corrupt {
        path: path.to_owned(),
        source,
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
        let mut v3 = bytes.clone();
        v3[8] = 3;
        assert_eq!(decode(&v3), Err(SnapshotError::UnsupportedVersion(3)));
    }

    #[test]
    fn contains_finds_what_decode_holds() {
        let s = sample();
        let bytes = encode(&s);
        for &k in &s.keys.cpr {
            assert!(contains(&bytes, KeyKind::Cpr, k).unwrap().0);
        }
        for &k in &s.keys.cvr {
            assert!(contains(&bytes, KeyKind::Cvr, k).unwrap().0);
        }
        assert!(
            !contains(&bytes, KeyKind::Cvr, 12345674).unwrap().0 || s.keys.cvr.contains(&12345674)
        );
        let (_, meta) = contains(&bytes, KeyKind::Cpr, s.keys.cpr[0]).unwrap();
        assert_eq!(meta, s.meta);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(
            contains(&bad, KeyKind::Cpr, s.keys.cpr[0]).is_err(),
            "checksums are verified"
        );
    }

    #[test]
    fn the_index_answers_like_the_decoded_set_on_many_keys() {
        // Every 7th number from 1 January 1990 on that is a valid CPR.
        let cpr: Vec<u32> = (101_900_000u32..101_900_000 + 140_000)
            .step_by(7)
            .chain((1_503_850_000u32..1_503_850_000 + 70_000).step_by(3))
            .filter(|k| crate::domain::keys::parse_cpr(format!("{k:010}").as_bytes()).is_ok())
            .collect();
        let mut s = sample();
        s.keys.cpr = cpr.clone();
        let bytes = encode(&s);
        let h = read_header(&bytes).unwrap();
        let [seeks, _] = read_index(index_bytes(&bytes, &h)).unwrap();
        assert!(seeks.len() >= 30, "{} seek points", seeks.len());
        assert_eq!(decode(&bytes).unwrap().keys.cpr, cpr);
        for k in (101_899_990u32..101_900_000 + 140_010)
            .step_by(5)
            .chain((1_503_849_990u32..1_503_850_000 + 70_010).step_by(2))
        {
            if crate::domain::keys::parse_cpr(format!("{k:010}").as_bytes()).is_ok() {
                assert_eq!(
                    contains(&bytes, KeyKind::Cpr, k).unwrap().0,
                    cpr.binary_search(&k).is_ok(),
                    "{k}"
                );
            }
        }
    }

    #[test]
    fn version_1_files_are_still_read() {
        let s = sample();
        let v2 = encode(&s);
        // The same snapshot as version 1 wrote it: no index, reserved 0.
        let h = read_header(&v2).unwrap();
        let (cpr, cvr) = payloads(&v2, &h);
        let mut v1 = v2[..HEADER_LEN].to_vec();
        v1[8..10].copy_from_slice(&1u16.to_le_bytes());
        v1[20..24].copy_from_slice(&0u32.to_le_bytes());
        v1[80..88].copy_from_slice(&payload_sum(1, cpr, cvr, &[]).to_le_bytes());
        let header_sum = xxhash_rust::xxh3::xxh3_64(&v1[..88]);
        v1[88..96].copy_from_slice(&header_sum.to_le_bytes());
        v1.extend_from_slice(cpr);
        v1.extend_from_slice(cvr);
        assert_eq!(decode(&v1).unwrap(), s);
        assert!(contains(&v1, KeyKind::Cpr, s.keys.cpr[2]).unwrap().0);
        assert!(v2.len() > v1.len(), "version 2 carries the index");
        let mut future = v2.clone();
        future[8..10].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(
            decode(&future).unwrap_err(),
            SnapshotError::UnsupportedVersion(3)
        );
    }

    #[test]
    fn empty_list_roundtrips() {
        let mut s = sample();
        s.keys = KeySet::default();
        assert_eq!(decode(&encode(&s)).unwrap(), s);
    }
}

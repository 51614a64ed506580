//! The durable outbox: one immutable batch file per (authority, date).
//!
//! `STATE/outbox/<date>/<authority>.batch`, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `NEMSOUTB` |
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | reserved, 0 |
//! | 12 | 4 | authority CVR |
//! | 16 | 4 | list date `YYYYMMDD` |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 8 | events |
//! | 32 | 8 | sign-ups |
//! | 40 | 8 | sign-offs |
//! | 48 | 8 | payload bytes |
//! | 56 | 8 | XXH3-64 of the payload |
//! | 64 | 8 | XXH3-64 of bytes 0..64 |
//! | 72 | … | zstd frame of records `u32 length, envelope XML` |
//!
//! A batch is written to a temp file, fsynced and renamed into place: its
//! presence is the marker that the (authority, date) is committed to the
//! outbox. Its bytes are a pure function of the two snapshots and the
//! configuration (zstd is deterministic for a given level), so a rerun
//! writes the same file. A publish cursor `<authority>.cursor` beside it
//! records how many events were confirmed by Beskedfordeler.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use uuid::Uuid;

use crate::domain::envelope::{Event, Renderer};
use crate::{crash, domain::keys, fsutil};

/// The first eight bytes of every batch file.
pub const MAGIC: &[u8; 8] = b"NEMSOUTB";
/// The batch format version.
pub const VERSION: u16 = 2;
/// Version 1 records hold no `BeskedId` of their own; they are still read.
const VERSION_1: u16 = 1;
/// The longest event a batch may hold (ours are about 2 KB): a corrupt
/// length never allocates more.
const MAX_ENVELOPE: usize = 1 << 20;
pub const HEADER_LEN: usize = 72;
const ZSTD_LEVEL: i32 = 3;

/// A batch's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BatchHeader {
    pub authority: u32,
    #[serde(serialize_with = "crate::store::outbox::ser_date")]
    pub date: Date,
    pub n_events: u64,
    pub n_signed_up: u64,
    pub n_signed_off: u64,
    pub payload_bytes: u64,
    pub payload_sum: u64,
}

impl BatchHeader {
    /// The batch file's size: header and payload.
    pub fn file_bytes(&self) -> u64 {
        HEADER_LEN as u64 + self.payload_bytes
    }
}

/// Serializes a date as `YYYY-MM-DD`.
pub fn ser_date<S: serde::Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

/// A batch that cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: corrupt batch: {what}")]
    Corrupt { path: PathBuf, what: &'static str },
}

/// Where the batch of (authority, date) lives.
pub fn batch_path(state: &Path, authority: u32, date: Date) -> PathBuf {
    state.join("outbox").join(date.to_string()).join(format!(
        "{}.batch",
        keys::format(keys::KeyKind::Cvr, authority)
    ))
}

/// Where the publish cursor of a batch lives.
pub fn cursor_path(batch: &Path) -> PathBuf {
    batch.with_extension("cursor")
}

/// Counts bytes and hashes them on their way to the file.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: xxhash_rust::xxh3::Xxh3,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn date_u32(d: Date) -> u32 {
    crate::domain::dates::to_yyyymmdd(d)
}

fn encode_header(h: &BatchHeader) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..10].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&h.authority.to_le_bytes());
    out[16..20].copy_from_slice(&date_u32(h.date).to_le_bytes());
    for (i, v) in [
        h.n_events,
        h.n_signed_up,
        h.n_signed_off,
        h.payload_bytes,
        h.payload_sum,
    ]
    .into_iter()
    .enumerate()
    {
        out[24 + i * 8..32 + i * 8].copy_from_slice(&v.to_le_bytes());
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&out[..64]);
    out[64..72].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Writes the batch of one (authority, date) atomically and durably.
///
/// `events` must be in output order; the envelopes are rendered one at a
/// time into a reused buffer and streamed through zstd to a temp file.
pub fn write_batch(
    path: &Path,
    renderer: &Renderer,
    authority: u32,
    date: Date,
    events: &[Event],
) -> io::Result<BatchHeader> {
    let dir = path.parent().expect("batch paths have a directory");
    fsutil::create_dir_all(dir)?;
    let tmp = fsutil::temp_path(path)?;
    let result = (|| {
        let file = fsutil::create_private_replacing(&tmp)?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(&[0u8; HEADER_LEN])?;
        let hashing = HashingWriter {
            inner: file,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            bytes: 0,
        };
        let mut encoder = zstd::stream::Encoder::new(hashing, ZSTD_LEVEL)?;
        let total = events.len() as u64;
        let (mut n, mut up, mut off) = (0u64, 0u64, 0u64);
        let mut buf = Vec::with_capacity(4096);
        for event in events {
            buf.clear();
            let id = renderer.render(event, &mut buf);
            encoder.write_all(&(buf.len() as u32).to_le_bytes())?;
            encoder.write_all(id.as_bytes())?;
            encoder.write_all(&buf)?;
            n += 1;
            match event.change {
                crate::domain::diff::Change::SignedUp => up += 1,
                crate::domain::diff::Change::SignedOff => off += 1,
            }
            if n == total / 2 + 1 {
                encoder.flush()?;
                crash::point("mid-outbox-write");
                crash::step("batch half written");
            }
        }
        let hashing = encoder.finish()?;
        let header = BatchHeader {
            authority,
            date,
            n_events: n,
            n_signed_up: up,
            n_signed_off: off,
            payload_bytes: hashing.bytes,
            payload_sum: hashing.hasher.digest(),
        };
        let mut file = hashing.inner.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&encode_header(&header))?;
        file.sync_all()?;
        drop(file);
        crash::step("batch temp file written");
        fs::rename(&tmp, path)?;
        crash::step("batch renamed");
        fsutil::sync_dir(dir)?;
        crash::step("directory synced");
        Ok(header)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn corrupt(path: &Path, what: &'static str) -> BatchError {
    BatchError::Corrupt {
        path: path.to_owned(),
        what,
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> BatchError + '_ {
    move |source| BatchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads and verifies a batch's header (not the payload).
pub fn read_header(path: &Path) -> Result<BatchHeader, BatchError> {
    read_header_versioned(path).map(|(h, _)| h)
}

fn read_header_versioned(path: &Path) -> Result<(BatchHeader, u16), BatchError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut h = [0u8; HEADER_LEN];
    file.read_exact(&mut h).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt(path, "shorter than its header"),
        _ => io_err(path)(e),
    })?;
    if &h[..8] != MAGIC {
        return Err(corrupt(path, "bad magic"));
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != VERSION && version != VERSION_1 {
        return Err(corrupt(path, "unsupported format version"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
    if xxhash_rust::xxh3::xxh3_64(&h[..64]) != u64_at(64) {
        return Err(corrupt(path, "header checksum mismatch"));
    }
    let d = u32::from_le_bytes(h[16..20].try_into().expect("4 bytes"));
    let date = crate::domain::dates::from_yyyymmdd(d).ok_or_else(|| corrupt(path, "bad date"))?;
    let header = BatchHeader {
        authority: u32::from_le_bytes(h[12..16].try_into().expect("4 bytes")),
        date,
        n_events: u64_at(24),
        n_signed_up: u64_at(32),
        n_signed_off: u64_at(40),
        payload_bytes: u64_at(48),
        payload_sum: u64_at(56),
    };
    let len = file.metadata().map_err(io_err(path))?.len();
    if len != HEADER_LEN as u64 + header.payload_bytes {
        return Err(corrupt(
            path,
            "length does not match its header (truncated?)",
        ));
    }
    Ok((header, version))
}

/// Verifies a batch completely and returns a reader over its envelopes.
pub fn open(path: &Path) -> Result<(BatchHeader, Envelopes), BatchError> {
    let (header, version) = read_header_versioned(path)?;
    let mut file = File::open(path).map_err(io_err(path))?;
    file.seek(SeekFrom::Start(HEADER_LEN as u64))
        .map_err(io_err(path))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    if hasher.digest() != header.payload_sum {
        return Err(corrupt(path, "payload checksum mismatch"));
    }
    file.seek(SeekFrom::Start(HEADER_LEN as u64))
        .map_err(io_err(path))?;
    let decoder = zstd::stream::Decoder::with_buffer(BufReader::new(file)).map_err(io_err(path))?;
    Ok((
        header,
        Envelopes {
            path: path.to_owned(),
            decoder,
            remaining: header.n_events,
            version,
        },
    ))
}

/// One event of a batch: its `BeskedId` and its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub besked_id: Uuid,
    pub envelope: Vec<u8>,
}

/// The records of a verified batch, in order.
pub struct Envelopes {
    path: PathBuf,
    decoder: zstd::stream::Decoder<'static, BufReader<File>>,
    remaining: u64,
    version: u16,
}

/// The `BeskedId` in one of our envelopes: only for version 1 batches,
/// whose records do not carry it.
fn v1_besked_id(envelope: &[u8]) -> Option<Uuid> {
    const MARK: &[u8] = b"<b:BeskedId><sd:UUIDIdentifikator>";
    let at = memchr::memmem::find(envelope, MARK)? + MARK.len();
    Uuid::try_parse_ascii(envelope.get(at..at + 36)?).ok()
}

impl Envelopes {
    /// The next event into `envelope` (its old contents replaced, its
    /// allocation reused): its `BeskedId`, or `None` after the last. After
    /// an error `envelope` holds nothing useful.
    pub fn next_into(&mut self, envelope: &mut Vec<u8>) -> Option<Result<Uuid, BatchError>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut len = [0u8; 4];
        let result = self
            .decoder
            .read_exact(&mut len)
            .and_then(|()| {
                let len = u32::from_le_bytes(len) as usize;
                if len > MAX_ENVELOPE {
                    return Err(io::Error::other("an event longer than the limit"));
                }
                let mut id = [0u8; 16];
                if self.version != VERSION_1 {
                    self.decoder.read_exact(&mut id)?;
                }
                // A reused buffer is zeroed only where it grows.
                envelope.resize(len, 0);
                self.decoder.read_exact(envelope)?;
                Ok(id)
            })
            .map_err(|_| corrupt(&self.path, "payload ends before its last event"))
            .and_then(|id| {
                if self.version == VERSION_1 {
                    v1_besked_id(envelope)
                        .ok_or_else(|| corrupt(&self.path, "an event without a BeskedId"))
                } else {
                    Ok(Uuid::from_bytes(id))
                }
            });
        if result.is_err() {
            self.remaining = 0;
        }
        Some(result)
    }
}

impl Iterator for Envelopes {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut envelope = Vec::new();
        self.next_into(&mut envelope).map(|r| {
            r.map(|besked_id| Record {
                besked_id,
                envelope,
            })
        })
    }
}

/// Writes a batch's publish cursor atomically: events [0, `cursor`) are
/// confirmed by Beskedfordeler.
pub fn write_cursor(batch: &Path, cursor: u64) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = cursor_path(batch);
    fsutil::write_atomic(&path, format!("{cursor}\n").as_bytes())
        .with_context(|| format!("cannot write the publish cursor {}", path.display()))
}

/// Reads a publish cursor: events confirmed so far (0 when absent).
pub fn read_cursor(batch: &Path) -> io::Result<u64> {
    match fs::read_to_string(cursor_path(batch)) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "unreadable publish cursor")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Per authority, the batches not yet fully confirmed and their
/// unconfirmed events.
pub fn unpublished(state: &Path) -> Result<std::collections::HashMap<u32, (u64, u64)>, BatchError> {
    let mut out: std::collections::HashMap<u32, (u64, u64)> = std::collections::HashMap::new();
    for path in list(state).unwrap_or_default() {
        let header = read_header(&path)?;
        let cursor = read_cursor(&path).map_err(|source| BatchError::Io {
            path: path.clone(),
            source,
        })?;
        if cursor < header.n_events {
            let e = out.entry(header.authority).or_default();
            e.0 += 1;
            e.1 += header.n_events - cursor;
        }
    }
    Ok(out)
}

/// Every batch under the state directory, by date then authority.
pub fn list(state: &Path) -> io::Result<Vec<PathBuf>> {
    let root = state.join("outbox");
    let mut out = Vec::new();
    let Ok(dates) = fs::read_dir(&root) else {
        return Ok(out);
    };
    let mut dates: Vec<PathBuf> = dates.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dates.sort();
    for dir in dates.iter().filter(|p| p.is_dir()) {
        let mut batches: Vec<PathBuf> = fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "batch"))
            .collect();
        batches.sort();
        out.extend(batches);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::diff::Change;
    use crate::domain::envelope::{BatchContext, tests::config};
    use crate::domain::keys::KeyKind;

    fn events(n: u32) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                kind: KeyKind::Cpr,
                key: 101_900_000 + i,
                change: if i % 3 == 0 {
                    Change::SignedOff
                } else {
                    Change::SignedUp
                },
            })
            .collect()
    }

    #[test]
    fn writes_deterministic_compact_batches_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let date = jiff::civil::date(2026, 1, 2);
        let ctx = BatchContext {
            authority: 29189846,
            date,
            taken_at: 1_767_322_800,
            id_key: crate::domain::envelope::tests::KEY,
        };
        let r = Renderer::new(&config(), ctx);
        let evs = events(5000);
        let a = dir.path().join("a.batch");
        let b = dir.path().join("b.batch");
        let h = write_batch(&a, &r, 29189846, date, &evs).unwrap();
        write_batch(&b, &r, 29189846, date, &evs).unwrap();
        assert_eq!(
            fs::read(&a).unwrap(),
            fs::read(&b).unwrap(),
            "same input, same bytes"
        );
        assert_eq!(
            (h.n_events, h.n_signed_up, h.n_signed_off),
            (5000, 3333, 1667)
        );
        let per_event = fs::metadata(&a).unwrap().len() as f64 / 5000.0;
        assert!(per_event < 300.0, "{per_event} bytes per event");
        let (header, envs) = open(&a).unwrap();
        assert_eq!(header, h);
        let envs: Vec<Record> = envs.collect::<Result<_, _>>().unwrap();
        assert_eq!(envs.len(), 5000);
        assert_eq!(envs[7].envelope, r.render_string(&evs[7]).into_bytes());
        // The record's BeskedId is the one in its envelope.
        assert_eq!(
            envs[7].besked_id,
            v1_besked_id(&envs[7].envelope).unwrap(),
            "the stored id is the envelope's"
        );
        assert_eq!(
            envs[7].besked_id,
            crate::domain::envelope::besked_id(
                &crate::domain::envelope::tests::KEY,
                29189846,
                date,
                &evs[7]
            )
        );
    }

    #[test]
    fn version_1_batches_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let date = jiff::civil::date(2026, 1, 2);
        let r = Renderer::new(
            &config(),
            BatchContext {
                authority: 29189846,
                date,
                taken_at: 0,
                id_key: crate::domain::envelope::tests::KEY,
            },
        );
        let evs = events(3);
        // A version 1 payload: length and envelope, no id.
        let mut raw = Vec::new();
        for e in &evs {
            let env = r.render_string(e).into_bytes();
            raw.extend_from_slice(&(env.len() as u32).to_le_bytes());
            raw.extend_from_slice(&env);
        }
        let payload = zstd::encode_all(&raw[..], 1).unwrap();
        let header = BatchHeader {
            authority: 29189846,
            date,
            n_events: 3,
            n_signed_up: 2,
            n_signed_off: 1,
            payload_bytes: payload.len() as u64,
            payload_sum: xxhash_rust::xxh3::xxh3_64(&payload),
        };
        let mut bytes = encode_header(&header).to_vec();
        bytes[8..10].copy_from_slice(&VERSION_1.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..64]);
        bytes[64..72].copy_from_slice(&sum.to_le_bytes());
        bytes.extend_from_slice(&payload);
        let path = dir.path().join("v1.batch");
        fs::write(&path, bytes).unwrap();
        let (_, records) = open(&path).unwrap();
        let records: Vec<Record> = records.collect::<Result<_, _>>().unwrap();
        for (record, e) in records.iter().zip(&evs) {
            assert_eq!(
                record.besked_id,
                crate::domain::envelope::besked_id(
                    &crate::domain::envelope::tests::KEY,
                    29189846,
                    date,
                    e
                )
            );
        }
    }

    #[test]
    fn corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let date = jiff::civil::date(2026, 1, 2);
        let ctx = BatchContext {
            authority: 29189846,
            date,
            taken_at: 0,
            id_key: crate::domain::envelope::tests::KEY,
        };
        let path = dir.path().join("a.batch");
        write_batch(
            &path,
            &Renderer::new(&config(), ctx),
            29189846,
            date,
            &events(100),
        )
        .unwrap();
        let good = fs::read(&path).unwrap();
        for (at, what) in [(0, "magic"), (30, "header"), (good.len() - 3, "payload")] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            fs::write(&path, &bad).unwrap();
            assert!(open(&path).is_err(), "flip in {what}");
        }
        fs::write(&path, &good[..good.len() - 10]).unwrap();
        let err = open(&path).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}

//! Outbox batch decoding. The input is the header's counts and the payload;
//! the harness writes valid checksums so the fuzzer reaches the records.
#![no_main]
use std::io::Write;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n_events = u64::from(data[0]) | (u64::from(data[1]) << 8);
    // The payload as it is, or zstd-compressed when the third byte is odd
    // (so that the records themselves get fuzzed).
    let rest = &data[2..];
    let payload = match rest.first() {
        Some(b) if b % 2 == 1 => zstd::encode_all(&rest[1..], 1).unwrap(),
        _ => rest.to_vec(),
    };
    let mut h = [0u8; 72];
    h[..8].copy_from_slice(b"NEMSOUTB");
    // Both record formats: version 1 (no id) and version 2 (id first).
    h[8..10].copy_from_slice(&(1 + (data[0] & 1) as u16).to_le_bytes());
    h[12..16].copy_from_slice(&12345674u32.to_le_bytes());
    h[16..20].copy_from_slice(&20260102u32.to_le_bytes());
    h[24..32].copy_from_slice(&n_events.to_le_bytes());
    h[48..56].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[56..64].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
    let sum = xxhash_rust::xxh3::xxh3_64(&h[..64]);
    h[64..72].copy_from_slice(&sum.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("12345674.batch");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&h).unwrap();
    f.write_all(&payload).unwrap();
    drop(f);
    if let Ok((_, envelopes)) = nemsms_diff::store::outbox::open(&path) {
        for e in envelopes {
            if e.is_err() {
                break;
            }
        }
    }
});

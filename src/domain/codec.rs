//! Compact coding of sorted key sets: the payload of a snapshot.
//!
//! Each kind is first mapped by a bijection onto a denser number line that
//! follows the structure of the keys, then stored as gaps between sorted
//! values with Golomb-Rice codes whose parameter is chosen per block of
//! [`BLOCK`] gaps.
//!
//! - CPR `DDMMYY S1S2S3 S4`: the date becomes a rank `(YY*12 + MM-1)*31 +
//!   DD-1` (37,200 values) and the last digit becomes a *slot* relative to
//!   the modulus-11 check digit of the first nine, so that every CPR that
//!   passes modulus 11 (all numbers issued before 2007) lands in slot 0.
//!   The first serial digit S1, which follows the century of birth, is
//!   rotated so that the digits in use come first (`S1'`), and
//!   `t = slot * 37_200_000 + S1' * 3_720_000 + rank * 100 + S2S3`. Nothing is required of
//!   the keys: numbers that fail modulus 11 land in the other slots.
//! - CVR: every valid CVR is fixed by its first seven digits, `t = cvr / 10`.
//!
//! Decoding inverts the map, checks that every key is valid, and sorts.

use crate::domain::keys::{self, KeyKind};

/// Gaps per Rice block; each block starts with its 5-bit parameter.
pub const BLOCK: usize = 128;
const ESCAPE: u32 = 31;
const DATE_RANKS: u32 = 100 * 12 * 31;
const SLOT_SPAN: u32 = DATE_RANKS * 1000;

/// A payload that does not decode to a valid key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("corrupt key payload: {0}")]
pub struct CorruptPayload(pub &'static str);

/// Maps a valid key onto the dense number line.
#[inline]
pub fn to_dense(kind: KeyKind, key: u32) -> u32 {
    match kind {
        KeyKind::Cvr => key / 10,
        KeyKind::Cpr => {
            let day = key / 100_000_000;
            let month = (key / 1_000_000) % 100;
            let year = (key / 10_000) % 100;
            let serial = (key / 10) % 1000;
            let last = key % 10;
            let slot = match keys::cpr_check_digit(key / 10) {
                Some(c) => (last + 10 - c) % 10,
                None => last,
            };
            let rank = (year * 12 + month - 1) * 31 + day - 1;
            let first = (serial / 100 + 10 - century_base(year)) % 10;
            slot * SLOT_SPAN + first * (DATE_RANKS * 100) + rank * 100 + serial % 100
        }
    }
}

/// Inverts [`to_dense`], checking that the result is a valid key.
#[inline]
pub fn from_dense(kind: KeyKind, t: u32) -> Result<u32, CorruptPayload> {
    match kind {
        KeyKind::Cvr => {
            let prefix = t;
            if prefix >= 10_000_000 {
                return Err(CorruptPayload("CVR out of range"));
            }
            let c =
                keys::cvr_check_digit(prefix).ok_or(CorruptPayload("CVR has no check digit"))?;
            Ok(prefix * 10 + c)
        }
        KeyKind::Cpr => {
            let slot = t / SLOT_SPAN;
            if slot > 9 {
                return Err(CorruptPayload("CPR out of range"));
            }
            let rest = t % SLOT_SPAN;
            let first = rest / (DATE_RANKS * 100);
            let rank = (rest / 100) % DATE_RANKS;
            let (day, month, year) = (rank % 31 + 1, (rank / 31) % 12 + 1, rank / 372);
            let serial = (first + century_base(year)) % 10 * 100 + rest % 100;
            let prefix = ((day * 100 + month) * 100 + year) * 1000 + serial;
            let last = match keys::cpr_check_digit(prefix) {
                Some(c) => (slot + c) % 10,
                None => slot,
            };
            keys::check_cpr(prefix * 10 + last)
                .map_err(|_| CorruptPayload("CPR with impossible date"))
        }
    }
}

/// The first serial digit most numbers with this birth year (`YY`) have:
/// 4 for `YY` <= 36 (born 2000-2036 use 4-9), 0 otherwise (born 1900-1999
/// use 0-3). Rotating the digit by it packs the used serials together.
#[inline]
fn century_base(year: u32) -> u32 {
    if year <= 36 { 4 } else { 0 }
}

/// Blocks between two [`Seek`] points: a lookup decodes at most this many
/// blocks ([`INDEX_STRIDE`] × [`BLOCK`] = 1,024 keys).
pub const INDEX_STRIDE: usize = 8;

/// A point to start decoding from: the block that starts `bit` bits into
/// the payload, after `keys_before` keys whose last dense value is
/// `prev_plus1 - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seek {
    pub prev_plus1: u32,
    pub keys_before: u32,
    pub bit: u64,
}

/// Encodes sorted, unique keys of one kind.
pub fn encode(kind: KeyKind, sorted_keys: &[u32]) -> Vec<u8> {
    encode_indexed(kind, sorted_keys).0
}

/// Encodes sorted, unique keys of one kind, with a [`Seek`] point every
/// [`INDEX_STRIDE`] blocks for [`contains_indexed`].
pub fn encode_indexed(kind: KeyKind, sorted_keys: &[u32]) -> (Vec<u8>, Vec<Seek>) {
    let mut dense: Vec<u32> = sorted_keys.iter().map(|&k| to_dense(kind, k)).collect();
    keys::radix_sort(&mut dense);
    let mut writer = BitWriter::with_capacity(sorted_keys.len() * 2);
    let mut gaps = Vec::with_capacity(BLOCK);
    let mut prev: i64 = -1;
    let mut index = Vec::with_capacity(dense.len() / (BLOCK * INDEX_STRIDE) + 1);
    for (b, block) in dense.chunks(BLOCK).enumerate() {
        if b % INDEX_STRIDE == 0 {
            index.push(Seek {
                prev_plus1: (prev + 1) as u32,
                keys_before: (b * BLOCK) as u32,
                bit: writer.bits(),
            });
        }
        gaps.clear();
        for &v in block {
            gaps.push((i64::from(v) - prev - 1) as u32);
            prev = i64::from(v);
        }
        let k = best_parameter(&gaps);
        writer.put(u64::from(k), 5);
        for &gap in &gaps {
            let q = gap >> k;
            if q < ESCAPE {
                writer.put((1u64 << q) - 1, q + 1);
                writer.put(u64::from(gap) & ((1u64 << k) - 1), k);
            } else {
                writer.put((1u64 << ESCAPE) - 1, ESCAPE);
                writer.put(u64::from(gap), 32);
            }
        }
    }
    (writer.finish(), index)
}

/// Rice parameter with the fewest bits for these gaps.
fn best_parameter(gaps: &[u32]) -> u32 {
    let cost = |k: u32| -> u64 {
        gaps.iter()
            .map(|&g| {
                let q = g >> k;
                if q < ESCAPE {
                    u64::from(q + 1 + k)
                } else {
                    u64::from(ESCAPE + 32)
                }
            })
            .sum()
    };
    let mean = gaps.iter().map(|&g| u64::from(g)).sum::<u64>() / gaps.len().max(1) as u64;
    let guess = (64 - (mean * 7 / 10 + 1).leading_zeros())
        .saturating_sub(1)
        .min(31);
    (guess.saturating_sub(1)..=(guess + 1).min(31))
        .min_by_key(|&k| cost(k))
        .unwrap_or(guess)
}

/// Decodes `n` keys of one kind, returning them sorted.
pub fn decode(kind: KeyKind, data: &[u8], n: usize) -> Result<Vec<u32>, CorruptPayload> {
    let mut reader = BitReader::new(data);
    // Every key takes at least one bit: a header that claims more keys than
    // the payload can hold never allocates for them.
    let mut out = Vec::with_capacity(n.min(data.len().saturating_mul(8)));
    let mut prev: i64 = -1;
    while out.len() < n {
        let k = reader.get(5) as u32;
        let in_block = BLOCK.min(n - out.len());
        for _ in 0..in_block {
            let gap = reader.gap(k);
            let value = prev + 1 + gap as i64;
            if value > i64::from(u32::MAX) {
                return Err(CorruptPayload("key out of range"));
            }
            prev = value;
            out.push(from_dense(kind, value as u32)?);
        }
        if reader.overrun() {
            return Err(CorruptPayload("payload ends early"));
        }
    }
    if reader.bytes_used() != data.len() {
        return Err(CorruptPayload("payload has trailing bytes"));
    }
    keys::radix_sort(&mut out);
    Ok(out)
}

/// Whether `key` is among the `n` keys of one kind in `data`, without
/// decoding the set: the gaps are summed in dense order until the key's
/// dense value is reached or passed (on average half the payload; no
/// allocation, no sort). A payload that ends early is an error.
pub fn contains(kind: KeyKind, data: &[u8], n: usize, key: u32) -> Result<bool, CorruptPayload> {
    contains_indexed(kind, data, n, &[], key)
}

/// [`contains`], starting from the last [`Seek`] point at or before the
/// key: a lookup decodes at most [`INDEX_STRIDE`] blocks. An empty index
/// scans from the start; an index that does not fit the payload is an error.
pub fn contains_indexed(
    kind: KeyKind,
    data: &[u8],
    n: usize,
    index: &[Seek],
    key: u32,
) -> Result<bool, CorruptPayload> {
    let want = i64::from(to_dense(kind, key));
    let start = index.partition_point(|s| i64::from(s.prev_plus1) <= want);
    let (mut reader, mut prev, mut seen) = match start.checked_sub(1).map(|i| index[i]) {
        None => (BitReader::new(data), -1i64, 0usize),
        Some(s) => {
            if s.bit > data.len() as u64 * 8
                || s.keys_before as usize > n
                || !(s.keys_before as usize).is_multiple_of(BLOCK)
            {
                return Err(CorruptPayload("index points outside the payload"));
            }
            (
                BitReader::at(data, s.bit),
                i64::from(s.prev_plus1) - 1,
                s.keys_before as usize,
            )
        }
    };
    while seen < n {
        let k = reader.get(5) as u32;
        let in_block = BLOCK.min(n - seen);
        for _ in 0..in_block {
            let gap = reader.gap(k);
            prev += 1 + gap as i64;
            if prev >= want {
                if reader.overrun() {
                    return Err(CorruptPayload("payload ends early"));
                }
                return Ok(prev == want);
            }
        }
        seen += in_block;
        if reader.overrun() {
            return Err(CorruptPayload("payload ends early"));
        }
    }
    Ok(false)
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn with_capacity(bytes: usize) -> Self {
        BitWriter {
            out: Vec::with_capacity(bytes),
            acc: 0,
            n: 0,
        }
    }

    /// Appends the low `bits` (at most 32) bits of `value`.
    #[inline]
    fn put(&mut self, value: u64, bits: u32) {
        debug_assert!(bits <= 32 && (bits == 64 || value >> bits == 0));
        self.acc |= value << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Bits written so far.
    fn bits(&self) -> u64 {
        self.out.len() as u64 * 8 + u64::from(self.n)
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    consumed: u64,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            acc: 0,
            n: 0,
            consumed: 0,
        }
    }

    /// A reader positioned `bit` bits into `data`.
    fn at(data: &'a [u8], bit: u64) -> Self {
        let byte = (bit / 8) as usize;
        let mut r = BitReader {
            data,
            pos: byte,
            acc: 0,
            n: 0,
            consumed: byte as u64 * 8,
        };
        r.get((bit % 8) as u32);
        r
    }

    #[inline]
    fn refill(&mut self) {
        while self.n <= 56 {
            let byte = self.data.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            self.acc |= u64::from(byte) << self.n;
            self.n += 8;
        }
    }

    #[inline]
    fn get(&mut self, bits: u32) -> u64 {
        if bits == 0 {
            return 0;
        }
        self.refill();
        let v = self.acc & ((1u64 << bits) - 1);
        self.acc >>= bits;
        self.n -= bits;
        self.consumed += u64::from(bits);
        v
    }

    /// Reads one Rice-coded gap with parameter `k` (or an escaped 32-bit one).
    #[inline]
    fn gap(&mut self, k: u32) -> u64 {
        let q = self.ones(ESCAPE);
        if q < ESCAPE {
            (u64::from(q) << k) | self.get(k)
        } else {
            self.get(32)
        }
    }

    /// Reads a run of one bits ended by a zero, up to `cap` ones (no zero follows a capped run).
    #[inline]
    fn ones(&mut self, cap: u32) -> u32 {
        self.refill();
        let q = (!self.acc).trailing_zeros().min(cap);
        let used = if q < cap { q + 1 } else { q };
        self.acc >>= used;
        self.n -= used;
        self.consumed += u64::from(used);
        q
    }

    fn overrun(&self) -> bool {
        self.consumed > self.data.len() as u64 * 8
    }

    fn bytes_used(&self) -> usize {
        self.consumed.div_ceil(8) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(kind: KeyKind, keys: &[u32]) {
        let bytes = encode(kind, keys);
        assert_eq!(decode(kind, &bytes, keys.len()).unwrap(), keys);
    }

    #[test]
    fn a_count_beyond_the_payload_allocates_nothing_for_it() {
        let bytes = encode(KeyKind::Cpr, &[101901234, 3112999999]);
        // A header claiming 2^40 keys: an error, not a 4 TiB allocation.
        assert!(decode(KeyKind::Cpr, &bytes, 1 << 40).is_err());
    }

    #[test]
    fn dense_map_is_a_bijection_on_samples() {
        for key in [101901234u32, 3112999999, 2902001234, 1010100000, 3112990009] {
            let t = to_dense(KeyKind::Cpr, key);
            assert_eq!(from_dense(KeyKind::Cpr, t), Ok(key), "{key}");
        }
        for key in [13585628u32, 24256790, 10000009] {
            if keys::check_cvr(key).is_ok() {
                assert_eq!(
                    from_dense(KeyKind::Cvr, to_dense(KeyKind::Cvr, key)),
                    Ok(key)
                );
            }
        }
    }

    #[test]
    fn modulus_11_cprs_land_in_slot_zero() {
        // 0707614285 passes modulus 11 (4,3,2,7,6,5,4,3,2,1).
        assert!(to_dense(KeyKind::Cpr, 707614285) < SLOT_SPAN);
        assert!(to_dense(KeyKind::Cpr, 707614286) >= SLOT_SPAN);
    }

    #[test]
    fn roundtrips() {
        roundtrip(KeyKind::Cpr, &[]);
        roundtrip(KeyKind::Cpr, &[101901234]);
        roundtrip(
            KeyKind::Cpr,
            &[101000000, 101901234, 2512851234, 3112999999],
        );
        roundtrip(KeyKind::Cvr, &[13585628, 24256790]);
        let mut many: Vec<u32> = (0..10_000u32).map(|i| 101000000 + i * 7).collect();
        many.push(3112999999);
        roundtrip(KeyKind::Cpr, &many);
    }

    #[test]
    fn contains_agrees_with_the_decoded_set() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        use rand::{Rng, SeedableRng};
        let mut cprs: Vec<u32> = (0..200_000)
            .filter_map(|_| {
                let k = rng.random_range(101_000_000..3_112_999_999u32);
                keys::parse_cpr(format!("{k:010}").as_bytes()).ok()
            })
            .collect();
        cprs.sort_unstable();
        cprs.dedup();
        let data = encode(KeyKind::Cpr, &cprs);
        for (i, &k) in cprs.iter().enumerate().step_by(7) {
            assert_eq!(
                contains(KeyKind::Cpr, &data, cprs.len(), k),
                Ok(true),
                "{k}"
            );
            // A neighbour that is valid but not in the set.
            if let Some(&next) = cprs.get(i + 1)
                && let Some(between) =
                    (k + 1..next).find(|c| keys::parse_cpr(format!("{c:010}").as_bytes()).is_ok())
            {
                assert_eq!(
                    contains(KeyKind::Cpr, &data, cprs.len(), between),
                    Ok(false)
                );
            }
        }
        assert_eq!(contains(KeyKind::Cpr, &[], 0, cprs[0]), Ok(false));
        // With the index: the same answers, for members and non-members.
        let (data2, index) = encode_indexed(KeyKind::Cpr, &cprs);
        assert_eq!(data2, data);
        assert!(index.len() > 3, "{} seek points", index.len());
        for c in (101_000_000u32..3_112_999_999).step_by(99_991) {
            if keys::parse_cpr(format!("{c:010}").as_bytes()).is_ok() {
                assert_eq!(
                    contains_indexed(KeyKind::Cpr, &data, cprs.len(), &index, c),
                    Ok(cprs.binary_search(&c).is_ok()),
                    "{c}"
                );
            }
        }
        for &k in cprs.iter().step_by(13) {
            assert_eq!(
                contains_indexed(KeyKind::Cpr, &data, cprs.len(), &index, k),
                Ok(true)
            );
        }
        let mut wrong = index.clone();
        wrong[2].bit = data.len() as u64 * 8 + 1;
        assert!(
            (0..cprs.len()).step_by(50).any(|i| contains_indexed(
                KeyKind::Cpr,
                &data,
                cprs.len(),
                &wrong,
                cprs[i]
            )
            .is_err())
        );
        assert!(
            contains(
                KeyKind::Cpr,
                &data[..data.len() / 2],
                cprs.len(),
                *cprs
                    .iter()
                    .max_by_key(|&&k| to_dense(KeyKind::Cpr, k))
                    .unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn truncated_payload_is_an_error() {
        let keys: Vec<u32> = (0..1000u32).map(|i| 101000000 + i * 97).collect();
        let bytes = encode(KeyKind::Cpr, &keys);
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                decode(KeyKind::Cpr, &bytes[..cut], keys.len()).is_err(),
                "cut {cut}"
            );
        }
    }
}

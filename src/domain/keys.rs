//! CPR and CVR keys: validation, `u32` encoding and zero-padded formatting.
//!
//! A key is a CPR number (10 digits `DDMMYYSSSS`, a real day and month, no
//! modulus-11 requirement) or a CVR number (8 digits, modulus 11 with the
//! weights 2,7,6,5,4,3,2,1). Both fit in a `u32`; leading zeros are restored
//! when formatting. CPR and CVR are separate key spaces.
//!
//! Errors never contain the digits of the key: CPR numbers are personal data.

use std::fmt;

/// Which key space a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyKind {
    /// A citizen's CPR number (10 digits).
    Cpr,
    /// A company's CVR number (8 digits).
    Cvr,
}

impl KeyKind {
    /// Number of digits a key of this kind has.
    pub const fn digits(self) -> usize {
        match self {
            KeyKind::Cpr => 10,
            KeyKind::Cvr => 8,
        }
    }

    /// The upper-case name used in lists and reports: `CPR` or `CVR`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyKind::Cpr => "CPR",
            KeyKind::Cvr => "CVR",
        }
    }

    /// Both kinds, in output order (CPR first).
    pub const ALL: [KeyKind; 2] = [KeyKind::Cpr, KeyKind::Cvr];
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key was rejected. The messages never contain the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{kind} must be {} digits, found {found} characters", kind.digits())]
    WrongLength { kind: KeyKind, found: usize },
    #[error("{kind} contains a character that is not a digit")]
    NotDigits { kind: KeyKind },
    #[error("CPR has an impossible date (day or month out of range)")]
    ImpossibleDate,
    #[error("CVR fails the modulus-11 check")]
    BadCheckDigit,
    #[error("key has {found} characters: neither a CPR (10 digits) nor a CVR (8 digits)")]
    UnknownLength { found: usize },
}

/// Days in `month` (1-12); February allows the 29th because the century of
/// a CPR number cannot be known without the serial digits' rule.
const fn days_in_month(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses exactly `n` ASCII digits into a number.
#[inline]
fn digits_value(bytes: &[u8], kind: KeyKind) -> Result<u32, KeyError> {
    if bytes.len() != kind.digits() {
        return Err(KeyError::WrongLength {
            kind,
            found: bytes.len(),
        });
    }
    let mut value: u64 = 0;
    for &b in bytes {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(KeyError::NotDigits { kind });
        }
        value = value * 10 + u64::from(d);
    }
    // 10 digits can exceed u32 only with a day above 42, which is rejected
    // later anyway; report it as an impossible date.
    u32::try_from(value).map_err(|_| KeyError::ImpossibleDate)
}

/// Parses 8 ASCII digits at once (SWAR), `None` if any byte is not a digit.
#[inline]
pub fn parse_digits8(bytes: [u8; 8]) -> Option<u32> {
    let chunk = u64::from_le_bytes(bytes);
    let all_digits = (chunk & 0xF0F0_F0F0_F0F0_F0F0) == 0x3030_3030_3030_3030
        && (chunk.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0)
            == 0x3030_3030_3030_3030;
    if !all_digits {
        return None;
    }
    let mut v = chunk - 0x3030_3030_3030_3030;
    v = (v * 10) + (v >> 8);
    v = ((v & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32))
        + ((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(v as u32)
}

/// The common case of [`parse_cpr`], fast: `None` means "take the slow path"
/// (which gives the reason), never that the key is valid.
#[inline]
pub fn parse_cpr_fast(bytes: &[u8; 10]) -> Option<u32> {
    let high = parse_digits8(bytes[..8].try_into().ok()?)?;
    let (a, b) = (bytes[8].wrapping_sub(b'0'), bytes[9].wrapping_sub(b'0'));
    if a > 9 || b > 9 {
        return None;
    }
    // The date from its digits (DDMM…), not from the value by division;
    // the same rule as `check_cpr`.
    let day = (bytes[0] - b'0') * 10 + (bytes[1] - b'0');
    let month = (bytes[2] - b'0') * 10 + (bytes[3] - b'0');
    if !(1..=12).contains(&month) || day == 0 || day > DAYS_IN_MONTH[usize::from(month)] {
        return None;
    }
    Some(high * 100 + u32::from(a) * 10 + u32::from(b))
}

/// [`days_in_month`] as a table (index 0 unused).
const DAYS_IN_MONTH: [u8; 13] = {
    let mut t = [0u8; 13];
    let mut m = 1;
    while m <= 12 {
        t[m] = days_in_month(m as u32) as u8;
        m += 1;
    }
    t
};

/// The common case of [`parse_cvr`], fast; `None` means "take the slow path".
#[inline]
pub fn parse_cvr_fast(bytes: &[u8; 8]) -> Option<u32> {
    check_cvr(parse_digits8(*bytes)?).ok()
}

/// Checks that a CPR value has a real day and month.
#[inline]
pub fn check_cpr(value: u32) -> Result<u32, KeyError> {
    let day = value / 100_000_000;
    let month = (value / 1_000_000) % 100;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(month) {
        return Err(KeyError::ImpossibleDate);
    }
    Ok(value)
}

/// The CVR modulus-11 weighted sum of the 7 leading digits.
#[inline]
fn cvr_prefix_sum(prefix: u32) -> u32 {
    const W: [u32; 7] = [2, 7, 6, 5, 4, 3, 2];
    let mut rest = prefix;
    let mut sum = 0;
    for w in W.iter().rev() {
        sum += (rest % 10) * w;
        rest /= 10;
    }
    sum
}

/// The check digit a CVR with this 7-digit prefix must have, if any.
#[inline]
pub fn cvr_check_digit(prefix: u32) -> Option<u32> {
    let c = (11 - cvr_prefix_sum(prefix) % 11) % 11;
    (c <= 9).then_some(c)
}

/// The modulus-11 check digit of a CPR's first nine digits, if one exists.
#[inline]
pub fn cpr_check_digit(prefix: u32) -> Option<u32> {
    const W: [u32; 9] = [4, 3, 2, 7, 6, 5, 4, 3, 2];
    let mut rest = prefix;
    let mut sum = 0;
    for w in W.iter().rev() {
        sum += (rest % 10) * w;
        rest /= 10;
    }
    let c = (11 - sum % 11) % 11;
    (c <= 9).then_some(c)
}

/// Checks the CVR modulus-11 rule on an 8-digit value.
#[inline]
pub fn check_cvr(value: u32) -> Result<u32, KeyError> {
    if value >= 100_000_000 {
        return Err(KeyError::WrongLength {
            kind: KeyKind::Cvr,
            found: 9,
        });
    }
    match cvr_check_digit(value / 10) {
        Some(c) if c == value % 10 => Ok(value),
        _ => Err(KeyError::BadCheckDigit),
    }
}

/// Parses and validates a CPR number given as 10 ASCII digits.
#[inline]
pub fn parse_cpr(bytes: &[u8]) -> Result<u32, KeyError> {
    if let Some(v) = bytes.try_into().ok().and_then(parse_cpr_fast) {
        return Ok(v);
    }
    check_cpr(digits_value(bytes, KeyKind::Cpr)?)
}

/// Parses and validates a CVR number given as 8 ASCII digits.
#[inline]
pub fn parse_cvr(bytes: &[u8]) -> Result<u32, KeyError> {
    if let Some(v) = bytes.try_into().ok().and_then(parse_cvr_fast) {
        return Ok(v);
    }
    check_cvr(digits_value(bytes, KeyKind::Cvr)?)
}

/// Parses a key of a known kind.
#[inline]
pub fn parse_kind(kind: KeyKind, bytes: &[u8]) -> Result<u32, KeyError> {
    match kind {
        KeyKind::Cpr => parse_cpr(bytes),
        KeyKind::Cvr => parse_cvr(bytes),
    }
}

/// Parses a key whose kind is given by its length (10 = CPR, 8 = CVR).
#[inline]
pub fn parse_any(bytes: &[u8]) -> Result<(KeyKind, u32), KeyError> {
    match bytes.len() {
        10 => parse_cpr(bytes).map(|v| (KeyKind::Cpr, v)),
        8 => parse_cvr(bytes).map(|v| (KeyKind::Cvr, v)),
        found => Err(KeyError::UnknownLength { found }),
    }
}

/// Writes `value` zero-padded to the kind's width into `out`, returning the
/// written digits.
#[inline]
pub fn format_into(kind: KeyKind, value: u32, out: &mut [u8; 10]) -> &[u8] {
    let n = kind.digits();
    let mut rest = value;
    for slot in out[..n].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    &out[..n]
}

/// Formats a key zero-padded (`0101901234` stays `0101901234`).
pub fn format(kind: KeyKind, value: u32) -> String {
    let mut buf = [0u8; 10];
    String::from_utf8_lossy(format_into(kind, value, &mut buf)).into_owned()
}

/// Parses a CVR given on the command line or in a config file.
pub fn parse_cvr_str(s: &str) -> Result<u32, KeyError> {
    parse_cvr(s.trim().as_bytes())
}

/// `text` from outside (a register's error text) with everything shaped
/// like a CPR number (ten digits, or six, a dash and four, not part of a
/// longer run of digits) replaced by `**********`: such text goes into
/// errors and logs, where no CPR number may appear.
pub fn redact_cpr(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()) {
            let run = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            let dashed = run == 6
                && b.get(i + 6) == Some(&b'-')
                && b[i + 7..].iter().take_while(|c| c.is_ascii_digit()).count() == 4;
            if run == 10 || dashed {
                out.push_str("**********");
                i += if dashed { 11 } else { 10 };
                continue;
            }
            out.push_str(&text[i..i + run]);
            i += run;
            continue;
        }
        let ch = text[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_cpr_shaped_text() {
        for (input, expected) in [
            (
                "borger 0101901234 findes ikke",
                "borger ********** findes ikke",
            ),
            ("010190-1234.", "**********."),
            (
                "cvr 12345678, id 123456789012",
                "cvr 12345678, id 123456789012",
            ),
            ("æ0101901234ø", "æ**********ø"),
            ("", ""),
        ] {
            assert_eq!(redact_cpr(input), expected, "input {input:?}");
        }
    }

    fn check(input: &str, expected: Result<(KeyKind, u32), KeyError>) {
        assert_eq!(parse_any(input.as_bytes()), expected, "input {input:?}");
    }

    #[test]
    fn parses_and_rejects() {
        use KeyError::*;
        check("0101901234", Ok((KeyKind::Cpr, 101901234)));
        check("3112999999", Ok((KeyKind::Cpr, 3112999999)));
        check("2902001234", Ok((KeyKind::Cpr, 2902001234)));
        check("3002001234", Err(ImpossibleDate));
        check("3104001234", Err(ImpossibleDate));
        check("0001901234", Err(ImpossibleDate));
        check("0113901234", Err(ImpossibleDate));
        check("0100901234", Err(ImpossibleDate));
        check("9999999999", Err(ImpossibleDate));
        check("01019O1234", Err(NotDigits { kind: KeyKind::Cpr }));
        check("13585628", Ok((KeyKind::Cvr, 13585628)));
        check("24256790", Ok((KeyKind::Cvr, 24256790)));
        check("13585627", Err(BadCheckDigit));
        check("1358562a", Err(NotDigits { kind: KeyKind::Cvr }));
        check("123456789", Err(UnknownLength { found: 9 }));
        check("", Err(UnknownLength { found: 0 }));
    }

    #[test]
    fn kind_is_checked_against_length() {
        assert_eq!(
            parse_cpr(b"13585628"),
            Err(KeyError::WrongLength {
                kind: KeyKind::Cpr,
                found: 8
            })
        );
        assert_eq!(
            parse_cvr(b"0101901234"),
            Err(KeyError::WrongLength {
                kind: KeyKind::Cvr,
                found: 10
            })
        );
    }

    #[test]
    fn radix_sort_sorts() {
        let mut x: u32 = 12345;
        let mut v: Vec<u32> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            })
            .collect();
        v.extend([0, u32::MAX, 7, 7]);
        let mut expected = v.clone();
        expected.sort_unstable();
        radix_sort(&mut v);
        assert_eq!(v, expected);
        let mut same = vec![9u32; 1000];
        radix_sort(&mut same);
        assert_eq!(same, vec![9u32; 1000]);
    }

    #[test]
    fn fast_paths_agree_with_slow_paths() {
        for input in [
            "0101901234",
            "3112999999",
            "3002001234",
            "01019O1234",
            "0101901/34",
            "9999999999",
        ] {
            let bytes: &[u8; 10] = input.as_bytes().try_into().unwrap();
            // The slow path alone (parse_cpr tries the fast one first).
            let slow = digits_value(bytes, KeyKind::Cpr).and_then(check_cpr).ok();
            assert_eq!(parse_cpr_fast(bytes), slow, "{input}");
        }
        // Every day and month pair, valid or not, at both ends of the rest.
        for dd in 0..100 {
            for mm in 0..100 {
                for rest in ["000000", "999999", "901234"] {
                    let input = format!("{dd:02}{mm:02}{rest}");
                    let bytes: &[u8; 10] = input.as_bytes().try_into().unwrap();
                    let slow = digits_value(bytes, KeyKind::Cpr).and_then(check_cpr).ok();
                    assert_eq!(parse_cpr_fast(bytes), slow, "{input}");
                }
            }
        }
        for input in ["13585628", "24256790", "13585627", "1358562:", "00000000"] {
            let bytes: &[u8; 8] = input.as_bytes().try_into().unwrap();
            let slow = digits_value(bytes, KeyKind::Cvr).and_then(check_cvr).ok();
            assert_eq!(parse_cvr_fast(bytes), slow, "{input}");
        }
        assert_eq!(parse_digits8(*b"01234567"), Some(1234567));
        assert_eq!(parse_digits8(*b"99999999"), Some(99999999));
    }

    #[test]
    fn formats_with_leading_zeros() {
        assert_eq!(format(KeyKind::Cpr, 101901234), "0101901234");
        assert_eq!(format(KeyKind::Cvr, 1234567), "01234567");
        assert_eq!(format(KeyKind::Cpr, 3112999999), "3112999999");
    }

    #[test]
    fn errors_do_not_contain_digits() {
        for input in ["3002001234", "01019O1234", "13585627", "123456789"] {
            let msg = parse_any(input.as_bytes()).unwrap_err().to_string();
            assert!(!msg.contains(&input[..6]), "{msg}");
        }
    }

    #[test]
    fn cvr_check_digit_matches_rule() {
        assert_eq!(cvr_check_digit(1358562), Some(8));
        assert_eq!(cvr_check_digit(2425679), Some(0));
    }
}

/// One authority's list: sorted, de-duplicated CPR and CVR keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    /// Sorted, unique CPR values.
    pub cpr: Vec<u32>,
    /// Sorted, unique CVR values.
    pub cvr: Vec<u32>,
}

impl KeySet {
    /// The sorted keys of one kind.
    pub fn of(&self, kind: KeyKind) -> &[u32] {
        match kind {
            KeyKind::Cpr => &self.cpr,
            KeyKind::Cvr => &self.cvr,
        }
    }

    /// Total number of keys of both kinds.
    pub fn len(&self) -> usize {
        self.cpr.len() + self.cvr.len()
    }

    /// True when the list holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds a set from unsorted keys, returning it with the number of
    /// duplicates that were collapsed.
    pub fn from_unsorted(mut cpr: Vec<u32>, mut cvr: Vec<u32>) -> (KeySet, u64) {
        let dups = sort_dedup(&mut cpr) + sort_dedup(&mut cvr);
        (KeySet { cpr, cvr }, dups)
    }
}

/// Sorts `u32`s with a three-pass LSD radix sort (11-bit digits); passes in
/// which every value has the same digit are skipped, and input already in
/// order (lists exported in key order) is left as it is after one look.
pub fn radix_sort(v: &mut Vec<u32>) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    if v.is_sorted() {
        return;
    }
    let n = v.len();
    if n < 512 || u32::try_from(n).is_err() {
        v.sort_unstable();
        return;
    }
    // u32 counts: the three histograms (24 KiB) stay in the L1 cache.
    let mut hist = vec![[0u32; BUCKETS]; 3];
    for &x in v.iter() {
        hist[0][(x & 0x7FF) as usize] += 1;
        hist[1][((x >> 11) & 0x7FF) as usize] += 1;
        hist[2][(x >> 22) as usize] += 1;
    }
    let mut src = std::mem::take(v);
    let mut dst = vec![0u32; n];
    for (pass, counts) in hist.iter().enumerate() {
        if counts.contains(&(n as u32)) {
            continue;
        }
        let mut offsets = [0usize; BUCKETS];
        let mut sum = 0;
        for (o, &c) in offsets.iter_mut().zip(counts.iter()) {
            *o = sum;
            sum += c as usize;
        }
        let shift = pass as u32 * BITS;
        for &x in &src {
            let d = ((x >> shift) & 0x7FF) as usize;
            dst[offsets[d]] = x;
            offsets[d] += 1;
        }
        std::mem::swap(&mut src, &mut dst);
    }
    *v = src;
}

/// Sorts and de-duplicates in place, returning how many duplicates were removed.
pub fn sort_dedup(v: &mut Vec<u32>) -> u64 {
    radix_sort(v);
    let before = v.len();
    v.dedup();
    (before - v.len()) as u64
}

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
    check_cpr(digits_value(bytes, KeyKind::Cpr)?)
}

/// Parses and validates a CVR number given as 8 ASCII digits.
#[inline]
pub fn parse_cvr(bytes: &[u8]) -> Result<u32, KeyError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

/// Sorts and de-duplicates in place, returning how many duplicates were removed.
pub fn sort_dedup(v: &mut Vec<u32>) -> u64 {
    use rayon::slice::ParallelSliceMut;
    if v.len() > 1 << 16 {
        v.par_sort_unstable();
    } else {
        v.sort_unstable();
    }
    let before = v.len();
    v.dedup();
    (before - v.len()) as u64
}

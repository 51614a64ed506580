//! Realistic synthetic registration lists for demos, tests and benchmarks.
//!
//! Authorities get valid CVR numbers and sizes with a long tail (Zipf
//! exponent 0.8: with 98 authorities and 6M keys the largest has ~740k
//! keys, the smallest ~25k). About 5 % of keys are CVR numbers. CPR numbers
//! are realistic: birth years 1930-2025, real dates, the century digit rule
//! for the first serial digit, and modulus-11 check digits for everyone born
//! before 2007 (as issued). Day N+1 is day N with `churn * n` keys removed
//! and `churn * n` new keys added. Output: `DIR/<date>/<authority>.csv` in
//! the assumed list format, one `nummer` column. The same seed gives the
//! same files, whatever the number of threads.

use std::path::{Path, PathBuf};

use anyhow::Context;
use jiff::civil::Date;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::domain::keys::{self, KeyKind};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Output directory.
    pub out: PathBuf,
    /// Number of authorities.
    pub authorities: usize,
    /// Total keys over all authorities on the first day.
    pub keys: u64,
    /// Number of consecutive days.
    pub days: u32,
    /// Share of keys removed and, separately, added from one day to the next.
    pub churn: f64,
    /// Random seed.
    pub seed: u64,
    /// First list date.
    pub start: Date,
    /// Share of keys that are CVR numbers.
    pub cvr_share: f64,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub files: usize,
    pub keys_per_day: Vec<u64>,
    pub authorities: Vec<u32>,
}

/// Generates the data set.
pub fn generate(opts: &Options) -> anyhow::Result<Summary> {
    anyhow::ensure!(opts.authorities > 0, "--authorities must be at least 1");
    anyhow::ensure!(opts.days > 0, "--days must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&opts.churn),
        "--churn must be between 0 and 1"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut cvrs = ahash::AHashSet::new();
    let mut authorities = Vec::with_capacity(opts.authorities);
    while authorities.len() < opts.authorities {
        let cvr = random_cvr(&mut rng);
        if cvrs.insert(cvr) {
            authorities.push(cvr);
        }
    }
    let sizes = sizes(opts.authorities, opts.keys);
    let dates: Vec<Date> = (0..opts.days)
        .map(|d| opts.start + jiff::Span::new().days(i64::from(d)))
        .collect();
    for date in &dates {
        let dir = opts.out.join(date.to_string());
        crate::fsutil::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let per_authority: Vec<Vec<u64>> = authorities
        .par_iter()
        .zip(sizes.par_iter())
        .enumerate()
        .map(|(i, (&cvr, &size))| {
            let seed = opts.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            authority_days(opts, &dates, cvr, size, seed)
        })
        .collect::<anyhow::Result<_>>()?;
    let keys_per_day = (0..dates.len())
        .map(|d| per_authority.iter().map(|a| a[d]).sum())
        .collect();
    Ok(Summary {
        files: authorities.len() * dates.len(),
        keys_per_day,
        authorities,
    })
}

/// Zipf-like sizes summing to `total`, largest first.
fn sizes(n: usize, total: u64) -> Vec<u64> {
    let weights: Vec<f64> = (1..=n).map(|i| (i as f64).powf(-0.8)).collect();
    let sum: f64 = weights.iter().sum();
    weights
        .iter()
        .map(|w| ((w / sum) * total as f64).round().max(1.0) as u64)
        .collect()
}

/// A key tagged with its kind: bit 32 set for CVR.
type Tagged = u64;

fn tag(kind: KeyKind, value: u32) -> Tagged {
    u64::from(value) | if kind == KeyKind::Cvr { 1 << 32 } else { 0 }
}

fn random_key(rng: &mut ChaCha8Rng, cvr_share: f64) -> Tagged {
    if rng.random_bool(cvr_share) {
        tag(KeyKind::Cvr, random_cvr(rng))
    } else {
        tag(KeyKind::Cpr, random_cpr(rng))
    }
}

fn random_cvr(rng: &mut ChaCha8Rng) -> u32 {
    loop {
        let prefix = rng.random_range(1_000_000..10_000_000u32);
        if let Some(c) = keys::cvr_check_digit(prefix) {
            return prefix * 10 + c;
        }
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// A CPR number as issued: real date, century digit, modulus 11 before 2007.
fn random_cpr(rng: &mut ChaCha8Rng) -> u32 {
    let year = rng.random_range(1930..=2025u32);
    let month = rng.random_range(1..=12u32);
    let days = match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let day = rng.random_range(1..=days);
    let date = (day * 100 + month) * 100 + year % 100;
    loop {
        let first = if year < 2000 {
            rng.random_range(0..=3u32)
        } else {
            rng.random_range(4..=9u32)
        };
        let prefix = date * 1000 + first * 100 + rng.random_range(0..100u32);
        if year >= 2007 {
            return prefix * 10 + rng.random_range(0..10u32);
        }
        if let Some(c) = keys::cpr_check_digit(prefix) {
            return prefix * 10 + c;
        }
    }
}

fn authority_days(
    opts: &Options,
    dates: &[Date],
    cvr: u32,
    size: u64,
    seed: u64,
) -> anyhow::Result<Vec<u64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut present = ahash::AHashSet::with_capacity(size as usize * 2);
    let mut list: Vec<Tagged> = Vec::with_capacity(size as usize * 11 / 10);
    while (list.len() as u64) < size {
        let key = random_key(&mut rng, opts.cvr_share);
        if present.insert(key) {
            list.push(key);
        }
    }
    let churn = (size as f64 * opts.churn).round() as usize;
    let mut counts = Vec::with_capacity(dates.len());
    for (d, date) in dates.iter().enumerate() {
        if d > 0 {
            for _ in 0..churn.min(list.len()) {
                let i = rng.random_range(0..list.len());
                present.remove(&list.swap_remove(i));
            }
            let mut added = 0;
            while added < churn {
                let key = random_key(&mut rng, opts.cvr_share);
                if present.insert(key) {
                    list.push(key);
                    added += 1;
                }
            }
        }
        let path = opts
            .out
            .join(date.to_string())
            .join(format!("{}.csv", keys::format(KeyKind::Cvr, cvr)));
        write_list(&path, &list).with_context(|| format!("cannot write {}", path.display()))?;
        counts.push(list.len() as u64);
    }
    Ok(counts)
}

/// A list of `n` unique realistic keys as CSV bytes, and the same list after
/// one day of `churn`: for benchmarks and tests that want data in memory.
pub fn list_pair(n: usize, churn: f64, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut present = ahash::AHashSet::with_capacity(n * 2);
    let mut list = Vec::with_capacity(n + n / 10);
    while list.len() < n {
        let key = random_key(&mut rng, 0.05);
        if present.insert(key) {
            list.push(key);
        }
    }
    let day1 = list_bytes(&list);
    let changes = (n as f64 * churn).round() as usize;
    for _ in 0..changes.min(list.len()) {
        let i = rng.random_range(0..list.len());
        present.remove(&list.swap_remove(i));
    }
    let mut added = 0;
    while added < changes {
        let key = random_key(&mut rng, 0.05);
        if present.insert(key) {
            list.push(key);
            added += 1;
        }
    }
    (day1, list_bytes(&list))
}

fn write_list(path: &Path, list: &[Tagged]) -> std::io::Result<()> {
    crate::fsutil::write_replace(path, &list_bytes(list))
}

fn list_bytes(list: &[Tagged]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list.len() * 11 + 8);
    out.extend_from_slice(b"nummer\n");
    let mut buf = [0u8; 10];
    for &key in list {
        let kind = if key >> 32 == 1 {
            KeyKind::Cvr
        } else {
            KeyKind::Cpr
        };
        out.extend_from_slice(keys::format_into(kind, key as u32, &mut buf));
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_valid_and_realistic() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut mod11 = 0;
        for _ in 0..10_000 {
            let cpr = random_cpr(&mut rng);
            keys::check_cpr(cpr).unwrap();
            let year = (cpr / 10_000) % 100;
            if (30..=99).contains(&year) {
                assert!(cpr % 10_000 < 4000, "1900s births use serials 0000-3999");
            }
            let digits = keys::format(KeyKind::Cpr, cpr);
            let w = [4, 3, 2, 7, 6, 5, 4, 3, 2, 1];
            let sum: u32 = digits
                .bytes()
                .zip(w)
                .map(|(b, w)| u32::from(b - b'0') * w)
                .sum();
            mod11 += u32::from(sum.is_multiple_of(11));
            keys::check_cvr(random_cvr(&mut rng)).unwrap();
        }
        assert!(mod11 > 8000, "most CPRs pass modulus 11: {mod11}");
    }

    #[test]
    fn sizes_have_a_long_tail() {
        let s = sizes(98, 6_000_000);
        assert!((650_000..800_000).contains(&s[0]), "{}", s[0]);
        assert!(s[97] < 40_000);
        let total: u64 = s.iter().sum();
        assert!(total.abs_diff(6_000_000) < 100);
    }
}

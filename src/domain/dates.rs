//! Dates and times, all through `jiff`: calendar dates as the command line,
//! the config and the Register write them (`YYYY-MM-DD`), the packed form
//! snapshot and batch headers store, and UTC time stamps as envelopes and
//! reports write them. The clock itself is read by the callers.

pub use jiff::civil::Date;

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Result<Date, String> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err("expected YYYY-MM-DD".into());
    }
    s.parse::<Date>()
        .map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}

/// The day after `d` (`None` past year 9999).
pub fn next_day(d: Date) -> Option<Date> {
    d.tomorrow().ok()
}

/// `d` as the number `YYYYMMDD` (headers store dates so).
pub fn to_yyyymmdd(d: Date) -> u32 {
    d.year() as u32 * 10_000 + d.month() as u32 * 100 + d.day() as u32
}

/// The date of a `YYYYMMDD` number, if it is one.
pub fn from_yyyymmdd(v: u32) -> Option<Date> {
    let (y, m, d) = (v / 10_000, v / 100 % 100, v % 100);
    Date::new(
        i16::try_from(y).ok()?,
        i8::try_from(m).ok()?,
        i8::try_from(d).ok()?,
    )
    .ok()
    .filter(|_| y >= 1)
}

/// A Unix time stamp as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds);
/// out-of-range stamps show as the epoch.
pub fn utc_seconds(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A Unix time stamp in RFC 3339 (UTC), or `None` if out of range.
pub fn rfc3339(unix: i64) -> Option<String> {
    jiff::Timestamp::from_second(unix)
        .ok()
        .map(|t| t.to_string())
}

/// Parses an RFC 3339 time stamp into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("expected an RFC 3339 timestamp: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_reject() {
        let d = parse_date("2026-01-02").unwrap();
        assert_eq!(d.to_string(), "2026-01-02");
        assert_eq!(to_yyyymmdd(d), 20260102);
        assert_eq!(from_yyyymmdd(20260102), Some(d));
        assert_eq!(next_day(d).unwrap().to_string(), "2026-01-03");
        for bad in [
            "2026-1-2",
            "2026-02-30",
            "26-01-02",
            "2026/01/02",
            "",
            "2026-01-02x",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        for bad in [0, 20261301, 20260230, 99999999] {
            assert_eq!(from_yyyymmdd(bad), None, "{bad}");
        }
        assert_eq!(utc_seconds(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00+01:00"),
            Ok(1_767_225_600)
        );
    }
}

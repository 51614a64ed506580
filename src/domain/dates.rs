//! Dates as the command line, the config and the Register write them.

use time::Date;

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Result<Date, String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt).map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}

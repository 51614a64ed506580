//! Secrets (tokens, broker passwords) kept out of logs, errors, reports and
//! `Debug` output.

use std::fmt;

/// A secret string: `Debug` and `Display` print `***`; [`Secret::expose`]
/// is the one way to the value, used only where it is sent.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL fit for logs and reports: the password (and any query, which may
/// carry credentials) replaced by `***`, parsed the way lapin parses it
/// (the user info ends at the last `@`). A URL that does not parse is
/// shown as its scheme only.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query().is_some() {
                let keep: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let safe = matches!(
                            k.as_ref(),
                            "auth_mechanism"
                                | "heartbeat"
                                | "connection_timeout"
                                | "channel_max"
                                | "frame_max"
                        );
                        (
                            k.into_owned(),
                            if safe { v.into_owned() } else { "***".into() },
                        )
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(keep);
            }
            u.to_string()
        }
        Err(_) => match url.split_once("://") {
            Some((scheme, _))
                if scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+') =>
            {
                format!("{scheme}://***")
            }
            _ => "***".into(),
        },
    }
}

/// Whether `url`'s host is a loopback address (`localhost`, 127.0.0.0/8, ::1).
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.host() {
        // amqp is not a "special" scheme: its IPv4 hosts come as domains.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_wherever_the_at_signs_are() {
        for (url, expected) in [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "amqps://svc:p@ss@word@bf.example:5671/BF",
                "amqps://svc:***@bf.example:5671/BF",
            ),
            (
                "amqps://bf.example:5671/BF?auth_mechanism=external",
                "amqps://bf.example:5671/BF?auth_mechanism=external",
            ),
            (
                "amqp://u:pw@h/v?password=pw",
                "amqp://u:***@h/v?password=***",
            ),
            ("amqp://[bad", "amqp://***"),
            ("pass@word", "***"),
        ] {
            let got = redact_url(url);
            assert_eq!(got, expected, "url {url:?}");
            assert!(!got.contains("pw") && !got.contains("ss@w"), "{got}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn loopback() {
        assert!(is_loopback_url("amqp://u:p@127.0.0.1:5672/%2f"));
        assert!(is_loopback_url("amqp://localhost/"));
        assert!(is_loopback_url("amqp://[::1]:5672/"));
        assert!(!is_loopback_url("amqp://10.0.0.1/"));
        assert!(!is_loopback_url("amqp://bf.example/"));
    }
}

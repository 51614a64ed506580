//! Beskedfordeler (SF1462 over AMQP): the publisher, the messages around
//! the envelope, STS tokens, and AliveBesked.

pub mod alive;
pub mod amqp;
pub mod besked;
pub mod publish;
pub mod sts;

use std::path::PathBuf;

use crate::secret::Secret;

/// The connection to Beskedfordeler (SF1462 over AMQP 0-9-1).
#[derive(Debug, Clone, PartialEq)]
pub struct BeskedfordelerConfig {
    /// `amqps://host:5671/BF?auth_mechanism=external` (or `amqp://` to a
    /// loopback test broker with `insecure_broker = true`). Secret: it may
    /// hold a password; logs show `secret::redact_url` of it.
    pub url: Secret,
    pub exchange: String,
    /// Where the `token` header comes from: static, or the STS.
    pub tokens: crate::beskedfordeler::sts::TokenSource,
    /// TLS for amqps: the broker's CA and our client certificate (PEM).
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Messages in flight (per authority's connection).
    pub in_flight: usize,
    /// Authorities published at the same time, each on its own connection
    /// (its batches in date order).
    pub parallel_authorities: usize,
    /// Messages in flight over all connections: an authority publishes
    /// while it holds min(its largest remaining batch, `in_flight`) of
    /// them, so a night of small batches goes `parallel_authorities` at a
    /// time, a mass day a few big ones at a time.
    pub in_flight_total: usize,
    /// A message without a reply after this long is sent again.
    pub reply_timeout: std::time::Duration,
    /// How long publishing rides out an outage (broker unreachable, or up
    /// but answering nothing) without progress before it stops (exit 4).
    pub outage_deadline: std::time::Duration,
    pub max_backoff: std::time::Duration,
    /// `run` publishes after committing.
    pub publish_after_run: bool,
    /// `run` checks the AliveBesked round trip before publishing.
    pub alive_check_before_publish: bool,
}

impl BeskedfordelerConfig {
    /// The login carries the token (`?auth_mechanism=external`, as
    /// Beskedfordeler wants): SASL EXTERNAL whose response is the decoded
    /// assertion, so each connection belongs to one authority's token.
    /// Otherwise the URL's user and password log in (a plain test broker).
    pub fn token_login(&self) -> bool {
        self.url
            .expose()
            .parse::<lapin::uri::AMQPUri>()
            .is_ok_and(|u| u.query.auth_mechanism == Some(lapin::uri::SASLMechanism::External))
    }
}

//! AliveBesked (seed 004): proves the message flow through Beskedfordeler
//! is alive by sending a message to ourselves and receiving it.
//!
//! - `send`: AliveBeskedSend, publish one AliveBesked (no business data);
//! - `serve`: AliveBeskedModtag, a push receiver: `POST /besked/modtag` with
//!   `ModtagBeskedInput`, stored durably, answered `ModtagBeskedOutput` with
//!   `StandardRetur` 20 (a non-20 code with text for malformed input);
//! - `check`: send one and wait until it arrives, by pull (AliveBeskedHent:
//!   consume the dueslag, manual ack, de-duplicate on `BeskedId`) or push
//!   (it appears in the receiver's store).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_lite::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use uuid::Uuid;

use crate::beskedfordeler::BeskedfordelerConfig;
use crate::{beskedfordeler::besked, beskedfordeler::publish, fsutil};

/// Where the AliveBesked check watches for its message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliveConfig {
    /// The dueslag queue to consume (pull).
    pub dueslag_queue: Option<String>,
    /// The push receiver's store directory (`alive serve --store`).
    pub push_store: Option<PathBuf>,
    /// How `run` checks before publishing.
    #[serde(default)]
    pub via: Via,
    /// Seconds to wait for the round trip.
    #[serde(default = "default_alive_timeout")]
    pub timeout_secs: u64,
    /// `alive serve` over HTTPS: its certificate and key (PEM).
    pub serve_cert: Option<PathBuf>,
    pub serve_key: Option<PathBuf>,
    /// `alive serve` with mutual TLS: the CA client certificates must chain to.
    pub serve_client_ca: Option<PathBuf>,
}

/// Where the AliveBesked check waits for its message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Consume the dueslag queue (AliveBeskedHent).
    #[default]
    Pull,
    /// Watch the push receiver's store (AliveBeskedModtag).
    Push,
}
fn default_alive_timeout() -> u64 {
    30
}

fn now_utc() -> String {
    crate::domain::dates::utc_seconds(jiff::Timestamp::now().as_second())
}

/// Runs one step of an AliveBesked exchange within what is left until
/// `deadline`; running out of time names the step.
async fn step<T>(
    deadline: Instant,
    what: &str,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, fut).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!("ran out of time while {what}"),
    }
}

/// Publishes one AliveBesked and waits for Beskedfordeler's answer; every
/// step ends by `deadline`.
pub async fn send(
    cfg: &BeskedfordelerConfig,
    aktoer: Uuid,
    authority: u32,
    token: &str,
    deadline: Instant,
) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    let cvr = crate::domain::keys::format(crate::domain::keys::KeyKind::Cvr, authority);
    let body = besked::alive_envelope(id, aktoer, &cvr, &now_utc());
    let (_connection, channel) = step(
        deadline,
        "connecting to Beskedfordeler",
        publish::connect(cfg, token),
    )
    .await?;
    let mut replies = step(deadline, "subscribing to Beskedfordeler's answers", async {
        channel
            .basic_consume(
                publish::REPLY_TO.into(),
                "alive".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .context("cannot consume direct replies")
    })
    .await?;
    let correlation = Uuid::new_v4().to_string();
    step(deadline, "sending the AliveBesked", async {
        publish::send(
            &channel,
            &cfg.exchange,
            token,
            body.as_bytes(),
            &id.to_string(),
            &correlation,
        )
        .await
        .context("cannot send the AliveBesked")
    })
    .await?;
    step(
        deadline,
        "waiting for Beskedfordeler's StatusKode to the AliveBesked",
        async {
            loop {
                let delivery = replies.next().await.context("the reply consumer ended")??;
                if delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.as_str())
                    != Some(correlation.as_str())
                {
                    continue;
                }
                let (code, text) =
                    besked::parse_standard_retur(&delivery.data).map_err(anyhow::Error::msg)?;
                anyhow::ensure!(
                    code == besked::OK,
                    "Beskedfordeler answered StatusKode {code}: {text}"
                );
                return Ok(id);
            }
        },
    )
    .await
}

/// How `check` watches for the round trip.
#[derive(Debug, Clone)]
pub enum Watch {
    /// Consume this dueslag queue.
    Pull(String),
    /// Watch this push receiver's store directory.
    Push(PathBuf),
}

/// Sends an AliveBesked and waits until it arrives; the round-trip time.
/// Token, connection, send, StatusKode and round trip share one deadline
/// (`timeout` from now): the check ends within it, and an error names the
/// step that ran out of time.
pub fn check(
    cfg: &BeskedfordelerConfig,
    aktoer: Uuid,
    token_authority: u32,
    via: &Watch,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let runtime = crate::rt::runtime()?;
    let started = Instant::now();
    let deadline = started + timeout;
    let result = runtime.block_on(async {
        let mut tokens = crate::beskedfordeler::sts::Tokens::new(&cfg.tokens)?;
        let token = step(deadline, "getting a token", async {
            tokens
                .get(token_authority, crate::beskedfordeler::sts::Service::Afsend)
                .await
        })
        .await?;
        match via {
            Watch::Pull(queue) => {
                // AliveBeskedHent: an afhent token; the dueslag's queue is
                // Beskedfordeler's, consumed by its name, never declared.
                // Consume first, so the message cannot slip past.
                let pull_token = step(deadline, "getting a token to pull", async {
                    tokens
                        .get(token_authority, crate::beskedfordeler::sts::Service::Afhent)
                        .await
                })
                .await?;
                let (_connection, channel) = step(
                    deadline,
                    "connecting to Beskedfordeler to pull",
                    publish::connect(cfg, &pull_token),
                )
                .await?;
                let mut consumer = step(deadline, "subscribing to the dueslag", async {
                    channel.basic_qos(100, BasicQosOptions::default()).await?;
                    Ok(channel
                        .basic_consume(
                            queue.as_str().into(),
                            "alive-check".into(),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await?)
                })
                .await?;
                let id = send(cfg, aktoer, token_authority, &token, deadline)
                    .await?
                    .to_string();
                step(
                    deadline,
                    "waiting for the AliveBesked in the dueslag (pull)",
                    async {
                        let mut seen = HashSet::new();
                        loop {
                            let delivery = consumer
                                .next()
                                .await
                                .context("the dueslag consumer ended")??;
                            let got = besked::inspect(&delivery.data)
                                .ok()
                                .and_then(|i| i.besked_id);
                            delivery.ack(BasicAckOptions::default()).await?;
                            if let Some(got) = got
                                && seen.insert(got.clone())
                                && got == id
                            {
                                return Ok(started.elapsed());
                            }
                        }
                    },
                )
                .await
            }
            Watch::Push(store) => {
                let id = send(cfg, aktoer, token_authority, &token, deadline).await?;
                let file = store.join(format!("{id}.xml"));
                step(
                    deadline,
                    "waiting for the AliveBesked at the push receiver",
                    async {
                        while !file.exists() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok(started.elapsed())
                    },
                )
                .await
            }
        }
    });
    // Nothing left behind may hold the process past its deadline.
    runtime.shutdown_background();
    result.map_err(|e| {
        e.context(format!(
            "AliveBesked check (timeout {} s)",
            timeout.as_secs_f64()
        ))
    })
}

type Resp = crate::http::Resp;

fn answer(status: StatusCode, code: u32, text: &str) -> Resp {
    let mut r =
        Response::new(Full::new(Bytes::from(besked::modtag_besked_output(code, text))).boxed());
    *r.status_mut() = status;
    r
}

/// Handles one push delivery: store it, then answer. Like KOMBIT's
/// AliveBeskedModtag, every answer to a delivery is HTTP 200 with the
/// status in `ModtagBeskedOutput/StandardRetur`: 20 once stored, 40 with
/// `FejlbeskedTekst` for a message that is not valid, 50 when it cannot be
/// stored (Beskedfordeler delivers it again). Only what never reaches the
/// service gets an HTTP error: another path (404), and the transport
/// limits of [`handle`] (413, 408, 400 for an unreadable body). The file is named
/// from the canonical form of the `BeskedId` (lowercase, hyphenated), so
/// one message is one file however its id was spelled.
fn receive(store: &Path, method: &Method, path: &str, body: &[u8]) -> Resp {
    if method != Method::POST || path != "/besked/modtag" {
        return answer(StatusCode::NOT_FOUND, 44, "use POST /besked/modtag");
    }
    let info = match besked::inspect(body).and_then(|i| i.validate().map(|()| i)) {
        Ok(i) => i,
        Err(e) => {
            return answer(
                StatusCode::OK,
                40,
                &format!("invalid ModtagBeskedInput: {e}"),
            );
        }
    };
    let Some(id) = info
        .besked_id
        .as_deref()
        .and_then(|id| Uuid::parse_str(id.trim()).ok())
    else {
        return answer(
            StatusCode::OK,
            40,
            "invalid ModtagBeskedInput: BeskedId is not a UUID",
        );
    };
    let envelope = match besked::unwrap_modtag_besked_input(body) {
        Ok(e) => e,
        Err(e) => {
            return answer(
                StatusCode::OK,
                40,
                &format!("invalid ModtagBeskedInput: {e}"),
            );
        }
    };
    match fsutil::write_atomic(&store.join(format!("{}.xml", id.hyphenated())), &envelope) {
        Ok(()) => answer(StatusCode::OK, besked::OK, ""),
        Err(e) => answer(
            StatusCode::OK,
            50,
            &format!("cannot store the message: {e}"),
        ),
    }
}

/// How the push receiver listens and what it tolerates.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub store: PathBuf,
    /// Larger bodies are answered 413 (`Content-Length` or counted).
    pub max_body: usize,
    /// Time for a connection's TLS handshake and each request's headers.
    pub header_timeout: Duration,
    /// Time for a request's body once its headers came (408 after).
    pub body_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// HTTPS: certificate, key and, for mutual TLS, the client CA.
    pub tls: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
}

impl ServeOptions {
    pub fn new(listen: SocketAddr, store: PathBuf) -> ServeOptions {
        ServeOptions {
            listen,
            store,
            max_body: 1 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 64,
            tls: None,
        }
    }
}

/// One request: body within the limits, then [`receive`].
async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    store: PathBuf,
    max_body: usize,
    body_timeout: Duration,
) -> Resp {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            40,
            &format!("the body is larger than {max_body} bytes"),
        );
    }
    let limited = http_body_util::Limited::new(req.into_body(), max_body);
    let body = match tokio::time::timeout(body_timeout, limited.collect()).await {
        Err(_) => {
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                40,
                "the body did not arrive in time",
            );
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                40,
                &format!("the body is larger than {max_body} bytes"),
            );
        }
        Ok(Err(_)) => return answer(StatusCode::BAD_REQUEST, 40, "unreadable body"),
        Ok(Ok(b)) => b.to_bytes(),
    };
    tokio::task::spawn_blocking(move || receive(&store, &method, &path, &body))
        .await
        .unwrap_or_else(|_| answer(StatusCode::OK, 50, "receiver failed"))
}

/// Runs the push receiver until SIGTERM or SIGINT.
pub fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    fsutil::create_dir_all(&opts.store)
        .with_context(|| format!("cannot create {}", opts.store.display()))?;
    let tls = match &opts.tls {
        Some((cert, key, client_ca)) => Some(std::sync::Arc::new(crate::tls::server_config(
            cert,
            key,
            client_ca.as_deref(),
        )?)),
        None => None,
    };
    let accept = crate::http::Accept {
        tls,
        header_timeout: opts.header_timeout,
        max_connections: opts.max_connections,
    };
    let (store, max_body, body_timeout) = (opts.store.clone(), opts.max_body, opts.body_timeout);
    crate::rt::runtime()?.block_on(crate::http::serve(
        "alive receiver",
        opts.listen,
        accept,
        move |req| {
            let store = store.clone();
            async move { Ok::<_, Infallible>(handle(req, store, max_body, body_timeout).await) }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_stores_valid_and_rejects_malformed_input() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let env = besked::alive_envelope(id, Uuid::nil(), "29189846", "2026-11-24T01:00:00Z");
        let r = receive(
            dir.path(),
            &Method::POST,
            "/besked/modtag",
            &besked::modtag_besked_input(env.as_bytes()),
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            std::fs::read(dir.path().join(format!("{id}.xml"))).unwrap(),
            env.as_bytes()
        );
        // Errors are HTTP 200 with the code in StandardRetur.
        let code = |r: Resp| {
            let body = futures_lite::future::block_on(r.into_body().collect())
                .unwrap()
                .to_bytes();
            besked::parse_standard_retur(&body).unwrap()
        };
        let r = receive(dir.path(), &Method::POST, "/besked/modtag", b"<not-xml");
        assert_eq!(r.status(), StatusCode::OK);
        let (c, text) = code(r);
        assert_eq!(c, 40);
        assert!(text.contains("invalid ModtagBeskedInput"), "{text}");
        let not_a_dir = dir.path().join(format!("{id}.xml"));
        let r = receive(
            &not_a_dir,
            &Method::POST,
            "/besked/modtag",
            &besked::modtag_besked_input(env.as_bytes()),
        );
        assert_eq!(r.status(), StatusCode::OK);
        let (c, text) = code(r);
        assert_eq!(c, 50, "{text}");
        assert!(text.contains("cannot store"), "{text}");
        let r = receive(dir.path(), &Method::GET, "/other", b"");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        // Other spellings of the same id land in the same file.
        for spelling in [
            id.to_string().to_uppercase(),
            format!(" {} ", id.hyphenated()),
        ] {
            let other = besked::alive_envelope(id, Uuid::nil(), "29189846", "2026-11-24T01:00:00Z")
                .replace(&id.to_string(), &spelling);
            let r = receive(
                dir.path(),
                &Method::POST,
                "/besked/modtag",
                &besked::modtag_besked_input(other.as_bytes()),
            );
            assert_eq!(r.status(), StatusCode::OK, "{spelling}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

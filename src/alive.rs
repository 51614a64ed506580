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
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_lite::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use uuid::Uuid;

use crate::config::BeskedfordelerConfig;
use crate::{besked, fsutil, publish};

fn now_utc() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

/// Publishes one AliveBesked and waits for Beskedfordeler's answer.
pub async fn send(cfg: &BeskedfordelerConfig, aktoer: Uuid, token: &str) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    let body = besked::alive_envelope(id, aktoer, &now_utc());
    let (_connection, channel) = publish::connect(cfg).await?;
    let mut replies = channel
        .basic_consume(
            publish::REPLY_TO.into(),
            "alive".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let correlation = Uuid::new_v4().to_string();
    publish::send(
        &channel,
        cfg,
        token,
        body.as_bytes(),
        &id.to_string(),
        &correlation,
    )
    .await?;
    loop {
        let delivery = tokio::time::timeout(cfg.reply_timeout, replies.next())
            .await
            .context("no answer from Beskedfordeler to the AliveBesked")?
            .context("the reply consumer ended")??;
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
}

/// How `check` watches for the round trip.
#[derive(Debug, Clone)]
pub enum Via {
    /// Consume this dueslag queue.
    Pull(String),
    /// Watch this push receiver's store directory.
    Push(PathBuf),
}

/// Sends an AliveBesked and waits until it arrives; the round-trip time.
pub fn check(
    cfg: &BeskedfordelerConfig,
    aktoer: Uuid,
    token_authority: u32,
    via: &Via,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let token = crate::sts::Tokens::new(&cfg.tokens)?
            .get(token_authority)
            .await?;
        let started = Instant::now();
        let deadline = started + timeout;
        match via {
            Via::Pull(queue) => {
                // Consume first, so the message cannot slip past.
                let (_connection, channel) = publish::connect(cfg).await?;
                channel
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                channel.basic_qos(100, BasicQosOptions::default()).await?;
                let mut consumer = channel
                    .basic_consume(
                        queue.as_str().into(),
                        "alive-check".into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                let id = send(cfg, aktoer, &token).await?.to_string();
                let mut seen = HashSet::new();
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let Ok(Some(delivery)) = tokio::time::timeout(left, consumer.next()).await
                    else {
                        anyhow::bail!(
                            "no AliveBesked round trip via pull within {} s",
                            timeout.as_secs_f64()
                        );
                    };
                    let delivery = delivery?;
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
            }
            Via::Push(store) => {
                let id = send(cfg, aktoer, &token).await?;
                let file = store.join(format!("{id}.xml"));
                while Instant::now() < deadline {
                    if file.exists() {
                        return Ok(started.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                anyhow::bail!(
                    "no AliveBesked round trip via push within {} s",
                    timeout.as_secs_f64()
                )
            }
        }
    })
}

type Resp = Response<Full<Bytes>>;

fn answer(status: StatusCode, code: u32, text: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(besked::modtag_besked_output(
        code, text,
    ))));
    *r.status_mut() = status;
    r
}

/// Handles one push delivery: store it, then answer.
fn receive(store: &Path, method: &Method, path: &str, body: &[u8]) -> Resp {
    if method != Method::POST || path != "/besked/modtag" {
        return answer(StatusCode::NOT_FOUND, 44, "use POST /besked/modtag");
    }
    let info = match besked::inspect(body).and_then(|i| i.validate().map(|()| i)) {
        Ok(i) => i,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                40,
                &format!("invalid ModtagBeskedInput: {e}"),
            );
        }
    };
    let id = info.besked_id.expect("validated");
    let envelope = match besked::unwrap_modtag_besked_input(body) {
        Ok(e) => e,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                40,
                &format!("invalid ModtagBeskedInput: {e}"),
            );
        }
    };
    match fsutil::write_atomic(&store.join(format!("{id}.xml")), &envelope) {
        Ok(()) => answer(StatusCode::OK, besked::OK, ""),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            50,
            &format!("cannot store the message: {e}"),
        ),
    }
}

/// Runs the push receiver until SIGTERM or SIGINT.
pub fn serve(listen: SocketAddr, store: PathBuf) -> anyhow::Result<()> {
    fsutil::create_dir_all(&store).with_context(|| format!("cannot create {}", store.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        println!(
            "alive receiver listening on http://{}",
            listener.local_addr()?
        );
        std::io::stdout().flush()?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let (tcp, _) = tokio::select! {
                c = listener.accept() => c?,
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let (method, path) =
                                (req.method().clone(), req.uri().path().to_owned());
                            let body = match req.into_body().collect().await {
                                Ok(b) => b.to_bytes(),
                                Err(_) => {
                                    return Ok::<_, Infallible>(answer(
                                        StatusCode::BAD_REQUEST,
                                        40,
                                        "unreadable body",
                                    ));
                                }
                            };
                            let r = tokio::task::spawn_blocking(move || {
                                receive(&store, &method, &path, &body)
                            })
                            .await;
                            Ok(r.unwrap_or_else(|_| {
                                answer(StatusCode::INTERNAL_SERVER_ERROR, 50, "receiver failed")
                            }))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
        eprintln!("alive receiver stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_stores_valid_and_rejects_malformed_input() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let env = besked::alive_envelope(id, Uuid::nil(), "2026-11-24T01:00:00Z");
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
        let r = receive(dir.path(), &Method::POST, "/besked/modtag", b"<not-xml");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = receive(dir.path(), &Method::GET, "/other", b"");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}

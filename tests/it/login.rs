//! Beskedfordeler's login for real: the STS simulator (REST/JSON, mTLS,
//! `UseKey`), the emulator's AMQP front door (SASL EXTERNAL carrying the
//! token) and its per-message token checks, with the publisher and
//! AliveBesked through them, and the refusals a demanding operator meets.

use std::fs;
use std::path::Path;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::support::*;
use crate::{Server, assert_code, run};

const AFSEND: &str = "http://beskedfordeler.test/service/afsend/1";
const AFHENT: &str = "http://beskedfordeler.test/service/afhent/1";

/// The STS simulator and the emulator behind its front door, with the
/// flow's config pointing at them.
struct Kombit {
    sts: Server,
    _emulator: Server,
    /// `amqp://127.0.0.1:PORT`
    door: String,
    key: [u8; 32],
}

fn kombit(flow: &Flow, emulator_args: &[&str], sts_args: &[&str]) -> Kombit {
    let d = flow.path();
    assert_code(&run(d, &["simulate", "certs", "--out", "certs"]), 0);
    let mut args = vec![
        "simulate",
        "sts",
        "--cert",
        "certs/server.pem",
        "--key",
        "certs/server-key.pem",
        "--client-ca",
        "certs/ca.pem",
        "--signing-key",
        "sts.key",
        "--record",
        "sts.jsonl",
    ];
    args.extend_from_slice(sts_args);
    let sts = Server::start(d, &args);
    let key = nemsms_diff::store::secret::id_key(&d.join("sts.key"))
        .unwrap()
        .0;
    let mut args = vec![
        "--sts-signing-key",
        "sts.key",
        "--front-door",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(emulator_args);
    let emulator = flow.emulator(&args);
    let door = emulator.url();
    assert!(door.starts_with("amqp://127.0.0.1:"), "{door}");
    let config = fs::read_to_string(d.join("config.toml"))
        .unwrap()
        .replacen(
            &format!("url = \"{}\"", flow.url),
            &format!("url = \"{door}/BF?auth_mechanism=external\""),
            1,
        )
        .replace("token = \"test-token\"\n", "");
    fs::write(
        d.join("config.toml"),
        format!(
            "{config}\n[beskedfordeler.sts]\nurl = \"{}/runtime/api/rest/wstrust/v1/issue\"\nca_cert = \"certs/ca.pem\"\n\
             client_cert = \"certs/client.pem\"\nclient_key = \"certs/client-key.pem\"\n\
             afsend_entity_id = \"{AFSEND}\"\nafhent_entity_id = \"{AFHENT}\"\n",
            sts.url()
        ),
    )
    .unwrap();
    Kombit {
        sts,
        _emulator: emulator,
        door,
        key,
    }
}

fn issued(d: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(d.join("sts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A token as the STS simulator issues them, expiring `secs` from now.
fn token(key: &[u8; 32], cvr: &str, audience: &str, secs: i64) -> String {
    nemsms_diff::sim::sts::issue(
        key,
        cvr,
        audience,
        b"holder",
        jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs),
    )
}

/// SASL EXTERNAL with any response.
struct External(String);

impl lapin::auth::AuthProvider for External {
    fn mechanism(&self) -> ShortString {
        "EXTERNAL".into()
    }
    fn auth_starter(&self) -> Result<LongString, String> {
        Ok(self.0.as_str().into())
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Logs in at the door with `token` as the EXTERNAL response (or with
/// PLAIN guest/guest when `None`); the error text on refusal.
async fn login(door: &str, token: Option<&str>) -> Result<Connection, String> {
    let (url, props) = match token {
        Some(t) => (
            format!("{door}/BF?auth_mechanism=external"),
            ConnectionProperties::default().with_auth_provider(External(t.to_owned())),
        ),
        None => (
            door.replace("amqp://", "amqp://guest:guest@") + "/BF",
            ConnectionProperties::default(),
        ),
    };
    tokio::time::timeout(Duration::from_secs(10), Connection::connect(&url, props))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())
}

/// Publishes `body` with `header_token` on a connection and returns the
/// StandardRetur, or the reason the connection was closed.
async fn publish(
    connection: &Connection,
    exchange: &str,
    header_token: &str,
    body: &[u8],
    id: &str,
) -> Result<(u32, String), String> {
    let mut events = connection.events_listener();
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let mut replies = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "t".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut headers = FieldTable::default();
    headers.insert("token".into(), AMQPValue::LongString(header_token.into()));
    channel
        .basic_publish(
            exchange.into(),
            "".into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_message_id(id.into())
                .with_correlation_id("c1".into())
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_headers(headers),
        )
        .await
        .map_err(|e| e.to_string())?;
    let wait = async {
        let mut next_error = async || loop {
            if let Some(lapin::Event::Error(e)) = events.next().await {
                return e.to_string();
            }
        };
        tokio::select! {
            r = replies.next() => match r {
                Some(Ok(d)) => Ok(nemsms_diff::beskedfordeler::besked::parse_standard_retur(&d.data).unwrap()),
                // The consumer may notice the end first: the reason is the
                // connection's error.
                other => Err(tokio::time::timeout(Duration::from_secs(2), next_error())
                    .await
                    .unwrap_or_else(|_| format!("no reply: {other:?}"))),
            },
            e = next_error() => Err(e),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| "neither a reply nor a close".to_owned())?
}

/// One envelope of `authority`'s batch and its BeskedId.
fn envelope(flow: &Flow, authority: &str) -> (String, String) {
    let env = batch_envelopes(flow.path(), authority, "2026-01-02").remove(0);
    let id = besked_id(&env);
    (env, id)
}

#[test]
fn publishing_logs_in_with_each_authoritys_token_and_renews_after_41() {
    let flow = Flow::new(2, 20_000, 0.01, "");
    let k = kombit(&flow, &["--answer-41-every", "60"], &[]);
    let out = flow.publish();
    assert_code(&out, 0);
    assert_same(flow.delivered().into_iter().collect(), &flow.outbox_ids());
    // One afsend token per authority, from the STS, then new ones after 41s.
    let issued = issued(flow.path());
    for a in &flow.setup.authorities {
        let mine: Vec<_> = issued.iter().filter(|v| v["cvr"] == a.as_str()).collect();
        assert!(mine.len() >= 2, "renewed after 41: {issued:?}");
        assert!(mine.iter().all(|v| v["service"] == AFSEND), "{issued:?}");
    }
    // The tokens name their authority: the emulator checked every
    // message's ObjektAnsvarligMyndighed against its token's CVR.
    let _ = &k.sts;
}

#[test]
fn the_door_refuses_logins_without_a_valid_token() {
    let flow = Flow::new(1, 2_000, 0.01, "");
    let k = kombit(&flow, &[], &[]);
    let a = flow.setup.authorities[0].clone();
    rt().block_on(async {
        let no_token = login(&k.door, Some("")).await.unwrap_err();
        assert!(no_token.contains("no token"), "{no_token}");
        let plain = login(&k.door, None).await.unwrap_err();
        assert!(plain.contains("SASL EXTERNAL"), "{plain}");
        let expired = login(&k.door, Some(&token(&k.key, &a, AFSEND, -5)))
            .await
            .unwrap_err();
        assert!(expired.contains("expired"), "{expired}");
        let forged = token(&[9u8; 32], &a, AFSEND, 600);
        let forged = login(&k.door, Some(&forged)).await.unwrap_err();
        assert!(forged.contains("signature"), "{forged}");
        let other = token(&k.key, &a, "http://other.test/service", 600);
        let other = login(&k.door, Some(&other)).await.unwrap_err();
        assert!(other.contains("not Beskedfordeler"), "{other}");
        // A valid token gets in.
        let ok = login(&k.door, Some(&token(&k.key, &a, AFSEND, 600))).await;
        assert!(ok.is_ok(), "{:?}", ok.err());
    });
}

#[test]
fn messages_beyond_the_logins_token_are_refused() {
    let flow = Flow::new(2, 2_000, 0.05, "");
    let k = kombit(&flow, &[], &[]);
    let (a, b) = (
        flow.setup.authorities[0].clone(),
        flow.setup.authorities[1].clone(),
    );
    let (env_a, id_a) = envelope(&flow, &a);
    let (env_b, id_b) = envelope(&flow, &b);
    rt().block_on(async {
        let token_a = token(&k.key, &a, AFSEND, 600);
        let token_b = token(&k.key, &b, AFSEND, 600);
        // The right token everywhere: accepted.
        let c = login(&k.door, Some(&token_a)).await.unwrap();
        let ok = publish(&c, &flow.exchange, &token_a, env_a.as_bytes(), &id_a).await;
        assert_eq!(ok, Ok((20, String::new())));
        // Another authority's token in the header: the connection is closed.
        let c = login(&k.door, Some(&token_a)).await.unwrap();
        let e = publish(&c, &flow.exchange, &token_b, env_b.as_bytes(), &id_b)
            .await
            .unwrap_err();
        assert!(
            e.contains("not the token of this connection's login"),
            "{e}"
        );
        // The right token, but a message about another authority.
        let c = login(&k.door, Some(&token_a)).await.unwrap();
        let (code, text) = publish(&c, &flow.exchange, &token_a, env_b.as_bytes(), &id_b)
            .await
            .unwrap();
        assert_eq!(code, 40, "{text}");
        assert!(text.contains("ObjektAnsvarligMyndighed"), "{text}");
        // A token for pulling cannot send.
        let pull = token(&k.key, &a, AFHENT, 600);
        let c = login(&k.door, Some(&pull)).await.unwrap();
        let e = publish(&c, &flow.exchange, &pull, env_a.as_bytes(), &id_a)
            .await
            .unwrap_err();
        assert!(e.contains("cannot send"), "{e}");
    });
    // Only the accepted message reached the dueslag.
    assert_eq!(flow.delivered(), vec![id_a]);
}

#[test]
fn alive_check_pulls_with_an_afhent_token_through_the_door() {
    let flow = Flow::new(1, 1_000, 0.0, "");
    let alive_queue = unique("dueslag.alive");
    let sub = format!("{alive_queue}={ALIVE_TYPE}");
    let _k = kombit(&flow, &["--subscribe", &sub], &[]);
    let mut config = fs::read_to_string(flow.path().join("config.toml")).unwrap();
    config.push_str(&format!("\n[alive]\ndueslag_queue = \"{alive_queue}\"\n"));
    fs::write(flow.path().join("config.toml"), config).unwrap();
    let out = run(
        flow.path(),
        &[
            "alive",
            "check",
            "--config",
            "config.toml",
            "--via",
            "pull",
            "--timeout",
            "20",
        ],
    );
    assert_code(&out, 0);
    let issued = issued(flow.path());
    let services: Vec<_> = issued
        .iter()
        .map(|v| v["service"].as_str().unwrap())
        .collect();
    assert!(
        services.contains(&AFSEND) && services.contains(&AFHENT),
        "a token to send and one to pull: {issued:?}"
    );
}

#[test]
fn the_sts_checks_the_certificate_the_cvr_and_the_service() {
    let flow = Flow::new(1, 1_000, 0.0, "");
    let k = kombit(&flow, &[], &["--cvr", "29189846"]);
    let d = flow.path();
    let client = mtls_client(d);
    let der = nemsms_diff::tls::load_certs(&d.join("certs/client.pem")).unwrap();
    use base64::Engine as _;
    let use_key = base64::engine::general_purpose::STANDARD.encode(&der[0]);
    let url = format!("{}/runtime/api/rest/wstrust/v1/issue", k.sts.url());
    let ask = |cvr: &str, use_key: &str, service: &str| {
        let body =
            nemsms_diff::beskedfordeler::sts::request("AnvenderKontekst", cvr, use_key, service);
        let r = client.post(&url).body(body.to_string()).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, body) = ask("29189846", &use_key, AFSEND);
    assert_eq!(status, 200, "{body}");
    let (tok, _) = nemsms_diff::beskedfordeler::sts::parse_response(body.as_bytes()).unwrap();
    assert_eq!(
        nemsms_diff::sim::sts::verify(&k.key, &tok).unwrap().cvr,
        "29189846"
    );
    let other_cert = base64::engine::general_purpose::STANDARD.encode(b"another certificate");
    let (status, body) = ask("29189846", &other_cert, AFSEND);
    assert_eq!(status, 400);
    assert!(body.contains("UseKey is not the certificate"), "{body}");
    let (status, body) = ask("12345674", &use_key, AFSEND);
    assert_eq!(status, 401);
    assert!(body.contains("no agreement"), "{body}");
    let (status, body) = ask("29189846", &use_key, "http://unknown.test/service");
    assert_eq!(status, 400);
    assert!(body.contains("unknown service"), "{body}");
}

//! Publishing to Beskedfordeler and AliveBesked, against a real RabbitMQ
//! broker (`scripts/test.sh` starts one and sets `NEMSMS_DIFF_AMQP_URL`)
//! with the Beskedfordeler emulator.

use crate::support::*;
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::Setup;
use crate::{Server, assert_code, run, stdout};

#[test]
fn every_event_reaches_the_dueslag_exactly_once() {
    let flow = Flow::new(3, 20_000, 0.005, "");
    let _emulator = flow.emulator(&[]);
    let out = flow.publish();
    assert_code(&out, 0);
    let expected = flow.outbox_ids();
    assert!(expected.len() > 150, "{} events", expected.len());
    let delivered = flow.delivered();
    assert_eq!(
        delivered.len(),
        expected.len(),
        "no duplicates when nothing fails"
    );
    assert_same(delivered.into_iter().collect(), &expected);
    // Published batches are not sent again.
    let again = flow.publish();
    assert_code(&again, 0);
    assert!(stdout(&again).contains("0 batches"), "{}", stdout(&again));
    let list = stdout(&run(
        flow.path(),
        &["outbox", "list", "--config", "config.toml"],
    ));
    assert!(!list.lines().skip(1).any(|l| l.ends_with(" no")), "{list}");
}

#[test]
fn the_emulator_stops_cleanly_while_it_cannot_reach_the_broker() {
    // A broker that is away (nothing listens on the port): the emulator
    // keeps reconnecting, and lapin's I/O threads are mid-connect when
    // SIGTERM comes. It stops with its one line, exit 0, and no panic
    // from those threads (each stop lands at another point of the
    // reconnect loop).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    for wait_ms in [600, 900, 1200] {
        let err = dir.path().join(format!("emulator-{wait_ms}.err"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
            .args([
                "simulate",
                "beskedfordeler",
                "--exchange",
                "X",
                "--subscribe",
            ])
            .arg(format!("q={NEMSMS_TYPE}"))
            .env(
                "NEMSMS_DIFF_AMQP_URL",
                format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            )
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        let text = fs::read_to_string(&err).unwrap();
        assert!(text.contains("reconnecting"), "{text}");
        assert!(text.contains("beskedfordeler emulator stopped"), "{text}");
        assert!(
            !text.contains("panicked"),
            "stopped after {wait_ms} ms:\n{text}"
        );
        assert!(status.success(), "{status:?}\n{text}");
    }
}

#[test]
fn subscriptions_filter_on_a_value_list_of_objekt_ids() {
    let flow = Flow::new(1, 20_000, 0.01, "");
    // Subscribe to two of the CPR numbers the events are about.
    let a = &flow.setup.authorities[0];
    let wanted: Vec<String> = batch_envelopes(flow.path(), a, "2026-01-02")
        .iter()
        .filter_map(|env| {
            let at =
                env.find("<sd:URNIdentifikator>urn:oio:cpr-nr:")? + "<sd:URNIdentifikator>".len();
            Some(env[at..at + "urn:oio:cpr-nr:".len() + 10].to_owned())
        })
        .step_by(40)
        .take(2)
        .collect();
    assert_eq!(wanted.len(), 2);
    fs::write(flow.path().join("watch.txt"), wanted.join("\n")).unwrap();
    let filtered = unique("dueslag.filtered");
    let sub = format!("{filtered}={NEMSMS_TYPE}:watch.txt");
    let _emulator = flow.emulator(&["--subscribe", &sub]);
    assert_code(&flow.publish(), 0);
    let out = run(
        flow.path(),
        &[
            "simulate",
            "drain",
            "--queue",
            &filtered,
            "--idle-ms",
            "1000",
        ],
    );
    assert_eq!(
        stdout(&out).lines().count(),
        2,
        "only the watched numbers: {}",
        stdout(&out)
    );
    assert!(
        flow.delivered().len() > 2,
        "the unfiltered dueslag gets everything"
    );
}

#[test]
fn token_expiry_and_dropped_replies_lose_nothing() {
    let flow = Flow::new(
        2,
        30_000,
        0.01,
        "reply_timeout_ms = 400\noutage_deadline = \"60s\"",
    );
    let _emulator = flow.emulator(&["--answer-41-every", "97", "--drop-reply-every", "131"]);
    let out = flow.publish();
    assert_code(&out, 0);
    let expected = flow.outbox_ids();
    assert_same(flow.delivered().into_iter().collect(), &expected);
}

#[test]
fn error_codes_stop_the_batch_and_reach_the_report() {
    let flow = Flow::new(1, 30_000, 0.01, "");
    let _emulator = flow.emulator(&["--error-code", "57", "--error-every", "150"]);
    let out = flow.publish();
    assert_code(&out, 4);
    let table = stdout(&out);
    assert!(
        table.contains("rejected") && table.contains("StatusKode 57: injected error 57"),
        "{table}"
    );
    assert!(table.contains("publish incomplete"), "{table}");
    let report =
        fs::read_to_string(report_of(&flow.path().join("state"), "publish").unwrap()).unwrap();
    assert!(report.contains("StatusKode 57"), "{report}");
    let list = stdout(&run(
        flow.path(),
        &["outbox", "list", "--config", "config.toml"],
    ));
    assert!(
        list.contains(" of "),
        "the batch is partly published: {list}"
    );
}

#[test]
fn publisher_killed_mid_batch_resends_from_its_cursor() {
    let flow = Flow::new(2, 200_000, 0.02, "in_flight = 50");
    let _emulator = flow.emulator(&[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(["publish", "--config", "config.toml"])
        .current_dir(flow.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = flow.publish();
    assert_code(&out, 0);
    let expected = flow.outbox_ids();
    let delivered = flow.delivered();
    assert_same(delivered.iter().cloned().collect(), &expected);
    assert!(delivered.len() >= expected.len());
}

#[test]
fn broker_restart_mid_publish_loses_nothing() {
    // A private broker: stopping the shared one would disturb other tests.
    let dir = tempfile::tempdir().unwrap();
    let (_stop, exports) = private_broker(dir.path(), None);
    let rabbit = dir.path().join("rabbitmq");
    let url = export(&exports, "NEMSMS_DIFF_AMQP_URL");
    let flow = Flow::with_url(
        url,
        2,
        200_000,
        0.02,
        "reply_timeout_ms = 1000\nmax_backoff_ms = 1000\nin_flight = 50",
    );
    let _emulator = flow.emulator(&[]);
    let publisher = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(["publish", "--config", "config.toml"])
        .current_dir(flow.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ctl = |cmd: &str| {
        let s = Command::new("bash")
            .arg("-c")
            .arg(format!("source '{}/env' && /usr/lib/rabbitmq/bin/rabbitmqctl -q -n \"$RABBITMQ_NODENAME\" {cmd}", rabbit.display()))
            .status()
            .unwrap();
        assert!(s.success(), "rabbitmqctl {cmd}");
    };
    ctl("stop_app");
    std::thread::sleep(Duration::from_secs(2));
    ctl("start_app");
    let out = publisher.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let expected = flow.outbox_ids();
    assert_same(flow.delivered().into_iter().collect(), &expected);
}

#[test]
fn alive_round_trip_via_pull_and_push() {
    let flow = Flow::new(1, 1_000, 0.0, "");
    let store = flow.path().join("alive-inbox");
    let receiver = Server::start(
        flow.path(),
        &["alive", "serve", "--store", store.to_str().unwrap()],
    );
    let push_url = format!("{}/besked/modtag", receiver.url());
    let alive_queue = unique("dueslag.alive");
    let sub = format!("{alive_queue}={ALIVE_TYPE}");
    let _emulator = flow.emulator(&["--subscribe", &sub, "--push-to", &push_url]);
    let mut config = fs::read_to_string(flow.path().join("config.toml")).unwrap();
    config.push_str(&format!(
        "\n[alive]\ndueslag_queue = \"{alive_queue}\"\npush_store = \"alive-inbox\"\n"
    ));
    fs::write(flow.path().join("config.toml"), config).unwrap();
    for via in ["pull", "push"] {
        let out = run(
            flow.path(),
            &[
                "alive",
                "check",
                "--config",
                "config.toml",
                "--via",
                via,
                "--timeout",
                "10",
            ],
        );
        assert_code(&out, 0);
        assert!(
            stdout(&out).contains(&format!("AliveBesked round trip via {via}: ")),
            "{}",
            stdout(&out)
        );
    }
    // The pushed AliveBesked was stored and carries no business data.
    let stored: Vec<_> = fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!stored.is_empty());
    let xml = fs::read_to_string(&stored[0]).unwrap();
    assert!(
        xml.contains(ALIVE_TYPE) && !xml.contains("Beskeddata"),
        "{xml}"
    );
    // No NemSMS event went to the alive dueslag or vice versa.
    assert!(flow.delivered().is_empty());
}

#[test]
fn push_receiver_rejects_malformed_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Server::start(dir.path(), &["alive", "serve", "--store", "inbox"]);
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/besked/modtag", receiver.url());
    let resp = client
        .post(&url)
        .body("<sts:ModtagBeskedInput><broken")
        .send()
        .unwrap();
    // KOMBIT's form: HTTP 200, the error in StandardRetur.
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.text().unwrap();
    assert!(
        body.contains("<sd:StatusKode>40</sd:StatusKode>")
            && body.contains("invalid ModtagBeskedInput"),
        "{body}"
    );
    let resp = client.post(&url).body("<ModtagBeskedInput><Haendelsesbesked><Beskedkuvert/></Haendelsesbesked></ModtagBeskedInput>").send().unwrap();
    assert!(resp.text().unwrap().contains("BeskedId is missing"));
    assert_eq!(
        fs::read_dir(dir.path().join("inbox")).unwrap().count(),
        0,
        "nothing stored"
    );
}

#[test]
fn run_publishes_after_an_alive_check_when_configured() {
    let setup = Setup::new(2, 10_000, 2, 0.01);
    let (exchange, dueslag, alive_queue) = (
        unique("AFSEND"),
        unique("dueslag.nemsms"),
        unique("dueslag.alive"),
    );
    let mut config = fs::read_to_string(setup.path().join("config.toml")).unwrap();
    config.push_str(&format!(
        "\n[beskedfordeler]\nurl = \"{}\"\nexchange = \"{exchange}\"\ntoken = \"t\"\ninsecure_broker = true\npublish_after_run = true\n\
         alive_check_before_publish = true\n\n[alive]\ndueslag_queue = \"{alive_queue}\"\ntimeout_secs = 10\n",
        amqp_url()
    ));
    fs::write(setup.path().join("config.toml"), config).unwrap();
    let subs = [
        format!("{dueslag}={NEMSMS_TYPE}"),
        format!("{alive_queue}={ALIVE_TYPE}"),
    ];
    let _emulator = Server::start(
        setup.path(),
        &[
            "simulate",
            "beskedfordeler",
            "--exchange",
            &exchange,
            "--subscribe",
            &subs[0],
            "--subscribe",
            &subs[1],
        ],
    );
    assert_code(&setup.run(&["--date", "2026-01-01"]), 0);
    let out = setup.run(&["--date", "2026-01-02"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("events confirmed now"),
        "{}",
        stdout(&out)
    );
    assert!(
        crate::stderr(&out).contains("AliveBesked round trip"),
        "{}",
        crate::stderr(&out)
    );
    let drained = run(
        setup.path(),
        &[
            "simulate",
            "drain",
            "--queue",
            &dueslag,
            "--idle-ms",
            "1000",
        ],
    );
    let n = stdout(&drained).lines().count();
    let list = stdout(&run(
        setup.path(),
        &["outbox", "list", "--config", "config.toml", "--json"],
    ));
    let events: u64 = list
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n_events"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(n as u64, events);
    // --no-publish commits without publishing.
    let out = setup.run(&["--date", "2026-01-02", "--no-publish"]);
    assert!(!stdout(&out).contains("events confirmed now"));
}

#[test]
fn amqps_with_client_certificate_and_sasl_external() {
    let dir = tempfile::tempdir().unwrap();
    assert_code(
        &run(dir.path(), &["simulate", "certs", "--out", "certs"]),
        0,
    );
    let certs = dir.path().join("certs");
    let (_stop, exports) = private_broker(dir.path(), Some(&certs));
    let amqps = export(&exports, "NEMSMS_DIFF_AMQPS_URL");
    assert!(
        amqps.starts_with("amqps://") && amqps.contains("/BF?auth_mechanism=external"),
        "{amqps}"
    );
    // The emulator is Beskedfordeler's side: it uses the broker directly.
    let flow = Flow::with_url(
        export(&exports, "NEMSMS_DIFF_AMQP_BF_URL"),
        2,
        10_000,
        0.01,
        "",
    );
    let _emulator = flow.emulator(&[]);
    let with_ca_and_cert = |ca: &str, cert: &str, key: &str| {
        let text = fs::read_to_string(flow.path().join("config.toml")).unwrap();
        let head = text.split("\n[beskedfordeler]").next().unwrap().to_owned();
        let c = certs.display();
        fs::write(
            flow.path().join("config.toml"),
            format!(
                "{head}\n[beskedfordeler]\nurl = \"{amqps}\"\nexchange = \"{}\"\ntoken = \"t\"\nca_cert = \"{c}/{ca}\"\n\
                 client_cert = \"{c}/{cert}\"\nclient_key = \"{c}/{key}\"\noutage_deadline = \"2s\"\nmax_backoff_ms = 100\n",
                flow.exchange
            ),
        )
        .unwrap();
    };
    let with_cert = |cert: &str, key: &str| with_ca_and_cert("ca.pem", cert, key);
    // A certificate from another CA is refused: publish stops, clearly.
    with_cert("other-client.pem", "other-client-key.pem");
    let out = flow.publish();
    assert_code(&out, 4);
    assert!(
        stdout(&out).contains("cannot connect to Beskedfordeler"),
        "{}",
        stdout(&out)
    );
    // The broker's certificate is checked against ca_cert alone: with
    // another CA configured it is refused, even when the system's trust
    // store (SSL_CERT_FILE) holds the broker's CA.
    with_ca_and_cert("other-ca.pem", "client.pem", "client-key.pem");
    for system_roots in [None, Some(certs.join("ca.pem"))] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"));
        cmd.args(["publish", "--config", "config.toml"])
            .current_dir(flow.path());
        if let Some(roots) = &system_roots {
            cmd.env("SSL_CERT_FILE", roots);
        }
        let out = cmd.output().unwrap();
        assert_code(&out, 4);
        let text = format!("{}{}", stdout(&out), crate::stderr(&out));
        assert!(
            text.contains("cannot connect to Beskedfordeler") && text.contains("UnknownIssuer"),
            "{system_roots:?}: {text}"
        );
    }
    // The authority's certificate gets in; every event arrives.
    with_cert("client.pem", "client-key.pem");
    let out = flow.publish();
    assert_code(&out, 0);
    assert_same(flow.delivered().into_iter().collect(), &flow.outbox_ids());
}

#[test]
fn republish_sends_one_batch_again_with_the_same_ids() {
    let flow = Flow::new(2, 10_000, 0.01, "");
    let _emulator = flow.emulator(&[]);
    assert_code(&flow.publish(), 0);
    let first = flow.delivered();
    let a = flow.setup.authorities[0].clone();
    let ids: Vec<String> = batch_envelopes(flow.path(), &a, "2026-01-02")
        .iter()
        .map(|env| besked_id(env))
        .collect();
    assert!(ids.len() > 10);
    assert!(ids.iter().all(|i| first.contains(i)));
    let republish_of = |authority: &str, date: &str, from: &str| {
        run(
            flow.path(),
            &[
                "republish",
                "--config",
                "config.toml",
                "--authority",
                authority,
                "--date",
                date,
                "--from-event",
                from,
            ],
        )
    };
    let republish = |from: &str| republish_of(&a, "2026-01-02", from);
    // Out of range, or a batch that does not exist: usage errors.
    assert_code(&republish("0"), 2);
    assert_code(&republish(&(ids.len() + 1).to_string()), 2);
    let out = republish_of(&a, "2026-01-05", "1");
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("no batch for authority"),
        "{}",
        stderr(&out)
    );
    // An authority the config does not have.
    let out = republish_of("29189846", "2026-01-02", "1");
    assert_code(&out, 2);
    assert!(stderr(&out).contains("is not in"), "{}", stderr(&out));
    let out = republish("5");
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains(&format!("cursor {} -> 4", ids.len())),
        "{}",
        stdout(&out)
    );
    let record = report_of(&flow.path().join("state"), "republish").expect("the reset is recorded");
    let r: serde_json::Value = serde_json::from_slice(&fs::read(record).unwrap()).unwrap();
    assert_eq!(
        (r["schema"].as_u64(), r["kind"].as_str()),
        (Some(1), Some("republish"))
    );
    assert_eq!(r["cursor_after"], 4);
    assert!(r["run_id"].is_string() && r["version"].is_string());
    assert_code(&flow.publish(), 0);
    let again = flow.delivered();
    assert_eq!(
        again,
        ids[4..].to_vec(),
        "events 5.. again, in order, same BeskedIds"
    );
}

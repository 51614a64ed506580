//! Network faults: the broker stopped while publishing (ridden out, or past
//! the outage deadline), the Register's connections cut mid-download by
//! the fault proxy, and AliveBesked checks that end within their timeout.
//!
//! `NEMSMS_DIFF_FAULT_ROUNDS` (default 1) repeats each scenario, and
//! `NEMSMS_DIFF_FAULT_KEYS` sizes the national data set (default 6,000,000
//! keys over 98 authorities). Each round prints a `fault-stats:` line (cuts,
//! duplicates, times); `scripts/faults.sh` runs five rounds and collects them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Setup;
use crate::{ALIVE_TYPE, Flow, StopBroker, assert_same, export, private_broker, unique};
use crate::{Server, assert_code, run, stderr, stdout};
use crate::{batch_rows, simulator};

fn rounds() -> usize {
    std::env::var("NEMSMS_DIFF_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn national_keys() -> u64 {
    std::env::var("NEMSMS_DIFF_FAULT_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6_000_000)
}

fn report(line: String) {
    eprintln!("fault-stats: {line}");
}

/// A private RabbitMQ node that a test may stop and start.
struct Broker {
    _stop: StopBroker,
    _dir: tempfile::TempDir,
    rabbit: PathBuf,
    url: String,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let (stop, exports) = private_broker(dir.path(), None);
        Broker {
            _stop: stop,
            rabbit: dir.path().join("rabbitmq"),
            url: export(&exports, "NEMSMS_DIFF_AMQP_URL"),
            _dir: dir,
        }
    }

    fn ctl(&self, cmd: &str) {
        let s = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}/env' && /usr/lib/rabbitmq/bin/rabbitmqctl -q -n \"$RABBITMQ_NODENAME\" {cmd}",
                self.rabbit.display()
            ))
            .status()
            .unwrap();
        assert!(s.success(), "rabbitmqctl {cmd}");
    }
}

fn spawn_publish(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(["publish", "--config", "config.toml"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the publisher has confirmed events (a cursor was written).
fn wait_for_progress(flow: &Flow, publisher: &mut Child) {
    let batches = flow.path().join("state/outbox/2026-01-02");
    let started = Instant::now();
    loop {
        let progressed = fs::read_dir(&batches)
            .unwrap()
            .any(|e| e.unwrap().path().extension().is_some_and(|x| x == "cursor"));
        if progressed {
            return;
        }
        assert!(
            publisher.try_wait().unwrap().is_none(),
            "the publisher ended before it was under way"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// At least once: every BeskedId of the outbox arrived; the duplicates.
fn delivered_at_least_once(flow: &Flow) -> (usize, usize) {
    let expected = flow.outbox_ids();
    let delivered = flow.delivered();
    let n = delivered.len();
    assert_same(delivered.into_iter().collect::<BTreeSet<_>>(), &expected);
    (expected.len(), n - expected.len())
}

#[test]
fn broker_outages_are_ridden_out_or_end_at_the_deadline() {
    let broker = Broker::start();
    for round in 1..=rounds() {
        // The broker app stopped for 3 s and for 20 s while >= 50,000
        // events are being published: one invocation rides it out.
        for stop in [3, 20] {
            let flow = Flow::with_url(
                broker.url.clone(),
                5,
                1_500_000,
                0.02,
                "max_backoff_ms = 2000",
            );
            let _emulator = flow.emulator(&[]);
            let started = Instant::now();
            let mut publisher = spawn_publish(flow.path());
            wait_for_progress(&flow, &mut publisher);
            assert!(
                publisher.try_wait().unwrap().is_none(),
                "still publishing when the broker stops"
            );
            broker.ctl("stop_app");
            std::thread::sleep(Duration::from_secs(stop));
            broker.ctl("start_app");
            let out = publisher.wait_with_output().unwrap();
            let took = started.elapsed();
            assert_code(&out, 0);
            let (events, duplicates) = delivered_at_least_once(&flow);
            assert!(events >= 50_000, "{events} events");
            report(format!(
                "round={round} fault=broker-stop-{stop}s events={events} duplicates={duplicates} \
                 publish_s={:.1} retries={}",
                took.as_secs_f64(),
                stderr(&out).matches("retrying").count()
            ));
        }

        // An outage longer than the deadline: exit 4 at the deadline, and a
        // rerun completes with nothing lost.
        let flow = Flow::with_url(
            broker.url.clone(),
            2,
            1_000_000,
            0.02,
            "outage_deadline = \"4s\"\nmax_backoff_ms = 500\nreply_timeout_ms = 30000\nin_flight = 100",
        );
        // Answers held back 1 ms each: the 40,000 events take 40 s or
        // more, so the broker surely stops mid-publish however long
        // rabbitmqctl takes (on a busy CI machine the whole publish at
        // full speed can be over before stop_app takes effect). Few in
        // flight and a long reply timeout: no resend piles up behind the
        // slow answers, so progress goes on until the stop.
        let slow = flow.emulator(&["--delay-reply-ms", "1"]);
        let mut publisher = spawn_publish(flow.path());
        wait_for_progress(&flow, &mut publisher);
        assert!(
            publisher.try_wait().unwrap().is_none(),
            "still publishing when the broker stops"
        );
        // From the stop request: rabbitmqctl can take seconds to return,
        // and the deadline may pass meanwhile.
        let stopped = Instant::now();
        broker.ctl("stop_app");
        let out = publisher.wait_with_output().unwrap();
        let waited = stopped.elapsed();
        broker.ctl("start_app");
        assert_code(&out, 4);
        assert!(
            stdout(&out).contains("outage_deadline 4 s passed"),
            "{}",
            stdout(&out)
        );
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(8),
            "exit 4 at the deadline, not {waited:?} after the stop"
        );
        assert!(
            stderr(&out).contains("deadline_left_s"),
            "each retry is logged with the time left"
        );
        // The rerun at full speed.
        drop(slow);
        let _emulator = flow.emulator(&[]);
        let rerun = flow.publish();
        assert_code(&rerun, 0);
        let (events, duplicates) = delivered_at_least_once(&flow);
        report(format!(
            "round={round} fault=outage-past-deadline events={events} duplicates={duplicates} \
             exit4_after_s={:.1}",
            waited.as_secs_f64()
        ));
    }
}

/// The Register behind the fault proxy, cutting each connection after a
/// random number of bytes.
struct CutRegister {
    setup: Setup,
    _register: Server,
    proxy: Option<Server>,
    cuts_log: PathBuf,
}

/// Bytes of one delliste of `DELLISTE` entries (about 46 bytes an entry).
const DELLISTE: usize = 50_000;

impl CutRegister {
    fn start(setup: Setup, mode: &str, seed: usize) -> CutRegister {
        let d = setup.path().to_owned();
        assert_code(&run(&d, &["simulate", "certs", "--out", "certs"]), 0);
        let register = simulator(&d, &["--delliste-size", &DELLISTE.to_string()]);
        let upstream = register.url().trim_start_matches("https://").to_owned();
        let delliste_bytes = DELLISTE * 46;
        let cut = format!("{}-{}", 3 * delliste_bytes, 8 * delliste_bytes);
        let cuts_log = d.join(format!("cuts-{mode}.jsonl"));
        let proxy = Server::start(
            &d,
            &[
                "simulate",
                "proxy",
                "--upstream",
                &upstream,
                "--cut-after",
                &cut,
                "--seed",
                &seed.to_string(),
                "--log",
                cuts_log.to_str().unwrap(),
            ],
        );
        let port = proxy.url().rsplit(':').next().unwrap().to_owned();
        let head = format!(
            "state_dir = \"state-{mode}\"\nsource = \"oiorest\"\n[register]\nbase_url = \"https://127.0.0.1:{port}\"\n\
             ca_cert = \"certs/ca.pem\"\nclient_cert = \"certs/client.pem\"\nclient_key = \"certs/client-key.pem\"\n\
             max_backoff_secs = 1\nretries = 20\n"
        );
        setup.write_config_with(&head, &format!("list_mode = \"{mode}\""));
        CutRegister {
            setup,
            _register: register,
            proxy: Some(proxy),
            cuts_log,
        }
    }

    /// Stops the proxy; the connections it cut.
    fn cuts(&mut self) -> usize {
        drop(self.proxy.take());
        fs::read_to_string(&self.cuts_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"cut\":true"))
            .count()
    }
}

#[test]
fn national_run_with_register_connections_cut_loses_nothing() {
    let keys = national_keys();
    for round in 1..=rounds() {
        for mode in ["full", "delta"] {
            let setup = Setup::new(98, keys, 2, 0.001);
            // The reference: the changes between the two days' lists.
            let out = run(
                setup.path(),
                &[
                    "diff",
                    "lists/2026-01-01",
                    "lists/2026-01-02",
                    "--out",
                    "changes",
                ],
            );
            assert_code(&out, 0);
            let mut r = CutRegister::start(setup, mode, round);
            let started = Instant::now();
            let mut retries = 0;
            for date in ["2026-01-01", "2026-01-02"] {
                let out = r.setup.run(&["--date", date]);
                assert_code(&out, 0);
                retries += stderr(&out).matches("retrying").count();
            }
            let took = started.elapsed();
            let cuts = r.cuts();
            assert!(cuts > 0, "the proxy cut no connection");
            let mut events = 0;
            for a in &r.setup.authorities {
                let rows = batch_rows(r.setup.path(), a, "2026-01-02");
                let expected: Vec<String> =
                    fs::read_to_string(r.setup.path().join("changes").join(format!("{a}.csv")))
                        .unwrap()
                        .lines()
                        .skip(1)
                        .map(str::to_owned)
                        .collect();
                assert_eq!(rows, expected, "{mode}: authority {a}");
                events += rows.len();
            }
            assert!(events > 0);
            report(format!(
                "round={round} fault=register-cuts mode={mode} keys={keys} cuts={cuts} \
                 retries={retries} events={events} two_runs_s={:.1}",
                took.as_secs_f64()
            ));
        }
    }
}

#[test]
fn alive_check_ends_within_its_timeout_whatever_does_not_answer() {
    let url = std::env::var("NEMSMS_DIFF_AMQP_URL").expect("scripts/test.sh sets it");
    let flow = Flow::with_url(url.clone(), 1, 1_000, 0.0, "");
    let alive_queue = unique("dueslag.alive");
    let store = flow.path().join("alive-inbox");
    fs::create_dir_all(&store).unwrap();
    let mut config = fs::read_to_string(flow.path().join("config.toml")).unwrap();
    config.push_str(&format!(
        "\n[alive]\ndueslag_queue = \"{alive_queue}\"\npush_store = \"alive-inbox\"\n"
    ));
    fs::write(flow.path().join("config.toml"), &config).unwrap();
    // The emulator declares the exchange and queues, then stops: messages
    // reach the broker but nobody answers them.
    let sub = format!("{alive_queue}={ALIVE_TYPE}");
    drop(flow.emulator(&["--subscribe", &sub]));
    let check = |via: &str, timeout: &str| {
        let started = Instant::now();
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
                timeout,
            ],
        );
        (out, started.elapsed())
    };
    for via in ["pull", "push"] {
        let (out, took) = check(via, "3");
        assert_code(&out, 1);
        assert!(
            took < Duration::from_secs(4),
            "{via}: took {took:?} with --timeout 3"
        );
        assert!(
            stderr(&out).contains("ran out of time while waiting for Beskedfordeler's StatusKode"),
            "{via}: {}",
            stderr(&out)
        );
        report(format!(
            "fault=alive-emulator-stopped via={via} timeout_s=3 took_s={:.2}",
            took.as_secs_f64()
        ));
    }
    // A broker that accepts the connection but answers nothing (5 s of
    // latency through the fault proxy): the connection step runs out.
    let broker = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let slow = Server::start(
        flow.path(),
        &[
            "simulate",
            "proxy",
            "--upstream",
            &broker,
            "--latency-ms",
            "5000",
        ],
    );
    let port = slow.url().rsplit(':').next().unwrap().to_owned();
    let slow_url = url.replace(&broker, &format!("127.0.0.1:{port}"));
    fs::write(
        flow.path().join("config.toml"),
        config.replace(
            &format!("url = \"{url}\""),
            &format!("url = \"{slow_url}\""),
        ),
    )
    .unwrap();
    for via in ["pull", "push"] {
        let (out, took) = check(via, "2");
        assert_code(&out, 1);
        assert!(
            took < Duration::from_secs(3),
            "{via}: took {took:?} with --timeout 2"
        );
        assert!(
            stderr(&out).contains("ran out of time while connecting to Beskedfordeler"),
            "{via}: {}",
            stderr(&out)
        );
        report(format!(
            "fault=alive-broker-silent via={via} timeout_s=2 took_s={:.2}",
            took.as_secs_f64()
        ));
    }
}

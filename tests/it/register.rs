//! The OIOREST register client against the register simulator over
//! loopback TLS with client certificates.

use crate::support::*;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::{Server, assert_code, run, stderr, stdout};
use crate::{Setup, state_files};

/// A generated data set, certificates, a simulator and an OIOREST config.
struct Register {
    setup: Setup,
    server: Server,
}

impl Register {
    fn start(authorities: usize, keys: u64, days: u32, mode: &str, faults: &[&str]) -> Register {
        let setup = Setup::new(authorities, keys, days, 0.01);
        let d = setup.path();
        assert_code(&run(d, &["simulate", "certs", "--out", "certs"]), 0);
        let mut args = vec!["--record", "record.jsonl", "--delliste-size", "2000"];
        args.extend_from_slice(faults);
        let server = simulator(d, &args);
        let r = Register { setup, server };
        r.write_config(mode, "certs/client.pem", "certs/client-key.pem");
        r
    }

    fn write_config(&self, mode: &str, cert: &str, key: &str) {
        let head = format!(
            "state_dir = \"state\"\nsource = \"oiorest\"\n[register]\nbase_url = \"{}\"\nca_cert = \"certs/ca.pem\"\n\
             client_cert = \"{cert}\"\nclient_key = \"{key}\"\nretries = 8\nmax_backoff_secs = 1\n",
            self.server.url()
        );
        self.setup
            .write_config_with(&head, &format!("list_mode = \"{mode}\""));
    }

    fn path(&self) -> &Path {
        self.setup.path()
    }

    fn recorded(&self) -> String {
        fs::read_to_string(self.path().join("record.jsonl")).unwrap_or_default()
    }
}

fn file_diff(dir: &Path, authority: &str, from: &str, to: &str) -> Vec<String> {
    let a = format!("lists/{from}/{authority}.csv");
    let b = format!("lists/{to}/{authority}.csv");
    let out = run(dir, &["diff", &a, &b]);
    assert_code(&out, 0);
    stdout(&out).lines().skip(1).map(str::to_owned).collect()
}

#[test]
fn full_and_change_lists_end_to_end() {
    for mode in ["full", "delta"] {
        let r = Register::start(2, 20_000, 3, mode, &[]);
        for date in ["2026-01-01", "2026-01-02", "2026-01-03"] {
            let out = r.setup.run(&["--date", date]);
            assert_code(&out, 0);
        }
        for a in &r.setup.authorities {
            for (from, to) in [("2026-01-01", "2026-01-02"), ("2026-01-02", "2026-01-03")] {
                let rows = batch_rows(r.path(), a, to);
                assert_eq!(rows, file_diff(r.path(), a, from, to), "{mode} {a} {to}");
                assert!(rows.len() > 100);
            }
        }
        let deletes = r.recorded().matches("\"DELETE\"").count();
        assert_eq!(
            deletes,
            if mode == "delta" { 6 } else { 0 },
            "{mode}: change lists deleted after commit"
        );
    }
}

#[test]
fn wrong_or_missing_client_certificate_is_refused_clearly() {
    let r = Register::start(1, 2_000, 1, "full", &[]);
    r.write_config(
        "full",
        "certs/other-client.pem",
        "certs/other-client-key.pem",
    );
    let out = r.setup.run(&["--date", "2026-01-01"]);
    assert_code(&out, 6); // every authority failed
    let table = stdout(&out);
    assert!(
        table.contains("failed") && table.contains("TLS handshake"),
        "{table}"
    );
    assert!(
        !r.path().join("state/current").exists(),
        "nothing committed"
    );

    // A wrong path is a configuration error before anything runs (exit 2).
    r.write_config("full", "certs/missing.pem", "certs/missing-key.pem");
    let out = r.setup.run(&["--date", "2026-01-01"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("register.client_cert certs/missing.pem")
            && err.contains("register.client_key certs/missing-key.pem")
            && err.contains("nothing was run"),
        "{err}"
    );
}

#[test]
fn config_check_finds_what_a_run_would_trip_over() {
    let r = Register::start(1, 2_000, 1, "full", &[]);
    let d = r.path();
    let check = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["config", "check", "--config", "config.toml"];
        all.extend_from_slice(args);
        crate::run_env(d, &all, env)
    };
    // The reference call asks for today's list: the simulator has 2026-01-01's.
    let day1 = [("NEMSMS_DIFF_NOW", "2026-01-01T03:00:00Z")];
    let out = check(&["--connect"], &day1);
    assert_code(&out, 0);
    let text = stdout(&out);
    for want in [
        "key and certificate belong together",
        "register.ca_cert certs/ca.pem: certificate",
        "TLS handshake and reference call",
        "state_dir state: does not exist yet",
        "0 errors, 0 warnings",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // A key others may read: a warning, still usable.
    let key = d.join("certs/client-key.pem");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&[], &[]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("mode 644: readable by others"),
        "{}",
        stdout(&out)
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    // Certificates past their end (the lab's run to 4096; the test clock).
    let out = check(&["--json"], &[("NEMSMS_DIFF_NOW", "4097-01-01T00:00:00Z")]);
    assert_code(&out, 2);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["errors"].as_u64().unwrap() >= 2, "{v}");
    assert!(stdout(&out).contains("expired on"), "{v}");
    // A key that is not the certificate's.
    r.write_config("full", "certs/client.pem", "certs/other-client-key.pem");
    let out = check(&[], &[]);
    assert_code(&out, 2);
    assert!(
        stdout(&out).contains("ERROR   register.client_cert/client_key"),
        "{}",
        stdout(&out)
    );
    // --connect to a Register that is not there.
    r.write_config("full", "certs/client.pem", "certs/client-key.pem");
    let cfg = fs::read_to_string(d.join("config.toml")).unwrap();
    let dead = cfg.replace(&r.server.url(), "https://127.0.0.1:9");
    fs::write(d.join("config.toml"), dead).unwrap();
    let out = check(&["--connect"], &day1);
    assert_code(&out, 2);
    assert!(
        stdout(&out).contains("ERROR   register"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("reference call"), "{}", stdout(&out));
}

#[test]
fn injected_faults_have_their_documented_outcomes() {
    // A share of 500s: retried, and the result is the same as without faults.
    let r = Register::start(
        2,
        10_000,
        2,
        "full",
        &["--fail-share", "0.3", "--seed", "7"],
    );
    assert_code(&r.setup.run(&["--date", "2026-01-01"]), 0);
    let out = r.setup.run(&["--date", "2026-01-02"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("retrying"), "the 500s were retried");
    let a = &r.setup.authorities[0];
    assert_eq!(
        batch_rows(r.path(), a, "2026-01-02"),
        file_diff(r.path(), a, "2026-01-01", "2026-01-02")
    );

    // Truncated bodies, a wrong count, Fejl 3000: that authority fails with
    // its reason, nothing is emitted for it, the others complete.
    let faulty = Setup::new(4, 10_000, 1, 0.0);
    let names = faulty.authorities.clone();
    drop(faulty);
    for (flag, reason) in [
        ("--truncate", "cannot reach the register"),
        ("--wrong-count", "declares"),
        ("--deny", "Fejl 3000"),
    ] {
        let r = Register::start(4, 10_000, 1, "full", &[flag, &names[1]]);
        assert_eq!(r.setup.authorities, names, "same seed, same authorities");
        let out = r.setup.run(&["--date", "2026-01-01"]);
        assert_code(&out, 3);
        let table = stdout(&out);
        let line = table.lines().find(|l| l.starts_with(&names[1])).unwrap();
        assert!(
            line.contains("failed") && line.contains(reason),
            "{flag}: {line}"
        );
        assert_eq!(table.matches("baseline").count(), 3, "{flag}: {table}");
        assert!(
            !r.path()
                .join(format!("state/current/{}", names[1]))
                .exists()
        );
        assert!(
            !r.path()
                .join(format!("state/outbox/2026-01-01/{}.batch", names[1]))
                .exists()
        );
    }
}

#[test]
fn crash_between_commit_and_delete_emits_nothing_twice() {
    let r = Register::start(1, 10_000, 3, "delta", &[]);
    let a = r.setup.authorities[0].clone();
    assert_code(&r.setup.run(&["--date", "2026-01-01"]), 0);
    let crashed = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(["run", "--config", "config.toml", "--date", "2026-01-02"])
        .current_dir(r.path())
        .env("NEMSMS_DIFF_CRASH_AT", "after-pointer")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    assert_eq!(
        r.recorded().matches("\"DELETE\"").count(),
        1,
        "day 2's change list is not deleted yet"
    );
    let before = state_files(&r.path().join("state"));

    // The rerun deletes the committed change list and emits nothing.
    let out = r.setup.run(&["--date", "2026-01-02"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("skipped"), "{}", stdout(&out));
    assert_eq!(r.recorded().matches("\"DELETE\"").count(), 2);
    let after = state_files(&r.path().join("state"));
    let batches = |m: &std::collections::BTreeMap<String, Vec<u8>>| {
        m.iter()
            .filter(|(k, _)| k.ends_with(".batch"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(batches(&before), batches(&after), "no batch written again");

    // The next day sees only its own changes.
    assert_code(&r.setup.run(&["--date", "2026-01-03"]), 0);
    assert_eq!(
        batch_rows(r.path(), &a, "2026-01-03"),
        file_diff(r.path(), &a, "2026-01-02", "2026-01-03")
    );
}

#[test]
fn service_window_is_respected() {
    let r = Register::start(1, 1_000, 1, "full", &[]);
    // Sunday 29 November 2026, 01:00 in Denmark.
    let out = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(["run", "--config", "config.toml", "--date", "2026-01-01"])
        .current_dir(r.path())
        .env("NEMSMS_DIFF_NOW", "2026-11-29T00:00:00Z")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("service window") && table.contains("--wait-for-service-window"),
        "{table}"
    );
    assert!(!r.path().join("state/current").exists());
    // The time zone data is bundled: a host without zoneinfo sees the same
    // Danish window.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(["run", "--config", "config.toml", "--date", "2026-01-01"])
        .current_dir(r.path())
        .env("NEMSMS_DIFF_NOW", "2026-11-29T00:00:00Z")
        .env("TZDIR", empty.path())
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stdout).contains("service window"));
    // Outside the window the same run goes through.
    let out = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(["run", "--config", "config.toml", "--date", "2026-01-01"])
        .current_dir(r.path())
        .env("NEMSMS_DIFF_NOW", "2026-11-29T03:00:00Z")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn user_calls_reach_the_register() {
    let r = Register::start(1, 1_000, 1, "full", &[]);
    let a = r.setup.authorities[0].clone();
    fs::write(
        r.path().join("stamdata.xml"),
        "<SlutbrugerStamdata xmlns=\"urn:oio:dkal:1.0.0\"><Mobilnummer>12345678</Mobilnummer></SlutbrugerStamdata>",
    )
    .unwrap();
    let update = [
        "user",
        "update",
        "--config",
        "config.toml",
        "--authority",
        &a,
        "--cpr",
        "0101901234",
        "--stamdata",
        "stamdata.xml",
    ];
    let out = run(r.path(), &update);
    assert_code(&out, 0);
    assert!(
        !stderr(&out).contains("0101901234"),
        "no CPR in output: {}",
        stderr(&out)
    );
    let out = run(
        r.path(),
        &[
            "user",
            "signup",
            "--config",
            "config.toml",
            "--authority",
            &a,
            "--cvr",
            "13585628",
        ],
    );
    assert_code(&out, 0);
    let rec = r.recorded();
    assert!(
        rec.contains(&format!("/register/{a}/boks/0101901234\"")),
        "{rec}"
    );
    assert!(rec.contains("Mobilnummer"));
    assert!(
        rec.contains(&format!("/register/{a}/boks/13585628/myndighedstilmelding")),
        "{rec}"
    );
    assert!(
        rec.contains(
            "<Myndighedstilmelding xmlns=\\\"urn:oio:dkal:1.0.0\\\">true</Myndighedstilmelding>"
        ),
        "{rec}"
    );

    let out = run(
        r.path(),
        &[
            "user",
            "signup",
            "--config",
            "config.toml",
            "--authority",
            &a,
            "--cpr",
            "3002001234",
        ],
    );
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("impossible date") && !stderr(&out).contains("300200"),
        "{}",
        stderr(&out)
    );
    fs::write(r.path().join("bad.xml"), "<a><b></a>").unwrap();
    let out = run(
        r.path(),
        &[
            "user",
            "update",
            "--config",
            "config.toml",
            "--authority",
            &a,
            "--cpr",
            "0101901234",
            "--stamdata",
            "bad.xml",
        ],
    );
    assert_code(&out, 2);
}

#[test]
fn csv_lists_over_https() {
    let r = Register::start(2, 10_000, 2, "full", &[]);
    let head = format!(
        "state_dir = \"state\"\nsource = \"{}/files/{{date}}/{{authority}}.csv\"\n[register]\nbase_url = \"{}\"\n\
         ca_cert = \"certs/ca.pem\"\nclient_cert = \"certs/client.pem\"\nclient_key = \"certs/client-key.pem\"\n",
        r.server.url(),
        r.server.url()
    );
    r.setup.write_config_with(&head, "");
    assert_code(&r.setup.run(&["--date", "2026-01-01"]), 0);
    assert_code(&r.setup.run(&["--date", "2026-01-02"]), 0);
    for a in &r.setup.authorities {
        assert_eq!(
            batch_rows(r.path(), a, "2026-01-02"),
            file_diff(r.path(), a, "2026-01-01", "2026-01-02")
        );
    }
    // A missing file is that authority's failure, named.
    let out = r.setup.run(&["--date", "2026-01-03"]);
    assert_code(&out, 6); // both authorities failed
    assert!(
        stdout(&out).contains("/files/2026-01-03/") && stdout(&out).contains("HTTP 404"),
        "{}",
        stdout(&out)
    );
}

/// Change lists survive every crash point, with several authorities in
/// flight when the abort comes, and a quarantine: the rerun (or the
/// release) emits exactly the lists' changes, and each change list is
/// deleted at the Register only after its commit.
#[test]
fn change_lists_survive_crashes_and_quarantine() {
    for point in [
        "after-snapshot",
        "mid-outbox-write",
        "after-outbox-before-pointer",
        "after-pointer",
    ] {
        let r = Register::start(4, 80_000, 2, "delta", &[]);
        assert_code(&r.setup.run(&["--date", "2026-01-01"]), 0);
        let deletes = r.recorded().matches("\"DELETE\"").count();
        let crashed = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
            .args(["run", "--config", "config.toml", "--date", "2026-01-02"])
            .current_dir(r.path())
            .env("NEMSMS_DIFF_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(!crashed.status.success(), "{point}: the crash point fired");
        let deleted_before_commit = r.recorded().matches("\"DELETE\"").count() - deletes;
        let committed = fs::read_dir(r.path().join("state/current"))
            .unwrap()
            .filter(|e| {
                fs::read_to_string(e.as_ref().unwrap().path())
                    .unwrap()
                    .starts_with("2026-01-02")
            })
            .count();
        assert!(
            deleted_before_commit <= committed,
            "{point}: {deleted_before_commit} change lists deleted, {committed} committed"
        );
        let out = r.setup.run(&["--date", "2026-01-02"]);
        assert_code(&out, 0);
        for a in &r.setup.authorities {
            let rows = batch_rows(r.path(), a, "2026-01-02");
            assert!(!rows.is_empty(), "{point}: {a} has events");
            assert_eq!(
                rows,
                file_diff(r.path(), a, "2026-01-01", "2026-01-02"),
                "{point}: authority {a}"
            );
        }
        assert_eq!(
            r.recorded().matches("\"DELETE\"").count(),
            deletes + 4,
            "{point}: every day-2 change list deleted once committed"
        );
    }

    // Quarantined: not deleted at the Register; released: its events.
    let r = Register::start(1, 20_000, 2, "delta", &[]);
    let a = r.setup.authorities[0].clone();
    assert_code(&r.setup.run(&["--date", "2026-01-01"]), 0);
    let mut config = fs::read_to_string(r.path().join("config.toml")).unwrap();
    config.push_str("\n[guard]\nmax_changed_share = 0.0001\n");
    fs::write(r.path().join("config.toml"), config).unwrap();
    let out = r.setup.run(&["--date", "2026-01-02"]);
    assert_code(&out, 3);
    assert!(stdout(&out).contains("quarantined"), "{}", stdout(&out));
    assert_eq!(
        r.recorded().matches("\"DELETE\"").count(),
        1,
        "a quarantined change list stays at the Register"
    );
    let out = r
        .setup
        .run(&["--date", "2026-01-02", "--accept-mass-change", &a]);
    assert_code(&out, 0);
    let rows = batch_rows(r.path(), &a, "2026-01-02");
    assert!(!rows.is_empty());
    assert_eq!(rows, file_diff(r.path(), &a, "2026-01-01", "2026-01-02"));
    assert_eq!(r.recorded().matches("\"DELETE\"").count(), 2);
}

/// A hostile register: every attack is refused with a clear error, nothing
/// is committed or emitted, and the client's memory stays bounded.
#[test]
fn hostile_register_answers_are_refused() {
    for (mode, reason) in [
        ("href-other-host", "leaves the register's origin"),
        ("href-userinfo", "is neither a path nor an https URL"),
        ("doctype", "DOCTYPE is not allowed"),
        ("deep", "nested deeper"),
        // The text-node bound or the download cap, whichever delliste of
        // the authority is fetched first (the bound itself: wire's tests).
        (
            "huge-text",
            "longer than 1048576 bytes|larger than the limit",
        ),
        ("count-beyond", "declares 1099511627776 entries"),
        ("endless", "larger than the limit"),
    ] {
        let r = Register::start(2, 10_000, 1, "full", &["--hostile", mode]);
        let out = Command::new("/usr/bin/time")
            .args(["-f", "max-rss-kb %M", env!("CARGO_BIN_EXE_nemsms-diff")])
            .args(["run", "--config", "config.toml", "--date", "2026-01-01"])
            .current_dir(r.path())
            .output()
            .unwrap();
        assert_code(&out, 6);
        let table = stdout(&out);
        for a in &r.setup.authorities {
            let line = table.lines().find(|l| l.starts_with(a.as_str())).unwrap();
            assert!(
                line.contains("failed") && reason.split('|').any(|r| line.contains(r)),
                "{mode}: {line}"
            );
        }
        assert!(
            !r.path().join("state/current").exists()
                || fs::read_dir(r.path().join("state/current"))
                    .unwrap()
                    .count()
                    == 0,
            "{mode}: nothing committed"
        );
        assert!(!r.path().join("state/outbox").exists(), "{mode}: no batch");
        let rss_kb: u64 = stderr(&out)
            .lines()
            .find_map(|l| l.strip_prefix("max-rss-kb "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(rss_kb < 150_000, "{mode}: {rss_kb} KB resident");
    }
}

#[test]
fn signoff_enroll_the_cvr_form_and_the_service_window() {
    let r = Register::start(1, 1_000, 1, "full", &[]);
    let a = r.setup.authorities[0].clone();
    fs::write(
        r.path().join("stamdata.xml"),
        "<SlutbrugerStamdata xmlns=\"urn:oio:dkal:1.0.0\"><Mobilnummer>12345678</Mobilnummer></SlutbrugerStamdata>",
    )
    .unwrap();
    let user = |args: &[&str], now: Option<&str>| {
        let mut all = vec!["user"];
        all.extend_from_slice(&args[..1]);
        all.extend_from_slice(&["--config", "config.toml", "--authority", &a]);
        all.extend_from_slice(&args[1..]);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"));
        cmd.args(&all).current_dir(r.path());
        if let Some(now) = now {
            cmd.env("NEMSMS_DIFF_NOW", now);
        }
        cmd.output().unwrap()
    };
    // Enroll: stamdata first, then the sign-up.
    assert_code(
        &user(
            &[
                "enroll",
                "--cpr",
                "0101901234",
                "--stamdata",
                "stamdata.xml",
            ],
            None,
        ),
        0,
    );
    assert_code(&user(&["signoff", "--cpr", "0101901234"], None), 0);
    // A company: OpdaterBorgerNemSMS with the document's colon, the
    // tilmelding path without it.
    assert_code(
        &user(
            &["enroll", "--cvr", "13585628", "--stamdata", "stamdata.xml"],
            None,
        ),
        0,
    );
    let lines: Vec<serde_json::Value> = r
        .recorded()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let puts: Vec<(String, bool)> = lines
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap().to_owned(),
                v["body"].as_str().unwrap_or("").contains(">true<"),
            )
        })
        .collect();
    let boks = format!("/register/{a}/boks");
    assert_eq!(
        puts,
        [
            (format!("{boks}/0101901234"), false),
            (format!("{boks}/0101901234/myndighedstilmelding"), true),
            (format!("{boks}/0101901234/myndighedstilmelding"), false),
            (format!("{boks}/:13585628"), false),
            (format!("{boks}/13585628/myndighedstilmelding"), true),
        ],
        "{lines:?}"
    );
    assert!(lines[2]["body"].as_str().unwrap().contains(">false<"));
    // Enroll stops when its first call fails: a CVR form the register
    // refuses, and no sign-up follows.
    let config = fs::read_to_string(r.path().join("config.toml")).unwrap();
    fs::write(
        r.path().join("config.toml"),
        config.replace("[register]\n", "[register]\nboks_cvr_prefix = \"x\"\n"),
    )
    .unwrap();
    let out = user(
        &["enroll", "--cvr", "13585628", "--stamdata", "stamdata.xml"],
        None,
    );
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("OpdaterBorgerNemSMS"),
        "{}",
        stderr(&out)
    );
    assert_eq!(r.recorded().lines().count(), 5, "nothing more was sent");
    // Sunday 02:00 Danish time: NemSMS is not called at all.
    let out = user(
        &["signup", "--cpr", "0101901234"],
        Some("2026-01-04T01:00:00Z"),
    );
    assert_code(&out, 1);
    assert!(stderr(&out).contains("service window"), "{}", stderr(&out));
    assert_eq!(r.recorded().lines().count(), 5);
}

/// Wednesday 2 December 2026, 10:00 Danish time.
const MORNING: &str = "2026-12-02T09:00:00Z";

#[test]
fn sms_send_and_spoerg_tilmelding_under_nemsms_rules() {
    let setup = Setup::new(1, 1_000, 1, 0.01);
    let d = setup.path().to_owned();
    assert_code(&run(&d, &["simulate", "certs", "--out", "certs"]), 0);
    let server = simulator_env(
        &d,
        &["--record", "record.jsonl"],
        &[("NEMSMS_DIFF_NOW", MORNING)],
    );
    let r = Register { setup, server };
    r.write_config("full", "certs/client.pem", "certs/client-key.pem");
    let a = r.setup.authorities[0].clone();
    let list = fs::read_to_string(r.setup.list("2026-01-01", &a)).unwrap();
    let on = list
        .lines()
        .skip(1)
        .find_map(|l| {
            l.split([';', ','])
                .find(|f| f.len() == 10 && f.bytes().all(|b| b.is_ascii_digit()))
        })
        .unwrap()
        .to_owned();
    let off = (0..)
        .map(|i| format!("01019{i:05}"))
        .find(|n| !list.contains(n.as_str()))
        .unwrap();
    let cmd = |args: &[&str], now: &str| {
        let mut all: Vec<&str> = args[..2].to_vec();
        all.extend_from_slice(&["--config", "config.toml", "--authority", &a]);
        all.extend_from_slice(&args[2..]);
        Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
            .args(&all)
            .current_dir(r.path())
            .env("NEMSMS_DIFF_NOW", now)
            .output()
            .unwrap()
    };
    let sends = || {
        r.recorded()
            .lines()
            .filter(|l| l.contains("\"POST\""))
            .count()
    };

    // No Afsendersystem SysID configured: a config error, nothing sent.
    let out = cmd(&["sms", "send", "--cpr", &on, "--text", "Hej"], MORNING);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("afsender_sysid"), "{}", stderr(&out));
    let config = fs::read_to_string(r.path().join("config.toml")).unwrap();
    fs::write(
        r.path().join("config.toml"),
        config.replace(
            &format!("register_sysid = \"{a}\"\n"),
            &format!("register_sysid = \"{a}\"\nafsender_sysid = \"{a}\"\n"),
        ),
    )
    .unwrap();

    // EP_SP1 asked of the Register.
    let out = cmd(&["user", "status", "--cpr", &on], MORNING);
    assert_code(&out, 0);
    assert!(
        stdout(&out).starts_with("tilmeldt: signed up"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("asked of the Register"));
    let out = cmd(&["user", "status", "--cpr", &off, "--json"], MORNING);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        (v["signed_up"].as_bool(), v["source"].as_str()),
        (Some(false), Some("register"))
    );

    // A signed-up recipient in the day: sent, with NemSMS's fixed fields.
    let out = cmd(
        &[
            "sms",
            "send",
            "--cpr",
            &on,
            "--text",
            "Husk din tid i morgen kl. 9 & tag sygesikringskort med",
        ],
        MORNING,
    );
    assert_code(&out, 0);
    let id = stdout(&out).trim().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let rec = r.recorded();
    let sent = rec.lines().find(|l| l.contains("\"POST\"")).unwrap();
    let v: serde_json::Value = serde_json::from_str(sent).unwrap();
    assert_eq!(v["path"], format!("/meddelelse/{a}"));
    let body = v["body"].as_str().unwrap();
    for part in [
        format!("<MeddelelseId>{id}</MeddelelseId>"),
        format!("<CPRnummerIdentifikator>{on}</CPRnummerIdentifikator>"),
        "<KanalValg>D</KanalValg>".to_owned(),
        "<Prioritet>D</Prioritet>".to_owned(),
        "<FilformatNavn>TXT</FilformatNavn>".to_owned(),
        "kl. 9 &amp; tag".to_owned(),
    ] {
        assert!(body.contains(&part), "{part} in {body}");
    }
    assert!(!stderr(&out).contains(&on), "the number is not printed");
    assert_eq!(sends(), 1);

    // Refused before anything leaves: too long, too late, not signed up.
    let out = cmd(
        &["sms", "send", "--cpr", &on, "--text", &"x".repeat(161)],
        MORNING,
    );
    assert_code(&out, 2);
    assert!(stderr(&out).contains("161 characters"), "{}", stderr(&out));
    let late = "2026-12-02T21:30:00Z"; // 22:30 Danish time
    let out = cmd(&["sms", "send", "--cpr", &on, "--text", "Hej"], late);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("between 08:00 and 22:00"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("2026-12-03 08:00"),
        "{}",
        stderr(&out)
    );
    let out = cmd(&["sms", "send", "--cpr", &off, "--text", "Hej"], MORNING);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("not signed up"), "{}", stderr(&out));
    assert_eq!(sends(), 1, "nothing more was sent");

    // --wait: two seconds before 08:00, it waits, then sends.
    let early = "2026-12-02T06:59:58Z";
    let out = cmd(
        &["sms", "send", "--cpr", &on, "--text", "Godmorgen", "--wait"],
        early,
    );
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("waiting until 2026-12-02 08:00"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sends(), 2);

    // Signed off at the Register: EP_SP1 says so and no SMS goes out.
    assert_code(&cmd(&["user", "signoff", "--cpr", &on], MORNING), 0);
    let out = cmd(&["user", "status", "--cpr", &on], MORNING);
    assert!(
        stdout(&out).starts_with("ikke tilmeldt"),
        "{}",
        stdout(&out)
    );
    let out = cmd(&["sms", "send", "--cpr", &on, "--text", "Hej"], MORNING);
    assert_code(&out, 1);

    // The simulator enforces the same rules on what reaches it.
    let client = mtls_client(r.path());
    assert_code(&cmd(&["user", "signup", "--cpr", &on], MORNING), 0);
    let mut sms = nemsms_diff::register::wire::Sms {
        id: "x1".into(),
        kind: nemsms_diff::domain::keys::KeyKind::Cpr,
        nummer: on.parse().unwrap(),
        kanal_valg: "P".into(),
        prioritet: "D".into(),
        filformat: "TXT".into(),
        text: "Hej".into(),
    };
    let post = |sms: &nemsms_diff::register::wire::Sms| {
        let resp = client
            .post(format!("{}/meddelelse/{a}", r.server.url()))
            .body(nemsms_diff::register::wire::sms_body(sms))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    let (status, body) = post(&sms);
    assert_eq!(status, 400);
    assert!(body.contains("KanalValg must be D"), "{body}");
    sms.kanal_valg = "D".into();
    sms.text = "y".repeat(161);
    let (status, body) = post(&sms);
    assert_eq!(status, 400);
    assert!(body.contains("at most 160"), "{body}");
    sms.text = "Hej".into();
    assert_eq!(post(&sms).0, 201);
    assert_eq!(post(&sms).0, 201, "a resend of one MeddelelseId");
    assert_eq!(sends(), 3, "is sent once");
}

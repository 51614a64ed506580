//! A crash after every durable step: `NEMSMS_DIFF_CRASH_AT=step:N` for
//! N = 1, 2, … until the command completes, each followed by a rerun that
//! must reach the reference state (an uninterrupted run's batches and
//! pointers, byte for byte; change lists deleted at the Register only after
//! their commit; every BeskedId delivered at least once). Several
//! authorities run in parallel, so an abort catches others mid-step.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use crate::simulator;
use crate::{Flow, assert_same};
use crate::{Server, assert_code, stderr};
use crate::{Setup, copy_dir, state_files};

/// The clock of every run here (taken_at of network lists).
const NOW: &str = "2026-01-02T02:00:00Z";

fn nemsms(dir: &Path, args: &[&str], crash: Option<u64>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"));
    cmd.args(args).current_dir(dir).env("NEMSMS_DIFF_NOW", NOW);
    if let Some(n) = crash {
        cmd.env("NEMSMS_DIFF_CRASH_AT", format!("step:{n}"));
    }
    cmd.output().unwrap()
}

/// Every state file but reports and the lock (snapshots, batches,
/// pointers, change-list records, stamps): all byte-identical after
/// recovery.
fn committed(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    state_files(&dir.join("state"))
}

/// A register simulator over `dir/lists` whose change lists through day 1
/// are already deleted, and the config pointed at it.
fn register(dir: &Path, mode: &str) -> Server {
    let server = simulator(
        dir,
        &[
            "--record",
            "record.jsonl",
            "--delliste-size",
            "3000",
            "--consumed-through",
            "2026-01-01",
        ],
    );
    let config = fs::read_to_string(dir.join("config.toml")).unwrap();
    let config = config
        .lines()
        .map(|l| {
            if l.starts_with("base_url") {
                format!("base_url = \"{}\"", server.url())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(dir.join("config.toml"), config).unwrap();
    let _ = mode;
    server
}

/// Every change list the Register was asked to delete had been committed.
fn deletes_follow_commits(dir: &Path, label: &str) {
    let record = fs::read_to_string(dir.join("record.jsonl")).unwrap_or_default();
    for line in record.lines().filter(|l| l.contains("\"DELETE\"")) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["path"].as_str().unwrap().rsplit('/').next().unwrap();
        // aendring-<cvr>-<from>-<to>
        let cvr = &id["aendring-".len().."aendring-".len() + 8];
        let date = &id[id.len() - 10..];
        let current = fs::read_to_string(dir.join("state/current").join(cvr)).unwrap_or_default();
        assert!(
            current.trim() >= date,
            "{label}: change list {id} deleted while {cvr}'s current snapshot is {:?}",
            current.trim()
        );
    }
}

/// Crashes `args` after every durable step in turn; returns the steps.
fn enumerate(label: &str, template: &Path, oiorest: Option<&str>, args: &[&str]) -> u64 {
    let reference = tempfile::tempdir().unwrap();
    copy_dir(template, reference.path());
    let sim = oiorest.map(|m| register(reference.path(), m));
    assert_code(&nemsms(reference.path(), args, None), 0);
    drop(sim);
    let expected = committed(reference.path());
    assert!(expected.keys().any(|k| k.ends_with(".batch")));
    let mut n = 1;
    loop {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template, dir.path());
        let sim = oiorest.map(|m| register(dir.path(), m));
        let crashed = nemsms(dir.path(), args, Some(n));
        if crashed.status.success() {
            break;
        }
        assert!(
            stderr(&crashed).contains(&format!("crash point step:{n} reached")),
            "{label} step {n}: {}",
            stderr(&crashed)
        );
        if oiorest.is_some() {
            deletes_follow_commits(dir.path(), &format!("{label} after step {n}"));
        }
        let rerun = nemsms(dir.path(), args, None);
        assert_code(&rerun, 0);
        assert_eq!(
            committed(dir.path()),
            expected,
            "{label}: after a crash at step {n}"
        );
        if oiorest.is_some() {
            deletes_follow_commits(dir.path(), &format!("{label} rerun after step {n}"));
        }
        drop(sim);
        n += 1;
        assert!(n < 2000, "{label}: the command never completed");
    }
    eprintln!("crash enumeration: {label}: {} durable steps", n - 1);
    n - 1
}

/// A template directory: lists, certificates, a config, day 1 committed.
fn template(authorities: usize, days: u32, oiorest: Option<&str>) -> Setup {
    let s = Setup::new(authorities, 30_000, days, 0.01);
    let d = s.path();
    if let Some(mode) = oiorest {
        assert_code(
            &nemsms(d, &["simulate", "certs", "--out", "certs"], None),
            0,
        );
        let head = "state_dir = \"state\"\nsource = \"oiorest\"\n[register]\nbase_url = \"https://127.0.0.1:1\"\n\
                    ca_cert = \"certs/ca.pem\"\nclient_cert = \"certs/client.pem\"\nclient_key = \"certs/client-key.pem\"\n\
                    retries = 2\nmax_backoff_secs = 1\n";
        s.write_config_with(head, &format!("list_mode = \"{mode}\""));
        // Small generated lists move by more than the guard allows; the
        // guard is not what is tested here.
        let mut config = fs::read_to_string(d.join("config.toml")).unwrap();
        config.push_str("\n[guard]\nmax_size_change = 100.0\nmax_changed_share = 100.0\n");
        fs::write(d.join("config.toml"), config).unwrap();
        let sim = register(d, mode);
        assert_code(&s.run(&["--date", "2026-01-01"]), 0);
        drop(sim);
        let _ = fs::remove_file(d.join("record.jsonl"));
    } else {
        assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    }
    s
}

#[test]
fn crash_after_every_step_of_a_run_from_files() {
    let t = template(3, 2, None);
    let steps = enumerate(
        "run from files",
        t.path(),
        None,
        &["run", "--config", "config.toml", "--date", "2026-01-02"],
    );
    assert!(steps > 20, "{steps} steps");
}

#[test]
fn crash_after_every_step_of_a_run_over_oiorest() {
    for mode in ["full", "delta"] {
        let t = template(3, 2, Some(mode));
        let steps = enumerate(
            &format!("run over OIOREST, {mode} lists"),
            t.path(),
            Some(mode),
            &["run", "--config", "config.toml", "--date", "2026-01-02"],
        );
        assert!(steps > 20, "{mode}: {steps} steps");
    }
}

#[test]
fn crash_after_every_step_of_a_change_list_backfill() {
    let t = template(3, 4, Some("delta"));
    let steps = enumerate(
        "3-day change-list backfill",
        t.path(),
        Some("delta"),
        &[
            "backfill",
            "--config",
            "config.toml",
            "--from",
            "2026-01-02",
            "--to",
            "2026-01-04",
        ],
    );
    assert!(steps > 60, "{steps} steps");
}

#[test]
fn crash_after_every_step_of_a_publish() {
    let flow = Flow::new(2, 6_000, 0.004, "in_flight = 8");
    let _emulator = flow.emulator(&[]);
    let expected = flow.outbox_ids();
    assert!(expected.len() >= 20, "{} events", expected.len());
    let mut n = 1;
    loop {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(flow.path(), dir.path());
        let args = ["publish", "--config", "config.toml"];
        let crashed = nemsms(dir.path(), &args, Some(n));
        if crashed.status.success() {
            let _ = flow.delivered();
            break;
        }
        assert!(
            stderr(&crashed).contains(&format!("crash point step:{n} reached")),
            "publish step {n}: {}",
            stderr(&crashed)
        );
        assert_code(&nemsms(dir.path(), &args, None), 0);
        // Every BeskedId at least once (resends of the same id only).
        assert_same(flow.delivered().into_iter().collect(), &expected);
        n += 1;
        assert!(n < 5000, "publish never completed");
    }
    eprintln!("crash enumeration: publish: {} durable steps", n - 1);
    assert!(n > expected.len() as u64, "a step per confirmation");
}

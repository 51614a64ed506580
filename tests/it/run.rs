//! The nightly run: commit protocol, outbox, guard, crash safety, reports.

use crate::support::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{assert_code, run, stderr, stdout};

fn xsd() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("fixtures/schemas/beskedfordeler/xsd/Beskedkuvert.xsd")
}

#[test]
fn nightly_run_writes_valid_envelopes_for_every_change() {
    let s = Setup::new(3, 30_000, 2, 0.002);
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    let out = s.run(&["--date", "2026-01-02"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("committed"), "{}", stdout(&out));

    let a = &s.authorities[0];
    // The batch holds exactly the changes `diff` finds, in the same order.
    let d = run(
        s.path(),
        &[
            "diff",
            s.list("2026-01-01", a).to_str().unwrap(),
            s.list("2026-01-02", a).to_str().unwrap(),
        ],
    );
    let expected: Vec<String> = stdout(&d).lines().skip(1).map(str::to_owned).collect();
    assert!(!expected.is_empty());
    let show = run(
        s.path(),
        &[
            "outbox",
            "show",
            "--config",
            "config.toml",
            "--authority",
            a,
            "--date",
            "2026-01-02",
        ],
    );
    assert_code(&show, 0);
    let envelopes: Vec<String> = stdout(&show).lines().map(str::to_owned).collect();
    assert_eq!(envelopes.len(), expected.len());
    for (env, row) in envelopes.iter().zip(&expected) {
        let parts: Vec<&str> = row.split(';').collect();
        assert!(
            env.contains(&format!("<h:Haendelse>{}</h:Haendelse>", parts[0])),
            "{env}"
        );
        assert!(env.contains(&format!("<h:Nummer>{}</h:Nummer>", parts[2])));
        assert!(env.contains(&format!("urn:oio:cvr-nr:{a}")));
    }
    // Every envelope validates against KOMBIT's XSD.
    let dir = s.path().join("xml");
    fs::create_dir(&dir).unwrap();
    let mut files = Vec::new();
    for (i, env) in envelopes.iter().enumerate().step_by(7).take(40) {
        let p = dir.join(format!("{i}.xml"));
        fs::write(&p, env).unwrap();
        files.push(p);
    }
    let lint = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(xsd())
        .args(&files)
        .output()
        .expect("xmllint is installed (scripts/test.sh installs libxml2-utils)");
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&lint.stderr)
            .matches("validates")
            .count(),
        files.len()
    );

    // The outbox lists every batch; the report is JSON with the outcomes.
    let list = run(s.path(), &["outbox", "list", "--config", "config.toml"]);
    assert_eq!(stdout(&list).lines().count(), 1 + 6);
    let reports: Vec<PathBuf> = fs::read_dir(s.path().join("state/reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 2);
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(reports.iter().max().unwrap()).unwrap()).unwrap();
    assert_eq!(report["outcomes"].as_array().unwrap().len(), 3);

    // State files are private.
    use std::os::unix::fs::PermissionsExt;
    for (rel, _) in state_files(&s.path().join("state")) {
        let mode = fs::metadata(s.path().join("state").join(&rel))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{rel}");
    }
    // No CPR number in logs or the table: none of the lists' numbers (a
    // bare 10-digit pattern would also match a duration's decimals).
    let logs = format!("{}{}", stdout(&out), stderr(&out));
    let words: std::collections::HashSet<&str> =
        logs.split(|c: char| !c.is_ascii_digit()).collect();
    let mut checked = 0;
    for date in ["2026-01-01", "2026-01-02"] {
        for a in &s.authorities {
            for line in fs::read_to_string(s.list(date, a)).unwrap().lines() {
                let key = line.trim();
                if key.len() == 10 && key.bytes().all(|b| b.is_ascii_digit()) {
                    checked += 1;
                    assert!(!words.contains(key), "a CPR number in the logs:\n{logs}");
                }
            }
        }
    }
    assert!(checked > 10_000, "only {checked} CPR numbers checked");
}

#[test]
fn rerun_is_a_no_op_and_bad_lists_fail_alone() {
    let s = Setup::new(3, 20_000, 2, 0.001);
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    let bad = &s.authorities[1];
    let text = fs::read_to_string(s.list("2026-01-02", bad)).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[5] = "3002991234";
    fs::write(s.list("2026-01-02", bad), lines.join("\n")).unwrap();

    let out = s.run(&["--date", "2026-01-02"]);
    assert_code(&out, 3);
    let table = stdout(&out);
    assert!(
        table.contains(&format!("{bad}.csv: line 6: CPR has an impossible date")),
        "{table}"
    );
    assert_eq!(table.matches("committed").count(), 2, "{table}");
    let state = s.path().join("state");
    assert!(
        !state
            .join(format!("outbox/2026-01-02/{bad}.batch"))
            .exists()
    );
    assert!(
        !state
            .join(format!("snapshots/{bad}/2026-01-02.snap"))
            .exists()
    );
    assert_eq!(
        fs::read_to_string(state.join(format!("current/{bad}"))).unwrap(),
        "2026-01-01\n"
    );

    let before = state_files(&state);
    let again = s.run(&["--date", "2026-01-02"]);
    assert_code(&again, 3);
    assert_eq!(stdout(&again).matches("skipped").count(), 2);
    assert_eq!(state_files(&state), before, "a rerun changes nothing");
}

#[test]
fn guard_quarantines_a_truncated_list_until_accepted() {
    let s = Setup::new(2, 20_000, 2, 0.001);
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    let a = &s.authorities[0];
    let text = fs::read_to_string(s.list("2026-01-02", a)).unwrap();
    let half: Vec<&str> = text.lines().take(text.lines().count() / 2).collect();
    fs::write(s.list("2026-01-02", a), half.join("\n")).unwrap();

    let out = s.run(&["--date", "2026-01-02"]);
    assert_code(&out, 3);
    let table = stdout(&out);
    assert!(
        table.contains("quarantined") && table.contains("list size changed"),
        "{table}"
    );
    assert!(
        table.contains(&format!("--accept-mass-change {a}")),
        "{table}"
    );
    // The totals count what was emitted; the quarantine's changes apart.
    let totals = table.lines().last().unwrap();
    assert!(totals.contains("changes held back"), "{totals}");
    assert!(
        !totals.contains(" 0 tilmeldt, 0 afmeldt emitted, 0 changes"),
        "{totals}"
    );
    let state = s.path().join("state");
    assert!(
        !state.join(format!("outbox/2026-01-02/{a}.batch")).exists(),
        "nothing emitted"
    );
    assert_eq!(
        fs::read_to_string(state.join(format!("current/{a}"))).unwrap(),
        "2026-01-01\n"
    );
    // `status` shows the quarantine, why, and how to release it: exit 3.
    let st = run(s.path(), &["status", "--config", "config.toml"]);
    assert_code(&st, 3);
    let text = stdout(&st);
    assert!(text.contains("QUARANTINED on 2026-01-02: "), "{text}");
    assert!(text.contains("list size changed"), "{text}");
    assert!(
        text.contains(&format!(
            "release it once checked: nemsms-diff run --config config.toml --date 2026-01-02 --authority {a} --accept-mass-change {a}"
        )),
        "{text}"
    );
    assert!(text.contains("1 need an operator"), "{text}");
    let st = run(s.path(), &["status", "--config", "config.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&st).trim()).unwrap();
    let mine = |cvr: &str| {
        v["authorities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["authority"] == cvr)
            .unwrap()
            .clone()
    };
    assert_eq!(mine(a)["needs_operator"], true);
    assert_eq!(mine(a)["current"], "2026-01-01");
    let other = mine(&s.authorities[1]);
    assert_eq!(
        (other["needs_operator"].as_bool(), other["current"].as_str()),
        (Some(false), Some("2026-01-02"))
    );
    assert!(other["unpublished_events"].as_u64().unwrap() > 0, "{other}");

    let out = s.run(&["--date", "2026-01-02", "--accept-mass-change", a]);
    assert_code(&out, 0);
    // Released: nothing needs an operator; its events wait to be published.
    let st = run(s.path(), &["status", "--config", "config.toml", "--json"]);
    assert_code(&st, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&st).trim()).unwrap();
    assert_eq!(v["needing_an_operator"], 0);
    assert!(v["unpublished_events"].as_u64().unwrap() > 4000, "{v}");
    let list = stdout(&run(
        s.path(),
        &["outbox", "list", "--config", "config.toml", "--json"],
    ));
    let batch: serde_json::Value = list
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["authority"] == a.as_str() && v["date"] == "2026-01-02")
        .unwrap();
    assert!(batch["n_signed_off"].as_u64().unwrap() > 4000, "{batch}");

    // An empty list after a non-empty one always trips.
    let b = &s.authorities[1];
    fs::write(s.list("2026-01-02", b), "nummer\n").unwrap();
    fs::remove_file(state.join(format!("current/{b}"))).unwrap();
    fs::write(state.join(format!("current/{b}")), "2026-01-01\n").unwrap();
    fs::remove_file(state.join(format!("outbox/2026-01-02/{b}.batch"))).unwrap();
    let out = s.run(&["--date", "2026-01-02", "--authority", b]);
    assert_code(&out, 3);
    assert!(
        stdout(&out).contains("today's list is empty"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn first_run_can_emit_everything() {
    let s = Setup::new(1, 1_000, 1, 0.0);
    s.write_config("first_run = \"emit-all\"");
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    let show = run(
        s.path(),
        &[
            "outbox",
            "show",
            "--config",
            "config.toml",
            "--authority",
            &s.authorities[0],
            "--date",
            "2026-01-01",
        ],
    );
    assert_eq!(stdout(&show).lines().count(), 1_000);
    assert!(
        stdout(&show)
            .lines()
            .all(|l| l.contains("<h:Haendelse>tilmeldt</h:Haendelse>"))
    );
}

#[test]
fn config_errors_are_usage_errors_naming_file_and_key() {
    let s = Setup::new(1, 1_000, 1, 0.0);
    let text = fs::read_to_string(s.path().join("config.toml")).unwrap();
    fs::write(
        s.path().join("config.toml"),
        text.replace("register_sysid", "register_sys_id"),
    )
    .unwrap();
    let out = s.run(&["--date", "2026-01-01"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("config.toml") && stderr(&out).contains("register_sys_id"),
        "{}",
        stderr(&out)
    );
    let out = run(s.path(), &["run", "--config", "missing.toml"]);
    assert_code(&out, 2);
}

#[test]
fn backfill_resumes_and_matches_day_by_day_runs() {
    let a = Setup::new(2, 10_000, 4, 0.01);
    let b = Setup::new(2, 10_000, 4, 0.01);
    fs::remove_dir_all(b.path().join("lists")).unwrap();
    copy_dir(&a.path().join("lists"), &b.path().join("lists"));
    for date in ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"] {
        assert_code(&a.run(&["--date", date]), 0);
    }
    // Backfill in two overlapping pieces: the second resumes.
    let bf = |from: &str, to: &str| {
        run(
            b.path(),
            &[
                "backfill",
                "--config",
                "config.toml",
                "--from",
                from,
                "--to",
                to,
            ],
        )
    };
    assert_code(&bf("2026-01-01", "2026-01-02"), 0);
    let out = bf("2026-01-01", "2026-01-04");
    assert_code(&out, 0);
    assert_eq!(stdout(&out).matches("skipped").count(), 4);
    assert_eq!(
        state_files(&a.path().join("state")),
        state_files(&b.path().join("state"))
    );
}

#[test]
fn every_crash_point_recovers_to_the_same_state() {
    let reference = Setup::new(3, 20_000, 2, 0.002);
    assert_code(&reference.run(&["--date", "2026-01-01"]), 0);
    assert_code(&reference.run(&["--date", "2026-01-02"]), 0);
    let expected = state_files(&reference.path().join("state"));
    assert!(expected.keys().any(|k| k.ends_with(".batch")));

    for point in [
        "after-snapshot",
        "mid-outbox-write",
        "after-outbox-before-pointer",
        "after-pointer",
    ] {
        let s = Setup::new(3, 20_000, 2, 0.002);
        // The generated lists have other mtimes: copy the reference's files.
        fs::remove_dir_all(s.path().join("lists")).unwrap();
        copy_dir(&reference.path().join("lists"), &s.path().join("lists"));
        assert_code(&s.run(&["--date", "2026-01-01"]), 0);
        let crashed = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
            .args(["run", "--config", "config.toml", "--date", "2026-01-02"])
            .current_dir(s.path())
            .env("NEMSMS_DIFF_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(
            !crashed.status.success(),
            "{point}: the crash point was reached"
        );
        assert!(stderr(&crashed).contains(&format!("crash point {point} reached")));
        let out = s.run(&["--date", "2026-01-02"]);
        assert_code(&out, 0);
        assert_eq!(
            state_files(&s.path().join("state")),
            expected,
            "after a crash at {point}"
        );
    }
}

#[test]
fn json_logs_and_publish_to_a_directory() {
    let s = Setup::new(2, 10_000, 2, 0.01);
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    let out = s.run(&["--date", "2026-01-02", "--log-format", "json"]);
    assert_code(&out, 0);
    let logs = stderr(&out);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "one line per authority, a summary: {logs}");
    assert_eq!(lines[0]["fields"]["message"], "authority done");
    assert!(lines[0]["fields"]["authority_cvr"].is_string());
    assert_eq!(
        lines[0]["fields"]["status"], "committed",
        "as reports spell it"
    );
    assert_eq!(lines[0]["fields"]["base_date"], "2026-01-01");
    let summary = &lines[2]["fields"];
    assert_eq!(summary["message"], "summary");
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    let run_id = summary["run_id"].as_str().unwrap();
    // The report carries the same run id, the schema and the diff's base.
    let report = summary["report"].as_str().unwrap();
    let r: serde_json::Value =
        serde_json::from_slice(&fs::read(s.path().join(report)).unwrap()).unwrap();
    assert_eq!(
        (r["schema"].as_u64(), r["run_id"].as_str()),
        (Some(1), Some(run_id))
    );
    assert_eq!(r["outcomes"][0]["base_date"], "2026-01-01");

    // publish --to dir: every envelope as a file, cursors untouched.
    s.write_config(
        "[beskedfordeler]\nurl = \"amqp://127.0.0.1:1/%2f\"\ntoken = \"t\"\ninsecure_broker = true",
    );
    let out = run(
        s.path(),
        &["publish", "--config", "config.toml", "--to", "dir:dry"],
    );
    assert_code(&out, 0);
    let mut files = 0;
    for a in &s.authorities {
        for f in fs::read_dir(s.path().join("dry/2026-01-02").join(a)).unwrap() {
            let text = fs::read_to_string(f.unwrap().path()).unwrap();
            assert!(text.contains("<b:Haendelsesbesked"));
            files += 1;
        }
    }
    let events: usize = stdout(&run(
        s.path(),
        &["outbox", "list", "--config", "config.toml", "--json"],
    ))
    .lines()
    .map(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["n_events"]
            .as_u64()
            .unwrap() as usize
    })
    .sum();
    assert_eq!(files, events);
    assert!(stdout(&out).contains(&format!("wrote {events} envelopes")));
    // Mode 0600, like every file holding CPR numbers.
    let one = fs::read_dir(s.path().join("dry/2026-01-02").join(&s.authorities[0]))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&one).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Selectable by authority and date.
    let a = &s.authorities[1];
    let only = run(
        s.path(),
        &[
            "publish",
            "--config",
            "config.toml",
            "--to",
            "dir:only",
            "--authority",
            a,
            "--date",
            "2026-01-02",
        ],
    );
    assert_code(&only, 0);
    let dirs: Vec<String> = fs::read_dir(s.path().join("only/2026-01-02"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(dirs, vec![a.clone()]);
    assert!(!s.path().join("only/2026-01-01").exists());
    // An authority the config does not have: a usage error.
    let unknown = run(
        s.path(),
        &[
            "publish",
            "--config",
            "config.toml",
            "--to",
            "dir:x",
            "--authority",
            "29189846",
        ],
    );
    assert_code(&unknown, 2);
    let list = stdout(&run(
        s.path(),
        &["outbox", "list", "--config", "config.toml"],
    ));
    assert!(
        list.lines()
            .filter(|l| l.starts_with("2026-01-02"))
            .all(|l| l.ends_with(" no")),
        "{list}"
    );
    let bad = run(
        s.path(),
        &["publish", "--config", "config.toml", "--to", "dry"],
    );
    assert_code(&bad, 2);
}

#[test]
fn user_status_answers_from_the_local_replica() {
    let s = Setup::new(1, 5_000, 2, 0.01);
    let a = s.authorities[0].clone();
    let status = |cpr: &str, extra: &[&str]| {
        let mut args = vec![
            "user",
            "status",
            "--local",
            "--config",
            "config.toml",
            "--authority",
            &a,
            "--cpr",
            cpr,
        ];
        args.extend_from_slice(extra);
        run(s.path(), &args)
    };
    // Nothing committed yet: a clear error.
    let out = status("0101901234", &[]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("no current snapshot"),
        "{}",
        stderr(&out)
    );
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    assert_code(&s.run(&["--date", "2026-01-02"]), 0);
    // A number of day 2's list, and one that signed off on day 2.
    let d = run(
        s.path(),
        &[
            "diff",
            s.list("2026-01-01", &a).to_str().unwrap(),
            s.list("2026-01-02", &a).to_str().unwrap(),
        ],
    );
    let off = stdout(&d)
        .lines()
        .find(|l| l.starts_with("afmeldt;CPR;"))
        .unwrap()
        .rsplit(';')
        .next()
        .unwrap()
        .to_owned();
    let list = fs::read_to_string(s.list("2026-01-02", &a)).unwrap();
    let on = list
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split([';', ','])
                .find(|f| f.len() == 10 && f.bytes().all(|b| b.is_ascii_digit()))
        })
        .next()
        .unwrap()
        .to_owned();
    let out = status(&on, &[]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).starts_with("tilmeldt: signed up at authority"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("as of list date 2026-01-02"));
    let out = status(&off, &["--json"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["signed_up"], false);
    assert_eq!(v["as_of"], "2026-01-02");
    for out in [status(&on, &[]), status(&off, &["--json"])] {
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !text.contains(&on) && !text.contains(&off),
            "no number shown: {text}"
        );
    }
}

#[test]
fn check_lists_every_problem_and_changes_nothing() {
    let s = Setup::new(2, 5_000, 2, 0.01);
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    assert_code(&s.run(&["--date", "2026-01-02"]), 0);
    let check = || run(s.path(), &["check", "--config", "config.toml"]);
    let out = check();
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("checked 4 snapshots, 2 pointers, 4 batches"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).ends_with(": 0 problems\n"), "{}", stdout(&out));

    let (a, b) = (&s.authorities[0], &s.authorities[1]);
    let st = s.path().join("state");
    // A flipped bit in a snapshot, a cursor past its batch, a pointer to a
    // date without a snapshot, a stray file, and a cursor without a batch.
    let snap = st.join(format!("snapshots/{a}/2026-01-01.snap"));
    let mut bytes = fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    fs::write(&snap, bytes).unwrap();
    fs::write(st.join(format!("outbox/2026-01-02/{a}.cursor")), "999999\n").unwrap();
    fs::write(st.join(format!("current/{b}")), "2026-01-05\n").unwrap();
    fs::write(st.join("outbox/2026-01-02/notes.txt"), "x").unwrap();
    fs::write(st.join("outbox/2026-01-01/12345674.cursor"), "0\n").unwrap();
    let before = crate::state_files(&st);
    let out = check();
    assert_code(&out, 1);
    let text = stdout(&out);
    for want in [
        format!("snapshots/{a}/2026-01-01.snap: corrupt payload"),
        format!("{a}.cursor: cursor 999999 beyond the batch's"),
        format!("current/{b}: points to 2026-01-05, whose snapshot does not exist"),
        "notes.txt: unknown file in the outbox (orphan)".to_owned(),
        "12345674.cursor: a cursor without its batch (orphan)".to_owned(),
    ] {
        assert!(text.contains(&want), "{want} in {text}");
    }
    assert!(text.ends_with(": 5 problems\n"), "{text}");
    assert_eq!(crate::state_files(&st), before, "check changes nothing");
}

#[test]
fn a_held_lock_names_its_holder_and_exits_5() {
    let s = Setup::new(1, 2_000, 1, 0.0);
    let st = s.path().join("state");
    fs::create_dir_all(&st).unwrap();
    let lock = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(st.join("lock"))
        .unwrap();
    lock.try_lock().unwrap();
    fs::write(st.join("lock"), "4242\n").unwrap();
    let started = std::time::Instant::now();
    let out = s.run(&["--date", "2026-01-01", "--lock-wait", "1"]);
    assert_code(&out, 5);
    let e = stderr(&out);
    assert!(
        e.contains("another run (pid 4242) holds the state lock"),
        "{e}"
    );
    assert!(e.contains("waited 1 s") && e.contains("--lock-wait"), "{e}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    drop(lock);
    // Free again: the run goes through and the lock names the new holder.
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    let holder = fs::read_to_string(st.join("lock")).unwrap();
    assert!(
        holder.trim().parse::<u32>().is_ok_and(|p| p != 4242),
        "{holder}"
    );
}

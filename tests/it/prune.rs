//! `prune`: retention that never removes what the job still needs, and
//! survives a crash after any of its removals.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::{Setup, assert_code, copy_dir, run_env, state_files, stderr, stdout};

/// The clock of every prune here: four days after the last list date.
const NOW: &str = "2026-01-10T12:00:00Z";

/// Six days of three authorities, backfilled; every batch but one
/// authority's day-2 batch and everyone's day-6 batch marked published
/// (cursor = events), a leftover temp file, an old report and a taken-at
/// stamp of a committed date. Returns the setup and the unpublished
/// batches (path relative to the state → bytes).
fn prepared() -> (Setup, BTreeMap<String, Vec<u8>>) {
    let s = Setup::new(3, 3_000, 6, 0.01);
    s.write_config("[retention]\nkeep_days = 3\nbackfill_window_days = 1");
    let d = s.path();
    assert_code(
        &run_env(
            d,
            &[
                "backfill",
                "--config",
                "config.toml",
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-06",
            ],
            &[],
        ),
        0,
    );
    let held = &s.authorities[0];
    let mut unpublished = BTreeMap::new();
    let list = run_env(
        d,
        &["outbox", "list", "--config", "config.toml", "--json"],
        &[],
    );
    assert_code(&list, 0);
    for line in stdout(&list).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (date, cvr) = (
            v["date"].as_str().unwrap(),
            v["authority"].as_str().unwrap(),
        );
        assert!(v["payload_sum"].is_string(), "checksum as text: {v}");
        let rel = format!("outbox/{date}/{cvr}.batch");
        let n = v["n_events"].as_u64().unwrap();
        if (cvr == held && date == "2026-01-02") || date == "2026-01-06" {
            if n > 0 {
                unpublished.insert(rel.clone(), fs::read(d.join("state").join(&rel)).unwrap());
            }
        } else {
            fs::write(
                d.join("state").join(rel.replace(".batch", ".cursor")),
                format!("{n}\n"),
            )
            .unwrap();
        }
    }
    assert!(
        unpublished.contains_key(&format!("outbox/2026-01-02/{held}.batch")),
        "the held batch has events"
    );
    let state = d.join("state");
    fs::write(state.join("outbox/2026-01-03/.x.batch.tmp.999999999"), "x").unwrap();
    fs::create_dir_all(state.join(format!("taken/{held}"))).unwrap();
    fs::write(state.join(format!("taken/{held}/2026-01-03")), "1\n").unwrap();
    let old = state.join("reports/run-old.json");
    fs::write(&old, "{}").unwrap();
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        )
        .unwrap();
    (s, unpublished)
}

fn prune(dir: &Path, args: &[&str], crash: Option<u64>) -> std::process::Output {
    let mut all = vec!["prune", "--config", "config.toml"];
    all.extend_from_slice(args);
    let step = crash.map(|n| format!("step:{n}"));
    let mut env = vec![("NEMSMS_DIFF_NOW", NOW)];
    if let Some(s) = &step {
        env.push(("NEMSMS_DIFF_CRASH_AT", s.as_str()));
    }
    run_env(dir, &all, &env)
}

fn names(files: &BTreeMap<String, Vec<u8>>) -> BTreeSet<String> {
    files.keys().cloned().collect()
}

#[test]
fn prune_removes_only_what_is_no_longer_needed() {
    let (s, unpublished) = prepared();
    let d = s.path();
    let state = d.join("state");
    let before = state_files(&state);
    let held = &s.authorities[0];

    // A dry run lists and removes nothing (and needs no lock).
    let dry = prune(d, &["--dry-run"], None);
    assert_code(&dry, 0);
    assert!(
        stdout(&dry).contains("would remove snapshot"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(state_files(&state), before, "a dry run changed the state");

    let out = prune(d, &[], None);
    assert_code(&out, 0);
    let text = stdout(&out);
    let after = state_files(&state);
    let gone: BTreeSet<String> = names(&before).difference(&names(&after)).cloned().collect();
    // keep_days 3 before 2026-01-10 is 2026-01-07: every list date is old.
    for a in &s.authorities {
        // The current snapshot and the backfill window's (one day) stay.
        for day in ["05", "06"] {
            assert!(after.contains_key(&format!("snapshots/{a}/2026-01-{day}.snap")));
        }
        for day in ["03", "04"] {
            assert!(
                gone.contains(&format!("snapshots/{a}/2026-01-{day}.snap")),
                "{gone:?}"
            );
        }
        // Published batches and their cursors go.
        assert!(gone.contains(&format!("outbox/2026-01-04/{a}.batch")));
        assert!(gone.contains(&format!("outbox/2026-01-04/{a}.cursor")));
    }
    // The unpublished batch stays, and so do its snapshot and its base.
    for day in ["01", "02"] {
        assert!(after.contains_key(&format!("snapshots/{held}/2026-01-{day}.snap")));
    }
    for a in &s.authorities[1..] {
        assert!(gone.contains(&format!("snapshots/{a}/2026-01-01.snap")));
    }
    for (rel, bytes) in &unpublished {
        assert_eq!(after.get(rel), Some(bytes), "{rel} changed or went");
    }
    // Leftovers: the temp file and the committed date's stamp.
    assert!(gone.contains("outbox/2026-01-03/.x.batch.tmp.999999999"));
    assert!(gone.contains(&format!("taken/{held}/2026-01-03")));
    assert!(!state.join("reports/run-old.json").exists());
    assert!(text.contains("removed report"), "{text}");
    assert!(
        text.contains(&format!(
            "kept: older than 3 days but unpublished, {} batches",
            unpublished.len()
        )),
        "{text}"
    );
    // What it removed is recorded, and the state checks clean.
    assert!(crate::report_of(&state, "prune").is_some());
    let check = run_env(d, &["check", "--config", "config.toml"], &[]);
    assert_code(&check, 0);

    // Nothing is left to do; a run after it still works.
    let again = prune(d, &[], None);
    assert_code(&again, 0);
    assert!(
        stdout(&again).contains("removed 0 snapshots"),
        "{}",
        stdout(&again)
    );
    let status = run_env(d, &["status", "--config", "config.toml", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(v["authorities"][0]["current"], "2026-01-06");

    // Without a keep-days setting it refuses (exit 2) and says how.
    s.write_config("");
    let none = prune(d, &[], None);
    assert_code(&none, 2);
    assert!(stderr(&none).contains("--keep-days"), "{}", stderr(&none));
}

#[test]
fn crash_after_every_step_of_a_prune() {
    let (template, unpublished) = prepared();
    let reference = tempfile::tempdir().unwrap();
    copy_dir(template.path(), reference.path());
    assert_code(&prune(reference.path(), &[], None), 0);
    let expected = state_files(&reference.path().join("state"));
    let mut n = 1;
    loop {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let crashed = prune(dir.path(), &[], Some(n));
        if crashed.status.success() {
            break;
        }
        assert!(
            stderr(&crashed).contains(&format!("crash point step:{n} reached")),
            "step {n}: {}",
            stderr(&crashed)
        );
        // Whatever the crash interrupted, nothing needed is gone.
        let files = state_files(&dir.path().join("state"));
        for (rel, bytes) in &unpublished {
            assert_eq!(files.get(rel), Some(bytes), "step {n}: {rel}");
        }
        for a in &template.authorities {
            assert!(files.contains_key(&format!("snapshots/{a}/2026-01-06.snap")));
        }
        // No batch lost its cursor (it would be sent again).
        for rel in files.keys().filter(|k| k.ends_with(".batch")) {
            let cursor = rel.replace(".batch", ".cursor");
            let before = fs::read(template.path().join("state").join(&cursor)).ok();
            assert_eq!(files.get(&cursor).cloned(), before, "step {n}: {cursor}");
        }
        assert_code(&prune(dir.path(), &[], None), 0);
        assert_eq!(
            state_files(&dir.path().join("state")),
            expected,
            "after a crash at step {n}"
        );
        assert_code(
            &run_env(dir.path(), &["check", "--config", "config.toml"], &[]),
            0,
        );
        n += 1;
        assert!(n < 500, "prune never completed");
    }
    assert!(n > 10, "only {} steps", n - 1);
    eprintln!("crash enumeration: prune: {} durable steps", n - 1);
}

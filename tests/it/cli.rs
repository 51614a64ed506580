//! The core commands: snapshot build/inspect/export, diff, generate.

use std::fs;

use crate::{assert_code, run, stderr, stdout};

const OLD: &str = "type;nummer\nCPR;0101901234\nCPR;2512851234\nCVR;13585628\n";
const NEW: &str = "nummer\r\n0101901234\r\n0707614285\r\n24256790\r\n";

#[test]
fn diff_of_two_lists_prints_sorted_changes() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("old.csv"), OLD).unwrap();
    fs::write(dir.path().join("new.csv"), NEW).unwrap();
    let out = run(dir.path(), &["diff", "old.csv", "new.csv"]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out),
        "haendelse;type;nummer\n\
         tilmeldt;CPR;0707614285\n\
         afmeldt;CPR;2512851234\n\
         afmeldt;CVR;13585628\n\
         tilmeldt;CVR;24256790\n"
    );
    assert!(
        stderr(&out).contains("2 tilmeldt, 2 afmeldt"),
        "{}",
        stderr(&out)
    );

    let out = run(
        dir.path(),
        &["diff", "old.csv", "new.csv", "--format", "jsonl"],
    );
    assert_code(&out, 0);
    let first = stdout(&out).lines().next().unwrap().to_owned();
    assert_eq!(
        first,
        r#"{"haendelse":"tilmeldt","type":"CPR","nummer":"0707614285"}"#
    );
}

#[test]
fn snapshot_build_inspect_export_roundtrip_keeps_leading_zeros() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("old.csv"), OLD).unwrap();
    let out = run(
        dir.path(),
        &[
            "snapshot",
            "build",
            "old.csv",
            "--authority",
            "29189846",
            "--date",
            "2026-11-24",
            "-o",
            "old.snap",
        ],
    );
    assert_code(&out, 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir.path().join("old.snap"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = run(dir.path(), &["snapshot", "inspect", "old.snap"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    for expected in [
        "authority:     29189846",
        "date:          2026-11-24",
        "CPR keys:      2",
        "CVR keys:      1",
        "checksum:      ok",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let out = run(dir.path(), &["snapshot", "inspect", "old.snap", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["n_cpr"], 2);

    let out = run(dir.path(), &["snapshot", "export", "old.snap"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), OLD);

    // A snapshot diffs like the list it came from.
    fs::write(dir.path().join("new.csv"), NEW).unwrap();
    let a = run(dir.path(), &["diff", "old.snap", "new.csv"]);
    let b = run(dir.path(), &["diff", "old.csv", "new.csv"]);
    assert_code(&a, 0);
    assert_eq!(stdout(&a), stdout(&b));
}

#[test]
fn corrupt_snapshot_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("old.csv"), OLD).unwrap();
    let build = [
        "snapshot",
        "build",
        "old.csv",
        "--authority",
        "29189846",
        "--date",
        "2026-11-24",
        "-o",
        "s.snap",
    ];
    assert_code(&run(dir.path(), &build), 0);
    let path = dir.path().join("s.snap");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let out = run(dir.path(), &["snapshot", "export", "s.snap"]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("s.snap: corrupt payload"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "no partial output");

    fs::write(&path, &bytes[..50]).unwrap();
    let out = run(dir.path(), &["diff", "s.snap", "old.csv"]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn bad_list_names_file_and_line_but_not_the_key() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("old.csv"), OLD).unwrap();
    fs::write(
        dir.path().join("bad.csv"),
        "nummer\n0101901234\n3102851234\n",
    )
    .unwrap();
    let out = run(dir.path(), &["diff", "old.csv", "bad.csv"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("bad.csv: line 3: CPR has an impossible date"),
        "{err}"
    );
    assert!(!err.contains("310285"), "no CPR digits in errors: {err}");
    assert!(stdout(&out).is_empty(), "no partial output");

    let out = run(
        dir.path(),
        &[
            "snapshot",
            "build",
            "bad.csv",
            "--authority",
            "29189846",
            "--date",
            "2026-11-24",
            "-o",
            "bad.snap",
        ],
    );
    assert_code(&out, 1);
    assert!(
        !dir.path().join("bad.snap").exists(),
        "no snapshot from a bad list"
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("old.csv"), OLD).unwrap();
    let out = run(
        dir.path(),
        &[
            "snapshot",
            "build",
            "old.csv",
            "--authority",
            "13585627",
            "--date",
            "2026-11-24",
            "-o",
            "x",
        ],
    );
    assert_code(&out, 2);
    assert!(stderr(&out).contains("modulus-11"), "{}", stderr(&out));
    let out = run(
        dir.path(),
        &[
            "snapshot",
            "build",
            "old.csv",
            "--authority",
            "13585628",
            "--date",
            "2026-13-01",
            "-o",
            "x",
        ],
    );
    assert_code(&out, 2);
    fs::create_dir(dir.path().join("d")).unwrap();
    let out = run(dir.path(), &["diff", "d", "old.csv"]);
    assert_code(&out, 2);
    let out = run(dir.path(), &["diff", "d", "d"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--out"), "{}", stderr(&out));
}

#[test]
fn directory_diff_completes_good_pairs_and_reports_one_sided_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let generated = run(
        d,
        &[
            "generate",
            "--out",
            "data",
            "--authorities",
            "5",
            "--keys",
            "20000",
            "--days",
            "2",
            "--churn",
            "0.01",
        ],
    );
    assert_code(&generated, 0);
    let (day1, day2) = (d.join("data/2026-01-01"), d.join("data/2026-01-02"));
    let mut names: Vec<String> = fs::read_dir(&day1)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5);
    // One pair is checked against the single-file diff; one file exists only on day 2.
    fs::write(day2.join("12345674.csv"), "nummer\n").unwrap();

    let out = run(
        d,
        &[
            "diff",
            "data/2026-01-01",
            "data/2026-01-02",
            "--out",
            "changes",
        ],
    );
    assert_code(&out, 3);
    let table = stdout(&out);
    assert!(
        table.contains("12345674.csv") && table.contains("error"),
        "{table}"
    );
    assert!(table.contains("5 ok, 1 failed"), "{table}");
    assert!(
        stderr(&out).contains("present only on one side"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("changes/12345674.csv").exists());

    let first = &names[0];
    let single = run(
        d,
        &[
            "diff",
            &format!("data/2026-01-01/{first}"),
            &format!("data/2026-01-02/{first}"),
        ],
    );
    assert_code(&single, 0);
    assert_eq!(
        fs::read_to_string(d.join("changes").join(first)).unwrap(),
        stdout(&single)
    );
    // 1% churn: as many sign-ups as sign-offs, each about 1% of the keys.
    let rows: Vec<String> = stdout(&single).lines().skip(1).map(str::to_owned).collect();
    let up = rows.iter().filter(|r| r.starts_with("tilmeldt")).count();
    assert_eq!(up * 2, rows.len());
    assert!(up > 10);
}

#[test]
fn generate_is_deterministic_and_valid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for out in ["a", "b"] {
        let o = run(
            d,
            &[
                "generate",
                "--out",
                out,
                "--authorities",
                "3",
                "--keys",
                "30000",
                "--days",
                "2",
                "--seed",
                "9",
            ],
        );
        assert_code(&o, 0);
    }
    let mut files = 0;
    for date in ["2026-01-01", "2026-01-02"] {
        for entry in fs::read_dir(d.join("a").join(date)).unwrap() {
            let entry = entry.unwrap();
            let other = d.join("b").join(date).join(entry.file_name());
            assert_eq!(fs::read(entry.path()).unwrap(), fs::read(other).unwrap());
            // Every generated list parses: a snapshot builds from it.
            let p = entry.path();
            let o = run(
                d,
                &[
                    "snapshot",
                    "build",
                    p.to_str().unwrap(),
                    "--authority",
                    "29189846",
                    "--date",
                    date,
                    "-o",
                    "x.snap",
                ],
            );
            assert_code(&o, 0);
            files += 1;
        }
    }
    assert_eq!(files, 6);
}

#[test]
fn completions_man_pages_quiet_and_the_config_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(d, &["completions", "bash"]);
    assert_code(&out, 0);
    let script = stdout(&out);
    assert!(
        script.contains("nemsms-diff") && script.contains("republish"),
        "{script}"
    );
    fs::write(d.join("c.bash"), &script).unwrap();
    let syntax = std::process::Command::new("bash")
        .args(["-n", "c.bash"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(syntax.success(), "the bash completion script parses");
    let out = run(d, &["man"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains(".TH nemsms-diff 1"),
        "{}",
        stdout(&out)
    );
    let out = run(d, &["man", "--out", "man"]);
    assert_code(&out, 0);
    let run_page = fs::read_to_string(d.join("man/nemsms-diff-run.1")).unwrap();
    assert!(run_page.contains("accept\\-mass\\-change"), "{run_page}");

    // The config path from NEMSMS_DIFF_CONFIG; --quiet keeps info logs out
    // (which a run without it writes).
    let loud = crate::Setup::new(1, 2_000, 1, 0.0);
    let out = loud.run(&["--date", "2026-01-01"]);
    assert_code(&out, 0);
    assert!(
        crate::stderr(&out).contains("INFO"),
        "{}",
        crate::stderr(&out)
    );
    let s = crate::Setup::new(1, 2_000, 1, 0.0);
    let config = s.path().join("config.toml");
    let config = config.to_str().unwrap();
    let out = crate::run_env(
        d,
        &["run", "--date", "2026-01-01", "--quiet"],
        &[("NEMSMS_DIFF_CONFIG", config)],
    );
    assert_code(&out, 0);
    assert!(
        !crate::stderr(&out).contains("INFO"),
        "{}",
        crate::stderr(&out)
    );
    let out = crate::run_env(d, &["status"], &[("NEMSMS_DIFF_CONFIG", config)]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("baseline 2026-01-01"),
        "{}",
        stdout(&out)
    );
    // Without either: a usage error that names both.
    let out = run(d, &["status"]);
    assert_code(&out, 2);
    assert!(
        crate::stderr(&out).contains("--config"),
        "{}",
        crate::stderr(&out)
    );
}

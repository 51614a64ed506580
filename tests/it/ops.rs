//! Operating it: metrics files read by a real Prometheus parser, missed
//! days, and the publish report's shape.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::{Flow, Setup, assert_code, run, run_env, stderr, stdout};

/// (name, labels) → value, parsed by Python's `prometheus_client`.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn parse_metrics(path: &Path) -> Samples {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    assert fam.type == "gauge", fam
    assert fam.documentation, fam
    for s in fam.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 runs (scripts/test.sh installs prometheus-client)");
    assert!(
        out.status.success(),
        "the Prometheus parser refused {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter().map(|(n, l, x)| ((n, l), x)).collect()
}

fn get(m: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    *m.get(&key)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {:?}", m.keys()))
}

#[test]
fn run_metrics_parse_and_tell_the_truth() {
    let s = Setup::new(2, 20_000, 3, 0.01);
    let d = s.path();
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    let out = s.run(&["--date", "2026-01-02", "--metrics-file", "run.prom"]);
    assert_code(&out, 0);
    let prom = d.join("run.prom");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&prom).unwrap().permissions().mode() & 0o777,
        0o644,
        "readable by the collector"
    );
    let m = parse_metrics(&prom);
    let info = &[("command", "run"), ("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(get(&m, "nemsms_diff_info", info), 1.0);
    let list = stdout(&run(
        d,
        &["outbox", "list", "--config", "config.toml", "--json"],
    ));
    let mut total = 0.0;
    for line in list.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["date"] != "2026-01-02" {
            continue;
        }
        let a = v["authority"].as_str().unwrap();
        for (h, field) in [("tilmeldt", "n_signed_up"), ("afmeldt", "n_signed_off")] {
            assert_eq!(
                get(
                    &m,
                    "nemsms_diff_authority_events",
                    &[("authority", a), ("handling", h)]
                ),
                v[field].as_u64().unwrap() as f64
            );
        }
        total += v["n_events"].as_u64().unwrap() as f64;
        assert_eq!(
            get(
                &m,
                "nemsms_diff_authority_status",
                &[("authority", a), ("status", "committed")]
            ),
            1.0
        );
        assert_eq!(
            get(
                &m,
                "nemsms_diff_authority_status",
                &[("authority", a), ("status", "failed")]
            ),
            0.0
        );
    }
    assert!(total > 0.0);
    let emitted = get(
        &m,
        "nemsms_diff_run_events",
        &[("command", "run"), ("handling", "tilmeldt")],
    ) + get(
        &m,
        "nemsms_diff_run_events",
        &[("command", "run"), ("handling", "afmeldt")],
    );
    assert_eq!(emitted, total);
    let finished = get(
        &m,
        "nemsms_diff_run_last_timestamp_seconds",
        &[("command", "run")],
    );
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!((now - finished).abs() < 600.0, "{finished} vs {now}");

    // Day 3: one authority's list truncated: quarantined, its changes held
    // back, its last success the time of its last commit.
    let a = &s.authorities[0];
    let text = fs::read_to_string(s.list("2026-01-03", a)).unwrap();
    let half: Vec<&str> = text.lines().take(text.lines().count() / 2).collect();
    fs::write(s.list("2026-01-03", a), half.join("\n")).unwrap();
    let pointer_mtime = fs::metadata(d.join("state/current").join(a))
        .unwrap()
        .modified()
        .unwrap();
    let out = s.run(&["--date", "2026-01-03", "--metrics-file", "run.prom"]);
    assert_code(&out, 3);
    let m = parse_metrics(&prom);
    assert_eq!(
        get(
            &m,
            "nemsms_diff_authority_status",
            &[("authority", a), ("status", "quarantined")]
        ),
        1.0
    );
    assert!(
        get(
            &m,
            "nemsms_diff_authority_held_back_changes",
            &[("authority", a)]
        ) > 1000.0
    );
    assert_eq!(
        get(
            &m,
            "nemsms_diff_authority_last_success_timestamp_seconds",
            &[("authority", a)]
        ),
        jiff::Timestamp::try_from(pointer_mtime)
            .unwrap()
            .as_second() as f64
    );
    assert_eq!(
        get(
            &m,
            "nemsms_diff_run_outcomes",
            &[("command", "run"), ("status", "quarantined")]
        ),
        1.0
    );
    assert!(
        get(
            &m,
            "nemsms_diff_authority_keys",
            &[("authority", &s.authorities[1])]
        ) > 1000.0
    );
    // Written atomically: no temp file is left beside it.
    let names: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("run.prom"))
        .collect();
    assert_eq!(names, vec!["run.prom"]);
}

#[test]
fn publish_metrics_and_report_count_what_was_confirmed() {
    let flow = Flow::new(2, 20_000, 0.01, "");
    let _emulator = flow.emulator(&[]);
    let out = run(
        flow.path(),
        &[
            "publish",
            "--config",
            "config.toml",
            "--metrics-file",
            "publish.prom",
        ],
    );
    assert_code(&out, 0);
    let events = flow.outbox_ids().len() as f64;
    // `config check --connect` logs in to the broker.
    let check = run(
        flow.path(),
        &["config", "check", "--config", "config.toml", "--connect"],
    );
    assert_code(&check, 0);
    assert!(
        stdout(&check).contains("token and AMQP login"),
        "{}",
        stdout(&check)
    );
    let m = parse_metrics(&flow.path().join("publish.prom"));
    assert_eq!(get(&m, "nemsms_diff_publish_events_confirmed", &[]), events);
    assert!(get(&m, "nemsms_diff_publish_messages_sent", &[]) >= events);
    assert_eq!(get(&m, "nemsms_diff_publish_complete", &[]), 1.0);
    assert_eq!(get(&m, "nemsms_diff_outbox_unpublished_events", &[]), 0.0);
    assert_eq!(
        get(&m, "nemsms_diff_publish_batches", &[("status", "rejected")]),
        0.0
    );
    assert!(get(&m, "nemsms_diff_publish_events_per_second", &[]) > 0.0);
    assert_eq!(
        get(
            &m,
            "nemsms_diff_info",
            &[
                ("command", "publish"),
                ("version", env!("CARGO_PKG_VERSION"))
            ]
        ),
        1.0
    );
    // The report: publish-<stamp>-<pid>.json, the run reports' header
    // fields, each batch and totals.
    let report = crate::report_of(&flow.path().join("state"), "publish").unwrap();
    let name = report.file_name().unwrap().to_string_lossy().into_owned();
    let parts: Vec<&str> = name.trim_end_matches(".json").split('-').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert!(parts[1].len() == 16 && parts[1].ends_with('Z'), "{name}");
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["schema"], 1);
    assert_eq!(r["kind"], "publish");
    assert!(r["run_id"].is_string() && r["started_at"].is_string());
    assert_eq!(r["totals"]["confirmed_now"].as_f64(), Some(events));
    assert_eq!(r["totals"]["complete"], true);
    assert!(r["batches"].as_array().unwrap().len() >= 2);
}

#[test]
fn a_missed_day_is_refused_unless_allowed_and_reported_as_a_gap() {
    let s = Setup::new(1, 10_000, 3, 0.01);
    let d = s.path();
    let a = &s.authorities[0];
    assert_code(&s.run(&["--date", "2026-01-01"]), 0);
    // 2026-01-02 missed: the 3rd would diff across it.
    let out = s.run(&["--date", "2026-01-03"]);
    assert_code(&out, 6);
    let text = stdout(&out);
    assert!(
        text.contains("gap: the current snapshot is 2026-01-01"),
        "{text}"
    );
    assert!(
        text.contains("backfill --from 2026-01-02 --to 2026-01-03"),
        "{text}"
    );
    assert!(
        !d.join(format!("state/outbox/2026-01-03/{a}.batch"))
            .exists()
    );
    // Allowed: it diffs against the 1st, says so, and records the base.
    let out = s.run(&[
        "--date",
        "2026-01-03",
        "--allow-gap",
        "--log-format",
        "json",
    ]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("diff across a gap"),
        "{}",
        stderr(&out)
    );
    let report = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "summary")
        .unwrap()["fields"]["report"]
        .as_str()
        .unwrap()
        .to_owned();
    let r: serde_json::Value = serde_json::from_slice(&fs::read(d.join(report)).unwrap()).unwrap();
    assert_eq!(r["outcomes"][0]["base_date"], "2026-01-01");
    assert_eq!(r["outcomes"][0]["status"], "committed");
    // The missed date later: not "skipped", for nothing exists for it.
    let out = s.run(&["--date", "2026-01-02"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains(" gap") && !text.contains("skipped"), "{text}");
    assert!(
        text.contains("nothing was committed for 2026-01-02"),
        "{text}"
    );
    // A committed date still says skipped.
    let again = s.run(&["--date", "2026-01-03"]);
    assert!(stdout(&again).contains("skipped"), "{}", stdout(&again));
    // Backfilling the gap in order works without --allow-gap.
    let t = Setup::new(1, 10_000, 3, 0.01);
    assert_code(&t.run(&["--date", "2026-01-01"]), 0);
    let back = run_env(
        t.path(),
        &[
            "backfill",
            "--config",
            "config.toml",
            "--from",
            "2026-01-02",
            "--to",
            "2026-01-03",
        ],
        &[],
    );
    assert_code(&back, 0);
}

/// Runs `args` with stderr on a pseudo-terminal (util-linux `script`),
/// stdout discarded; what the terminal showed.
fn on_a_terminal(dir: &Path, args: &str, env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} {args} >/dev/null", env!("CARGO_BIN_EXE_nemsms-diff")),
            "/dev/null",
        ])
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("script (util-linux) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn logs_the_progress_bar_and_colour_keep_to_their_places() {
    let s = Setup::new(3, 5_000, 4, 0.01);
    let d = s.path();
    let backfill = "backfill --config config.toml --from 2026-01-01 --to 2026-01-04";
    // On a terminal: a bar, coloured logs, and every log line starts on
    // a cleared line, never inside the bar's text.
    let text = on_a_terminal(d, backfill, &[("NO_COLOR", "")]);
    assert!(text.contains("authority-days"), "a bar is drawn: {text}");
    assert!(
        text.contains("\x1b[32m INFO"),
        "coloured on a terminal: {text}"
    );
    let mut logged = 0;
    for line in text.split('\n').filter(|l| l.contains("authority done")) {
        let last = line.rsplit("\x1b[2K").next().unwrap();
        assert!(
            !last.contains("authority-days"),
            "bar and log garbled: {line:?}"
        );
        logged += 1;
    }
    assert_eq!(logged, 12, "{text}");

    // JSON logs on a terminal: no bar, every line JSON.
    fs::remove_dir_all(d.join("state")).unwrap();
    let text = on_a_terminal(d, &format!("--log-format json {backfill}"), &[]);
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.len() >= 13, "{text}");
    for l in &lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "not JSON: {l:?}"
        );
    }

    // Piped: no colour unless asked for.
    let piped = s.run(&["--date", "2026-01-04"]);
    assert!(!stderr(&piped).contains('\x1b'), "{}", stderr(&piped));
    let forced = s.run(&["--date", "2026-01-04", "--color", "always"]);
    assert!(stderr(&forced).contains("\x1b["), "{}", stderr(&forced));
    // A fatal error in JSON mode is JSON, with the exit code.
    let fatal = run(
        d,
        &["--log-format", "json", "run", "--config", "missing.toml"],
    );
    assert_code(&fatal, 2);
    let v: serde_json::Value = serde_json::from_str(stderr(&fatal).trim()).unwrap();
    assert_eq!(v["level"], "ERROR");
    assert_eq!(v["fields"]["exit_code"], 2);
    assert!(
        v["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("missing.toml")
    );
}

//! `--metrics-file`: the Prometheus text format, written atomically for
//! node_exporter's textfile collector (temp file beside it, then rename;
//! the temp name does not end in `.prom`, so the collector never reads a
//! half-written file).
//!
//! Every metric is a gauge describing the invocation that wrote the file
//! (the file is replaced each time): `nemsms_diff_info`, the run's and each
//! authority's outcome (`run`, `backfill`), and the publish's counts and
//! rate (`publish`, or `run` when it publishes). The file holds no CPR
//! number and is mode 0644, so that the collector (another user) can read
//! it. Give `run` and `publish` different files: each replaces its own.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

use crate::beskedfordeler::publish::{BatchOutcome, BatchStatus};
use crate::nightly::report::{Report, Status};
use crate::store::state::State;

type Labels = Vec<(&'static str, String)>;
/// One sample: its labels and value.
type Sample = (Labels, f64);

/// A metrics file being built: families in the order added.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Vec<(String, String, Vec<Sample>)>,
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn seconds(rfc3339: &str) -> Option<f64> {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond() as f64 / 1e3)
}

impl Metrics {
    /// A file starting with `nemsms_diff_info{command, version} 1`.
    pub fn new(command: &str) -> Metrics {
        let mut m = Metrics::default();
        m.gauge(
            "nemsms_diff_info",
            "The nemsms-diff build and the command that wrote this file.",
            vec![(
                vec![
                    ("command", command.to_owned()),
                    ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ],
                1.0,
            )],
        );
        m
    }

    /// Adds one gauge family (its samples must share the name).
    pub fn gauge(&mut self, name: &str, help: &str, samples: Vec<Sample>) {
        if !samples.is_empty() {
            self.families
                .push((name.to_owned(), help.to_owned(), samples));
        }
    }

    /// A run's or backfill's outcome, per authority: the last date's
    /// status (one sample per status, 1 for the one that holds), keys,
    /// events emitted, changes held back, time spent, and the last
    /// success (this run's end if it succeeded, else the time of the
    /// authority's last commit: its current pointer's).
    pub fn add_run(&mut self, report: &Report, state: &State, duration_secs: f64) {
        let kind = report.header.kind.as_str();
        let finished = seconds(&report.header.finished_at).unwrap_or_default();
        let cmd = || vec![("command", kind.to_owned())];
        self.gauge(
            "nemsms_diff_run_last_timestamp_seconds",
            "When the run or backfill finished (Unix time).",
            vec![(cmd(), finished)],
        );
        self.gauge(
            "nemsms_diff_run_duration_seconds",
            "How long the run or backfill took.",
            vec![(cmd(), duration_secs)],
        );
        let mut per_status = BTreeMap::new();
        for o in &report.outcomes {
            *per_status.entry(o.status.as_str()).or_insert(0u64) += 1;
        }
        self.gauge(
            "nemsms_diff_run_outcomes",
            "Authority-days of the run by how they ended.",
            Status::ALL
                .iter()
                .map(|s| {
                    let mut l = cmd();
                    l.push(("status", s.as_str().to_owned()));
                    (l, per_status.get(s.as_str()).copied().unwrap_or(0) as f64)
                })
                .collect(),
        );
        self.gauge(
            "nemsms_diff_run_events",
            "Events the run emitted into the outbox, by handling.",
            vec![
                (
                    vec![
                        ("command", kind.to_owned()),
                        ("handling", "tilmeldt".into()),
                    ],
                    report.signed_up as f64,
                ),
                (
                    vec![("command", kind.to_owned()), ("handling", "afmeldt".into())],
                    report.signed_off as f64,
                ),
            ],
        );
        self.gauge(
            "nemsms_diff_run_held_back_changes",
            "Changes found but not emitted (quarantined authorities).",
            vec![(cmd(), report.held_back as f64)],
        );

        // Per authority: its outcomes in date order; the last one counts.
        let mut per: BTreeMap<&str, Vec<&crate::nightly::report::Outcome>> = BTreeMap::new();
        for o in &report.outcomes {
            per.entry(o.authority.as_str()).or_default().push(o);
        }
        let (mut status, mut keys, mut events, mut held, mut took, mut success) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (a, os) in &per {
            let last = os.last().expect("one outcome at least");
            let au = || vec![("authority", (*a).to_owned())];
            for s in Status::ALL {
                let mut l = au();
                l.push(("status", s.as_str().to_owned()));
                status.push((l, f64::from(u8::from(last.status == s))));
            }
            if let Some(k) = os.iter().rev().find_map(|o| o.keys) {
                keys.push((au(), k as f64));
            }
            let emitted: Vec<_> = os.iter().filter(|o| !o.status.is_problem()).collect();
            for (h, n) in [
                ("tilmeldt", emitted.iter().map(|o| o.signed_up).sum::<u64>()),
                ("afmeldt", emitted.iter().map(|o| o.signed_off).sum::<u64>()),
            ] {
                let mut l = au();
                l.push(("handling", h.to_owned()));
                events.push((l, n as f64));
            }
            held.push((
                au(),
                os.iter()
                    .filter(|o| o.status.is_problem())
                    .map(|o| o.signed_up + o.signed_off)
                    .sum::<u64>() as f64,
            ));
            took.push((
                au(),
                os.iter().map(|o| o.duration_ms).sum::<u64>() as f64 / 1e3,
            ));
            let last_success = if last.status.is_problem() {
                crate::domain::keys::parse_cvr_str(a)
                    .ok()
                    .and_then(|cvr| crate::fsutil::mtime(&state.current(cvr)).ok())
                    .map(|t| t as f64)
            } else {
                Some(finished)
            };
            if let Some(t) = last_success {
                success.push((au(), t));
            }
        }
        self.gauge(
            "nemsms_diff_authority_status",
            "How the authority's last date in this run ended (1 for the status that holds).",
            status,
        );
        self.gauge(
            "nemsms_diff_authority_last_success_timestamp_seconds",
            "When the authority last completed (this run, or its last commit if this run failed it).",
            success,
        );
        self.gauge(
            "nemsms_diff_authority_keys",
            "Keys (CPR/CVR numbers) on the authority's latest list.",
            keys,
        );
        self.gauge(
            "nemsms_diff_authority_events",
            "Events emitted for the authority in this run, by handling.",
            events,
        );
        self.gauge(
            "nemsms_diff_authority_held_back_changes",
            "Changes held back for the authority (quarantine) in this run.",
            held,
        );
        self.gauge(
            "nemsms_diff_authority_duration_seconds",
            "Time spent on the authority in this run.",
            took,
        );
    }

    /// A publish: batches by end state, events confirmed, messages sent,
    /// rate, whether it completed, and what stays unpublished.
    pub fn add_publish(
        &mut self,
        outcomes: &[BatchOutcome],
        duration_secs: f64,
        unpublished_events: u64,
    ) {
        let confirmed: u64 = outcomes.iter().map(|o| o.published).sum();
        let sent: u64 = outcomes.iter().map(|o| o.sent).sum();
        let complete = outcomes.iter().all(|o| o.status == BatchStatus::Published);
        let now = jiff::Timestamp::now().as_millisecond() as f64 / 1e3;
        self.gauge(
            "nemsms_diff_publish_last_timestamp_seconds",
            "When the publish finished (Unix time).",
            vec![(vec![], now)],
        );
        self.gauge(
            "nemsms_diff_publish_duration_seconds",
            "How long the publish took.",
            vec![(vec![], duration_secs)],
        );
        self.gauge(
            "nemsms_diff_publish_batches",
            "Batches the publish handled, by end state.",
            [
                BatchStatus::Published,
                BatchStatus::Rejected,
                BatchStatus::Incomplete,
            ]
            .iter()
            .map(|s| {
                (
                    vec![("status", s.as_str().to_owned())],
                    outcomes.iter().filter(|o| o.status == *s).count() as f64,
                )
            })
            .collect(),
        );
        self.gauge(
            "nemsms_diff_publish_events_confirmed",
            "Events Beskedfordeler confirmed during this publish.",
            vec![(vec![], confirmed as f64)],
        );
        self.gauge(
            "nemsms_diff_publish_messages_sent",
            "Messages sent during this publish, resends included.",
            vec![(vec![], sent as f64)],
        );
        self.gauge(
            "nemsms_diff_publish_events_per_second",
            "Confirmed events per second of this publish.",
            vec![(
                vec![],
                if duration_secs > 0.0 {
                    confirmed as f64 / duration_secs
                } else {
                    0.0
                },
            )],
        );
        self.gauge(
            "nemsms_diff_publish_complete",
            "1 if every batch is confirmed, 0 if the next publish has work.",
            vec![(vec![], f64::from(u8::from(complete)))],
        );
        self.gauge(
            "nemsms_diff_outbox_unpublished_events",
            "Events in the outbox not yet confirmed, after this publish.",
            vec![(vec![], unpublished_events as f64)],
        );
    }

    /// The text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, samples) in &self.families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for (labels, value) in samples {
                out.push_str(name);
                if !labels.is_empty() {
                    let l: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                        .collect();
                    out.push_str(&format!("{{{}}}", l.join(",")));
                }
                out.push_str(&format!(" {value}\n"));
            }
        }
        out
    }

    /// Writes the file atomically (temp file, fsync, rename), mode 0644.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let ctx = || format!("cannot write the metrics file {}", path.display());
        let tmp = crate::fsutil::temp_path(path).with_context(ctx)?;
        let result = (|| {
            let mut f = crate::fsutil::create_private_replacing(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.with_context(ctx)
    }
}

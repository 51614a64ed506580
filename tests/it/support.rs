//! What the integration tests share: running the binary, servers they
//! start (stopped when dropped), generated data sets with configs, the
//! register simulator, the Beskedfordeler flow and private brokers, and
//! state-directory comparisons.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the binary with `args` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    run_env(dir, args, &[])
}

/// Runs the binary with extra environment variables.
pub fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("binary runs")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing stderr when it differs.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(o));
}

/// A server process started for a test; stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: std::process::Child,
    /// The first line it printed, with the address it listens on.
    pub banner: String,
}

impl Server {
    /// Starts `nemsms-diff ARGS` and waits for its first line on stdout.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Self::start_env(dir, args, &[])
    }

    /// Like [`Server::start`], with extra environment variables.
    pub fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("server starts");
        let mut banner = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut banner)
            .unwrap();
        assert!(!banner.is_empty(), "server printed nothing: {args:?}");
        Server { child, banner }
    }

    /// The `scheme://host:port` it announced.
    pub fn url(&self) -> String {
        let start = self
            .banner
            .find("://")
            .map(|i| self.banner[..i].rfind(' ').map_or(0, |s| s + 1))
            .unwrap();
        self.banner[start..].trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

const ENVELOPE: &str = r#"
[envelope]
beskedtype = "9a6b5c1e-3f0d-4b8e-a2c7-5d1e8f4a6b3c"
beskedansvarlig_aktoer = "2f7c9e41-8b3a-4d6f-9e0c-1a5b7d3f8e2a"
objekttype_virksomhed = "6c1d8f3a-2b4e-4a7c-9d5f-0e8b3a1c7d4f"
handling_tilmeldt = "b3e1f7a2-5c8d-4e9b-a0f6-2d4c8b1e7a3f"
handling_afmeldt = "e8a4c2d6-1f3b-4c7e-9a5d-7b0f2e6c4a1d"
id_key_file = "id.key"
"#;

/// The id key every setup shares, so that separate setups (a reference and
/// a crashed copy, a run and a backfill) write identical batches.
const ID_KEY: &str = "07070707070707070707070707070707070707070707070707070707070707aa\n";

/// A generated data set with a config for all its authorities.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub authorities: Vec<String>,
}

impl Setup {
    pub fn new(authorities: usize, keys: u64, days: u32, churn: f64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            dir.path(),
            &[
                "generate",
                "--out",
                "lists",
                "--authorities",
                &authorities.to_string(),
                "--keys",
                &keys.to_string(),
                "--days",
                &days.to_string(),
                "--churn",
                &churn.to_string(),
            ],
        );
        assert_code(&out, 0);
        let mut names: Vec<String> = fs::read_dir(dir.path().join("lists/2026-01-01"))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .into_string()
                    .unwrap()
                    .trim_end_matches(".csv")
                    .to_owned()
            })
            .collect();
        names.sort();
        // As an operator keeps it: readable by its owner alone.
        let key = dir.path().join("id.key");
        fs::write(&key, ID_KEY).unwrap();
        fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let s = Setup {
            dir,
            authorities: names,
        };
        s.write_config("");
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)writes `config.toml`, with `extra` top-level settings.
    pub fn write_config(&self, extra: &str) {
        let head = format!(
            "state_dir = \"state\"\nsource = \"file://lists/{{date}}/{{authority}}.csv\"\n{extra}\n"
        );
        self.write_config_with(&head, "");
    }

    /// (Re)writes `config.toml`: `head`, the envelope section, then every
    /// authority (SysID = CVR) with `per_authority` lines.
    pub fn write_config_with(&self, head: &str, per_authority: &str) {
        let mut text = format!("{head}\n{ENVELOPE}");
        for (i, a) in self.authorities.iter().enumerate() {
            text.push_str(&format!(
                "\n[[authority]]\ncvr = \"{a}\"\nname = \"Kommune {i}\"\nregister_sysid = \"{a}\"\n{per_authority}\n"
            ));
        }
        fs::write(self.path().join("config.toml"), text).unwrap();
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["run", "--config", "config.toml"];
        all.extend_from_slice(args);
        run(self.path(), &all)
    }

    pub fn list(&self, date: &str, authority: &str) -> PathBuf {
        self.path()
            .join("lists")
            .join(date)
            .join(format!("{authority}.csv"))
    }
}

/// Every file under `dir` (relative path → bytes), reports and lock left out.
pub fn state_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("reports") || rel == "lock" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The first report in `state/reports` whose name starts with `kind-`
/// (`publish`, `republish`, `prune`, …).
pub fn report_of(state: &Path, kind: &str) -> Option<PathBuf> {
    let prefix = format!("{kind}-");
    let mut found: Vec<PathBuf> = fs::read_dir(state.join("reports"))
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
            let mtime = fs::metadata(e.path()).unwrap().modified().unwrap();
            fs::File::options()
                .write(true)
                .open(&target)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
}

pub const NEMSMS_TYPE: &str = "9a6b5c1e-3f0d-4b8e-a2c7-5d1e8f4a6b3c";

pub const ALIVE_TYPE: &str = "f7e84a06-c47e-42e8-a864-fb4095d7f520";

pub fn amqp_url() -> String {
    std::env::var("NEMSMS_DIFF_AMQP_URL").expect(
        "these tests need a RabbitMQ broker: run scripts/test.sh (it starts one), \
         or set NEMSMS_DIFF_AMQP_URL after eval \"$(scripts/start-rabbitmq.sh DIR)\"",
    )
}

/// Names no other test uses on the shared broker.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// A committed two-day run with a [beskedfordeler] section.
pub struct Flow {
    pub setup: Setup,
    pub url: String,
    pub exchange: String,
    pub dueslag: String,
}

impl Flow {
    pub fn new(authorities: usize, keys: u64, churn: f64, extra: &str) -> Flow {
        Self::with_url(amqp_url(), authorities, keys, churn, extra)
    }

    pub fn with_url(url: String, authorities: usize, keys: u64, churn: f64, extra: &str) -> Flow {
        let setup = Setup::new(authorities, keys, 2, churn);
        assert_code(&setup.run(&["--date", "2026-01-01"]), 0);
        assert_code(&setup.run(&["--date", "2026-01-02"]), 0);
        let flow = Flow {
            setup,
            url,
            exchange: unique("AFSEND_BESKED_EXCHANGE"),
            dueslag: unique("dueslag.nemsms"),
        };
        let mut config = fs::read_to_string(flow.path().join("config.toml")).unwrap();
        config.push_str(&format!(
            "\n[beskedfordeler]\nurl = \"{}\"\nexchange = \"{}\"\ntoken = \"test-token\"\ninsecure_broker = true\n{extra}\n",
            flow.url, flow.exchange
        ));
        fs::write(flow.path().join("config.toml"), config).unwrap();
        flow
    }

    pub fn path(&self) -> &Path {
        self.setup.path()
    }

    pub fn emulator(&self, faults: &[&str]) -> Server {
        let sub = format!("{}={NEMSMS_TYPE}", self.dueslag);
        let mut args = vec![
            "simulate",
            "beskedfordeler",
            "--exchange",
            &self.exchange,
            "--subscribe",
            &sub,
        ];
        args.extend_from_slice(faults);
        Server::start_env(self.path(), &args, &[("NEMSMS_DIFF_AMQP_URL", &self.url)])
    }

    pub fn publish(&self) -> std::process::Output {
        run(self.path(), &["publish", "--config", "config.toml"])
    }

    /// The BeskedIds of every event in the outbox.
    pub fn outbox_ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let list = stdout(&run(
            self.path(),
            &["outbox", "list", "--config", "config.toml", "--json"],
        ));
        for line in list.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (a, d) = (
                v["authority"].as_str().unwrap(),
                v["date"].as_str().unwrap(),
            );
            ids.extend(
                batch_envelopes(self.path(), a, d)
                    .iter()
                    .map(|e| besked_id(e)),
            );
        }
        ids
    }

    /// Every BeskedId that reached the dueslag (duplicates kept).
    pub fn delivered(&self) -> Vec<String> {
        let out = crate::run_env(
            self.path(),
            &[
                "simulate",
                "drain",
                "--queue",
                &self.dueslag,
                "--idle-ms",
                "1500",
            ],
            &[("NEMSMS_DIFF_AMQP_URL", &self.url)],
        );
        assert_code(&out, 0);
        stdout(&out).lines().map(str::to_owned).collect()
    }
}

/// Every expected BeskedId was delivered, and nothing else.
pub fn assert_same(delivered: BTreeSet<String>, expected: &BTreeSet<String>) {
    let missing: Vec<_> = expected.difference(&delivered).take(5).collect();
    let extra: Vec<_> = delivered.difference(expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} expected, {} delivered; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        expected.len(),
        delivered.len()
    );
}

pub struct StopBroker(std::path::PathBuf, std::path::PathBuf);

impl Drop for StopBroker {
    fn drop(&mut self) {
        let _ = Command::new(&self.0).arg(&self.1).status();
    }
}

/// A private broker; with `tls`, also AMQPS with client certificates and
/// SASL EXTERNAL on virtual host BF. Returns its `export` lines.
pub fn private_broker(dir: &Path, tls: Option<&Path>) -> (StopBroker, String) {
    let rabbit = dir.join("rabbitmq");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut cmd = Command::new(script.join("start-rabbitmq.sh"));
    cmd.arg(&rabbit);
    if let Some(certs) = tls {
        cmd.env("TLS_CERTS", certs);
    }
    let started = cmd.output().unwrap();
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    (
        StopBroker(script.join("stop-rabbitmq.sh"), rabbit),
        String::from_utf8_lossy(&started.stdout).into_owned(),
    )
}

pub fn export(exports: &str, name: &str) -> String {
    exports
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("export {name}="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("{name} not in {exports}"))
}

/// The register simulator over `dir/lists`, with the certificates of
/// `dir/certs` (client certificates required), and `extra` arguments.
pub fn simulator(dir: &Path, extra: &[&str]) -> Server {
    simulator_env(dir, extra, &[])
}

/// [`simulator`] with extra environment variables (e.g. its clock).
pub fn simulator_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut args = vec![
        "simulate",
        "register",
        "--data",
        "lists",
        "--cert",
        "certs/server.pem",
        "--key",
        "certs/server-key.pem",
        "--client-ca",
        "certs/ca.pem",
    ];
    args.extend_from_slice(extra);
    Server::start_env(dir, &args, env)
}

/// The envelopes of one batch (`outbox show`), one per line.
pub fn batch_envelopes(dir: &Path, authority: &str, date: &str) -> Vec<String> {
    let out = run(
        dir,
        &[
            "outbox",
            "show",
            "--config",
            "config.toml",
            "--authority",
            authority,
            "--date",
            date,
        ],
    );
    assert_code(&out, 0);
    stdout(&out).lines().map(str::to_owned).collect()
}

/// The `BeskedId` of one of our envelopes.
pub fn besked_id(envelope: &str) -> String {
    const MARK: &str = "<b:BeskedId><sd:UUIDIdentifikator>";
    let at = envelope.find(MARK).unwrap() + MARK.len();
    envelope[at..at + 36].to_owned()
}

/// A client of the lab's HTTPS servers: trusts `dir/certs/ca.pem` and
/// shows `dir/certs/client.pem`.
pub fn mtls_client(dir: &Path) -> reqwest::blocking::Client {
    let pem = [
        fs::read(dir.join("certs/client.pem")).unwrap(),
        fs::read(dir.join("certs/client-key.pem")).unwrap(),
    ]
    .concat();
    reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &fs::read(dir.join("certs/ca.pem")).unwrap(),
        )
        .unwrap()])
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

/// The events of every batch of `date` as `haendelse;type;nummer` rows.
pub fn batch_rows(dir: &Path, authority: &str, date: &str) -> Vec<String> {
    batch_envelopes(dir, authority, date)
        .iter()
        .map(|env| {
            let field = |tag: &str| {
                let open = format!("<h:{tag}>");
                let start = env.find(&open).unwrap() + open.len();
                env[start..start + env[start..].find('<').unwrap()].to_owned()
            };
            format!(
                "{};{};{}",
                field("Haendelse"),
                field("Type"),
                field("Nummer")
            )
        })
        .collect()
}

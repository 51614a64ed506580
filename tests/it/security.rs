//! What we hold stays where it belongs (issue 15): private files whatever
//! the umask, no CPR number outside events, no secret in logs or reports,
//! only configured peers trusted, and a push receiver that cannot be held
//! open or flooded.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::Flow;
use crate::Setup;
use crate::simulator;
use crate::{Server, assert_code, run, stderr, stdout};

const CPR: &str = "0101901234";

/// The permissive umask the acceptance runs under.
fn umask_022() {
    // SAFETY: sets this test process's file creation mask; children inherit it.
    unsafe { libc::umask(0o022) };
}

/// Every entry under `root` (not following symlinks) with its mode.
fn modes(root: &Path) -> BTreeMap<PathBuf, (bool, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                continue;
            }
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            out.insert(e.path(), (t.is_dir(), mode));
            if t.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

#[track_caller]
fn assert_private(root: &Path, what: &str) {
    let root_mode = fs::metadata(root).unwrap().permissions().mode() & 0o777;
    assert_eq!(root_mode, 0o700, "{what}: {} itself", root.display());
    let all = modes(root);
    assert!(!all.is_empty(), "{what}: nothing written");
    for (path, (dir, mode)) in all {
        let want = if dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{what}: {} is {mode:o}", path.display());
    }
}

/// A data set, certificates and the register simulator, with an OIOREST
/// config whose retries are short.
fn register_setup(extra: &[&str]) -> (Setup, Server) {
    let setup = Setup::new(2, 5_000, 2, 0.01);
    let d = setup.path();
    assert_code(&run(d, &["simulate", "certs", "--out", "certs"]), 0);
    let mut args = vec!["--record", "record.jsonl", "--delliste-size", "1000"];
    args.extend_from_slice(extra);
    let server = simulator(d, &args);
    write_register_config(&setup, &server.url());
    (setup, server)
}

fn write_register_config(setup: &Setup, base_url: &str) {
    let head = format!(
        "state_dir = \"state\"\nsource = \"oiorest\"\n[register]\nbase_url = \"{base_url}\"\n\
         ca_cert = \"certs/ca.pem\"\nclient_cert = \"certs/client.pem\"\nclient_key = \"certs/client-key.pem\"\n\
         retries = 1\nmax_backoff_secs = 1\nretry_deadline_secs = 3\nconnect_timeout_secs = 2\n"
    );
    setup.write_config_with(&head, "list_mode = \"full\"");
}

#[test]
fn everything_written_is_private_and_the_sweep_follows_no_symlink() {
    umask_022();
    let (setup, _server) = register_setup(&[]);
    let d = setup.path();
    assert_code(&setup.run(&["--date", "2026-01-01"]), 0);
    let state = d.join("state");

    // What a crashed run leaves, and what an attacker might plant: a
    // download in STATE/tmp, a symlink there to a directory outside, and a
    // symlinked directory holding a temp-named file under snapshots.
    let outside = d.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("keep.xml"), "precious").unwrap();
    fs::write(outside.join(".x.tmp.4194303"), "precious").unwrap();
    fs::create_dir_all(state.join("tmp/12345678-2026-01-01")).unwrap();
    fs::write(
        state.join("tmp/12345678-2026-01-01/delliste-1.xml"),
        format!("<CPR>{CPR}</CPR>"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, state.join("tmp/link")).unwrap();
    std::os::unix::fs::symlink(&outside, state.join("snapshots/evil")).unwrap();

    assert_code(&setup.run(&["--date", "2026-01-02"]), 0);
    assert!(
        !state.join("tmp/12345678-2026-01-01").exists()
            && fs::symlink_metadata(state.join("tmp/link")).is_err(),
        "STATE/tmp swept"
    );
    assert_eq!(
        fs::read_to_string(outside.join("keep.xml")).unwrap(),
        "precious"
    );
    assert_eq!(
        fs::read_to_string(outside.join(".x.tmp.4194303")).unwrap(),
        "precious",
        "the sweep did not walk into a symlinked directory"
    );
    fs::remove_file(state.join("snapshots/evil")).unwrap();
    assert_private(&state, "state");

    // Outputs for people hold CPR numbers too.
    let a = &setup.authorities[0];
    let (l1, l2) = (setup.list("2026-01-01", a), setup.list("2026-01-02", a));
    fs::create_dir_all(d.join("old")).unwrap();
    fs::create_dir_all(d.join("new")).unwrap();
    fs::copy(&l1, d.join("old/a.csv")).unwrap();
    fs::copy(&l2, d.join("new/a.csv")).unwrap();
    assert_code(&run(d, &["diff", "old", "new", "--out", "changes"]), 0);
    assert_private(&d.join("changes"), "diff --out");

    fs::write(
        d.join("config.toml"),
        format!(
            "{}\n[beskedfordeler]\nurl = \"amqp://127.0.0.1:1/%2f\"\ntoken = \"t\"\ninsecure_broker = true\n",
            fs::read_to_string(d.join("config.toml")).unwrap()
        ),
    )
    .unwrap();
    assert_code(
        &run(
            d,
            &["publish", "--config", "config.toml", "--to", "dir:dry"],
        ),
        0,
    );
    assert_private(&d.join("dry"), "publish --to dir:");

    let l1s = l1.to_string_lossy().into_owned();
    assert_code(
        &run(
            d,
            &[
                "snapshot",
                "build",
                &l1s,
                "--output",
                "snaps/a.snap",
                "--authority",
                a,
                "--date",
                "2026-01-01",
            ],
        ),
        0,
    );
    assert_private(&d.join("snaps"), "snapshot build");
    assert_code(
        &run(
            d,
            &[
                "generate",
                "--out",
                "gen",
                "--authorities",
                "2",
                "--keys",
                "100",
            ],
        ),
        0,
    );
    assert_private(&d.join("gen"), "generate");
    assert_code(&run(d, &["simulate", "certs", "--out", "certs2"]), 0);
    assert_private(&d.join("certs2"), "simulate certs");
}

/// The shapes a CPR number can take in text: its ten digits, or six, a
/// dash and four.
fn assert_no_cpr(text: &str, what: &str) {
    let dashed = format!("{}-{}", &CPR[..6], &CPR[6..]);
    assert!(
        !text.contains(CPR) && !text.contains(&dashed),
        "{what}: the CPR number shows:\n{text}"
    );
    assert_eq!(
        nemsms_diff::domain::keys::redact_cpr(text),
        text,
        "{what}: something CPR-shaped shows:\n{text}"
    );
}

/// Runs `args` in `dir` with `stdin`, RUST_LOG=trace.
fn run_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn no_cpr_number_in_any_output_of_the_user_commands() {
    let (setup, server) = register_setup(&[]);
    let d = setup.path();
    let a = setup.authorities[0].clone();
    fs::write(
        d.join("stamdata.xml"),
        "<SlutbrugerStamdata xmlns=\"urn:oio:dkal:1.0.0\"><Mobilnummer>12345678</Mobilnummer></SlutbrugerStamdata>",
    )
    .unwrap();
    fs::write(d.join("cpr.txt"), format!("{CPR}\n")).unwrap();
    let echo = simulator(d, &["--hostile", "echo-number"]);
    let failing = simulator(d, &["--fail-share", "1.0"]);
    let redirecting = simulator(d, &["--hostile", "redirect-http"]);
    let registers = [
        ("closed port", "https://127.0.0.1:1".to_owned()),
        ("Fejl echoing the number", echo.url()),
        ("HTTP 500", failing.url()),
        ("redirect", redirecting.url()),
    ];
    let commands: [&[&str]; 4] = [
        &["user", "update", "--stamdata", "stamdata.xml"],
        &["user", "signup"],
        &["user", "signoff"],
        &["user", "enroll", "--stamdata", "stamdata.xml"],
    ];
    let sources: [(&[&str], &str); 3] = [
        (&["--cpr", CPR], ""),
        (&["--cpr-file", "cpr.txt"], ""),
        (&["--cpr", "-"], "0101901234\n"),
    ];
    for (register, url) in &registers {
        write_register_config(&setup, url);
        for command in commands {
            for (source, stdin) in sources {
                for format in ["text", "json"] {
                    let mut args: Vec<&str> = command.to_vec();
                    args.extend_from_slice(&["--config", "config.toml", "--authority", &a]);
                    args.extend_from_slice(source);
                    args.extend_from_slice(&["--log-format", format]);
                    let out = run_with_stdin(d, &args, stdin);
                    let what = format!("{register}: {args:?}");
                    assert_code(&out, 1);
                    let text = format!("{}{}", stdout(&out), stderr(&out));
                    assert!(
                        text.contains("error:") || text.contains("\"level\":\"ERROR\""),
                        "{what}: {text}"
                    );
                    if *register == "redirect" {
                        assert!(
                            text.contains("redirects are never followed"),
                            "{what}: {text}"
                        );
                    }
                    assert_no_cpr(&text, &what);
                }
            }
        }
    }
    // The same three ways in, against a working register, reach it with
    // the number (and still print none).
    write_register_config(&setup, &server.url());
    for (source, stdin) in sources {
        let mut args = vec![
            "user",
            "signup",
            "--config",
            "config.toml",
            "--authority",
            &a,
        ];
        args.extend_from_slice(source);
        let out = run_with_stdin(d, &args, stdin);
        assert_code(&out, 0);
        assert_no_cpr(
            &format!("{}{}", stdout(&out), stderr(&out)),
            "working register",
        );
    }
    let record = fs::read_to_string(d.join("record.jsonl")).unwrap();
    assert_eq!(
        record
            .matches(&format!("/boks/{CPR}/myndighedstilmelding"))
            .count(),
        3,
        "{record}"
    );
    // A bad number names where it came from, not what it was.
    fs::write(d.join("bad.txt"), "3002001234").unwrap();
    let out = run_with_stdin(
        d,
        &[
            "user",
            "signup",
            "--config",
            "config.toml",
            "--authority",
            &a,
            "--cpr-file",
            "bad.txt",
        ],
        "",
    );
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("--cpr-file bad.txt"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("300200"), "{}", stderr(&out));
}

#[test]
fn a_redirected_list_is_never_committed() {
    let (setup, _server) = register_setup(&["--hostile", "redirect-http"]);
    let out = setup.run(&["--date", "2026-01-01"]);
    assert_code(&out, 6);
    for a in &setup.authorities {
        let line = stdout(&out)
            .lines()
            .find(|l| l.starts_with(a.as_str()))
            .unwrap()
            .to_owned();
        assert!(
            line.contains("failed") && line.contains("redirects are never followed"),
            "{line}"
        );
    }
    assert!(!setup.path().join("state/outbox").exists());
    // And the client refuses plain http outright.
    write_register_config(&setup, "http://127.0.0.1:1");
    let out = setup.run(&["--date", "2026-01-01"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("must be an https:// URL"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_token_or_password_in_logs_or_reports() {
    let url = std::env::var("NEMSMS_DIFF_AMQP_URL").unwrap();
    let flow = Flow::new(1, 2_000, 0.01, "");
    let _emulator = flow.emulator(&[]);
    let config = flow.path().join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("token = \"test-token\"", "token = \"tok-SECRET-4711\""),
    )
    .unwrap();
    for format in ["text", "json"] {
        let out = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
            .args(["publish", "--config", "config.toml", "--log-format", format])
            .env("RUST_LOG", "trace")
            .current_dir(flow.path())
            .output()
            .unwrap();
        assert_code(&out, 0);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !text.contains("tok-SECRET-4711"),
            "{format}: the token shows"
        );
        // The broker's password: guest, from the URL.
        assert!(
            !text.contains("guest:guest"),
            "{format}: the password shows"
        );
    }
    // A password with @ in it, refused by the broker: shown as ***.
    let (head, rest) = url.split_once("://").unwrap();
    let host = rest.rsplit_once('@').unwrap().1;
    let bad = format!("{head}://guest:pa@ss-SECRET-0815@{host}");
    let text = fs::read_to_string(&config).unwrap();
    let text = text.replace(
        &format!("url = \"{url}\""),
        &format!("url = \"{bad}\"\noutage_deadline = \"2s\"\nmax_backoff_ms = 200"),
    );
    fs::write(&config, text).unwrap();
    // Some event must still be unpublished for a connection to be tried.
    for day in fs::read_dir(flow.path().join("state/outbox")).unwrap() {
        for e in fs::read_dir(day.unwrap().path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "cursor") {
                fs::remove_file(p).unwrap();
            }
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_nemsms-diff"))
        .args(["publish", "--config", "config.toml"])
        .env("RUST_LOG", "trace")
        .current_dir(flow.path())
        .output()
        .unwrap();
    assert_code(&out, 4);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !text.contains("SECRET-0815") && !text.contains("ss-SECRET"),
        "{text}"
    );
    assert!(text.contains("guest:***@"), "{text}");
    for e in fs::read_dir(flow.path().join("state/reports")).unwrap() {
        let report = fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!report.contains("SECRET"), "{report}");
    }
    // --debug-wire runs only against loopback peers.
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace(
            &format!("url = \"{bad}\""),
            "url = \"amqps://bf.example:5671/BF\"",
        )
        .replace(
            "insecure_broker = true\n",
            "ca_cert = \"c.pem\"\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"\n",
        ),
    )
    .unwrap();
    let out = run(
        flow.path(),
        &["publish", "--config", "config.toml", "--debug-wire"],
    );
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("only runs against loopback peers"),
        "{}",
        stderr(&out)
    );
}

/// Sends `bytes` to the receiver and returns what it answers until it
/// closes, or `None` if it stays open past `wait`.
fn exchange(addr: &str, bytes: &[u8], wait: Duration) -> Option<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&got).into_owned())
        }
        Err(_) => None,
    }
}

#[test]
fn the_push_receiver_cannot_be_flooded_or_held_open() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Server::start(
        dir.path(),
        &[
            "alive",
            "serve",
            "--store",
            "inbox",
            "--header-timeout-secs",
            "1",
            "--body-timeout-secs",
            "1",
            "--max-connections",
            "2",
        ],
    );
    let addr = receiver.url().trim_start_matches("http://").to_owned();
    let limits = fs::read_to_string(format!("/proc/{}/limits", receiver.child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core.split_whitespace().nth(4) == Some("0"),
        "core dumps off: {core}"
    );

    // Bodies above 1 MiB: refused, declared or not.
    let head = "POST /besked/modtag HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    let got = exchange(
        &addr,
        format!("{head}Content-Length: 209715200\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    let mut chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        chunked.extend_from_slice(&[b'a'; 65536]);
        chunked.extend_from_slice(b"\r\n");
    }
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&chunked);
    let mut got = vec![0u8; 64];
    let n = s.read(&mut got).unwrap();
    assert!(
        got[..n].starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&got[..n])
    );

    // Headers or a body that never finish: closed within the timeouts.
    let started = Instant::now();
    let got = exchange(
        &addr,
        b"POST /besked/modtag HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(8),
    );
    assert!(got.is_some(), "half-sent headers kept the connection open");
    assert!(started.elapsed() < Duration::from_secs(8));
    let got = exchange(
        &addr,
        format!("{head}Content-Length: 100\r\n\r\n0123456789").as_bytes(),
        Duration::from_secs(8),
    )
    .unwrap();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");

    // More connections than allowed: the extra one is closed at once.
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let got = exchange(&addr, b"", Duration::from_millis(900));
    assert_eq!(got.as_deref(), Some(""), "the third connection was closed");
    assert!(started.elapsed() < Duration::from_millis(900));
    drop(idle);
    assert!(
        fs::read_dir(dir.path().join("inbox"))
            .unwrap()
            .next()
            .is_none()
    );
    assert_eq!(
        fs::metadata(dir.path().join("inbox"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn the_push_receiver_speaks_mutual_tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_code(&run(d, &["simulate", "certs", "--out", "certs"]), 0);
    fs::write(
        d.join("alive.toml"),
        include_str!("../../fixtures/config.example.toml").to_owned()
            + "\n[alive]\npush_store = \"inbox\"\nserve_cert = \"certs/server.pem\"\n\
               serve_key = \"certs/server-key.pem\"\nserve_client_ca = \"certs/ca.pem\"\n",
    )
    .unwrap();
    let receiver = Server::start(d, &["alive", "serve", "--config", "alive.toml"]);
    let url = format!("{}/besked/modtag", receiver.url());
    assert!(url.starts_with("https://"), "{url}");
    let id = uuid::Uuid::new_v4();
    let body = nemsms_diff::beskedfordeler::besked::modtag_besked_input(
        nemsms_diff::beskedfordeler::besked::alive_envelope(
            id,
            uuid::Uuid::nil(),
            "29189846",
            "2026-11-24T01:00:00Z",
        )
        .as_bytes(),
    );
    let ca = reqwest::Certificate::from_pem(&fs::read(d.join("certs/ca.pem")).unwrap()).unwrap();
    let client = |identity: Option<&str>| {
        let mut b = reqwest::blocking::Client::builder()
            .tls_backend_rustls()
            .tls_certs_only([ca.clone()]);
        if let Some(name) = identity {
            let mut pem = fs::read(d.join(format!("certs/{name}.pem"))).unwrap();
            pem.extend(fs::read(d.join(format!("certs/{name}-key.pem"))).unwrap());
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    };
    for refused in [None, Some("other-client")] {
        let r = client(refused).post(&url).body(body.clone()).send();
        assert!(r.is_err(), "{refused:?} got in: {r:?}");
    }
    let r = client(Some("client")).post(&url).body(body).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(d.join(format!("inbox/{id}.xml")).exists());
}

#[test]
fn the_test_broker_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_stop, exports) = crate::private_broker(dir.path(), None);
    let rabbit = crate::export(&exports, "RABBITMQ_TEST_DIR");
    let pid: u32 = fs::read_to_string(Path::new(&rabbit).join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut pids = vec![pid];
    for p in fs::read_dir("/proc").unwrap().flatten() {
        let comm = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
        if comm.trim() == "epmd"
            && let Ok(n) = p.file_name().to_string_lossy().parse()
        {
            pids.push(n);
        }
    }
    let listening = listening_sockets(&pids);
    assert!(
        listening.len() >= 3,
        "AMQP, distribution and epmd: {listening:?}"
    );
    for (addr, port) in &listening {
        assert!(
            addr == "127.0.0.1" || addr == "::1",
            "{addr}:{port} is not loopback: {listening:?}"
        );
    }
}

/// The listening TCP sockets of `pids`: (address, port).
fn listening_sockets(pids: &[u32]) -> Vec<(String, u16)> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                let t = target.to_string_lossy().into_owned();
                if let Some(n) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(n.to_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in fs::read_to_string(table).unwrap().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" || !inodes.contains(f[9]) {
                continue;
            }
            let (hex, port) = f[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            // /proc/net prints each 32-bit word in host (little-endian) order.
            let words: Vec<u8> = bytes
                .chunks(4)
                .flat_map(|w| w.iter().rev().copied())
                .collect();
            let addr = if words.len() == 4 {
                std::net::Ipv4Addr::new(words[0], words[1], words[2], words[3]).to_string()
            } else {
                let a: [u8; 16] = words.try_into().unwrap();
                std::net::Ipv6Addr::from(a).to_string()
            };
            out.push((addr, port));
        }
    }
    out
}

/// Our client and server configs, shaking hands in memory, agree on
/// TLS 1.3 with AES-128-GCM (both ends prefer it), the client
/// certificate checked.
#[test]
fn our_ends_agree_on_tls13_aes128_gcm_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    nemsms_diff::sim::certs::generate_test_certs(dir.path()).unwrap();
    let p = |n: &str| dir.path().join(n);
    let client =
        nemsms_diff::tls::client_config(&p("ca.pem"), &p("client.pem"), &p("client-key.pem"))
            .unwrap();
    let server =
        nemsms_diff::tls::server_config(&p("server.pem"), &p("server-key.pem"), Some(&p("ca.pem")))
            .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(std::sync::Arc::new(client), name).unwrap();
    let mut s = rustls::ServerConnection::new(std::sync::Arc::new(server)).unwrap();
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        s.read_tls(&mut &wire[..]).unwrap();
        s.process_new_packets().unwrap();
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        c.read_tls(&mut &wire[..]).unwrap();
        c.process_new_packets().unwrap();
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    for suite in [c.negotiated_cipher_suite(), s.negotiated_cipher_suite()] {
        assert_eq!(
            suite.map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
    }
    assert!(s.peer_certificates().is_some_and(|c| !c.is_empty()));
    // reqwest's clients take the same provider: it is the installed one.
    let installed = rustls::crypto::CryptoProvider::get_default().unwrap();
    assert_eq!(
        installed.cipher_suites[0].suite(),
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
    );
}

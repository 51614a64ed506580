//! `config check` and the checks at the start of `run`: what a config
//! refers to, looked at before anything is fetched, so that a wrong path
//! or an expired certificate is one configuration error (exit 2) instead
//! of every authority failing at run time.
//!
//! Without a network: the state directory can be made and written; every
//! certificate file parses and is valid now (a warning within 30 days of
//! its end); every private key parses, is readable by its owner alone (a
//! warning otherwise) and belongs to its certificate (rustls checks the
//! pair); the id key is private. With `--connect`: a TLS handshake and a
//! reference call to the Register (the first authority's full-list index),
//! the STS when configured, and an AMQP login to Beskedfordeler.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::{Config, Source};
use crate::domain::keys::{self, KeyKind};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// The job cannot work like this.
    Error,
    /// It works, but should be fixed.
    Warning,
    /// Checked and fine.
    Ok,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub level: Level,
    /// What was checked: the config key, the file.
    pub what: String,
    pub detail: String,
}

/// Findings, in the order checked.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    fn push(&mut self, level: Level, what: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Finding {
            level,
            what: what.into(),
            detail: detail.into(),
        });
    }

    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.0.iter().filter(|f| f.level == Level::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.0.iter().filter(|f| f.level == Level::Warning)
    }
}

/// Which parts of the config to check.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// The state directory (a run finds out by itself: a disk that went
    /// read-only is an I/O failure, exit 1, not a configuration error).
    pub state_dir: bool,
    /// The Register connection (sources other than files, `user`, `sms`).
    pub register: bool,
    /// The Beskedfordeler connection and its STS.
    pub beskedfordeler: bool,
    /// The AliveBesked push receiver's files.
    pub alive: bool,
}

impl Scope {
    /// Everything the config has.
    pub fn all() -> Scope {
        Scope {
            state_dir: true,
            register: true,
            beskedfordeler: true,
            alive: true,
        }
    }
}

fn certificate(f: &mut Findings, key: &str, path: &Path, now: i64) {
    let what = format!("{key} {}", path.display());
    let certs = match crate::tls::load_certs(path) {
        Ok(c) => c,
        Err(e) => return f.push(Level::Error, what, format!("{e:#}")),
    };
    for (i, der) in certs.iter().enumerate() {
        let (_, cert) = match x509_parser::parse_x509_certificate(der) {
            Ok(c) => c,
            Err(e) => {
                return f.push(
                    Level::Error,
                    what,
                    format!("certificate {}: not X.509: {e}", i + 1),
                );
            }
        };
        let v = cert.validity();
        let (from, until) = (v.not_before.timestamp(), v.not_after.timestamp());
        let subject = cert.subject().to_string();
        let until_text = jiff::Timestamp::from_second(until)
            .map_or(until.to_string(), |t| t.strftime("%Y-%m-%d").to_string());
        if now < from {
            f.push(
                Level::Error,
                &what,
                format!("certificate {subject} is not valid yet"),
            );
        } else if now > until {
            f.push(
                Level::Error,
                &what,
                format!("certificate {subject} expired on {until_text}"),
            );
        } else if until - now < 30 * 86_400 {
            f.push(
                Level::Warning,
                &what,
                format!("certificate {subject} expires on {until_text}, within 30 days"),
            );
        } else {
            f.push(
                Level::Ok,
                &what,
                format!("certificate {subject} valid until {until_text}"),
            );
        }
    }
}

fn private_key(f: &mut Findings, key: &str, path: &Path) -> bool {
    let what = format!("{key} {}", path.display());
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            f.push(Level::Error, what, format!("cannot read it: {e}"));
            return false;
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        f.push(
            Level::Warning,
            &what,
            format!("mode {mode:o}: readable by others than its owner (chmod 600 it)"),
        );
    }
    let pem = match std::fs::read(path) {
        Ok(p) => p,
        Err(e) => {
            f.push(Level::Error, what, format!("cannot read it: {e}"));
            return false;
        }
    };
    use rustls::pki_types::pem::PemObject;
    match rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => {
            f.push(Level::Ok, what, "private key parses");
            true
        }
        Err(e) => {
            f.push(Level::Error, what, format!("not a PEM private key: {e}"));
            false
        }
    }
}

/// A CA, a client certificate and its key: each file, then the pair.
fn triple(f: &mut Findings, section: &str, ca: &Path, cert: &Path, key: &Path, now: i64) {
    certificate(f, &format!("{section}.ca_cert"), ca, now);
    certificate(f, &format!("{section}.client_cert"), cert, now);
    let key_ok = private_key(f, &format!("{section}.client_key"), key);
    if key_ok && cert.exists() && ca.exists() {
        let what = format!("{section}.client_cert/client_key");
        match crate::tls::client_config(ca, cert, key) {
            Ok(_) => f.push(Level::Ok, what, "key and certificate belong together"),
            Err(e) => f.push(Level::Error, what, format!("{e:#}")),
        }
    }
}

/// The checks that need no network.
pub fn check_files(cfg: &Config, scope: Scope) -> Findings {
    let mut f = Findings::default();
    let now = crate::register::fetch::now().timestamp().as_second();

    // The state directory: there and writable, or makeable.
    let state = &cfg.state_dir;
    if !scope.state_dir {
        // left to the run
    } else if state.is_dir() {
        let probe = state.join(format!(".config-check.{}", std::process::id()));
        match crate::fsutil::create_private(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                f.push(
                    Level::Ok,
                    format!("state_dir {}", state.display()),
                    "writable",
                );
            }
            Err(e) => f.push(
                Level::Error,
                format!("state_dir {}", state.display()),
                format!("not writable: {e}"),
            ),
        }
    } else if state.exists() {
        f.push(
            Level::Error,
            format!("state_dir {}", state.display()),
            "exists but is not a directory",
        );
    } else if std::path::absolute(state)
        .ok()
        .and_then(|abs| {
            abs.ancestors()
                .skip(1)
                .find(|p| p.exists())
                .map(Path::is_dir)
        })
        .unwrap_or(false)
    {
        f.push(
            Level::Ok,
            format!("state_dir {}", state.display()),
            "does not exist yet: the first run makes it",
        );
    } else {
        f.push(
            Level::Error,
            format!("state_dir {}", state.display()),
            "cannot be made",
        );
    }
    let id = &cfg.id_key_file;
    match std::fs::metadata(id) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => f.push(
            Level::Warning,
            format!("envelope.id_key_file {}", id.display()),
            format!(
                "mode {:o}: readable by others than its owner (chmod 600 it)",
                m.permissions().mode() & 0o777
            ),
        ),
        Ok(_) => f.push(
            Level::Ok,
            format!("envelope.id_key_file {}", id.display()),
            "private",
        ),
        Err(_) => f.push(
            Level::Ok,
            format!("envelope.id_key_file {}", id.display()),
            "does not exist yet: the first run makes it (back it up then)",
        ),
    }
    if let Source::Files(t) = &cfg.source {
        let dir = Path::new(t.trim_start_matches("file://"))
            .ancestors()
            .find(|p| !p.to_string_lossy().contains('{'))
            .map(Path::to_owned);
        if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
            let base = cfg.path.parent().unwrap_or(Path::new("."));
            let dir = base.join(dir);
            if !dir.is_dir() {
                f.push(
                    Level::Error,
                    format!("source {t}"),
                    format!("{} is not a directory", dir.display()),
                );
            }
        }
    }
    if scope.register
        && let Some(r) = &cfg.register
    {
        triple(
            &mut f,
            "register",
            &r.ca_cert,
            &r.client_cert,
            &r.client_key,
            now,
        );
        for a in &cfg.authorities {
            if let Some((cert, key)) = &a.client_cert {
                let section = format!("authority {}", keys::format(KeyKind::Cvr, a.cvr));
                triple(&mut f, &section, &r.ca_cert, cert, key, now);
            }
        }
    }
    if scope.beskedfordeler
        && let Some(b) = &cfg.beskedfordeler
    {
        if let Some((ca, cert, key)) = &b.tls {
            triple(&mut f, "beskedfordeler", ca, cert, key, now);
        }
        if let crate::beskedfordeler::sts::TokenSource::Sts(s) = &b.tokens {
            triple(
                &mut f,
                "beskedfordeler.sts",
                &s.ca_cert,
                &s.client_cert,
                &s.client_key,
                now,
            );
        }
    }
    if scope.alive
        && let Some(a) = &cfg.alive
    {
        if let Some(c) = &a.serve_cert {
            certificate(&mut f, "alive.serve_cert", c, now);
        }
        if let Some(k) = &a.serve_key {
            private_key(&mut f, "alive.serve_key", k);
        }
        if let Some(c) = &a.serve_client_ca {
            certificate(&mut f, "alive.serve_client_ca", c, now);
        }
    }
    f
}

/// The checks over the network (`config check --connect`).
pub fn check_connections(cfg: &Config, f: &mut Findings) {
    let first = cfg.authorities.first().expect("a config has authorities");
    if let Some(r) = &cfg.register
        && !matches!(cfg.source, Source::Files(_))
    {
        let what = format!("register {}", crate::secret::redact_url(&r.base_url));
        let (cert, key) = first
            .client_cert
            .clone()
            .unwrap_or_else(|| (r.client_cert.clone(), r.client_key.clone()));
        let mut quick = r.clone();
        quick.retries = 0;
        match crate::register::fetch::Client::new(&quick, &cert, &key) {
            Err(e) => f.push(Level::Error, what, format!("{e:#}")),
            Ok(client) => {
                let today = crate::register::fetch::now()
                    .in_tz("Europe/Copenhagen")
                    .map_or_else(|_| crate::register::fetch::now().date(), |z| z.date());
                let path = format!(
                    "{}?dato={today}",
                    crate::register::wire::full_list_path(&first.register_sysid)
                );
                match client
                    .get_small("reference call", &path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        crate::register::wire::parse_references(&b).map_err(|e| e.to_string())
                    }) {
                    Ok(refs) => f.push(
                        Level::Ok,
                        what,
                        format!(
                            "TLS handshake and reference call (authority {}'s full-list index: {} dellister)",
                            keys::format(KeyKind::Cvr, first.cvr),
                            refs.references.len()
                        ),
                    ),
                    Err(e) => f.push(Level::Error, what, format!("reference call: {e}")),
                }
            }
        }
    }
    if let Some(b) = &cfg.beskedfordeler {
        let what = format!(
            "beskedfordeler {}",
            crate::secret::redact_url(b.url.expose())
        );
        let result = crate::rt::runtime().and_then(|rt| {
            rt.block_on(async {
                let mut tokens = crate::beskedfordeler::sts::Tokens::new(&b.tokens)?;
                let token = tokens
                    .get(first.cvr, crate::beskedfordeler::sts::Service::Afsend)
                    .await?;
                let (conn, _channel) = crate::beskedfordeler::publish::connect(b, &token).await?;
                let _ = conn.close(200, "config check".into()).await;
                anyhow::Ok(())
            })
        });
        match result {
            Ok(()) => f.push(Level::Ok, what, "token and AMQP login"),
            Err(e) => f.push(Level::Error, what, format!("{e:#}")),
        }
    }
}

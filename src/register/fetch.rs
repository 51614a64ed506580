//! The Register client: OIOREST over HTTPS with mutual TLS.
//!
//! One [`Client`] per client certificate. A list is fetched as its
//! reference collection, then its dellister in parallel (bounded), each
//! streamed to a temp file, parsed from there and checked against the count
//! the collection declares. Connection errors, timeouts and 5xx are retried
//! with capped exponential backoff and full jitter; 4xx are not. A `Fejl`
//! body becomes an error with its code and text. Also: deleting a change
//! list, the SF2250 pass-through `PUT`s, CSV lists over HTTPS, and the
//! service window (Sunday 00:00-04:00 Danish time).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{BlockingRetryable, ExponentialBuilder};

use crate::domain::keys::{KeySet, sort_dedup};
use crate::register::wire::{self, Fejl, ListKind, WireError};

/// Settings of the connection to the Register.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterConfig {
    /// `https://host[:port]`, the Register's base URL.
    pub base_url: String,
    /// CA certificate(s) the Register's server certificate must chain to.
    pub ca_cert: PathBuf,
    /// Default client certificate and key (PEM).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub connect_timeout: Duration,
    /// Whole-request timeout (a delliste download must finish within it).
    pub request_timeout: Duration,
    /// Dellister in flight per authority.
    pub concurrency: usize,
    /// Authorities fetched at the same time.
    pub parallel_authorities: usize,
    /// Retries of one request after its first attempt (within the deadline).
    pub retries: usize,
    /// Every retry of one authority's list (or of one call) ends by this
    /// long after its first request: one deadline over all attempts.
    pub retry_deadline: Duration,
    /// Largest delay between retries.
    pub max_backoff: Duration,
    /// What goes before a CVR number in `…/boks/{nummer}` of
    /// OpdaterBorgerNemSMS: `:` as SF2250 §3.2.4.2 writes it (§3.2.5.2 shows
    /// no colon for `…/myndighedstilmelding`, which never gets one).
    pub boks_cvr_prefix: String,
}

/// Why a call to the Register failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach the register: {0}")]
    Transport(String),
    #[error("cannot reach the register: the answer was cut short: {0}")]
    CutShort(String),
    #[error(
        "the TLS handshake with the register failed: {0} (is the client certificate valid and \
         issued by a CA the register trusts, and does the register's certificate chain to ca_cert?)"
    )]
    Tls(String),
    #[error("the register answered HTTP {status}{}", fejl_suffix(.fejl))]
    Status { status: u16, fejl: Option<Fejl> },
    #[error("{what}: {source}")]
    Wire { what: String, source: WireError },
    #[error("{what} declares {declared} entries but holds {found}")]
    CountMismatch {
        what: String,
        declared: u64,
        found: u64,
    },
    #[error("{0}")]
    Io(String),
    /// The register's answer points somewhere we do not go.
    #[error("refused: {0}")]
    Refused(String),
}

fn fejl_suffix(f: &Option<Fejl>) -> String {
    match f {
        Some(f) if f.code == "3000" => format!(
            ": Fejl 3000 (access refused, e.g. the client certificate is not accepted): {}",
            f.text
        ),
        Some(f) => format!(": Fejl {}: {}", f.code, f.text),
        None => String::new(),
    }
}

impl FetchError {
    /// Connection errors, timeouts and 5xx are worth another attempt.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Transport(_) | FetchError::CutShort(_) => true,
            FetchError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// A fetched list.
#[derive(Debug, Clone, Default)]
pub struct FetchedList {
    /// The register's id of the list.
    pub list_id: String,
    /// Signed up (full lists: every key), sorted and unique.
    pub up: KeySet,
    /// Signed off (change lists only), sorted and unique.
    pub off: KeySet,
    /// Entries received.
    pub n_entries: u64,
    /// Entries whose key came twice.
    pub n_duplicates: u64,
    /// Dellister fetched.
    pub n_dellister: usize,
}

/// Most bytes one download (a delliste, a CSV list) may have.
pub const MAX_DOWNLOAD: u64 = 4 << 30;
/// Most bytes one delliste entry may take on the wire.
const MAX_ENTRY_BYTES: u64 = 512;
/// Most bytes a reference collection or an error body may have.
const MAX_SMALL_BODY: u64 = 16 << 20;

/// Streams `resp` into `out`, failing once more than `cap` bytes came.
fn copy_capped(
    resp: &mut reqwest::blocking::Response,
    out: &mut impl std::io::Write,
    cap: u64,
    what: &str,
) -> Result<u64, FetchError> {
    let mut body = Body::new(resp, cap, what);
    match std::io::copy(&mut body, out) {
        Ok(n) => Ok(n),
        Err(e) => Err(body
            .error
            .take()
            .unwrap_or_else(|| FetchError::Io(format!("{what}: {e}")))),
    }
}

/// A response body read with a cap on its size. A transport error while
/// reading it is kept (the headers came: it is a cut, and retryable), for
/// the caller to report in place of what its parser made of the failed
/// read.
struct Body<'a, R> {
    inner: R,
    n: u64,
    cap: u64,
    what: &'a str,
    error: Option<FetchError>,
}

impl<'a, R: std::io::Read> Body<'a, R> {
    fn new(inner: R, cap: u64, what: &'a str) -> Self {
        Body {
            inner,
            n: 0,
            cap,
            what,
            error: None,
        }
    }
}

impl<R: std::io::Read> std::io::Read for Body<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let what = self.what;
        match self.inner.read(out) {
            Ok(k) => {
                self.n += k as u64;
                if self.n > self.cap {
                    let cap = self.cap;
                    self.error = Some(FetchError::Io(format!(
                        "{what} is larger than the limit of {cap} bytes"
                    )));
                    return Err(std::io::Error::other("body over its limit"));
                }
                Ok(k)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                // reqwest's errors carry the URL, which may hold a CPR number.
                let err = if e.get_ref().is_some_and(|i| i.is::<reqwest::Error>()) {
                    match e.into_inner().map(|i| i.downcast::<reqwest::Error>()) {
                        Some(Ok(r)) => FetchError::CutShort(format!("{what}: {}", r.without_url())),
                        _ => FetchError::CutShort(what.to_owned()),
                    }
                } else {
                    match e.kind() {
                        std::io::ErrorKind::Other
                        | std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset => {
                            FetchError::CutShort(format!("{what}: {e}"))
                        }
                        _ => FetchError::Io(format!("{what}: {e}")),
                    }
                };
                self.error = Some(err);
                Err(std::io::Error::other("body cut short"))
            }
        }
    }
}

/// A Register client with one client certificate.
/// A checked reference collection and the deadline of its list.
#[derive(Debug)]
pub struct References {
    pub rc: wire::ReferenceCollection,
    deadline: Instant,
}

pub struct Client {
    http: reqwest::blocking::Client,
    cfg: RegisterConfig,
}

/// A transport error without its URL: the URL of a `user` call holds the
/// CPR number, and the caller names the call instead.
fn transport(e: reqwest::Error) -> FetchError {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    let tls = ["alert", "certificate", "UnknownIssuer", "handshake"];
    if tls.iter().any(|t| msg.contains(t)) {
        FetchError::Tls(msg)
    } else {
        FetchError::Transport(msg)
    }
}

impl Client {
    /// Builds a client with `cert`/`key` as its identity.
    pub fn new(cfg: &RegisterConfig, cert: &Path, key: &Path) -> anyhow::Result<Client> {
        let mut pem = std::fs::read(cert)
            .with_context(|| format!("cannot read client certificate {}", cert.display()))?;
        pem.extend(crate::tls::read_key_file(key)?);
        let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
            format!(
                "{} / {}: not a PEM certificate and key",
                cert.display(),
                key.display()
            )
        })?;
        let ca_pem = std::fs::read(&cfg.ca_cert)
            .with_context(|| format!("cannot read CA {}", cfg.ca_cert.display()))?;
        let cas = reqwest::Certificate::from_pem_bundle(&ca_pem)
            .with_context(|| format!("{}: not a PEM certificate file", cfg.ca_cert.display()))?;
        // reqwest takes the process-wide provider once one is installed.
        crate::tls::provider();
        let http = reqwest::blocking::Client::builder()
            .tls_backend_rustls()
            .tls_certs_only(cas)
            .identity(identity)
            // Only the configured register: no redirect is followed (a 3xx
            // is an error), and nothing but https is ever spoken.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .user_agent(concat!("nemsms-diff/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTPS client")?;
        Ok(Client {
            http,
            cfg: cfg.clone(),
        })
    }

    /// A path of ours under `base_url`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.base_url.trim_end_matches('/'))
    }

    /// A `Href` from the register's answer, resolved with a URL parser:
    /// a path is taken under `base_url`, an absolute URL as it is, and
    /// either must stay on `base_url`'s origin (scheme, host, port) with no
    /// user info: the client certificate is shown to nobody else.
    fn href_url(&self, href: &str) -> Result<String, FetchError> {
        let refuse = |why: &str| {
            FetchError::Refused(format!(
                "the reference collection's Href {:?} {why}",
                href.chars().take(200).collect::<String>()
            ))
        };
        let base = reqwest::Url::parse(&self.cfg.base_url)
            .map_err(|e| refuse(&format!("cannot be resolved: base_url: {e}")))?;
        let text = if href.starts_with('/') && !href.starts_with("//") {
            self.url(href)
        } else if href.contains("://") {
            href.to_owned()
        } else {
            return Err(refuse("is neither a path nor an https URL"));
        };
        let url = reqwest::Url::parse(&text).map_err(|e| refuse(&format!("is not a URL: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("carries user info"));
        }
        if url.scheme() != base.scheme()
            || url.host_str() != base.host_str()
            || url.port_or_known_default() != base.port_or_known_default()
        {
            return Err(refuse(&format!(
                "leaves the register's origin {}",
                base.origin().ascii_serialization()
            )));
        }
        Ok(url.to_string())
    }

    /// The deadline of a call (or of one authority's list) starting now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.cfg.retry_deadline
    }

    /// The one retry layer: runs `op` until it succeeds, fails for good
    /// (not retryable), has been retried `retries` times, or `deadline` has
    /// passed. A whole download is one attempt: a body cut short is fetched
    /// again from the start. Delays are capped, jittered and exponential.
    fn retrying<T>(
        &self,
        what: &str,
        deadline: Instant,
        op: impl FnMut() -> Result<T, FetchError>,
    ) -> Result<T, FetchError> {
        op.retry(
            ExponentialBuilder::default()
                .with_jitter()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(self.cfg.max_backoff)
                .with_max_times(self.cfg.retries),
        )
        .sleep(std::thread::sleep)
        .when(|e| e.is_retryable() && Instant::now() < deadline)
        .notify(|e, delay| {
            tracing::warn!(call = what, error = %e, retry_in_ms = delay.as_millis() as u64,
                deadline_left_s = deadline.saturating_duration_since(Instant::now()).as_secs(), "retrying")
        })
        .call()
    }

    /// Sends a request once; `Ok` for 2xx only (callers retry).
    fn send(
        &self,
        make: impl FnOnce() -> reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, FetchError> {
        // NemSMS is not called in its service window, whenever the call is
        // made (a run that began before it, a `user` call).
        if let Some(end) = service_window_end(&now()) {
            return Err(FetchError::Refused(format!(
                "NemSMS is in its service window (Sunday 00:00-04:00 Danish time) until {}; \
                 the register was not called",
                end.strftime("%H:%M %Z")
            )));
        }
        let resp = make().send().map_err(transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status.is_redirection() {
            return Err(FetchError::Refused(format!(
                "the register answered a redirect (HTTP {}); redirects are never followed",
                status.as_u16()
            )));
        }
        let mut resp = resp;
        let mut body = Vec::new();
        let _ = copy_capped(&mut resp, &mut body, 64 * 1024, "error body");
        Err(FetchError::Status {
            status: status.as_u16(),
            fejl: wire::parse_fejl(&body),
        })
    }

    /// Fetches the full list or the change list of `sysid` for `date`.
    pub fn fetch_list(
        &self,
        sysid: &str,
        date: jiff::civil::Date,
        kind: ListKind,
    ) -> Result<FetchedList, FetchError> {
        let refs = self.fetch_references(sysid, date, kind)?;
        self.fetch_listed(&refs)
    }

    /// The reference collection of `sysid`'s list for `date`, checked
    /// (date, list type, counts): the first half of [`Client::fetch_list`],
    /// which a run fetches ahead for the authorities next in line. Its
    /// deadline (one for the whole list) starts now.
    pub fn fetch_references(
        &self,
        sysid: &str,
        date: jiff::civil::Date,
        kind: ListKind,
    ) -> Result<References, FetchError> {
        let path = match kind {
            ListKind::Full => wire::full_list_path(sysid),
            ListKind::Change => wire::change_list_path(sysid),
        };
        let url = self.url(&path);
        let date_s = date.to_string();
        let deadline = self.deadline();
        let body = self.retrying("reference collection", deadline, || {
            let mut resp = self.send(|| self.http.get(format!("{url}?dato={date_s}")))?;
            let mut body = Vec::new();
            copy_capped(&mut resp, &mut body, MAX_SMALL_BODY, "reference collection")?;
            Ok(body)
        })?;
        let rc = wire::parse_references(&body).map_err(|source| FetchError::Wire {
            what: "reference collection".into(),
            source,
        })?;
        if rc.date != date_s {
            return Err(FetchError::Wire {
                what: "reference collection".into(),
                source: WireError::Entry {
                    index: 0,
                    message: format!(
                        "Dato is {:?}, not the asked {date_s}",
                        rc.date.chars().take(40).collect::<String>()
                    ),
                },
            });
        }
        if rc.kind != kind {
            return Err(FetchError::Wire {
                what: "reference collection".into(),
                source: WireError::Missing("ListeType matching the configured list mode"),
            });
        }
        let declared = rc
            .references
            .iter()
            .try_fold(0u64, |sum, r| sum.checked_add(r.count))
            .unwrap_or(u64::MAX);
        if declared != rc.total {
            return Err(FetchError::CountMismatch {
                what: "the reference collection".into(),
                declared: rc.total,
                found: declared,
            });
        }
        Ok(References { rc, deadline })
    }

    /// The dellister a reference collection lists, merged: the second
    /// half of [`Client::fetch_list`], within the same deadline.
    pub fn fetch_listed(&self, refs: &References) -> Result<FetchedList, FetchError> {
        let rc = &refs.rc;
        let dellister = self.fetch_dellister(rc, refs.deadline)?;
        let mut out = FetchedList {
            list_id: rc.list_id.clone(),
            n_dellister: dellister.len(),
            ..FetchedList::default()
        };
        let (mut cu, mut vu, mut co, mut vo) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for d in dellister {
            out.n_entries += d.count;
            cu.extend(d.cpr_up);
            vu.extend(d.cvr_up);
            co.extend(d.cpr_off);
            vo.extend(d.cvr_off);
        }
        out.n_duplicates =
            sort_dedup(&mut cu) + sort_dedup(&mut vu) + sort_dedup(&mut co) + sort_dedup(&mut vo);
        out.up = KeySet { cpr: cu, cvr: vu };
        out.off = KeySet { cpr: co, cvr: vo };
        Ok(out)
    }

    fn fetch_dellister(
        &self,
        rc: &wire::ReferenceCollection,
        deadline: Instant,
    ) -> Result<Vec<wire::Delliste>, FetchError> {
        let n = rc.references.len();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let results: Mutex<Vec<Option<wire::Delliste>>> = Mutex::new(vec![None; n]);
        let first_error: Mutex<Option<FetchError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..self.cfg.concurrency.clamp(1, n.max(1)) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n || stop.load(Ordering::Relaxed) {
                            return;
                        }
                        match self.fetch_delliste(&rc.references[i], i + 1, rc.kind, deadline) {
                            Ok(d) => results.lock().expect("lock")[i] = Some(d),
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                first_error.lock().expect("lock").get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().expect("lock") {
            return Err(e);
        }
        Ok(results
            .into_inner()
            .expect("lock")
            .into_iter()
            .flatten()
            .collect())
    }

    fn fetch_delliste(
        &self,
        r: &wire::Reference,
        n: usize,
        kind: ListKind,
        deadline: Instant,
    ) -> Result<wire::Delliste, FetchError> {
        let url = self.href_url(&r.href)?;
        let what = format!("delliste {n}");
        // The whole download is the unit of retry: a body cut short is a
        // transport error and is fetched (and parsed) again from the start.
        // No entry takes more than a few hundred bytes: a body far larger
        // than its declared count (or never ending) is cut off early.
        let cap = r
            .count
            .saturating_mul(MAX_ENTRY_BYTES)
            .saturating_add(1 << 20)
            .min(MAX_DOWNLOAD);
        // Parsed as it streams in: no copy on disk, no wait for the end.
        let d = self.retrying(&what, deadline, || {
            let mut resp = self.send(|| self.http.get(&url))?;
            let mut body = Body::new(&mut resp, cap, &what);
            match wire::parse_delliste(&mut body, kind) {
                Ok(d) => Ok(d),
                Err(source) => Err(body.error.take().unwrap_or(FetchError::Wire {
                    what: what.clone(),
                    source,
                })),
            }
        })?;
        if d.count != r.count {
            return Err(FetchError::CountMismatch {
                what,
                declared: r.count,
                found: d.count,
            });
        }
        Ok(d)
    }

    /// Deletes a change list that has been committed.
    pub fn delete_change_list(&self, sysid: &str, list_id: &str) -> Result<(), FetchError> {
        let url = self.url(&wire::delete_change_list_path(sysid, list_id));
        // 404: the list is not there (a retried DELETE whose first attempt
        // went through, or a run that crashed after its DELETE and before
        // recording it): deleted.
        self.retrying("delete change list", self.deadline(), || {
            match self.send(|| self.http.delete(&url)) {
                Ok(_) => Ok(()),
                Err(FetchError::Status { status: 404, .. }) => {
                    tracing::info!("change list already gone at the register (404): deleted");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    }

    /// `PUT` of an XML body (the SF2250 pass-through calls).
    pub fn put(&self, path: &str, body: Vec<u8>) -> Result<u16, FetchError> {
        self.with_body(reqwest::Method::PUT, path, body)
    }

    /// An XML body sent with `method`, retried; the answer's status.
    fn with_body(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<u16, FetchError> {
        let url = self.url(path);
        let what = method.as_str().to_lowercase();
        self.retrying(&what, self.deadline(), || {
            self.send(|| {
                self.http
                    .request(method.clone(), &url)
                    .header("Content-Type", "application/xml; charset=utf-8")
                    .body(body.clone())
            })
            .map(|r| r.status().as_u16())
        })
    }

    /// GETs a small answer (at most 64 KiB), e.g. Spoerg tilmelding.
    pub fn get_small(&self, what: &str, path: &str) -> Result<Vec<u8>, FetchError> {
        let url = self.url(path);
        self.retrying(what, self.deadline(), || {
            let mut resp = self.send(|| self.http.get(&url))?;
            let mut body = Vec::new();
            copy_capped(&mut resp, &mut body, 64 * 1024, what)?;
            Ok(body)
        })
    }

    /// POSTs `body` (an SMS); retried like every call, so the body must be
    /// idempotent for the receiver (an SMS carries its `MeddelelseId`, the
    /// same on every attempt).
    pub fn post(&self, path: &str, body: Vec<u8>) -> Result<u16, FetchError> {
        self.with_body(reqwest::Method::POST, path, body)
    }

    /// Downloads a file (a CSV list over HTTPS) to `dest`, streaming.
    pub fn download(&self, url: &str, dest: &Path) -> Result<(), FetchError> {
        self.retrying("list download", self.deadline(), || {
            let mut resp = self.send(|| self.http.get(url))?;
            let mut out = crate::fsutil::create_private_replacing(dest)
                .map_err(|e| FetchError::Io(format!("cannot create {}: {e}", dest.display())))?;
            copy_capped(&mut resp, &mut out, MAX_DOWNLOAD, "download")?;
            Ok(())
        })
    }
}

/// If `now` is inside NemSMS's service window (Sunday 00:00-04:00,
/// Europe/Copenhagen), the moment it ends.
pub fn service_window_end(now: &jiff::ZonedDateTime) -> Option<jiff::ZonedDateTime> {
    let local = now.in_tz("Europe/Copenhagen").ok()?;
    if local.weekday() != jiff::civil::Weekday::Sunday || local.hour() >= 4 {
        return None;
    }
    local.date().at(4, 0, 0, 0).in_tz("Europe/Copenhagen").ok()
}

/// The current time, or `NEMSMS_DIFF_NOW` (RFC 3339 / RFC 9557) for tests.
pub fn now() -> jiff::ZonedDateTime {
    std::env::var("NEMSMS_DIFF_NOW")
        .ok()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            t.in_tz("Europe/Copenhagen")
                .unwrap_or_else(|_| t.to_zoned_datetime(jiff::tz::TimeZone::UTC))
        })
        .unwrap_or_else(jiff::ZonedDateTime::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::ZonedDateTime {
        s.parse::<jiff::Timestamp>()
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
    }

    #[test]
    fn service_window_is_sunday_night_danish_time() {
        // 2026-11-29 is a Sunday; Denmark is UTC+1 in winter.
        assert!(
            service_window_end(&at("2026-11-28T22:59:00Z")).is_none(),
            "Saturday 23:59"
        );
        let end = service_window_end(&at("2026-11-28T23:00:00Z")).expect("Sunday 00:00");
        assert_eq!(
            end.timestamp(),
            "2026-11-29T03:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert!(
            service_window_end(&at("2026-11-29T02:59:59Z")).is_some(),
            "Sunday 03:59:59"
        );
        assert!(
            service_window_end(&at("2026-11-29T03:00:00Z")).is_none(),
            "Sunday 04:00"
        );
        // Summer time: UTC+2.
        assert!(
            service_window_end(&at("2026-06-27T22:30:00Z")).is_some(),
            "Sunday 00:30 CEST"
        );
    }

    #[test]
    fn retry_policy() {
        assert!(FetchError::Transport("reset".into()).is_retryable());
        assert!(
            FetchError::Status {
                status: 503,
                fejl: None
            }
            .is_retryable()
        );
        assert!(
            !FetchError::Status {
                status: 403,
                fejl: None
            }
            .is_retryable()
        );
        let e = FetchError::Status {
            status: 403,
            fejl: Some(Fejl {
                id: "x".into(),
                code: "3000".into(),
                text: "Ingen adgang".into(),
            }),
        };
        assert!(e.to_string().contains("Fejl 3000 (access refused"), "{e}");
    }
}

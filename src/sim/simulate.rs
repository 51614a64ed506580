//! The register simulator: the NemSMS Register's list calls over HTTPS.
//!
//! Serves lists made by `generate` (`DATA/<date>/<cvr>.csv`) in the wire
//! format of [`crate::register::wire`], with client-certificate verification: full
//! lists, change lists computed between the last deleted day and the asked
//! day (deletable), and the `PUT` pass-through calls (recorded). Fault
//! injection: a share of 500 answers, slow answers, truncated bodies, a
//! wrong declared count, `Fejl` 3000. Prints the address it listens on and
//! stops on SIGTERM or SIGINT.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use jiff::civil::Date;
use rand::{Rng, SeedableRng};

use crate::domain::diff::{self, Change};
use crate::domain::keys::{self, KeyKind, KeySet};
use crate::register::wire::{self, ListKind};

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct RegisterOptions {
    /// Lists made by `generate`.
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
    /// A nemsms-diff config whose authorities give the SysID → CVR map
    /// (default: the SysID is the CVR).
    pub config: Option<PathBuf>,
    /// Entries per delliste.
    pub delliste_size: usize,
    /// Share of requests answered 500.
    pub fail_share: f64,
    /// Delay before every answer, in milliseconds.
    pub slow_ms: u64,
    /// Authorities whose dellister are cut off halfway.
    pub truncate: Vec<u32>,
    /// Authorities whose reference collection declares one entry too many.
    pub wrong_count: Vec<u32>,
    /// Authorities refused with `Fejl` 3000.
    pub deny: Vec<u32>,
    /// Append every PUT and DELETE as a JSON line to this file.
    pub record: Option<PathBuf>,
    pub seed: u64,
    /// Start as if every authority's change lists through this day had
    /// been deleted (a restarted Register keeps that state).
    pub consumed_through: Option<Date>,
    /// A hostile register: answers crafted to attack the client.
    pub hostile: Option<Hostile>,
}

/// The hostile register's attacks (`--hostile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Hostile {
    /// Hrefs to another host (absolute https URLs).
    HrefOtherHost,
    /// Hrefs that glue user info onto the base URL (`@other-host/…`).
    HrefUserinfo,
    /// A DOCTYPE with an entity in the reference collection.
    Doctype,
    /// Dellister nested 100,000 elements deep.
    Deep,
    /// A 1.5 MiB text node in every delliste.
    HugeText,
    /// Declared counts far beyond the bodies.
    CountBeyond,
    /// Delliste bodies that never end.
    Endless,
    /// Every request answered with a redirect to plain http (302 for GET,
    /// 307, which would resend the body, for PUT and DELETE).
    RedirectHttp,
    /// `PUT` calls fail with a Fejl that echoes the CPR or CVR number.
    EchoNumber,
}

#[derive(Clone)]
enum ListData {
    Full(Arc<KeySet>),
    Change(Arc<Vec<(KeyKind, u32, Change)>>),
}

impl ListData {
    fn len(&self) -> usize {
        match self {
            ListData::Full(k) => k.len(),
            ListData::Change(c) => c.len(),
        }
    }

    fn write(&self, from: usize, to: usize, out: &mut Vec<u8>) {
        match self {
            ListData::Full(k) => {
                for i in from..to {
                    let (kind, key) = if i < k.cpr.len() {
                        (KeyKind::Cpr, k.cpr[i])
                    } else {
                        (KeyKind::Cvr, k.cvr[i - k.cpr.len()])
                    };
                    wire::write_entry(out, kind, key, None);
                }
            }
            ListData::Change(c) => {
                for &(kind, key, change) in &c[from..to] {
                    wire::write_entry(out, kind, key, Some(change));
                }
            }
        }
    }
}

struct Served {
    cvr: u32,
    date: Date,
    data: ListData,
}

struct Sim {
    opts: RegisterOptions,
    sysids: HashMap<String, u32>,
    /// Afsendersystem SysIDs (SMS) to authorities.
    afsendere: HashMap<String, u32>,
    /// Sign-ups and sign-offs made through `PUT …/myndighedstilmelding`
    /// (for all authorities), over what the lists say.
    tilmeldt: Mutex<HashMap<(KeyKind, u32), bool>>,
    /// `MeddelelseId`s of the SMS sent (a resend is not sent twice).
    sms_sent: Mutex<std::collections::HashSet<String>>,
    lists: Mutex<HashMap<(u32, Date), Arc<KeySet>>>,
    /// Per authority: the day through which change lists were deleted.
    consumed: Mutex<HashMap<u32, Date>>,
    served: Mutex<HashMap<String, Arc<Served>>>,
    /// Dellister already written, by list id (which fixes the content) and
    /// number, up to [`RENDERED_MAX`] bytes: a register serves prepared
    /// lists, and the benchmarks should not time the simulator's writer.
    rendered: Mutex<Rendered>,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    record: Mutex<Option<std::fs::File>>,
}

type Resp = crate::http::Resp;

/// Written dellister: their total size, and each by list id and number.
type Rendered = (usize, HashMap<(String, usize), Bytes>);

/// Most bytes of written dellister the simulator keeps.
const RENDERED_MAX: usize = 1 << 30;

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r
}

/// A body that declares `declared` bytes but ends after `data`: the
/// connection closes early, as a cut-off download would.
struct Truncated {
    data: Option<Bytes>,
    declared: u64,
}

impl hyper::body::Body for Truncated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.data.take().map(|d| Ok(hyper::body::Frame::data(d))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.declared)
    }
}

/// A body that never ends: valid entries, forever.
struct Endless {
    start: Option<Bytes>,
}

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let chunk = self.start.take().unwrap_or_else(|| {
            Bytes::from(b"<Slutbruger><CPR>0101901234</CPR></Slutbruger>".repeat(1000))
        });
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }
}

fn fejl(status: StatusCode, code: &str, text: &str) -> Resp {
    let id = uuid::Uuid::new_v4().to_string();
    respond(status, wire::write_fejl(&id, code, text))
}

impl Sim {
    fn keys(&self, cvr: u32, date: Date) -> Result<Arc<KeySet>, Box<Resp>> {
        if let Some(k) = self.lists.lock().expect("lock").get(&(cvr, date)) {
            return Ok(k.clone());
        }
        let path = self
            .opts
            .data
            .join(date.to_string())
            .join(format!("{}.csv", keys::format(KeyKind::Cvr, cvr)));
        let list = crate::store::lists::read_list(&path).map_err(|e| {
            Box::new(fejl(
                StatusCode::NOT_FOUND,
                "4040",
                &format!("no list: {e}"),
            ))
        })?;
        let keys = Arc::new(list.keys);
        self.lists
            .lock()
            .expect("lock")
            .insert((cvr, date), keys.clone());
        Ok(keys)
    }

    fn record(&self, method: &str, path: &str, body: &[u8]) {
        if let Some(file) = self.record.lock().expect("lock").as_mut() {
            let line = serde_json::json!({"method": method, "path": path, "body": String::from_utf8_lossy(body)});
            crate::sim::record_line(file, &line);
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Resp, Infallible> {
        if self.opts.slow_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(self.opts.slow_ms)).await;
        }
        let fail = self.opts.fail_share > 0.0
            && self
                .rng
                .lock()
                .expect("lock")
                .random_bool(self.opts.fail_share.min(1.0));
        if fail {
            return Ok(respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected failure",
            ));
        }
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(respond(StatusCode::BAD_REQUEST, "unreadable body")),
        };
        Ok(self.route(&method, &path, &query, &body))
    }

    fn route(&self, method: &Method, path: &str, query: &str, body: &[u8]) -> Resp {
        if self.opts.hostile == Some(Hostile::RedirectHttp) {
            let mut r = respond(
                if method == Method::GET {
                    StatusCode::FOUND
                } else {
                    StatusCode::TEMPORARY_REDIRECT
                },
                Bytes::new(),
            );
            let location = format!("http://127.0.0.1:9{path}?{query}");
            r.headers_mut().insert(
                hyper::header::LOCATION,
                hyper::header::HeaderValue::from_str(&location).unwrap_or(
                    hyper::header::HeaderValue::from_static("http://127.0.0.1:9/"),
                ),
            );
            return r;
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        if let ["files", date, file] = parts.as_slice() {
            return self.file(method, date, file);
        }
        if let ["meddelelse", afsender] = parts.as_slice() {
            return self.sms(method, afsender, path, body);
        }
        let ["register", sysid, rest @ ..] = parts.as_slice() else {
            return fejl(StatusCode::NOT_FOUND, "4040", "unknown path");
        };
        let Some(&cvr) = self.sysids.get(*sysid) else {
            return fejl(StatusCode::NOT_FOUND, "4041", "unknown SysID");
        };
        if self.opts.deny.contains(&cvr) {
            return fejl(
                StatusCode::FORBIDDEN,
                "3000",
                "Ingen adgang: klientcertifikatet er ikke godkendt til denne myndighed",
            );
        }
        let date = || {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix("dato="))
                .and_then(|d| crate::domain::dates::parse_date(d).ok())
        };
        match (method, rest) {
            (&Method::GET, ["slutbrugerliste"]) => match date() {
                Some(d) => self.references(cvr, sysid, d, ListKind::Full),
                None => fejl(
                    StatusCode::BAD_REQUEST,
                    "4000",
                    "dato=YYYY-MM-DD is required",
                ),
            },
            (&Method::GET, ["aendringsliste"]) => match date() {
                Some(d) => self.references(cvr, sysid, d, ListKind::Change),
                None => fejl(
                    StatusCode::BAD_REQUEST,
                    "4000",
                    "dato=YYYY-MM-DD is required",
                ),
            },
            (&Method::GET, ["liste", id, "delliste", n]) => self.delliste(cvr, id, n),
            (&Method::DELETE, ["aendringsliste", id]) => {
                self.record("DELETE", path, b"");
                self.delete(cvr, id)
            }
            (&Method::GET, ["boks", nummer, "myndighedstilmelding"]) => {
                match keys::parse_any(nummer.as_bytes()) {
                    Ok((kind, value)) => respond(
                        StatusCode::OK,
                        wire::myndighedstilmelding_body(self.signed_up(cvr, kind, value)),
                    ),
                    Err(_) => fejl(StatusCode::BAD_REQUEST, "4002", "invalid CPR or CVR number"),
                }
            }
            (&Method::PUT, ["boks", nummer])
            | (&Method::PUT, ["boks", nummer, "myndighedstilmelding"]) => {
                // SF2250 §3.2.4.2: a CVR in OpdaterBorgerNemSMS's path has a
                // leading colon; the tilmelding path has none (§3.2.5.2).
                let with_colon = nummer.strip_prefix(':');
                let valid = match (with_colon, rest.len()) {
                    (Some(cvr), 2) => keys::parse_cvr_str(cvr).is_ok(),
                    (Some(_), _) => false,
                    (None, _) => keys::parse_any(nummer.as_bytes())
                        .is_ok_and(|(kind, _)| rest.len() == 3 || kind == KeyKind::Cpr),
                };
                if !valid {
                    return fejl(StatusCode::BAD_REQUEST, "4002", "invalid CPR or CVR number");
                }
                if body.is_empty() {
                    return fejl(StatusCode::BAD_REQUEST, "4003", "empty body");
                }
                if self.opts.hostile == Some(Hostile::EchoNumber) {
                    let dashed = format!(
                        "{}-{}",
                        &nummer[..6.min(nummer.len())],
                        &nummer[6.min(nummer.len())..]
                    );
                    let id = format!("fejl-{nummer}");
                    return respond(
                        StatusCode::BAD_REQUEST,
                        wire::write_fejl(
                            &id,
                            "4004",
                            &format!("Slutbruger {nummer} ({dashed}) kan ikke opdateres"),
                        ),
                    );
                }
                if rest.len() == 3
                    && let (Ok((kind, value)), Ok(on)) = (
                        keys::parse_any(nummer.as_bytes()),
                        wire::parse_myndighedstilmelding(body),
                    )
                {
                    self.tilmeldt
                        .lock()
                        .expect("lock")
                        .insert((kind, value), on);
                }
                self.record("PUT", path, body);
                respond(StatusCode::NO_CONTENT, Bytes::new())
            }
            _ => fejl(StatusCode::NOT_FOUND, "4040", "unknown path"),
        }
    }

    /// Whether an end user is signed up at `cvr`: the last sign-up or
    /// sign-off made here, else the authority's latest list.
    fn signed_up(&self, cvr: u32, kind: KeyKind, value: u32) -> bool {
        if let Some(&on) = self.tilmeldt.lock().expect("lock").get(&(kind, value)) {
            return on;
        }
        let mut days: Vec<Date> = std::fs::read_dir(&self.opts.data)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                crate::domain::dates::parse_date(&e.ok()?.file_name().to_string_lossy()).ok()
            })
            .collect();
        days.sort();
        let today = crate::register::fetch::now().date();
        days.into_iter()
            .rev()
            .filter(|d| *d <= today)
            .find_map(|d| self.keys(cvr, d).ok())
            .is_some_and(|k| k.of(kind).binary_search(&value).is_ok())
    }

    /// `POST /meddelelse/{afsender}`: an SMS, under NemSMS's rules.
    fn sms(&self, method: &Method, afsender: &str, path: &str, body: &[u8]) -> Resp {
        use crate::domain::sms;
        if method != Method::POST {
            return fejl(StatusCode::METHOD_NOT_ALLOWED, "4050", "POST an SMS");
        }
        let Some(&cvr) = self.afsendere.get(afsender) else {
            return fejl(
                StatusCode::NOT_FOUND,
                "4041",
                "unknown Afsendersystem SysID",
            );
        };
        let m = match wire::parse_sms(body) {
            Ok(m) => m,
            Err(e) => {
                return fejl(
                    StatusCode::BAD_REQUEST,
                    "4003",
                    &format!("invalid Meddelelse: {e}"),
                );
            }
        };
        if let Err(e) = sms::check_text(&m.text)
            .and_then(|()| sms::check_fields(&m.kanal_valg, &m.prioritet, &m.filformat))
        {
            return fejl(StatusCode::BAD_REQUEST, "4005", &e);
        }
        if sms::window(crate::register::fetch::now().datetime()).is_err() {
            return fejl(
                StatusCode::BAD_REQUEST,
                "4006",
                "SMS are only sent between 08:00 and 22:00",
            );
        }
        if !self.signed_up(cvr, m.kind, m.nummer) {
            return fejl(
                StatusCode::BAD_REQUEST,
                "4007",
                "the recipient is not signed up for NemSMS",
            );
        }
        if self.sms_sent.lock().expect("lock").insert(m.id.clone()) {
            self.record("POST", path, body);
        }
        respond(StatusCode::CREATED, Bytes::new())
    }

    /// `GET /files/<date>/<cvr>.csv`: a list as the file-based CSV.
    fn file(&self, method: &Method, date: &str, file: &str) -> Resp {
        let valid = crate::domain::dates::parse_date(date).is_ok()
            && file
                .strip_suffix(".csv")
                .is_some_and(|c| keys::parse_cvr_str(c).is_ok());
        if method != Method::GET || !valid {
            return fejl(StatusCode::NOT_FOUND, "4040", "unknown file");
        }
        let cvr = keys::parse_cvr_str(file.trim_end_matches(".csv")).expect("checked");
        if self.opts.deny.contains(&cvr) {
            return fejl(StatusCode::FORBIDDEN, "3000", "Ingen adgang");
        }
        match std::fs::read(self.opts.data.join(date).join(file)) {
            Ok(bytes) => respond(StatusCode::OK, bytes),
            Err(_) => fejl(StatusCode::NOT_FOUND, "4040", "no such list"),
        }
    }

    fn references(&self, cvr: u32, sysid: &str, date: Date, kind: ListKind) -> Resp {
        let today = match self.keys(cvr, date) {
            Ok(k) => k,
            Err(r) => return *r,
        };
        let (id, data) = match kind {
            ListKind::Full => (format!("fuld-{cvr}-{date}"), ListData::Full(today)),
            ListKind::Change => {
                let base_date = self.consumed.lock().expect("lock").get(&cvr).copied();
                let base = match base_date {
                    Some(b) => match self.keys(cvr, b) {
                        Ok(k) => k,
                        Err(r) => return *r,
                    },
                    None => Arc::new(KeySet::default()),
                };
                let changes = diff::diff(&base, &today);
                let events: Vec<_> = changes.events().collect();
                let base_s = base_date.map_or("start".to_owned(), |d| d.to_string());
                (
                    format!("aendring-{cvr}-{base_s}-{date}"),
                    ListData::Change(Arc::new(events)),
                )
            }
        };
        let n = data.len();
        let size = self.opts.delliste_size.max(1);
        let mut references = Vec::new();
        for (i, from) in (0..n).step_by(size).enumerate() {
            references.push(wire::Reference {
                href: wire::delliste_path(sysid, &id, i + 1),
                count: (n - from).min(size) as u64,
            });
        }
        let mut total = n as u64;
        if self.opts.wrong_count.contains(&cvr)
            && let Some(first) = references.first_mut()
        {
            first.count += 1;
            total += 1;
        }
        match self.opts.hostile {
            Some(Hostile::HrefOtherHost) => {
                for r in &mut references {
                    r.href = format!("https://localhost:1{}", r.href);
                }
            }
            Some(Hostile::HrefUserinfo) => {
                for r in &mut references {
                    r.href = format!("@localhost:1{}", r.href);
                }
            }
            Some(Hostile::CountBeyond) => {
                for r in &mut references {
                    r.count = 1 << 40;
                }
                total = (1u64 << 40) * references.len() as u64;
            }
            _ => {}
        }
        self.served
            .lock()
            .expect("lock")
            .insert(id.clone(), Arc::new(Served { cvr, date, data }));
        let body = wire::write_references(&wire::ReferenceCollection {
            list_id: id,
            kind,
            date: date.to_string(),
            total,
            references,
        });
        if self.opts.hostile == Some(Hostile::Doctype) {
            let body = body.replacen(
                "<SlutbrugerSamlingReferenceSamling",
                "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]>\n<SlutbrugerSamlingReferenceSamling",
                1,
            );
            return respond(StatusCode::OK, body);
        }
        respond(StatusCode::OK, body)
    }

    fn delliste(&self, cvr: u32, id: &str, n: &str) -> Resp {
        let Some(served) = self.served.lock().expect("lock").get(id).cloned() else {
            return fejl(StatusCode::NOT_FOUND, "4042", "unknown list");
        };
        let Ok(n) = n.parse::<usize>() else {
            return fejl(StatusCode::NOT_FOUND, "4043", "unknown delliste");
        };
        if served.cvr != cvr || n == 0 {
            return fejl(StatusCode::NOT_FOUND, "4043", "unknown delliste");
        }
        let size = self.opts.delliste_size.max(1);
        let from = (n - 1) * size;
        if from >= served.data.len() {
            return fejl(StatusCode::NOT_FOUND, "4043", "unknown delliste");
        }
        let to = (from + size).min(served.data.len());
        match self.opts.hostile {
            Some(Hostile::Deep) => {
                let mut out = wire::delliste_start().into_bytes();
                out.extend(std::iter::repeat_n(b"<Slutbruger>".as_slice(), 100_000).flatten());
                return respond(StatusCode::OK, out);
            }
            Some(Hostile::HugeText) => {
                let mut out = wire::delliste_start().into_bytes();
                out.extend_from_slice(b"<Slutbruger><CPR>");
                out.resize(out.len() + (3 << 19), b'1');
                out.extend_from_slice(b"</CPR></Slutbruger>");
                out.extend_from_slice(wire::DELLISTE_END.as_bytes());
                return respond(StatusCode::OK, out);
            }
            Some(Hostile::Endless) => {
                let start = Bytes::from(wire::delliste_start().into_bytes());
                return Response::new(Endless { start: Some(start) }.boxed());
            }
            _ => {}
        }
        let cached = self
            .rendered
            .lock()
            .expect("lock")
            .1
            .get(&(id.to_owned(), n))
            .cloned();
        let out = match cached {
            Some(b) => b,
            None => {
                let mut out = wire::delliste_start().into_bytes();
                out.reserve((to - from) * 48);
                served.data.write(from, to, &mut out);
                out.extend_from_slice(wire::DELLISTE_END.as_bytes());
                let out = Bytes::from(out);
                let mut r = self.rendered.lock().expect("lock");
                if r.0 + out.len() <= RENDERED_MAX {
                    r.0 += out.len();
                    r.1.insert((id.to_owned(), n), out.clone());
                }
                out
            }
        };
        if self.opts.truncate.contains(&cvr) {
            // Declare the whole body, send half: the client sees the
            // connection end early.
            let full = out.len() as u64;
            return Response::new(
                Truncated {
                    data: Some(out.slice(..out.len() / 2)),
                    declared: full,
                }
                .boxed(),
            );
        }
        respond(StatusCode::OK, out)
    }

    fn delete(&self, cvr: u32, id: &str) -> Resp {
        let Some(served) = self.served.lock().expect("lock").get(id).cloned() else {
            return fejl(StatusCode::NOT_FOUND, "4042", "unknown list");
        };
        if !matches!(served.data, ListData::Change(_)) || served.cvr != cvr {
            return fejl(
                StatusCode::BAD_REQUEST,
                "4004",
                "not a change list of this authority",
            );
        }
        let mut consumed = self.consumed.lock().expect("lock");
        if consumed.get(&cvr).is_some_and(|&d| d >= served.date) {
            return fejl(StatusCode::NOT_FOUND, "4044", "change list already deleted");
        }
        consumed.insert(cvr, served.date);
        respond(StatusCode::NO_CONTENT, Bytes::new())
    }
}

fn sysid_map(config: Option<&Path>, data: &Path) -> anyhow::Result<HashMap<String, u32>> {
    let mut map = HashMap::new();
    if let Some(path) = config {
        let cfg = crate::config::Config::load(path)?;
        for a in &cfg.authorities {
            map.insert(a.register_sysid.clone(), a.cvr);
        }
        return Ok(map);
    }
    // Without a config: every authority of the data set, SysID = CVR.
    for day in std::fs::read_dir(data).with_context(|| format!("cannot read {}", data.display()))? {
        let day = day?.path();
        if !day.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&day)? {
            let name = f?.file_name().to_string_lossy().into_owned();
            if let Some(cvr) = name
                .strip_suffix(".csv")
                .and_then(|c| keys::parse_cvr_str(c).ok())
            {
                map.insert(keys::format(KeyKind::Cvr, cvr), cvr);
            }
        }
    }
    Ok(map)
}

/// Opens a `--record` file for appending.
fn open_record(path: Option<&Path>) -> anyhow::Result<Option<std::fs::File>> {
    path.map(|p| {
        crate::fsutil::open_private_append(p)
            .with_context(|| format!("cannot open {}", p.display()))
    })
    .transpose()
}

/// Runs the simulator until SIGTERM or SIGINT.
pub fn serve_register(opts: RegisterOptions) -> anyhow::Result<()> {
    let tls = crate::tls::server_config(&opts.cert, &opts.key, opts.client_ca.as_deref())?;
    let sysids = sysid_map(opts.config.as_deref(), &opts.data)?;
    let afsendere = match opts.config.as_deref() {
        Some(path) => crate::config::Config::load(path)?
            .authorities
            .iter()
            .filter_map(|a| Some((a.afsender_sysid.clone()?, a.cvr)))
            .collect(),
        // Without a config: the Afsendersystem SysID is the CVR too.
        None => sysids.clone(),
    };
    let record = open_record(opts.record.as_deref())?;
    let consumed = opts
        .consumed_through
        .map(|d| sysids.values().map(|&cvr| (cvr, d)).collect())
        .unwrap_or_default();
    let sim = Arc::new(Sim {
        rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed)),
        opts,
        sysids,
        afsendere,
        tilmeldt: Mutex::default(),
        sms_sent: Mutex::default(),
        lists: Mutex::default(),
        consumed: Mutex::new(consumed),
        served: Mutex::default(),
        rendered: Mutex::default(),
        record: Mutex::new(record),
    });
    let runtime = crate::rt::runtime()?;
    runtime.block_on(crate::http::serve(
        "register simulator",
        sim.opts.listen,
        crate::http::Accept::lab(Arc::new(tls)),
        move |req| sim.clone().handle(req),
    ))
}

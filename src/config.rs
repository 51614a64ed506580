//! The TOML configuration, validated once into [`Config`].
//!
//! Unknown keys are errors; every error names the file and the key.
//! `fixtures/config.example.toml` is the commented reference.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use uuid::Uuid;

use crate::beskedfordeler::BeskedfordelerConfig;
use crate::beskedfordeler::alive::AliveConfig;
use crate::domain::envelope::{EnvelopeConfig, FORTROLIGE_PERSONOPLYSNINGER, OBJEKTTYPE_PERSON};
use crate::domain::guard::GuardConfig;
use crate::domain::keys;
use crate::secret::Secret;

/// What the first run for an authority (no previous snapshot) emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirstRun {
    /// Store the snapshot, emit nothing (default).
    Baseline,
    /// Emit every key as signed up.
    EmitAll,
}

/// How the Register delivers an authority's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListMode {
    /// The full list every time.
    Full,
    /// A change list since the last read (OIOREST only).
    Delta,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: PathBuf,
    source: String,
    #[serde(default = "default_first_run")]
    first_run: FirstRun,
    envelope: RawEnvelope,
    #[serde(default)]
    guard: RawGuard,
    register: Option<RawRegister>,
    beskedfordeler: Option<RawBeskedfordeler>,
    alive: Option<AliveConfig>,
    #[serde(default)]
    retention: Retention,
    #[serde(rename = "authority", default)]
    authorities: Vec<RawAuthority>,
}

/// `[retention]`: what `prune` keeps (`prune --keep-days` overrides).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Published batches, reports and old snapshots older than this many
    /// days go; without it (and without `--keep-days`) `prune` refuses.
    pub keep_days: Option<u32>,
    /// Snapshots dated within this many days before an authority's
    /// current one stay, for diffs and re-runs by hand (default 7).
    #[serde(default = "default_backfill_window")]
    pub backfill_window_days: u32,
}

fn default_backfill_window() -> u32 {
    7
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep_days: None,
            backfill_window_days: default_backfill_window(),
        }
    }
}

fn default_first_run() -> FirstRun {
    FirstRun::Baseline
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    beskedtype: Uuid,
    beskedansvarlig_aktoer: Uuid,
    kildesystem: Option<Uuid>,
    #[serde(default = "default_person")]
    objekttype_person: Uuid,
    objekttype_virksomhed: Uuid,
    handling_tilmeldt: Uuid,
    handling_afmeldt: Uuid,
    #[serde(default = "default_sikkerhed")]
    sikkerhedsklassificering: Uuid,
    /// RegistreringsAktoer (default: beskedansvarlig_aktoer).
    registrerings_aktoer: Option<Uuid>,
    /// The secret key event ids are derived with (default: STATE/id.key).
    id_key_file: Option<PathBuf>,
}

fn default_person() -> Uuid {
    Uuid::parse_str(OBJEKTTYPE_PERSON).expect("constant UUID")
}

fn default_sikkerhed() -> Uuid {
    Uuid::parse_str(FORTROLIGE_PERSONOPLYSNINGER).expect("constant UUID")
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    max_size_change: Option<f64>,
    max_changed_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBeskedfordeler {
    url: Secret,
    #[serde(default = "default_exchange")]
    exchange: String,
    token: Option<Secret>,
    /// Allows plain `amqp://` to a loopback broker (tests only).
    #[serde(default)]
    insecure_broker: bool,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    #[serde(default = "default_in_flight")]
    in_flight: usize,
    #[serde(default = "default_bfo_parallel_authorities")]
    parallel_authorities: usize,
    #[serde(default = "default_in_flight_total")]
    in_flight_total: usize,
    #[serde(default = "default_reply_timeout_ms")]
    reply_timeout_ms: u64,
    /// Replaced by `outage_deadline`: refused with a message that says so.
    max_failures: Option<toml::Value>,
    #[serde(default = "default_outage_deadline")]
    outage_deadline: String,
    #[serde(default = "default_max_backoff_ms")]
    max_backoff_ms: u64,
    #[serde(default)]
    publish_after_run: bool,
    #[serde(default)]
    alive_check_before_publish: bool,
    sts: Option<RawSts>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSts {
    url: String,
    ca_cert: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// Beskedfordeler's entity id for sending (`http://<host>/service/afsend/1`).
    afsend_entity_id: String,
    /// Beskedfordeler's entity id for pulling (`http://<host>/service/afhent/1`).
    afhent_entity_id: String,
    /// Replaced by the two entity ids above: refused with a message that says so.
    service_entity_id: Option<toml::Value>,
    #[serde(default = "default_context_field")]
    context_field: String,
    #[serde(default = "default_refresh_before")]
    refresh_before_secs: u64,
}

fn default_context_field() -> String {
    crate::beskedfordeler::sts::DEFAULT_CONTEXT_FIELD.to_owned()
}

fn default_refresh_before() -> u64 {
    300
}

fn default_exchange() -> String {
    "AFSEND_BESKED_EXCHANGE".into()
}
fn default_bfo_parallel_authorities() -> usize {
    32
}

fn default_in_flight() -> usize {
    500
}
fn default_in_flight_total() -> usize {
    4000
}
fn default_reply_timeout_ms() -> u64 {
    10_000
}
fn default_outage_deadline() -> String {
    "10m".into()
}

/// Parses a positive duration: `"10m"`, `"30s"`, `"1h 30m"`, `"PT2M"`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like \"10m\" or \"30s\": {e}"))?;
    std::time::Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?}: the duration must be positive"))
}
fn default_max_backoff_ms() -> u64 {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    base_url: String,
    ca_cert: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_secs: u64,
    #[serde(default = "default_request_timeout")]
    request_timeout_secs: u64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_parallel_authorities")]
    parallel_authorities: usize,
    #[serde(default = "default_retries")]
    retries: usize,
    #[serde(default = "default_retry_deadline")]
    retry_deadline_secs: u64,
    #[serde(default = "default_max_backoff")]
    max_backoff_secs: u64,
    #[serde(default = "default_boks_cvr_prefix")]
    boks_cvr_prefix: String,
}

fn default_boks_cvr_prefix() -> String {
    ":".into()
}

fn default_connect_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    300
}
fn default_concurrency() -> usize {
    4
}
fn default_parallel_authorities() -> usize {
    16
}
fn default_retry_deadline() -> u64 {
    600
}
fn default_retries() -> usize {
    8
}
fn default_max_backoff() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthority {
    cvr: String,
    name: String,
    register_sysid: String,
    /// The Afsendersystem SysID (sending SMS), a second SysID per authority.
    afsender_sysid: Option<String>,
    #[serde(default = "default_mode")]
    list_mode: ListMode,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

fn default_mode() -> ListMode {
    ListMode::Full
}

/// One authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// CVR number.
    pub cvr: u32,
    /// Display name.
    pub name: String,
    /// The Register SysID (used for lists).
    pub register_sysid: String,
    /// The Afsendersystem SysID (used to send SMS), if it sends any.
    pub afsender_sysid: Option<String>,
    /// Full or change lists.
    pub list_mode: ListMode,
    /// This authority's own client certificate and key, if not the default.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Where lists come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `file://` template: CSV lists on disk.
    Files(String),
    /// An `https://` template: CSV lists over HTTPS (mutual TLS).
    Https(String),
    /// The NemSMS Register over OIOREST.
    Oiorest,
}

/// Set by `--debug-wire`: other crates' debug logs (frames, credentials)
/// are let through, so every configured peer must be on loopback.
pub static DEBUG_WIRE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// With `--debug-wire`, refuses a peer URL that is not on loopback.
pub fn check_debug_wire(field: &str, url: &str) -> Result<(), String> {
    if DEBUG_WIRE.load(std::sync::atomic::Ordering::Relaxed) && !crate::secret::is_loopback_url(url)
    {
        return Err(format!(
            "--debug-wire logs credentials and tokens, so it only runs against loopback peers; \
             {field} is {}",
            crate::secret::redact_url(url)
        ));
    }
    Ok(())
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file came from.
    pub path: PathBuf,
    /// State directory (absolute or relative to the config file).
    pub state_dir: PathBuf,
    /// The installation's secret for event ids (mode 0600, made on first use).
    pub id_key_file: PathBuf,
    /// Where lists come from.
    pub source: Source,
    /// The Register connection (OIOREST and HTTPS sources, `user` calls).
    pub register: Option<crate::register::fetch::RegisterConfig>,
    /// The Beskedfordeler connection (publish, alive).
    pub beskedfordeler: Option<BeskedfordelerConfig>,
    /// The AliveBesked check.
    pub alive: Option<AliveConfig>,
    /// What a first run emits.
    pub first_run: FirstRun,
    /// Envelope settings.
    pub envelope: EnvelopeConfig,
    /// Guard thresholds.
    pub guard: GuardConfig,
    /// What `prune` keeps.
    pub retention: Retention,
    /// The authorities, in file order.
    pub authorities: Vec<Authority>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` names the file in errors and anchors
    /// relative paths.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fail =
            |key: &str, msg: String| anyhow::anyhow!("{}: key `{key}`: {msg}", path.display());
        let source = if raw.source == "oiorest" {
            Source::Oiorest
        } else if !raw.source.contains("{authority}") {
            return Err(fail(
                "source",
                "must be \"oiorest\" or a template with the placeholder {authority}".into(),
            ));
        } else if raw.source.starts_with("file://") {
            Source::Files(raw.source.clone())
        } else if raw.source.starts_with("https://") {
            Source::Https(raw.source.clone())
        } else {
            return Err(fail(
                "source",
                "must be \"oiorest\", file://… or https://…".into(),
            ));
        };
        let register = raw
            .register
            .map(|r| register_section(r, base, &fail))
            .transpose()?;
        let beskedfordeler = raw
            .beskedfordeler
            .map(|b| beskedfordeler_section(b, base, &fail))
            .transpose()?;
        if let Some(a) = &raw.alive
            && (a.serve_cert.is_some() != a.serve_key.is_some()
                || (a.serve_client_ca.is_some() && a.serve_cert.is_none()))
        {
            return Err(fail(
                "alive.serve_cert",
                "serve_cert and serve_key go together, and serve_client_ca needs them".into(),
            ));
        }
        let alive = raw.alive.map(|mut a| {
            a.push_store = a.push_store.map(|p| base.join(p));
            a.serve_cert = a.serve_cert.map(|p| base.join(p));
            a.serve_key = a.serve_key.map(|p| base.join(p));
            a.serve_client_ca = a.serve_client_ca.map(|p| base.join(p));
            a
        });
        if register.is_none() && !matches!(source, Source::Files(_)) {
            return Err(fail(
                "register",
                "a [register] section is needed for oiorest and https:// sources".into(),
            ));
        }
        let mut guard = GuardConfig::default();
        for (key, value, slot) in [
            (
                "guard.max_size_change",
                raw.guard.max_size_change,
                &mut guard.max_size_change,
            ),
            (
                "guard.max_changed_share",
                raw.guard.max_changed_share,
                &mut guard.max_changed_share,
            ),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(fail(key, "must be a share >= 0 (0.05 = 5 %)".into()));
                }
                *slot = v;
            }
        }
        let mut seen = BTreeSet::new();
        let mut authorities = Vec::with_capacity(raw.authorities.len());
        for (i, a) in raw.authorities.into_iter().enumerate() {
            let key = format!("authority[{i}].cvr");
            let cvr = keys::parse_cvr_str(&a.cvr)
                .map_err(|e| fail(&key, format!("not a valid CVR number: {e}")))?;
            if !seen.insert(cvr) {
                return Err(fail(
                    &key,
                    format!("authority {} is configured twice", a.cvr.trim()),
                ));
            }
            if a.list_mode == ListMode::Delta && source != Source::Oiorest {
                return Err(fail(
                    &format!("authority[{i}].list_mode"),
                    "delta lists need source = \"oiorest\"; file-based lists are always full lists"
                        .into(),
                ));
            }
            let client_cert = match (a.client_cert, a.client_key) {
                (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
                (None, None) => None,
                _ => {
                    return Err(fail(
                        &format!("authority[{i}].client_cert"),
                        "client_cert and client_key go together".into(),
                    ));
                }
            };
            authorities.push(Authority {
                cvr,
                name: a.name,
                register_sysid: a.register_sysid,
                afsender_sysid: a.afsender_sysid.filter(|s| !s.trim().is_empty()),
                list_mode: a.list_mode,
                client_cert,
            });
        }
        if authorities.is_empty() {
            bail!("{}: no [[authority]] is configured", path.display());
        }
        let e = raw.envelope;
        if let Some(r) = &register {
            check_debug_wire("register.base_url", &r.base_url)
                .map_err(|e| fail("register.base_url", e))?;
        }
        if let Some(b) = &beskedfordeler {
            check_debug_wire("beskedfordeler.url", b.url.expose())
                .map_err(|e| fail("beskedfordeler.url", e))?;
            if let crate::beskedfordeler::sts::TokenSource::Sts(s) = &b.tokens {
                check_debug_wire("beskedfordeler.sts.url", &s.url)
                    .map_err(|e| fail("beskedfordeler.sts.url", e))?;
            }
        }
        if let Source::Https(t) = &source {
            check_debug_wire("source", t).map_err(|e| fail("source", e))?;
        }
        let state_dir = base.join(raw.state_dir);
        Ok(Config {
            path: path.to_owned(),
            id_key_file: e
                .id_key_file
                .as_ref()
                .map_or_else(|| state_dir.join("id.key"), |p| base.join(p)),
            state_dir,
            source,
            register,
            beskedfordeler,
            alive,
            first_run: raw.first_run,
            envelope: EnvelopeConfig {
                beskedtype: e.beskedtype,
                beskedansvarlig_aktoer: e.beskedansvarlig_aktoer,
                kildesystem: e.kildesystem.unwrap_or(e.beskedansvarlig_aktoer),
                objekttype_person: e.objekttype_person,
                objekttype_virksomhed: e.objekttype_virksomhed,
                handling_tilmeldt: e.handling_tilmeldt,
                handling_afmeldt: e.handling_afmeldt,
                sikkerhedsklassificering: e.sikkerhedsklassificering,
                registrerings_aktoer: e.registrerings_aktoer.unwrap_or(e.beskedansvarlig_aktoer),
            },
            guard,
            retention: raw.retention,
            authorities,
        })
    }

    /// A template's URL for an authority and date.
    pub fn expand(template: &str, authority: u32, date: jiff::civil::Date) -> String {
        template
            .replace("{date}", &date.to_string())
            .replace("{authority}", &keys::format(keys::KeyKind::Cvr, authority))
    }

    /// The local file of an authority's list on a date (file:// sources).
    pub fn source_path(&self, authority: u32, date: jiff::civil::Date) -> Option<PathBuf> {
        let Source::Files(template) = &self.source else {
            return None;
        };
        let url = Self::expand(template, authority, date);
        let path = PathBuf::from(url.trim_start_matches("file://"));
        Some(if path.is_absolute() {
            path
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(path)
        })
    }

    /// Looks up a configured authority.
    pub fn authority(&self, cvr: u32) -> Option<&Authority> {
        self.authorities.iter().find(|a| a.cvr == cvr)
    }
}

type Fail<'a> = dyn Fn(&str, String) -> anyhow::Error + 'a;

/// The `[register]` section, validated into the Register client's settings.
fn register_section(
    r: RawRegister,
    base: &Path,
    fail: &Fail<'_>,
) -> anyhow::Result<crate::register::fetch::RegisterConfig> {
    if !r.base_url.starts_with("https://") {
        return Err(fail("register.base_url", "must be an https:// URL".into()));
    }
    if r.concurrency == 0 || r.parallel_authorities == 0 {
        return Err(fail(
            "register.concurrency",
            "concurrency settings must be at least 1".into(),
        ));
    }
    Ok(crate::register::fetch::RegisterConfig {
        base_url: r.base_url,
        ca_cert: base.join(r.ca_cert),
        client_cert: base.join(r.client_cert),
        client_key: base.join(r.client_key),
        connect_timeout: std::time::Duration::from_secs(r.connect_timeout_secs),
        request_timeout: std::time::Duration::from_secs(r.request_timeout_secs),
        concurrency: r.concurrency,
        parallel_authorities: r.parallel_authorities,
        retries: r.retries,
        retry_deadline: std::time::Duration::from_secs(r.retry_deadline_secs.max(1)),
        max_backoff: std::time::Duration::from_secs(r.max_backoff_secs),
        boks_cvr_prefix: r.boks_cvr_prefix,
    })
}

/// The `[beskedfordeler]` section, validated into the publisher's settings.
fn beskedfordeler_section(
    b: RawBeskedfordeler,
    base: &Path,
    fail: &Fail<'_>,
) -> anyhow::Result<BeskedfordelerConfig> {
    let url = b.url.expose();
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        return Err(fail("beskedfordeler.url", "must be an amqps:// URL".into()));
    }
    if url.parse::<lapin::uri::AMQPUri>().is_err() {
        return Err(fail(
            "beskedfordeler.url",
            format!("{} is not an AMQP URL", crate::secret::redact_url(url)),
        ));
    }
    let plain = url.starts_with("amqp://");
    if plain && !b.insecure_broker {
        return Err(fail(
            "beskedfordeler.url",
            "amqp:// would carry the token and every envelope in clear: use amqps:// \
             with ca_cert, client_cert and client_key (for a loopback test broker \
             only: insecure_broker = true)"
                .into(),
        ));
    }
    if plain && !crate::secret::is_loopback_url(url) {
        return Err(fail(
            "beskedfordeler.insecure_broker",
            "plain amqp:// is only allowed to a loopback broker (127.0.0.1, ::1, localhost)".into(),
        ));
    }
    if !plain && b.insecure_broker {
        return Err(fail(
            "beskedfordeler.insecure_broker",
            "is only for plain amqp:// to a loopback test broker".into(),
        ));
    }
    if plain && b.ca_cert.is_some() {
        return Err(fail(
            "beskedfordeler.ca_cert",
            "a client certificate is configured, but amqp:// would not use TLS: use amqps://"
                .into(),
        ));
    }
    if !plain && b.ca_cert.is_none() {
        return Err(fail(
            "beskedfordeler.ca_cert",
            "amqps:// needs ca_cert (the only CA the broker's certificate is checked against), client_cert and client_key".into(),
        ));
    }
    let tls = match (b.ca_cert, b.client_cert, b.client_key) {
        (Some(ca), Some(c), Some(k)) => Some((base.join(ca), base.join(c), base.join(k))),
        (None, None, None) => None,
        _ => {
            return Err(fail(
                "beskedfordeler.ca_cert",
                "ca_cert, client_cert and client_key go together".into(),
            ));
        }
    };
    let tokens = match (b.token, b.sts) {
        (Some(t), None) => crate::beskedfordeler::sts::TokenSource::Static(t),
        (None, Some(s)) => {
            if !s.url.starts_with("https://") {
                return Err(fail(
                    "beskedfordeler.sts.url",
                    "must be an https:// URL".into(),
                ));
            }
            if s.service_entity_id.is_some() {
                return Err(fail(
                    "beskedfordeler.sts.service_entity_id",
                    "was replaced by afsend_entity_id and afhent_entity_id (one entity id per operation, \
                     e.g. http://<beskedfordeler host>/service/afsend/1 and …/afhent/1)"
                        .into(),
                ));
            }
            if !matches!(
                s.context_field.as_str(),
                "AnvenderKontekst" | "Anvenderkontekst"
            ) {
                return Err(fail(
                    "beskedfordeler.sts.context_field",
                    "must be \"AnvenderKontekst\" or \"Anvenderkontekst\"".into(),
                ));
            }
            crate::beskedfordeler::sts::TokenSource::Sts(crate::beskedfordeler::sts::StsConfig {
                url: s.url,
                ca_cert: base.join(s.ca_cert),
                client_cert: base.join(s.client_cert),
                client_key: base.join(s.client_key),
                afsend_entity_id: s.afsend_entity_id,
                afhent_entity_id: s.afhent_entity_id,
                context_field: s.context_field,
                refresh_before: std::time::Duration::from_secs(s.refresh_before_secs),
            })
        }
        _ => {
            return Err(fail(
                "beskedfordeler.token",
                "give either a static token or a [beskedfordeler.sts] section".into(),
            ));
        }
    };
    if b.max_failures.is_some() {
        return Err(fail(
            "beskedfordeler.max_failures",
            "was replaced by outage_deadline (how long to ride out an outage, e.g. \"10m\")".into(),
        ));
    }
    let outage_deadline = parse_duration(&b.outage_deadline)
        .map_err(|e| fail("beskedfordeler.outage_deadline", e))?;
    if b.in_flight == 0 {
        return Err(fail(
            "beskedfordeler.in_flight",
            "must be at least 1".into(),
        ));
    }
    if b.parallel_authorities == 0 {
        return Err(fail(
            "beskedfordeler.parallel_authorities",
            "must be at least 1".into(),
        ));
    }
    if b.in_flight_total < b.in_flight {
        return Err(fail(
            "beskedfordeler.in_flight_total",
            format!(
                "must be at least in_flight ({}): it is the budget of messages in flight over all connections",
                b.in_flight
            ),
        ));
    }
    Ok(BeskedfordelerConfig {
        url: b.url,
        exchange: b.exchange,
        tokens,
        tls,
        in_flight: b.in_flight,
        parallel_authorities: b.parallel_authorities,
        in_flight_total: b.in_flight_total,
        reply_timeout: std::time::Duration::from_millis(b.reply_timeout_ms.max(1)),
        outage_deadline,
        max_backoff: std::time::Duration::from_millis(b.max_backoff_ms),
        publish_after_run: b.publish_after_run,
        alive_check_before_publish: b.alive_check_before_publish,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state_dir = "state"
source = "file://lists/{date}/{authority}.csv"
[envelope]
beskedtype = "11111111-1111-4111-8111-111111111111"
beskedansvarlig_aktoer = "22222222-2222-4222-8222-222222222222"
objekttype_virksomhed = "33333333-3333-4333-8333-333333333333"
handling_tilmeldt = "44444444-4444-4444-8444-444444444444"
handling_afmeldt = "55555555-5555-4555-8555-555555555555"
[[authority]]
cvr = "29189846"
name = "Aarhus"
register_sysid = "1234"
"#;

    fn err(text: &str) -> String {
        format!(
            "{:#}",
            Config::parse(text, Path::new("/etc/nemsms.toml")).unwrap_err()
        )
    }

    #[test]
    fn plain_amqp_only_to_a_loopback_test_broker() {
        let with = |bf: &str| format!("{GOOD}\n[beskedfordeler]\ntoken = \"t\"\n{bf}\n");
        let tls = "ca_cert = \"ca.pem\"\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"";
        for (bf, expected) in [
            (
                "url = \"amqp://u:p@127.0.0.1:5672/%2f\"",
                "would carry the token and every envelope in clear",
            ),
            (
                "url = \"amqp://u:p@10.1.2.3:5672/%2f\"\ninsecure_broker = true",
                "only allowed to a loopback broker",
            ),
            (
                &format!("url = \"amqp://127.0.0.1:5672/%2f\"\ninsecure_broker = true\n{tls}"),
                "amqp:// would not use TLS",
            ),
            (
                "url = \"amqps://bf.example:5671/BF\"",
                "amqps:// needs ca_cert",
            ),
            (
                &format!("url = \"amqps://bf.example:5671/BF\"\ninsecure_broker = true\n{tls}"),
                "only for plain amqp://",
            ),
            ("url = \"http://bf.example/\"", "must be an amqps:// URL"),
        ] {
            let e = err(&with(bf));
            assert!(e.contains(expected), "{bf}: {e}");
            assert!(!e.contains("u:p@"), "{bf}: the password shows: {e}");
        }
        for bf in [
            "url = \"amqp://u:p@127.0.0.1:5672/%2f\"\ninsecure_broker = true".to_owned(),
            "url = \"amqp://u:p@[::1]:5672/%2f\"\ninsecure_broker = true".to_owned(),
            format!("url = \"amqps://bf.example:5671/BF?auth_mechanism=external\"\n{tls}"),
        ] {
            Config::parse(&with(&bf), Path::new("/etc/nemsms.toml")).unwrap();
        }
    }

    #[test]
    fn the_in_flight_budget_holds_at_least_one_window() {
        let with = |bf: &str| {
            format!(
                "{GOOD}\n[beskedfordeler]\ntoken = \"t\"\nurl = \"amqp://127.0.0.1:5672/%2f\"\ninsecure_broker = true\n{bf}\n"
            )
        };
        let e = err(&with("in_flight = 600\nin_flight_total = 500"));
        assert!(e.contains("beskedfordeler.in_flight_total"), "{e}");
        assert!(e.contains("at least in_flight (600)"), "{e}");
        let c = Config::parse(&with(""), Path::new("/etc/nemsms.toml")).unwrap();
        let b = c.beskedfordeler.unwrap();
        assert_eq!((b.in_flight, b.in_flight_total), (500, 4000));
        let c = Config::parse(
            &with("in_flight_total = 500"),
            Path::new("/etc/nemsms.toml"),
        )
        .unwrap();
        assert_eq!(c.beskedfordeler.unwrap().in_flight_total, 500);
    }

    #[test]
    fn debug_output_hides_tokens_and_passwords() {
        let text = format!(
            "{GOOD}\n[beskedfordeler]\nurl = \"amqp://svc:pass%40word@127.0.0.1:5672/%2f\"\n\
             insecure_broker = true\ntoken = \"tok-SECRET-42\"\n"
        );
        let cfg = Config::parse(&text, Path::new("/etc/nemsms.toml")).unwrap();
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(!shown.contains("tok-SECRET-42"), "{shown}");
        assert!(
            !shown.contains("pass%40word") && !shown.contains("pass@word"),
            "{shown}"
        );
        assert!(shown.contains("***"));
    }

    #[test]
    fn the_example_config_parses_with_the_documented_defaults() {
        let cfg = Config::parse(
            include_str!("../fixtures/config.example.toml"),
            Path::new("/etc/nemsms-diff/config.toml"),
        )
        .unwrap();
        assert!(!cfg.authorities.is_empty());
        // Uncommented, the Beskedfordeler section gets the 10-minute deadline.
        let text = include_str!("../fixtures/config.example.toml")
            .replace("# [beskedfordeler]", "[beskedfordeler]")
            .replace("# url = \"amqps", "url = \"amqps")
            .replace("# ca_cert = \"certs/bf-ca.pem\"", "ca_cert = \"certs/bf-ca.pem\"\ntoken = \"t\"")
            .replace("# client_cert = \"certs/foces.pem\"\n# client_key = \"certs/foces-key.pem\"\n# outage", "client_cert = \"certs/foces.pem\"\nclient_key = \"certs/foces-key.pem\"\n# outage");
        let cfg = Config::parse(&text, Path::new("/etc/nemsms-diff/config.toml")).unwrap();
        let b = cfg.beskedfordeler.unwrap();
        assert_eq!(b.outage_deadline, std::time::Duration::from_secs(600));
        assert!(
            Config::parse(
                &text.replace("# outage_deadline = \"10m\"", "outage_deadline = \"soon\""),
                Path::new("/etc/c.toml")
            )
            .unwrap_err()
            .to_string()
            .contains("outage_deadline")
        );
        assert!(
            Config::parse(
                &text.replace("# outage_deadline = \"10m\"", "max_failures = 5"),
                Path::new("/etc/c.toml")
            )
            .unwrap_err()
            .to_string()
            .contains("replaced by outage_deadline")
        );
    }

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = Config::parse(GOOD, Path::new("/etc/nemsms/config.toml")).unwrap();
        assert_eq!(c.state_dir, Path::new("/etc/nemsms/state"));
        assert_eq!(c.authorities[0].cvr, 29189846);
        assert_eq!(c.guard, GuardConfig::default());
        assert_eq!(c.envelope.kildesystem, c.envelope.beskedansvarlig_aktoer);
        let p = c
            .source_path(29189846, jiff::civil::date(2026, 1, 2))
            .unwrap();
        assert_eq!(p, Path::new("/etc/nemsms/lists/2026-01-02/29189846.csv"));
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e = err(&GOOD.replace("name = \"Aarhus\"", "name = \"Aarhus\"\ncolour = \"blue\""));
        assert!(
            e.contains("/etc/nemsms.toml") && e.contains("colour"),
            "{e}"
        );
        let e = err(&GOOD.replace("29189846", "29189847"));
        assert!(
            e.contains("authority[0].cvr") && e.contains("modulus-11"),
            "{e}"
        );
        let e = err(&GOOD.replace("\"11111111-1111-4111-8111-111111111111\"", "\"nope\""));
        assert!(e.contains("beskedtype"), "{e}");
        let e = err(&GOOD.replace("{authority}", "x"));
        assert!(e.contains("key `source`"), "{e}");
        let e = err(&GOOD.replace("file://lists/{date}/{authority}.csv", "oiorest"));
        assert!(e.contains("key `register`"), "{e}");
        let e = err(&GOOD.replace(
            "register_sysid = \"1234\"",
            "register_sysid = \"1234\"\nlist_mode = \"delta\"",
        ));
        assert!(e.contains("authority[0].list_mode"), "{e}");
        let e = err(&format!("{GOOD}\n[guard]\nmax_size_change = -1\n"));
        assert!(e.contains("guard.max_size_change"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[[authority]]\ncvr = \"29189846\"\nname = \"x\"\nregister_sysid = \"1\"\n"
        ));
        assert!(e.contains("configured twice"), "{e}");
    }
}

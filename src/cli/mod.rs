//! Command-line interface: clap definitions and the commands behind them.
//!
//! Each command validates its arguments once, calls the pipeline stages and
//! prints what the user asked for. Exit codes are in [`crate::exit`].

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rayon::prelude::*;
use time::{Date, OffsetDateTime};

use crate::domain::diff::{self, Changes};
use crate::domain::keys::{self, KeyKind, KeySet};
use crate::{domain::parse, exit, fsutil, sim::generate, store::snapshot};

/// Nightly NemSMS registration-list diff: snapshots, changes and
/// Beskedfordeler events.
#[derive(Debug, Parser)]
#[command(name = "nemsms-diff", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr: `text` for people, `json` for schedulers.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Let other crates' debug and trace logs through (AMQP frames, TLS and
    /// HTTP details, which carry credentials and tokens). Refused unless
    /// every configured peer (register, STS, broker) is on loopback.
    #[arg(long, global = true)]
    pub debug_wire: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, inspect and export snapshot files.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Print the changes between two lists (CSV lists or snapshots), or
    /// between two directories of lists paired by file name.
    Diff(DiffArgs),
    /// Write realistic synthetic lists: DIR/<date>/<authority>.csv.
    Generate(GenerateArgs),
    /// The nightly job: for every authority, snapshot today's list, diff it
    /// against the current snapshot and write the events to the outbox.
    Run(RunArgs),
    /// Run every date of a range in order per authority (resumable).
    Backfill(BackfillArgs),
    /// Look inside the outbox.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// SF2250 pass-through calls to the Register for one end user.
    #[command(subcommand)]
    User(UserCommand),
    /// Send every unpublished outbox batch to Beskedfordeler (AMQP).
    ///
    /// An outage (broker unreachable, or up but answering nothing) is ridden
    /// out with capped, jittered backoff until the outage deadline passes
    /// without a confirmed event; then exit 4, and the next publish resumes.
    Publish {
        /// The configuration file ([beskedfordeler]).
        #[arg(long)]
        config: PathBuf,
        /// How long to ride out an outage without progress, e.g. 10m, 90s
        /// (default: [beskedfordeler] outage_deadline, itself 10m by default).
        #[arg(long, value_parser = crate::config::parse_duration)]
        outage_deadline: Option<std::time::Duration>,
        /// `dir:PATH`: write the envelopes as files instead (cursors untouched).
        #[arg(long)]
        to: Option<String>,
    },
    /// AliveBesked: prove the message flow through Beskedfordeler is alive.
    #[command(subcommand)]
    Alive(AliveCommand),
    /// Test doubles that speak the real protocols over loopback.
    #[command(subcommand)]
    Simulate(SimulateCommand),
}

#[derive(Debug, Args)]
pub struct UserTarget {
    /// The configuration file ([register] and the authority's SysID).
    #[arg(long)]
    pub config: PathBuf,
    /// The authority's CVR.
    #[arg(long, value_parser = parse_cvr_arg)]
    pub authority: u32,
    #[command(flatten)]
    pub nummer: Nummer,
}

/// The end user: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Nummer {
    /// The citizen's CPR number, or `-` to read it from standard input
    /// (which keeps it out of `ps` and shell history).
    #[arg(long)]
    pub cpr: Option<String>,
    /// Read the citizen's CPR number from this file (its first line).
    #[arg(long)]
    pub cpr_file: Option<PathBuf>,
    /// The company's CVR number.
    #[arg(long)]
    pub cvr: Option<String>,
}

impl Nummer {
    /// The validated number and its kind. Errors never show the number.
    pub fn resolve(&self) -> anyhow::Result<(KeyKind, u32)> {
        let (text, kind, from) = match (&self.cpr, &self.cpr_file, &self.cvr) {
            (Some(c), None, None) if c == "-" => (
                read_first_line(io::stdin().lock(), "standard input")?,
                KeyKind::Cpr,
                "--cpr -".to_owned(),
            ),
            (Some(c), None, None) => (c.clone(), KeyKind::Cpr, "--cpr".to_owned()),
            (None, Some(f), None) => {
                let file = std::fs::File::open(f)
                    .with_context(|| format!("--cpr-file: cannot open {}", f.display()))?;
                (
                    read_first_line(io::BufReader::new(file), &f.display().to_string())?,
                    KeyKind::Cpr,
                    format!("--cpr-file {}", f.display()),
                )
            }
            (None, None, Some(c)) => (c.clone(), KeyKind::Cvr, "--cvr".to_owned()),
            _ => bail!(UsageError(
                "give exactly one of --cpr, --cpr-file and --cvr".into()
            )),
        };
        let value = keys::parse_kind(kind, text.trim().as_bytes())
            .map_err(|e| UsageError(format!("{from}: {e}")))?;
        Ok((kind, value))
    }
}

/// The first line of `r` (at most 64 bytes are read: a number is short).
fn read_first_line(r: impl io::BufRead, what: &str) -> anyhow::Result<String> {
    use io::BufRead;
    let mut line = String::new();
    r.take(64)
        .read_line(&mut line)
        .with_context(|| format!("cannot read the number from {what}"))?;
    Ok(line)
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// OpdaterBorgerNemSMS: create or update the end user's master data
    /// (PUT …/boks/{nummer} with a SlutbrugerStamdata body).
    Update {
        #[command(flatten)]
        target: UserTarget,
        /// The SlutbrugerStamdata XML body.
        #[arg(long)]
        stamdata: PathBuf,
    },
    /// TilmeldNemSMS: sign the end user up at all authorities
    /// (PUT …/boks/{nummer}/myndighedstilmelding, Myndighedstilmelding = true).
    Signup {
        #[command(flatten)]
        target: UserTarget,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliveCommand {
    /// AliveBeskedSend: publish one AliveBesked (no business data).
    Send {
        #[arg(long)]
        config: PathBuf,
        /// Seconds for the whole exchange (token, connection, send, StatusKode).
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// AliveBeskedModtag: a push receiver, POST /besked/modtag.
    ///
    /// Bodies are limited (413 above), headers and bodies must arrive in
    /// time, connections are capped. HTTPS and mutual TLS come from
    /// [alive] serve_cert / serve_key / serve_client_ca in --config (or
    /// the flags); without them it speaks plain HTTP and belongs on
    /// loopback behind a TLS-terminating proxy.
    Serve(Box<ServeArgs>),
    /// Send one AliveBesked and wait until it arrives; prints the round trip.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// pull: consume [alive] dueslag_queue; push: watch [alive] push_store.
        #[arg(long, value_parser = ["pull", "push"])]
        via: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Where received messages are stored (default: [alive] push_store).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// A config file with an [alive] section (store, TLS settings).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Largest body accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Seconds for the TLS handshake and for each request's headers.
    #[arg(long, default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds for a request's body.
    #[arg(long, default_value_t = 30)]
    pub body_timeout_secs: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// HTTPS certificate (PEM); overrides [alive] serve_cert.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS key (PEM); overrides [alive] serve_key.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// The NemSMS Register over HTTPS with client certificates.
    Register(Box<RegisterSimArgs>),
    /// Beskedfordeler's behaviour on a real RabbitMQ broker.
    Beskedfordeler(Box<BfoArgs>),
    /// KOMBIT's STS (assumed WS-Trust form) over HTTPS with client certificates.
    Sts {
        /// Address to listen on (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Require client certificates signed by this CA.
        #[arg(long)]
        client_ca: Option<PathBuf>,
        /// Lifetime of issued tokens, in seconds.
        #[arg(long, default_value_t = 28_800)]
        ttl_secs: u64,
        /// Append every issue as a JSON line to this file.
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Empty a queue and print the BeskedIds of its messages, one a line.
    Drain {
        /// The environment variable holding the broker's URL (credentials
        /// never go on the command line).
        #[arg(long, default_value = "NEMSMS_DIFF_AMQP_URL")]
        amqp_env: String,
        #[arg(long)]
        queue: String,
        /// Stop after the queue stayed empty this long.
        #[arg(long, default_value_t = 1000)]
        idle_ms: u64,
    },
    /// A TCP fault proxy for network tests: latency each way, connections
    /// cut (TCP reset) after a random number of bytes; SIGUSR1 cuts every
    /// open connection, SIGUSR2 takes the link down or up again.
    Proxy {
        /// Address to listen on (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Where connections go, HOST:PORT.
        #[arg(long)]
        upstream: String,
        /// Latency added each way, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Bandwidth of each connection, each way, in kilobits per second.
        #[arg(long)]
        rate_kbit: Option<u64>,
        /// Cut each connection after MIN-MAX bytes (both ways; K and M suffixes).
        #[arg(long, value_parser = crate::sim::proxy::parse_byte_range)]
        cut_after: Option<(u64, u64)>,
        /// The share of connections that get --cut-after.
        #[arg(long, default_value_t = 1.0)]
        cut_share: f64,
        /// Append one JSON line per connection end (bytes, cut) to this file.
        #[arg(long)]
        log: Option<PathBuf>,
        /// Seed of the cut points.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The emulator's rate alone: send every envelope of the outbox at once
    /// (all in flight, no cursors) to [beskedfordeler] and wait for every
    /// StatusKode; prints messages, answers and the rate.
    Load {
        #[arg(long)]
        config: PathBuf,
        /// At most this many envelopes.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Write test certificates: CA, server, client, and a client of another CA.
    Certs {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct BfoArgs {
    /// The environment variable holding the broker's URL, e.g.
    /// amqp://guest:guest@127.0.0.1:5672/%2f (credentials never go on the
    /// command line).
    #[arg(long, default_value = "NEMSMS_DIFF_AMQP_URL")]
    pub amqp_env: String,
    /// The exchange publishers send to.
    #[arg(long, default_value = "AFSEND_BESKED_EXCHANGE")]
    pub exchange: String,
    /// A dueslag: QUEUE=BESKEDTYPE or QUEUE=BESKEDTYPE:FILE (ObjektIds, one a line). Repeatable.
    #[arg(long = "subscribe")]
    pub subscriptions: Vec<crate::sim::emulator::Subscription>,
    /// Push accepted messages of --push-beskedtype here as ModtagBeskedInput.
    #[arg(long)]
    pub push_to: Option<String>,
    /// The beskedtype pushed (default: AliveBesked).
    #[arg(long, default_value = "f7e84a06-c47e-42e8-a864-fb4095d7f520")]
    pub push_beskedtype: String,
    /// Fault: answer StatusKode 41 (token expired) to every Nth message.
    #[arg(long, default_value_t = 0)]
    pub answer_41_every: u64,
    /// Fault: the error code of --error-every.
    #[arg(long, default_value_t = 50)]
    pub error_code: u32,
    /// Fault: answer --error-code to every Nth message.
    #[arg(long, default_value_t = 0)]
    pub error_every: u64,
    /// Fault: send no reply to every Nth message (it is still delivered).
    #[arg(long, default_value_t = 0)]
    pub drop_reply_every: u64,
    /// Fault: delay every reply by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_reply_ms: u64,
}

#[derive(Debug, Args)]
pub struct RegisterSimArgs {
    /// Lists made by `generate` (DATA/<date>/<cvr>.csv).
    #[arg(long)]
    pub data: PathBuf,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Server certificate (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// Server key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Require client certificates signed by this CA.
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// A nemsms-diff config for the SysID → CVR map (default: SysID = CVR).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Entries per delliste.
    #[arg(long, default_value_t = 100_000)]
    pub delliste_size: usize,
    /// Fault: answer this share of requests with HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_share: f64,
    /// Fault: delay every answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub slow_ms: u64,
    /// Fault: cut this authority's dellister off halfway (repeatable).
    #[arg(long, value_parser = parse_cvr_arg)]
    pub truncate: Vec<u32>,
    /// Fault: declare one entry too many for this authority (repeatable).
    #[arg(long, value_parser = parse_cvr_arg)]
    pub wrong_count: Vec<u32>,
    /// Fault: refuse this authority with Fejl 3000 (repeatable).
    #[arg(long, value_parser = parse_cvr_arg)]
    pub deny: Vec<u32>,
    /// Append every PUT and DELETE received to this file (JSON lines).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Seed of the fault injection.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Start as if every change list through this day had been deleted
    /// (a Register restarted mid-history).
    #[arg(long, value_parser = parse_date)]
    pub consumed_through: Option<Date>,
    /// A hostile register: answers crafted to attack the client.
    #[arg(long, value_enum)]
    pub hostile: Option<crate::sim::simulate::Hostile>,
}

#[derive(Debug, Args)]
pub struct CommonRunArgs {
    /// The configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Only these authorities (CVR; repeatable). Default: all configured.
    #[arg(long = "authority", value_parser = parse_cvr_arg)]
    pub authorities: Vec<u32>,
    /// Release a quarantined authority for this run (CVR; repeatable).
    #[arg(long = "accept-mass-change", value_parser = parse_cvr_arg)]
    pub accept_mass_change: Vec<u32>,
    /// Inside NemSMS's service window (Sunday 00:00-04:00 Danish time),
    /// wait for it to end instead of failing.
    #[arg(long)]
    pub wait_for_service_window: bool,
    /// Do not publish after committing, even if the config says so.
    #[arg(long)]
    pub no_publish: bool,
    /// When publishing after the run: how long to ride out a Beskedfordeler
    /// outage without progress, e.g. 10m, 90s (default: [beskedfordeler]
    /// outage_deadline, itself 10m by default).
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub outage_deadline: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonRunArgs,
    /// The list date, YYYY-MM-DD. Default: today in Denmark.
    #[arg(long, value_parser = parse_date)]
    pub date: Option<Date>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub common: CommonRunArgs,
    /// First date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    pub from: Date,
    /// Last date, YYYY-MM-DD (inclusive).
    #[arg(long, value_parser = parse_date)]
    pub to: Date,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Every batch: date, authority, events, published or not.
    List {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the envelopes of one batch.
    Show {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The authority's CVR.
        #[arg(long, value_parser = parse_cvr_arg)]
        authority: u32,
        /// The list date.
        #[arg(long, value_parser = parse_date)]
        date: Date,
        /// Print at most this many envelopes.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Parse a list and write it as a snapshot file.
    Build(BuildArgs),
    /// Show a snapshot's header: authority, date, counts, size, checksum.
    Inspect(InspectArgs),
    /// Print a snapshot's keys as a list (header `type;nummer`).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The list (assumed tilmeldingsliste CSV).
    pub list: PathBuf,
    /// The authority's CVR number.
    #[arg(long, value_parser = parse_cvr_arg)]
    pub authority: u32,
    /// The list date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    pub date: Date,
    /// When the list was taken (RFC 3339); default: the list file's mtime.
    #[arg(long, value_parser = parse_timestamp)]
    pub taken_at: Option<OffsetDateTime>,
    /// The snapshot file to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The snapshot file.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `haendelse;type;nummer` rows.
    Csv,
    /// One JSON object a line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Yesterday: a list, a snapshot, or a directory of them.
    pub old: PathBuf,
    /// Today: a list, a snapshot, or a directory of them.
    pub new: PathBuf,
    /// Output format of the changes.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// With two directories: where to write one change file per pair.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of authorities.
    #[arg(long, default_value_t = 98)]
    pub authorities: usize,
    /// Total keys on the first day.
    #[arg(long, default_value_t = 6_000_000)]
    pub keys: u64,
    /// Number of days.
    #[arg(long, default_value_t = 2)]
    pub days: u32,
    /// Share of keys removed and, separately, added each day.
    #[arg(long, default_value_t = 0.001)]
    pub churn: f64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First list date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date, default_value = "2026-01-01")]
    pub start: Date,
    /// Share of keys that are CVR numbers.
    #[arg(long, default_value_t = 0.05)]
    pub cvr_share: f64,
}

/// An error in how the program was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn parse_cvr_arg(s: &str) -> Result<u32, String> {
    keys::parse_cvr_str(s).map_err(|e| format!("not a valid CVR number: {e}"))
}

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Result<Date, String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt).map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}

fn parse_timestamp(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expected an RFC 3339 timestamp: {e}"))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    if cli.debug_wire {
        crate::config::DEBUG_WIRE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    match cli.command {
        Command::Snapshot(SnapshotCommand::Build(a)) => snapshot_build(&a),
        Command::Snapshot(SnapshotCommand::Inspect(a)) => snapshot_inspect(&a),
        Command::Snapshot(SnapshotCommand::Export(a)) => snapshot_export(&a),
        Command::Diff(a) => diff_command(&a),
        Command::Generate(a) => generate_command(&a),
        Command::Run(a) => {
            let date = a.date.unwrap_or_else(today_in_denmark);
            run_command(&a.common, vec![date], "run")
        }
        Command::Backfill(a) => {
            if a.from > a.to {
                bail!(UsageError("--from must not be after --to".into()));
            }
            let mut dates = Vec::new();
            let mut d = a.from;
            while d <= a.to {
                dates.push(d);
                d = d.next_day().expect("dates within range");
            }
            run_command(&a.common, dates, "backfill")
        }
        Command::Outbox(OutboxCommand::List { config, json }) => outbox_list(&config, json),
        Command::User(UserCommand::Update { target, stamdata }) => {
            let body = std::fs::read(&stamdata)
                .with_context(|| format!("cannot read {}", stamdata.display()))?;
            user_call(&target, body, false)
        }
        Command::User(UserCommand::Signup { target }) => user_call(
            &target,
            crate::register::wire::myndighedstilmelding_body().into_bytes(),
            true,
        ),
        Command::Publish {
            config,
            to,
            outage_deadline,
        } => publish_command(&config, to.as_deref(), outage_deadline),
        Command::Alive(AliveCommand::Serve(a)) => {
            let alive = match &a.config {
                Some(c) => load_config(c)?.alive,
                None => None,
            };
            let store = a
                .store
                .clone()
                .or_else(|| alive.as_ref().and_then(|x| x.push_store.clone()))
                .ok_or_else(|| UsageError("give --store or [alive] push_store".into()))?;
            let mut opts = crate::beskedfordeler::alive::ServeOptions::new(a.listen, store);
            opts.max_body = a.max_body_bytes.max(1);
            opts.header_timeout = std::time::Duration::from_secs(a.header_timeout_secs.max(1));
            opts.body_timeout = std::time::Duration::from_secs(a.body_timeout_secs.max(1));
            opts.max_connections = a.max_connections.max(1);
            opts.tls = match (&a.tls_cert, &a.tls_key, &alive) {
                (Some(c), Some(k), _) => Some((c.clone(), k.clone(), a.client_ca.clone())),
                (_, _, Some(x)) => match (&x.serve_cert, &x.serve_key) {
                    (Some(c), Some(k)) => Some((
                        c.clone(),
                        k.clone(),
                        a.client_ca.clone().or_else(|| x.serve_client_ca.clone()),
                    )),
                    _ => None,
                },
                _ => None,
            };
            crate::beskedfordeler::alive::serve(opts)?;
            Ok(exit::OK)
        }
        Command::Alive(AliveCommand::Send { config, timeout }) => {
            let cfg = load_config(&config)?;
            let bfo = bfo_config(&cfg)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
            let id = runtime.block_on(async {
                let token = tokio::time::timeout_at(
                    deadline.into(),
                    crate::beskedfordeler::sts::Tokens::new(&bfo.tokens)?
                        .get(cfg.authorities[0].cvr),
                )
                .await
                .map_err(|_| anyhow::anyhow!("ran out of time while getting a token"))??;
                crate::beskedfordeler::alive::send(
                    bfo,
                    cfg.envelope.beskedansvarlig_aktoer,
                    &token,
                    deadline,
                )
                .await
            });
            runtime.shutdown_background();
            let id = id?;
            println!("AliveBesked {id} accepted by Beskedfordeler");
            Ok(exit::OK)
        }
        Command::Alive(AliveCommand::Check {
            config,
            via,
            timeout,
        }) => {
            let cfg = load_config(&config)?;
            let rtt = alive_check(&cfg, &via, timeout)?;
            println!("AliveBesked round trip via {via}: {} ms", rtt.as_millis());
            Ok(exit::OK)
        }
        Command::Simulate(SimulateCommand::Beskedfordeler(a)) => {
            let a = *a;
            crate::sim::emulator::serve(crate::sim::emulator::Options {
                amqp: amqp_from_env(&a.amqp_env)?,
                exchange: a.exchange,
                subscriptions: a.subscriptions,
                push_to: a.push_to,
                push_beskedtype: a.push_beskedtype.to_lowercase(),
                answer_41_every: a.answer_41_every,
                error_code: a.error_code,
                error_every: a.error_every,
                drop_reply_every: a.drop_reply_every,
                delay_reply_ms: a.delay_reply_ms,
            })?;
            Ok(exit::OK)
        }
        Command::Simulate(SimulateCommand::Sts {
            listen,
            cert,
            key,
            client_ca,
            ttl_secs,
            record,
        }) => {
            crate::sim::simulate::serve_sts(crate::sim::simulate::StsOptions {
                listen,
                cert,
                key,
                client_ca,
                ttl: std::time::Duration::from_secs(ttl_secs),
                record,
            })?;
            Ok(exit::OK)
        }
        Command::Simulate(SimulateCommand::Drain {
            amqp_env,
            queue,
            idle_ms,
        }) => {
            let amqp = amqp_from_env(&amqp_env)?;
            let ids = crate::sim::emulator::drain(
                &amqp,
                &queue,
                std::time::Duration::from_millis(idle_ms),
            )?;
            let mut out = BufWriter::new(io::stdout().lock());
            for id in &ids {
                writeln!(out, "{id}")?;
            }
            out.flush()?;
            eprintln!("drained {} messages from {queue}", ids.len());
            Ok(exit::OK)
        }
        Command::Simulate(SimulateCommand::Proxy {
            listen,
            upstream,
            latency_ms,
            rate_kbit,
            cut_after,
            cut_share,
            log,
            seed,
        }) => {
            if !(0.0..=1.0).contains(&cut_share) {
                bail!(UsageError("--cut-share must be between 0 and 1".into()));
            }
            crate::sim::proxy::serve(crate::sim::proxy::Options {
                listen,
                upstream,
                latency: std::time::Duration::from_millis(latency_ms),
                rate: rate_kbit.map(|k| k * 1000 / 8),
                cut_after,
                cut_share,
                log,
                seed,
            })?;
            Ok(exit::OK)
        }
        Command::Simulate(SimulateCommand::Load { config, limit }) => {
            let cfg = load_config(&config)?;
            let r = crate::sim::emulator::load(&cfg.state_dir, bfo_config(&cfg)?, limit)?;
            println!(
                "emulator alone: {} messages in flight at once, {} answered 20, {} refused, {:.2} s: {:.0} messages/s",
                r.messages,
                r.accepted,
                r.refused,
                r.seconds,
                r.messages as f64 / r.seconds
            );
            Ok(if r.refused == 0 {
                exit::OK
            } else {
                exit::FAILURE
            })
        }
        Command::Simulate(SimulateCommand::Certs { out }) => {
            crate::tls::generate_test_certs(&out)?;
            eprintln!(
                "wrote ca.pem, server.pem, server-key.pem, client.pem, client-key.pem, other-ca.pem, other-client.pem, other-client-key.pem to {}",
                out.display()
            );
            Ok(exit::OK)
        }
        Command::Simulate(SimulateCommand::Register(a)) => {
            if !(0.0..=1.0).contains(&a.fail_share) {
                bail!(UsageError("--fail-share must be between 0 and 1".into()));
            }
            let a = *a;
            crate::sim::simulate::serve_register(crate::sim::simulate::RegisterOptions {
                data: a.data,
                listen: a.listen,
                cert: a.cert,
                key: a.key,
                client_ca: a.client_ca,
                config: a.config,
                delliste_size: a.delliste_size,
                fail_share: a.fail_share,
                slow_ms: a.slow_ms,
                truncate: a.truncate,
                wrong_count: a.wrong_count,
                deny: a.deny,
                record: a.record,
                seed: a.seed,
                consumed_through: a.consumed_through,
                hostile: a.hostile,
            })?;
            Ok(exit::OK)
        }
        Command::Outbox(OutboxCommand::Show {
            config,
            authority,
            date,
            limit,
        }) => outbox_show(&config, authority, date, limit),
    }
}

/// Today's date in Denmark (Europe/Copenhagen), falling back to UTC.
pub fn today_in_denmark() -> Date {
    let zoned = jiff::ZonedDateTime::now();
    let local = zoned.in_tz("Europe/Copenhagen").unwrap_or(zoned);
    let month = time::Month::try_from(local.month() as u8).expect("valid month");
    Date::from_calendar_date(i32::from(local.year()), month, local.day() as u8).expect("valid date")
}

/// Loads the config; its errors are usage errors (exit 2).
fn load_config(path: &Path) -> anyhow::Result<crate::config::Config> {
    crate::config::Config::load(path).map_err(|e| UsageError(format!("{e:#}")).into())
}

/// `--outage-deadline` over the config's.
fn set_outage_deadline(cfg: &mut crate::config::Config, d: Option<std::time::Duration>) {
    if let (Some(d), Some(b)) = (d, cfg.beskedfordeler.as_mut()) {
        b.outage_deadline = d;
    }
}

fn run_command(a: &CommonRunArgs, dates: Vec<Date>, kind: &'static str) -> anyhow::Result<u8> {
    let mut cfg = load_config(&a.config)?;
    set_outage_deadline(&mut cfg, a.outage_deadline);
    let req = crate::nightly::run::Request {
        dates,
        authorities: a.authorities.clone(),
        accept_mass_change: a.accept_mass_change.iter().copied().collect(),
        progress: kind == "backfill",
        kind,
        wait_for_service_window: a.wait_for_service_window,
    };
    let report = crate::nightly::run::execute(&cfg, &req)?;
    let mut out = BufWriter::new(io::stdout().lock());
    writeln!(
        out,
        "{:<9} {:<20} {:<10} {:>9} {:>9} {:>9}  status",
        "authority", "name", "date", "keys", "tilmeldt", "afmeldt"
    )?;
    for o in &report.outcomes {
        let keys = o.keys.map_or("-".to_owned(), |k| k.to_string());
        let name: String = o.name.chars().take(20).collect();
        write!(
            out,
            "{:<9} {:<20} {:<10} {:>9} {:>9} {:>9}  {}",
            o.authority,
            name,
            o.date,
            keys,
            o.signed_up,
            o.signed_off,
            serde_json::to_value(o.status)?.as_str().unwrap_or("?")
        )?;
        match &o.message {
            Some(m) if o.status.is_problem() => writeln!(out, ": {m}")?,
            _ => writeln!(out)?,
        }
    }
    writeln!(
        out,
        "{} authority-days, {} tilmeldt, {} afmeldt, {} need an operator; report {}",
        report.outcomes.len(),
        report.signed_up,
        report.signed_off,
        report.n_problems,
        report
            .report_path
            .as_deref()
            .map_or("-".into(), |p| p.display().to_string())
    )?;
    out.flush()?;
    drop(out);
    let run_code = if report.n_problems == 0 {
        exit::OK
    } else {
        exit::PARTIAL
    };
    let Some(bfo) = cfg
        .beskedfordeler
        .as_ref()
        .filter(|b| b.publish_after_run && !a.no_publish)
    else {
        return Ok(run_code);
    };
    if bfo.alive_check_before_publish {
        let via = cfg
            .alive
            .as_ref()
            .map_or("pull".to_owned(), |a| a.via.clone());
        let timeout = cfg.alive.as_ref().map_or(30, |a| a.timeout_secs);
        match alive_check(&cfg, &via, timeout) {
            Ok(rtt) => {
                tracing::info!(via = %via, rtt_ms = rtt.as_millis() as u64, "AliveBesked round trip")
            }
            Err(e) => {
                eprintln!("error: AliveBesked check failed, nothing published: {e:#}");
                return Ok(exit::PUBLISH_INCOMPLETE);
            }
        }
    }
    let publish_code = publish_and_report(&cfg)?;
    Ok(run_code.max(publish_code))
}

fn bfo_config(cfg: &crate::config::Config) -> anyhow::Result<&crate::config::BeskedfordelerConfig> {
    cfg.beskedfordeler.as_ref().ok_or_else(|| {
        UsageError(format!(
            "{}: no [beskedfordeler] section",
            cfg.path.display()
        ))
        .into()
    })
}

/// Sends an AliveBesked and waits for it, `via` pull or push.
fn alive_check(
    cfg: &crate::config::Config,
    via: &str,
    timeout: u64,
) -> anyhow::Result<std::time::Duration> {
    let bfo = bfo_config(cfg)?;
    let alive = cfg
        .alive
        .as_ref()
        .ok_or_else(|| UsageError(format!("{}: no [alive] section", cfg.path.display())))?;
    let via = match via {
        "pull" => crate::beskedfordeler::alive::Via::Pull(
            alive
                .dueslag_queue
                .clone()
                .ok_or_else(|| UsageError("[alive] dueslag_queue is needed for pull".into()))?,
        ),
        _ => crate::beskedfordeler::alive::Via::Push(
            alive
                .push_store
                .clone()
                .ok_or_else(|| UsageError("[alive] push_store is needed for push".into()))?,
        ),
    };
    // AliveBesked carries no authority's data; its token is the first
    // configured authority's.
    crate::beskedfordeler::alive::check(
        bfo,
        cfg.envelope.beskedansvarlig_aktoer,
        cfg.authorities[0].cvr,
        &via,
        std::time::Duration::from_secs(timeout),
    )
}

fn publish_command(
    config: &Path,
    to: Option<&str>,
    outage_deadline: Option<std::time::Duration>,
) -> anyhow::Result<u8> {
    let mut cfg = load_config(config)?;
    set_outage_deadline(&mut cfg, outage_deadline);
    if let Some(to) = to {
        let dir = to
            .strip_prefix("dir:")
            .ok_or_else(|| UsageError(format!("--to {to}: expected dir:PATH")))?;
        let n = crate::beskedfordeler::publish::publish_to_dir(&cfg.state_dir, Path::new(dir))?;
        println!("wrote {n} envelopes under {dir}");
        return Ok(exit::OK);
    }
    publish_and_report(&cfg)
}

/// Publishes, prints a table, writes a JSON report; the exit code.
fn publish_and_report(cfg: &crate::config::Config) -> anyhow::Result<u8> {
    let bfo = bfo_config(cfg)?;
    let outcomes = crate::beskedfordeler::publish::publish_all(&cfg.state_dir, bfo)?;
    let mut out = BufWriter::new(io::stdout().lock());
    writeln!(
        out,
        "{:<30} {:>9} {:>9} {:>9}  status",
        "batch", "events", "published", "sent"
    )?;
    for o in &outcomes {
        write!(
            out,
            "{:<30} {:>9} {:>9} {:>9}  {}",
            o.batch,
            o.events,
            o.already_published + o.published,
            o.sent,
            serde_json::to_value(o.status)?.as_str().unwrap_or("?")
        )?;
        match &o.message {
            Some(m) => writeln!(out, ": {m}")?,
            None => writeln!(out)?,
        }
    }
    let incomplete = outcomes
        .iter()
        .any(|o| o.status != crate::beskedfordeler::publish::BatchStatus::Published);
    writeln!(
        out,
        "{} batches, {} events confirmed now{}",
        outcomes.len(),
        outcomes.iter().map(|o| o.published).sum::<u64>(),
        if incomplete {
            "; publish incomplete: rerun `publish` to resume"
        } else {
            ""
        }
    )?;
    out.flush()?;
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let path = cfg
        .state_dir
        .join("reports")
        .join(format!("publish-{stamp}-{}.json", std::process::id()));
    fsutil::create_dir_all(path.parent().expect("dir"))
        .and_then(|()| {
            fsutil::write_atomic(
                &path,
                &serde_json::to_vec_pretty(&outcomes).expect("serializable"),
            )
        })
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(if incomplete {
        exit::PUBLISH_INCOMPLETE
    } else {
        exit::OK
    })
}

/// The broker URL from the environment variable `var`.
fn amqp_from_env(var: &str) -> anyhow::Result<String> {
    let url = std::env::var(var).map_err(|_| {
        anyhow::Error::new(UsageError(format!(
            "the environment variable {var} (the broker's URL) is not set"
        )))
    })?;
    crate::config::check_debug_wire(var, &url).map_err(|e| anyhow::Error::new(UsageError(e)))?;
    Ok(url)
}

/// One SF2250 pass-through `PUT`; the number is validated first and never printed.
fn user_call(t: &UserTarget, body: Vec<u8>, signup: bool) -> anyhow::Result<u8> {
    let cfg = load_config(&t.config)?;
    let authority = cfg.authority(t.authority).ok_or_else(|| {
        UsageError(format!(
            "authority {} is not in {}",
            keys::format(KeyKind::Cvr, t.authority),
            t.config.display()
        ))
    })?;
    let register = cfg
        .register
        .as_ref()
        .ok_or_else(|| UsageError(format!("{}: no [register] section", t.config.display())))?;
    let (kind, value) = t.nummer.resolve()?;
    let nummer = keys::format(kind, value);
    if !signup {
        let mut reader = quick_xml::Reader::from_reader(&body[..]);
        let mut buf = Vec::new();
        loop {
            match reader.read_event_into(&mut buf) {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(quick_xml::events::Event::DocType(_)) => {
                    bail!(UsageError("--stamdata: a DOCTYPE is not allowed".into()))
                }
                Ok(_) => buf.clear(),
                Err(e) => bail!(UsageError(format!("--stamdata: not well-formed XML: {e}"))),
            }
        }
    }
    let (cert, key) = authority
        .client_cert
        .clone()
        .unwrap_or_else(|| (register.client_cert.clone(), register.client_key.clone()));
    let client = crate::register::fetch::Client::new(register, &cert, &key)?;
    let path = if signup {
        crate::register::wire::myndighedstilmelding_path(&authority.register_sysid, &nummer)
    } else {
        crate::register::wire::boks_path(&authority.register_sysid, &nummer)
    };
    let status = client.put(&path, body).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}",
            if signup {
                "TilmeldNemSMS"
            } else {
                "OpdaterBorgerNemSMS"
            }
        )
    })?;
    eprintln!(
        "{} for a {} at authority {}: HTTP {status}",
        if signup {
            "TilmeldNemSMS"
        } else {
            "OpdaterBorgerNemSMS"
        },
        kind,
        keys::format(KeyKind::Cvr, authority.cvr)
    );
    Ok(exit::OK)
}

fn outbox_list(config: &Path, json: bool) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    let mut out = BufWriter::new(io::stdout().lock());
    if !json {
        writeln!(
            out,
            "{:<10} {:<9} {:>9} {:>9} {:>9} {:>11}  published",
            "date", "authority", "events", "tilmeldt", "afmeldt", "bytes"
        )?;
    }
    let mut failed = false;
    for path in crate::store::outbox::list(&cfg.state_dir)? {
        let h = match crate::store::outbox::read_header(&path) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
                continue;
            }
        };
        let cursor =
            crate::store::outbox::read_cursor(&path).with_context(|| path.display().to_string())?;
        let published = if h.n_events == 0 || cursor >= h.n_events {
            "yes".to_owned()
        } else if cursor == 0 {
            "no".to_owned()
        } else {
            format!("{cursor} of {}", h.n_events)
        };
        if json {
            let mut v = serde_json::to_value(h)?;
            v["published_events"] = cursor.into();
            v["authority"] = keys::format(KeyKind::Cvr, h.authority).into();
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "{:<10} {:<9} {:>9} {:>9} {:>9} {:>11}  {published}",
                h.date.to_string(),
                keys::format(KeyKind::Cvr, h.authority),
                h.n_events,
                h.n_signed_up,
                h.n_signed_off,
                h.payload_bytes + 72
            )?;
        }
    }
    out.flush()?;
    Ok(if failed { exit::FAILURE } else { exit::OK })
}

fn outbox_show(
    config: &Path,
    authority: u32,
    date: Date,
    limit: Option<u64>,
) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    let path = crate::store::outbox::batch_path(&cfg.state_dir, authority, date);
    if !path.exists() {
        bail!(
            "no batch for authority {} on {date} ({} does not exist)",
            keys::format(KeyKind::Cvr, authority),
            path.display()
        );
    }
    let (header, envelopes) = crate::store::outbox::open(&path)?;
    let mut out = BufWriter::new(io::stdout().lock());
    for env in envelopes.take(limit.unwrap_or(u64::MAX) as usize) {
        out.write_all(&env?)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!(
        "{}: {} events ({} tilmeldt, {} afmeldt)",
        path.display(),
        header.n_events,
        header.n_signed_up,
        header.n_signed_off
    );
    Ok(exit::OK)
}

fn snapshot_build(a: &BuildArgs) -> anyhow::Result<u8> {
    let list = parse::read_list(&a.list)?;
    let taken_at = match a.taken_at {
        Some(t) => t.unix_timestamp(),
        None => mtime(&a.list)?,
    };
    let snap = snapshot::Snapshot {
        meta: snapshot::Meta {
            authority: a.authority,
            date: a.date,
            taken_at,
            n_rows: list.n_rows,
            n_duplicates: list.n_duplicates,
        },
        keys: list.keys,
    };
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        fsutil::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let bytes = snapshot::write(&a.output, &snap)
        .with_context(|| format!("cannot write snapshot {}", a.output.display()))?;
    let n = snap.keys.len();
    eprintln!(
        "wrote {}: {} CPR + {} CVR keys, {} duplicates collapsed, {} bytes ({:.3} bytes/key)",
        a.output.display(),
        snap.keys.cpr.len(),
        snap.keys.cvr.len(),
        list.n_duplicates,
        bytes,
        if n == 0 { 0.0 } else { bytes as f64 / n as f64 }
    );
    Ok(exit::OK)
}

/// A file's modification time in Unix seconds.
pub fn mtime(path: &Path) -> anyhow::Result<i64> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("cannot read the modification time of {}", path.display()))?;
    Ok(OffsetDateTime::from(modified).unix_timestamp())
}

fn snapshot_inspect(a: &InspectArgs) -> anyhow::Result<u8> {
    let bytes =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let s = snapshot::summarize(&bytes).with_context(|| a.file.display().to_string())?;
    let mut out = io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &s)?;
        writeln!(out)?;
    } else {
        writeln!(out, "file:          {}", a.file.display())?;
        writeln!(out, "authority:     {}", s.authority)?;
        writeln!(out, "date:          {}", s.date)?;
        writeln!(out, "taken at:      {}", s.taken_at)?;
        writeln!(out, "CPR keys:      {}", s.n_cpr)?;
        writeln!(out, "CVR keys:      {}", s.n_cvr)?;
        writeln!(
            out,
            "source rows:   {} ({} duplicates)",
            s.n_rows, s.n_duplicates
        )?;
        writeln!(out, "size:          {} bytes", s.file_bytes)?;
        writeln!(out, "bytes per key: {:.3}", s.bytes_per_key)?;
        writeln!(out, "checksum:      {}", s.checksum)?;
    }
    out.flush()?;
    Ok(if s.checksum == "ok" {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn snapshot_export(a: &ExportArgs) -> anyhow::Result<u8> {
    let snap = snapshot::read(&a.file)?;
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    out.write_all(b"type;nummer\n")?;
    let mut buf = [0u8; 10];
    for kind in KeyKind::ALL {
        for &key in snap.keys.of(kind) {
            out.write_all(kind.as_str().as_bytes())?;
            out.write_all(b";")?;
            out.write_all(keys::format_into(kind, key, &mut buf))?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

/// One side of a diff, read from a list or a snapshot (detected by content).
pub fn load_keys(path: &Path) -> anyhow::Result<KeySet> {
    let mut head = [0u8; 8];
    let n = {
        use std::io::Read;
        let mut f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        f.read(&mut head)
            .with_context(|| format!("cannot read {}", path.display()))?
    };
    if snapshot::is_snapshot(&head[..n]) {
        Ok(snapshot::read(path)?.keys)
    } else {
        Ok(parse::read_list(path)?.keys)
    }
}

fn diff_command(a: &DiffArgs) -> anyhow::Result<u8> {
    match (a.old.is_dir(), a.new.is_dir()) {
        (true, true) => {
            let out = a.out.as_deref().ok_or_else(|| {
                UsageError("diffing two directories needs --out DIR for the change files".into())
            })?;
            diff_dirs(&a.old, &a.new, out, a.format)
        }
        (false, false) => {
            if a.out.is_some() {
                bail!(UsageError(
                    "--out is for diffing two directories; a single diff prints to stdout".into()
                ));
            }
            let (old, new) = rayon::join(|| load_keys(&a.old), || load_keys(&a.new));
            let (old, new) = (old?, new?);
            let changes = diff::diff(&old, &new);
            let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
            write_changes(&mut out, &changes, a.format)?;
            out.flush()?;
            eprintln!(
                "{} keys before, {} after: {} tilmeldt, {} afmeldt",
                old.len(),
                new.len(),
                changes.n_signed_up(),
                changes.n_signed_off()
            );
            Ok(exit::OK)
        }
        _ => bail!(UsageError(
            "OLD and NEW must both be files or both be directories".into()
        )),
    }
}

/// Writes changes sorted by kind (CPR first), then key.
pub fn write_changes(out: &mut impl Write, changes: &Changes, format: Format) -> io::Result<()> {
    if format == Format::Csv {
        out.write_all(b"haendelse;type;nummer\n")?;
    }
    let mut buf = [0u8; 10];
    for (kind, key, change) in changes.events() {
        let event = change.as_str();
        let digits = keys::format_into(kind, key, &mut buf);
        match format {
            Format::Csv => {
                out.write_all(event.as_bytes())?;
                out.write_all(b";")?;
                out.write_all(kind.as_str().as_bytes())?;
                out.write_all(b";")?;
                out.write_all(digits)?;
                out.write_all(b"\n")?;
            }
            Format::Jsonl => {
                write!(
                    out,
                    "{{\"haendelse\":\"{event}\",\"type\":\"{kind}\",\"nummer\":\""
                )?;
                out.write_all(digits)?;
                out.write_all(b"\"}\n")?;
            }
        }
    }
    Ok(())
}

/// The outcome of one pair of a directory diff.
struct PairResult {
    name: String,
    outcome: anyhow::Result<(usize, usize, usize, usize)>,
}

fn list_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.file_type()?.is_file() {
            names.push(name);
        }
    }
    Ok(names)
}

fn diff_dirs(old: &Path, new: &Path, out: &Path, format: Format) -> anyhow::Result<u8> {
    let mut names = list_names(old)?;
    names.extend(list_names(new)?);
    names.sort();
    names.dedup();
    fsutil::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let results: Vec<PairResult> = names
        .par_iter()
        .map(|name| PairResult {
            name: name.clone(),
            outcome: diff_pair(&old.join(name), &new.join(name), &out.join(name), format),
        })
        .collect();
    let mut stdout = BufWriter::new(io::stdout().lock());
    writeln!(
        stdout,
        "{:<24} {:>10} {:>10} {:>10} {:>10}  status",
        "file", "before", "after", "tilmeldt", "afmeldt"
    )?;
    let (mut failed, mut totals) = (0, (0, 0, 0, 0));
    for r in &results {
        match &r.outcome {
            Ok((before, after, up, off)) => {
                writeln!(
                    stdout,
                    "{:<24} {before:>10} {after:>10} {up:>10} {off:>10}  ok",
                    r.name
                )?;
                totals = (
                    totals.0 + before,
                    totals.1 + after,
                    totals.2 + up,
                    totals.3 + off,
                );
            }
            Err(e) => {
                failed += 1;
                writeln!(
                    stdout,
                    "{:<24} {:>10} {:>10} {:>10} {:>10}  error",
                    r.name, "-", "-", "-", "-"
                )?;
                eprintln!("error: {}: {e:#}", r.name);
            }
        }
    }
    writeln!(
        stdout,
        "{:<24} {:>10} {:>10} {:>10} {:>10}  {} ok, {} failed",
        "total",
        totals.0,
        totals.1,
        totals.2,
        totals.3,
        results.len() - failed,
        failed
    )?;
    stdout.flush()?;
    Ok(if failed == 0 { exit::OK } else { exit::PARTIAL })
}

fn diff_pair(
    old: &Path,
    new: &Path,
    out: &Path,
    format: Format,
) -> anyhow::Result<(usize, usize, usize, usize)> {
    for (side, path) in [("old", old), ("new", new)] {
        if !path.is_file() {
            bail!(
                "present only on one side: no {side} file {}",
                path.display()
            );
        }
    }
    let (o, n) = rayon::join(|| load_keys(old), || load_keys(new));
    let (o, n) = (o?, n?);
    let changes = diff::diff(&o, &n);
    let mut bytes = Vec::with_capacity(32 * (changes.n_signed_up() + changes.n_signed_off()) + 32);
    write_changes(&mut bytes, &changes, format)?;
    fsutil::write_replace(out, &bytes)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok((
        o.len(),
        n.len(),
        changes.n_signed_up(),
        changes.n_signed_off(),
    ))
}

fn generate_command(a: &GenerateArgs) -> anyhow::Result<u8> {
    if !(0.0..=1.0).contains(&a.cvr_share) {
        bail!(UsageError("--cvr-share must be between 0 and 1".into()));
    }
    let summary = generate::generate(&generate::Options {
        out: a.out.clone(),
        authorities: a.authorities,
        keys: a.keys,
        days: a.days,
        churn: a.churn,
        seed: a.seed,
        start: a.start,
        cvr_share: a.cvr_share,
    })?;
    eprintln!(
        "wrote {} lists for {} authorities under {}: keys per day {:?}",
        summary.files,
        summary.authorities.len(),
        a.out.display(),
        summary.keys_per_day
    );
    Ok(exit::OK)
}

//! `simulate …`: the lab's test doubles.

use super::*;

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// The NemSMS Register over HTTPS with client certificates.
    Register(Box<RegisterSimArgs>),
    /// Beskedfordeler's behaviour on a real RabbitMQ broker.
    Beskedfordeler(Box<BfoArgs>),
    /// KOMBIT's STS (REST/JSON issue) over HTTPS with client certificates.
    Sts {
        /// Address to listen on (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Clients must show a certificate signed by this CA.
        #[arg(long)]
        client_ca: PathBuf,
        /// The key tokens are signed with (made on first use, mode 0600);
        /// the Beskedfordeler emulator checks tokens with the same file.
        #[arg(long)]
        signing_key: PathBuf,
        /// A service entity id it issues tokens for. Repeatable.
        #[arg(long = "service", default_values_t = [
            "http://beskedfordeler.test/service/afsend/1".to_owned(),
            "http://beskedfordeler.test/service/afhent/1".to_owned(),
        ])]
        services: Vec<String>,
        /// A CVR it issues tokens for (default: any). Repeatable.
        #[arg(long = "cvr")]
        cvrs: Vec<String>,
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
        /// The configuration file (or NEMSMS_DIFF_CONFIG).
        #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
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
    /// Check tokens against the STS simulator's signing key (`simulate sts
    /// --signing-key`): each message's token header (expired: 41; its CVR
    /// must be the message's ObjektAnsvarligMyndighed), and with
    /// --front-door every login.
    #[arg(long)]
    pub sts_signing_key: Option<PathBuf>,
    /// Serve Beskedfordeler's AMQP login here (SASL EXTERNAL with the
    /// token; port 0: any free port, printed first). Needs --sts-signing-key.
    #[arg(long)]
    pub front_door: Option<std::net::SocketAddr>,
    /// The entity id of tokens for sending.
    #[arg(long, default_value = "http://beskedfordeler.test/service/afsend/1")]
    pub afsend_entity_id: String,
    /// The entity id of tokens for pulling.
    #[arg(long, default_value = "http://beskedfordeler.test/service/afhent/1")]
    pub afhent_entity_id: String,
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

/// The broker URL from the environment variable `var`.
pub(super) fn amqp_from_env(var: &str) -> anyhow::Result<String> {
    let url = std::env::var(var).map_err(|_| {
        anyhow::Error::new(UsageError(format!(
            "the environment variable {var} (the broker's URL) is not set"
        )))
    })?;
    crate::config::check_debug_wire(var, &url).map_err(|e| anyhow::Error::new(UsageError(e)))?;
    Ok(url)
}

pub(super) fn simulate_command(cmd: SimulateCommand) -> anyhow::Result<u8> {
    match cmd {
        SimulateCommand::Beskedfordeler(a) => {
            let a = *a;
            let amqp = amqp_from_env(&a.amqp_env)?;
            let token_key = match &a.sts_signing_key {
                // The STS simulator's key: read, never made here.
                Some(path) => {
                    anyhow::ensure!(
                        path.exists(),
                        "{}: no signing key (start `simulate sts --signing-key` first)",
                        path.display()
                    );
                    Some(crate::store::secret::id_key(path)?.0)
                }
                None => None,
            };
            let front_door = match (a.front_door, token_key) {
                (Some(listen), Some(key)) => Some((
                    listen,
                    crate::sim::frontdoor::DoorOptions {
                        upstream: amqp.clone(),
                        signing_key: key,
                        afsend_entity_id: a.afsend_entity_id.clone(),
                        afhent_entity_id: a.afhent_entity_id.clone(),
                    },
                )),
                (Some(_), None) => {
                    return Err(UsageError(
                        "--front-door needs --sts-signing-key (the STS simulator's key)".into(),
                    )
                    .into());
                }
                (None, _) => None,
            };
            crate::sim::emulator::serve(crate::sim::emulator::Options {
                amqp,
                token_key,
                front_door,
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
        SimulateCommand::Sts {
            listen,
            cert,
            key,
            client_ca,
            signing_key,
            services,
            cvrs,
            ttl_secs,
            record,
        } => {
            crate::sim::sts::serve_sts(crate::sim::sts::StsOptions {
                listen,
                cert,
                key,
                client_ca,
                signing_key,
                services,
                cvrs: cvrs.into_iter().collect(),
                ttl: std::time::Duration::from_secs(ttl_secs),
                record,
            })?;
            Ok(exit::OK)
        }
        SimulateCommand::Drain {
            amqp_env,
            queue,
            idle_ms,
        } => {
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
        SimulateCommand::Proxy {
            listen,
            upstream,
            latency_ms,
            rate_kbit,
            cut_after,
            cut_share,
            log,
            seed,
        } => {
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
        SimulateCommand::Load { config, limit } => {
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
        SimulateCommand::Certs { out } => {
            crate::sim::certs::generate_test_certs(&out)?;
            eprintln!(
                "wrote ca.pem, server.pem, server-key.pem, client.pem, client-key.pem, other-ca.pem, other-client.pem, other-client-key.pem to {}",
                out.display()
            );
            Ok(exit::OK)
        }
        SimulateCommand::Register(a) => {
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
    }
}

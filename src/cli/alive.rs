//! `alive send`, `alive serve`, `alive check`.

use super::*;

#[derive(Debug, Subcommand)]
pub enum AliveCommand {
    /// AliveBeskedSend: publish one AliveBesked (no business data).
    Send {
        /// The configuration file (or NEMSMS_DIFF_CONFIG).
        #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
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
        /// The configuration file (or NEMSMS_DIFF_CONFIG).
        #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
        config: PathBuf,
        /// pull: consume [alive] dueslag_queue; push: watch [alive] push_store.
        #[arg(long, value_enum)]
        via: crate::beskedfordeler::alive::Via,
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

pub(super) fn via_name(via: crate::beskedfordeler::alive::Via) -> &'static str {
    match via {
        crate::beskedfordeler::alive::Via::Pull => "pull",
        crate::beskedfordeler::alive::Via::Push => "push",
    }
}

/// Sends an AliveBesked and waits for it, `via` pull or push.
pub(super) fn alive_check(
    cfg: &crate::config::Config,
    via: crate::beskedfordeler::alive::Via,
    timeout: u64,
) -> anyhow::Result<std::time::Duration> {
    let bfo = bfo_config(cfg)?;
    let alive = cfg
        .alive
        .as_ref()
        .ok_or_else(|| UsageError(format!("{}: no [alive] section", cfg.path.display())))?;
    let via = match via {
        crate::beskedfordeler::alive::Via::Pull => crate::beskedfordeler::alive::Watch::Pull(
            alive
                .dueslag_queue
                .clone()
                .ok_or_else(|| UsageError("[alive] dueslag_queue is needed for pull".into()))?,
        ),
        crate::beskedfordeler::alive::Via::Push => crate::beskedfordeler::alive::Watch::Push(
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

pub(super) fn serve_command(a: &ServeArgs) -> anyhow::Result<u8> {
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

pub(super) fn send_command(config: &Path, timeout: u64) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    let bfo = bfo_config(&cfg)?;
    let runtime = crate::rt::runtime()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let id = runtime.block_on(async {
        let token = tokio::time::timeout_at(
            deadline.into(),
            crate::beskedfordeler::sts::Tokens::new(&bfo.tokens)?.get(
                cfg.authorities[0].cvr,
                crate::beskedfordeler::sts::Service::Afsend,
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("ran out of time while getting a token"))??;
        crate::beskedfordeler::alive::send(
            bfo,
            cfg.envelope.beskedansvarlig_aktoer,
            cfg.authorities[0].cvr,
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

pub(super) fn check_command(
    config: &Path,
    via: crate::beskedfordeler::alive::Via,
    timeout: u64,
) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    let rtt = alive_check(&cfg, via, timeout)?;
    println!(
        "AliveBesked round trip via {}: {} ms",
        via_name(via),
        rtt.as_millis()
    );
    Ok(exit::OK)
}

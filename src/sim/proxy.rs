//! The fault proxy: a TCP proxy for network tests (this machine's kernel
//! has no `tc netem`).
//!
//! Forwards every connection to one upstream address and, on request, adds
//! latency (each way, pipelined: throughput is kept, every byte arrives
//! `latency` later), limits each connection's bandwidth, and cuts connections with a TCP reset after a random
//! number of bytes (both directions counted). `SIGUSR1` cuts every open
//! connection at once; `SIGUSR2` takes the link down (new connections are
//! reset at once, open ones cut) or up again. Every connection's end is a
//! JSON line in the `--log` file, so tests count the cuts they caused.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How to run the proxy.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Where connections go (`host:port`).
    pub upstream: String,
    /// Added to every byte, each way.
    pub latency: Duration,
    /// Bandwidth of each connection, each way, in bytes per second.
    pub rate: Option<u64>,
    /// Cut a connection after a number of bytes drawn from this range.
    pub cut_after: Option<(u64, u64)>,
    /// The share of connections that get a cut (default: all).
    pub cut_share: f64,
    /// One JSON line per connection end.
    pub log: Option<PathBuf>,
    pub seed: u64,
}

/// Parses `MIN-MAX` (or one number) bytes, with optional K/M suffixes.
pub fn parse_byte_range(text: &str) -> Result<(u64, u64), String> {
    fn bytes(t: &str) -> Result<u64, String> {
        let t = t.trim();
        let (num, mult) = match t.chars().last() {
            Some('k' | 'K') => (&t[..t.len() - 1], 1024),
            Some('m' | 'M') => (&t[..t.len() - 1], 1024 * 1024),
            _ => (t, 1),
        };
        num.parse::<u64>()
            .map(|n| n * mult)
            .map_err(|_| format!("{t:?} is not a byte count (e.g. 64K, 2M, 1000)"))
    }
    let (min, max) = match text.split_once('-') {
        Some((a, b)) => (bytes(a)?, bytes(b)?),
        None => {
            let n = bytes(text)?;
            (n, n)
        }
    };
    if min == 0 || min > max {
        return Err(format!("{text:?}: expected MIN-MAX with 0 < MIN <= MAX"));
    }
    Ok((min, max))
}

struct Shared {
    opts: Options,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    log: Mutex<Option<std::fs::File>>,
    /// Bumped by SIGUSR1/SIGUSR2: connections opened before are cut.
    epoch: tokio::sync::watch::Sender<u64>,
    down: AtomicBool,
    connections: AtomicU64,
    cuts: AtomicU64,
}

impl Shared {
    fn record(&self, line: serde_json::Value) {
        if let Some(f) = self.log.lock().expect("log lock").as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Runs the proxy until SIGTERM or SIGINT; prints its address first.
pub fn serve(opts: Options) -> anyhow::Result<()> {
    let runtime = crate::rt::runtime()?;
    runtime.block_on(serve_async(opts))
}

async fn serve_async(opts: Options) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let log = match &opts.log {
        Some(p) => Some(
            crate::fsutil::open_private_append(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed)),
        opts,
        log: Mutex::new(log),
        epoch: tokio::sync::watch::channel(0).0,
        down: AtomicBool::new(false),
        connections: AtomicU64::new(0),
        cuts: AtomicU64::new(0),
    });
    println!(
        "fault proxy to {} listening on tcp://{}",
        shared.opts.upstream,
        listener.local_addr()?
    );
    io::stdout().flush()?;
    let mut term = signal(SignalKind::terminate())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (client, _) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("fault proxy: accept: {e}");
                        continue;
                    }
                };
                let shared = shared.clone();
                tokio::spawn(async move { connection(shared, client).await });
            }
            _ = usr1.recv() => {
                eprintln!("fault proxy: cutting every open connection");
                shared.epoch.send_modify(|e| *e += 1);
            }
            _ = usr2.recv() => {
                let down = !shared.down.load(Ordering::SeqCst);
                shared.down.store(down, Ordering::SeqCst);
                eprintln!("fault proxy: link {}", if down { "down" } else { "up" });
                if down {
                    shared.epoch.send_modify(|e| *e += 1);
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!(
        "fault proxy stopped: {} connections, {} cut",
        shared.connections.load(Ordering::SeqCst),
        shared.cuts.load(Ordering::SeqCst)
    );
    Ok(())
}

/// How a direction of a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    /// Cut by the proxy (budget spent, a signal).
    Cut,
    /// A socket error (e.g. a reset by either side).
    Error,
}

async fn connection(shared: Arc<Shared>, client: TcpStream) {
    let id = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let mut epoch = shared.epoch.subscribe();
    epoch.borrow_and_update();
    let reset = |s: &TcpStream| {
        let _ = s.set_zero_linger();
    };
    if shared.down.load(Ordering::SeqCst) {
        reset(&client);
        shared.record(serde_json::json!({"conn": id, "refused": true}));
        return;
    }
    let upstream = match TcpStream::connect(&shared.opts.upstream).await {
        Ok(s) => s,
        Err(e) => {
            reset(&client);
            shared.record(serde_json::json!({"conn": id, "upstream_error": e.to_string()}));
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let budget = shared.opts.cut_after.and_then(|(min, max)| {
        let mut rng = shared.rng.lock().expect("rng lock");
        (rng.random::<f64>() < shared.opts.cut_share).then(|| rng.random_range(min..=max))
    });
    let counter = AtomicU64::new(0);
    let (latency, rate) = (shared.opts.latency, shared.opts.rate);
    let up = pipe(&client, &upstream, latency, rate, &counter, budget);
    let down = pipe(&upstream, &client, latency, rate, &counter, budget);
    let ended = tokio::select! {
        r = async {
            // Both directions to their end, or the first cut.
            tokio::pin!(up, down);
            let (mut up_done, mut down_done) = (false, false);
            loop {
                tokio::select! {
                    r = &mut up, if !up_done => match r {
                        Ok(End::Eof) => up_done = true,
                        Ok(end) => return end,
                        Err(_) => return End::Error,
                    },
                    r = &mut down, if !down_done => match r {
                        Ok(End::Eof) => down_done = true,
                        Ok(end) => return end,
                        Err(_) => return End::Error,
                    },
                }
                if up_done && down_done {
                    return End::Eof;
                }
            }
        } => r,
        _ = epoch.changed() => End::Cut,
    };
    let bytes = counter.load(Ordering::SeqCst);
    if ended != End::Eof {
        reset(&client);
        reset(&upstream);
    }
    if ended == End::Cut {
        shared.cuts.fetch_add(1, Ordering::SeqCst);
    }
    shared.record(serde_json::json!({
        "conn": id,
        "bytes": bytes,
        "cut": ended == End::Cut,
        "error": ended == End::Error,
        "budget": budget,
    }));
}

/// What the reader hands the writer.
enum Item {
    Data(Vec<u8>),
    Eof,
    Cut,
}

/// Copies `from` → `to`, each chunk `latency` late, until EOF (then
/// half-closes `to`) or until the connection's byte budget is spent.
async fn pipe(
    from: &TcpStream,
    to: &TcpStream,
    latency: Duration,
    rate: Option<u64>,
    counter: &AtomicU64,
    budget: Option<u64>,
) -> io::Result<End> {
    // Chunks read but not yet due; the reader pauses while 4 MiB wait.
    let queue: Mutex<VecDeque<(Instant, Item)>> = Default::default();
    let queued = std::sync::atomic::AtomicUsize::new(0);
    let notify = tokio::sync::Notify::new();
    let push = |item: Item| {
        if let Item::Data(d) = &item {
            queued.fetch_add(d.len(), Ordering::SeqCst);
        }
        queue
            .lock()
            .expect("queue lock")
            .push_back((Instant::now() + latency, item));
        notify.notify_waiters();
    };
    let reader = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while queued.load(Ordering::SeqCst) > 4 << 20 {
                notify.notified().await;
            }
            from.readable().await?;
            let n = match from.try_read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                push(Item::Eof);
                return Ok(());
            }
            let total = counter.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            match budget {
                Some(b) if total >= b => {
                    let take = n - (total - b).min(n as u64) as usize;
                    push(Item::Data(buf[..take].to_vec()));
                    push(Item::Cut);
                    return Ok(());
                }
                _ => push(Item::Data(buf[..n].to_vec())),
            }
        }
    };
    let writer = async {
        loop {
            let next = queue.lock().expect("queue lock").pop_front();
            let Some((due, item)) = next else {
                notify.notified().await;
                continue;
            };
            tokio::time::sleep_until(due).await;
            let chunk = match item {
                Item::Data(d) => d,
                Item::Eof => {
                    let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
                    return Ok(End::Eof);
                }
                Item::Cut => return Ok(End::Cut),
            };
            let mut at = 0;
            while at < chunk.len() {
                to.writable().await?;
                match to.try_write(&chunk[at..]) {
                    Ok(n) => at += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            queued.fetch_sub(chunk.len(), Ordering::SeqCst);
            notify.notify_waiters();
            if let Some(rate) = rate {
                // The link's bandwidth: this chunk's time on the wire.
                tokio::time::sleep(Duration::from_secs_f64(
                    chunk.len() as f64 / rate.max(1) as f64,
                ))
                .await;
            }
        }
    };
    tokio::pin!(reader, writer);
    let mut reading = true;
    loop {
        tokio::select! {
            r = &mut reader, if reading => {
                r?;
                reading = false;
            }
            w = &mut writer => return w,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_parse_with_suffixes_and_refuse_nonsense() {
        assert_eq!(parse_byte_range("64K-2M"), Ok((65_536, 2 << 20)));
        assert_eq!(parse_byte_range("1000"), Ok((1000, 1000)));
        assert!(parse_byte_range("0-10").is_err());
        assert!(parse_byte_range("10-5").is_err());
        assert!(
            parse_byte_range("x")
                .unwrap_err()
                .contains("not a byte count")
        );
    }
}

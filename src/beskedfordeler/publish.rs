//! The publisher: the outbox to Beskedfordeler, at least once (SF1462).
//!
//! Every unpublished batch, in (date, authority) order, goes over AMQP 0-9-1
//! to the exchange (default `AFSEND_BESKED_EXCHANGE`), routing key `""`,
//! mandatory, with `message_id` = the event's `BeskedId` (the same on every
//! attempt), a new `correlation_id` per attempt, `reply_to` =
//! `amq.rabbitmq.reply-to` and the header `token`. Many messages are in
//! flight; replies (`StandardRetur`) are matched by correlation id. The
//! batch's cursor (`<cvr>.cursor`, written atomically) only moves over a
//! contiguous run of confirmed events, so after a crash the publisher
//! resends from the cursor: duplicates only as resends of the same
//! `BeskedId`, never a loss.
//!
//! `StatusKode` 20 confirms; 41 (token expired) reconnects and resends; any
//! other code stops that batch with the code and text in the report. A
//! message without a reply within `reply_timeout` is sent again, a lost
//! reply sooner (see `LostReplies`). An outage
//! (the broker unreachable, or up but answering nothing) is ridden out with
//! capped, jittered backoff and reconnects until `outage_deadline` (default
//! 10 minutes) passes without a confirmed event; only then does the
//! publisher stop (exit code 4, "publish incomplete"), and the next
//! `publish` resumes from the cursors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use uuid::Uuid;

use crate::beskedfordeler::{BeskedfordelerConfig, amqp};
use crate::{beskedfordeler::besked, fsutil, store::outbox};

/// The direct reply-to pseudo queue.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Confirmed events between two cursor writes.
const CURSOR_EVERY: u64 = 2000;

/// How one batch went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchOutcome {
    pub batch: String,
    pub events: u64,
    /// Events confirmed before this publish started.
    pub already_published: u64,
    /// Events confirmed now.
    pub published: u64,
    /// Messages sent (including resends).
    pub sent: u64,
    pub status: BatchStatus,
    pub message: Option<String>,
}

/// The end state of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchStatus {
    Published,
    /// Beskedfordeler answered an error code: the batch stops here.
    Rejected,
    /// Stopped by connection failures; the next publish resumes.
    Incomplete,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Published => "published",
            BatchStatus::Rejected => "rejected",
            BatchStatus::Incomplete => "incomplete",
        }
    }
}

/// A connection with its reply consumer.
/// SASL EXTERNAL whose response is the token, the decoded SAML assertion
/// (KOMBIT's `TokenSaslConfig`).
struct TokenLogin(String);

impl lapin::auth::AuthProvider for TokenLogin {
    fn mechanism(&self) -> ShortString {
        "EXTERNAL".into()
    }

    fn auth_starter(&self) -> Result<lapin::types::LongString, String> {
        Ok(self.0.as_str().into())
    }
}

/// Connects to Beskedfordeler. `amqps://` trusts the configured `ca_cert`
/// alone (never the system's roots) and shows our client certificate;
/// plain `amqp://` is only ever allowed to a loopback test broker (the
/// config refuses it otherwise). With `auth_mechanism=external` the login
/// is SASL EXTERNAL carrying `token` ([`BeskedfordelerConfig::token_login`]).
pub async fn connect(
    cfg: &BeskedfordelerConfig,
    token: &str,
) -> anyhow::Result<(Connection, Channel)> {
    let mut props = ConnectionProperties::default();
    if cfg.token_login() {
        props = props.with_auth_provider(TokenLogin(token.to_owned()));
    }
    let shown = crate::secret::redact_url(cfg.url.expose());
    let uri: lapin::uri::AMQPUri = cfg
        .url
        .expose()
        .parse()
        .map_err(|e: String| anyhow::anyhow!("beskedfordeler.url {shown}: {e}"))?;
    let connection = match &cfg.tls {
        None => Connection::connect_uri(uri, props).await,
        Some((ca, cert, key)) => {
            let connector = lapin::tcp::RustlsConnector::from(std::sync::Arc::new(
                crate::tls::client_config(ca, cert, key)?,
            ));
            Connection::connector(
                uri,
                lapin::runtime::default_runtime()?,
                move |uri: lapin::uri::AMQPUri, runtime| {
                    let connector = connector.clone();
                    async move {
                        use lapin::tcp::AMQPUriTcpExt;
                        let host = uri.authority.host.clone();
                        let mut plain = uri;
                        plain.scheme = lapin::uri::AMQPScheme::AMQP;
                        let stream = plain.connect_async(&runtime).await?;
                        Ok(stream.into_rustls(&connector, &host).await?)
                    }
                },
                props,
            )
            .await
        }
    }
    .with_context(|| format!("cannot connect to Beskedfordeler at {shown}"))?;
    let channel = connection
        .create_channel()
        .await
        .context("cannot open a channel")?;
    Ok((connection, channel))
}

/// What the publisher needs from Beskedfordeler: connections to send on
/// and read `StandardRetur` replies from. [`Amqp`] is the real one; the
/// unit tests below drive the publisher's rules through a scripted one.
pub trait Broker {
    type Link: BrokerLink;
    /// A new connection logged in with `token` (the old one, if any, is
    /// dropped first).
    fn connect(
        &mut self,
        token: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<Self::Link>>;
    /// Whether a connection belongs to the token it logged in with (a new
    /// token needs a new connection).
    fn token_login(&self) -> bool;
}

/// One connection to Beskedfordeler.
pub trait BrokerLink {
    /// Publishes envelopes, in order, each with its `token` header; each
    /// reply carries its message's `correlation_id`. `Ok` once all are
    /// handed to the connection; after an error any of them may or may
    /// not have left.
    fn send_all(
        &mut self,
        token: &str,
        msgs: &[Outgoing<'_>],
    ) -> impl std::future::Future<Output = anyhow::Result<()>>;
    /// The next reply: its correlation id and body. `None`: the connection
    /// ended.
    fn next_reply(
        &mut self,
    ) -> impl std::future::Future<Output = Option<anyhow::Result<(Option<String>, Vec<u8>)>>>;
    /// Ends the connection politely (the broker then logs no abrupt
    /// close); run in the background while the next authority starts.
    fn close(self) -> impl std::future::Future<Output = ()> + Send + 'static;
}

/// One envelope to publish.
pub struct Outgoing<'a> {
    pub body: &'a [u8],
    pub message_id: &'a str,
    pub correlation_id: &'a str,
}

/// Correlation ids of one batch: a new random (v4) UUID per attempt, made
/// from a random one with the send number in its last 48 random bits, so a
/// reply's id gives the send number back without a table of strings.
struct Correlation {
    base: u128,
}

impl Correlation {
    const SEQ_BITS: u32 = 48;

    fn new() -> Correlation {
        Correlation {
            base: Uuid::new_v4().as_u128(),
        }
    }

    fn id(&self, seq: u64) -> String {
        let seq = u128::from(seq) & ((1 << Self::SEQ_BITS) - 1);
        Uuid::from_u128(self.base ^ seq).hyphenated().to_string()
    }

    /// The send number of a reply's correlation id; `None`: not one of
    /// this batch's.
    fn seq(&self, id: &str) -> Option<u64> {
        let x = Uuid::try_parse(id).ok()?.as_u128() ^ self.base;
        (x >> Self::SEQ_BITS == 0).then_some(x as u64)
    }
}

/// Beskedfordeler over AMQP ([`amqp::Link`], our own client on
/// amq-protocol's codec).
pub struct Amqp<'a> {
    pub cfg: &'a BeskedfordelerConfig,
}

impl Broker for Amqp<'_> {
    type Link = amqp::Link;

    async fn connect(&mut self, token: &str) -> anyhow::Result<amqp::Link> {
        amqp::connect(self.cfg, token).await
    }

    fn token_login(&self) -> bool {
        self.cfg.token_login()
    }
}

/// Publishes one message; the caller matches the reply by `correlation_id`.
pub async fn send(
    channel: &Channel,
    exchange: &str,
    token: &str,
    body: &[u8],
    message_id: &str,
    correlation_id: &str,
) -> lapin::Result<()> {
    let mut headers = FieldTable::default();
    headers.insert("token".into(), AMQPValue::LongString(token.into()));
    let props = BasicProperties::default()
        .with_message_id(message_id.into())
        .with_correlation_id(correlation_id.into())
        .with_reply_to(REPLY_TO.into())
        .with_content_type("application/xml".into())
        .with_headers(headers);
    channel
        .basic_publish(
            exchange.into(),
            ShortString::from(""),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            props,
        )
        .await
        .map(|_| ())
}

/// Publishes every unpublished batch. Authorities go in parallel
/// (`parallel_authorities` at a time, while their windows fit in
/// `in_flight_total`), each on a connection of its own (logged in with its
/// own token); an authority's batches go in date order, and a batch that is rejected or incomplete stops that
/// authority's later batches only. Outcomes come back in batch order
/// (date, then authority).
pub fn publish_all(state: &Path, cfg: &BeskedfordelerConfig) -> anyhow::Result<Vec<BatchOutcome>> {
    publish_all_with(state, cfg, || Amqp { cfg })
}

/// [`publish_all`] through any [`Broker`] (`make` gives each authority
/// its own).
fn publish_all_with<'a, B: Broker + 'a>(
    state: &Path,
    cfg: &'a BeskedfordelerConfig,
    make: impl Fn() -> B,
) -> anyhow::Result<Vec<BatchOutcome>> {
    let mut per_authority: std::collections::BTreeMap<u32, Vec<(std::path::PathBuf, u64, u64)>> =
        std::collections::BTreeMap::new();
    for path in outbox::list(state)? {
        let header = outbox::read_header(&path)?;
        let cursor = outbox::read_cursor(&path).with_context(|| path.display().to_string())?;
        if cursor < header.n_events {
            per_authority.entry(header.authority).or_default().push((
                path,
                header.n_events,
                cursor,
            ));
        }
    }
    let runtime = crate::rt::runtime()?;
    runtime.block_on(async {
        let tokens = tokio::sync::Mutex::new(crate::beskedfordeler::sts::Tokens::new(&cfg.tokens)?);
        let tokens = &tokens;
        // Once one authority's attempts to connect have outlasted
        // outage_deadline, the broker is down for all: the others stop at
        // their next failed connect instead of each waiting out a deadline
        // of its own (98 authorities, 16 at a time, would take hours).
        let unreachable = std::sync::atomic::AtomicBool::new(false);
        let unreachable = &unreachable;
        // The in-flight budget: an authority starts once its window fits,
        // in order (the semaphore is fair). Many small batches then go at
        // once, hiding each one's connect and round trips, while a mass
        // day's big batches go a few at a time: more would only add
        // connections, threads and memory, not speed.
        let total = cfg.in_flight_total.clamp(1, u32::MAX as usize);
        let budget = tokio::sync::Semaphore::new(total);
        let budget = &budget;
        // Finished authorities' connections close in the background (a
        // round trip each), while the next authorities start.
        let closing = std::sync::Mutex::new(tokio::task::JoinSet::new());
        let closing = &closing;
        let jobs = per_authority.into_iter().map(|(authority, batches)| {
            let mut broker = make();
            let window = batches
                .iter()
                .map(|(_, n_events, cursor)| n_events - cursor)
                .max()
                .unwrap_or(1)
                .clamp(1, cfg.in_flight.min(total).max(1) as u64);
            async move {
                let _permit = budget
                    .acquire_many(window as u32)
                    .await
                    .context("the in-flight budget closed")?;
                let mut link: Option<(B::Link, String)> = None;
                let mut outcomes = Vec::new();
                for (path, n_events, cursor) in batches {
                    let outcome = publish_batch(
                        &path,
                        authority,
                        n_events,
                        cursor,
                        cfg,
                        &mut broker,
                        &mut link,
                        tokens,
                        unreachable,
                    )
                    .await?;
                    let stop = outcome.status != BatchStatus::Published;
                    outcomes.push(outcome);
                    if stop {
                        break;
                    }
                }
                if let Some((link, _)) = link {
                    closing
                        .lock()
                        .expect("no panic while holding it")
                        .spawn(link.close());
                }
                Ok(outcomes)
            }
        });
        let results: Vec<anyhow::Result<Vec<BatchOutcome>>> =
            futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
                futures::stream::iter(jobs),
                cfg.parallel_authorities,
            ))
            .await;
        let closing = std::mem::take(&mut *closing.lock().expect("no panic while holding it"));
        let _ = tokio::time::timeout(Duration::from_secs(2), closing.join_all()).await;
        let mut outcomes = Vec::new();
        for r in results {
            outcomes.extend(r?);
        }
        outcomes.sort_by(|a, b| a.batch.cmp(&b.batch));
        Ok(outcomes)
    })
}

struct Pending {
    index: u64,
    sent_at: Instant,
    /// A later message's reply came first: replies come back about in
    /// send order, so this one's reply is probably lost.
    overtaken: bool,
}

/// The events of a batch held for (re)sending: those from index `base`
/// (the first unconfirmed) up to the newest loaded, read from the batch
/// in order as they are first needed. The buffers of confirmed events are
/// used again for the next ones (a mass day reads millions).
struct Window {
    envelopes: outbox::Envelopes,
    base: usize,
    /// BeskedId (hyphenated, ASCII) and envelope of each held event.
    items: std::collections::VecDeque<([u8; 36], Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

impl Window {
    /// Buffers kept for reuse at most.
    const SPARE: usize = 1024;

    /// Reads event `index` (the next one not yet read).
    fn load(&mut self, index: usize) -> anyhow::Result<()> {
        debug_assert_eq!(index, self.base + self.items.len());
        let mut envelope = self.spare.pop().unwrap_or_default();
        let besked_id = self
            .envelopes
            .next_into(&mut envelope)
            .ok_or_else(|| anyhow::anyhow!("the batch ended before its declared count"))??;
        let mut id = [0u8; 36];
        besked_id.hyphenated().encode_lower(&mut id);
        self.items.push_back((id, envelope));
        Ok(())
    }

    /// Event `index`'s BeskedId and envelope (loaded, not yet confirmed
    /// in order).
    fn get(&self, index: usize) -> (&str, &[u8]) {
        let (id, body) = &self.items[index - self.base];
        // encode_lower wrote ASCII.
        (std::str::from_utf8(id).unwrap_or_default(), body)
    }

    /// Forgets the events before `index` (all confirmed).
    fn advance(&mut self, index: usize) {
        while self.base < index {
            let Some((_, envelope)) = self.items.pop_front() else {
                break;
            };
            if self.spare.len() < Self::SPARE {
                self.spare.push(envelope);
            }
            self.base += 1;
        }
    }
}

/// When the oldest messages in flight are sent again, short of the reply
/// timeout. Replies come back about in the order the messages went out,
/// so a lost reply shows in two ways:
/// - a later message is answered first (the message is *overtaken*): it
///   is sent again `grace` after it went out;
/// - nothing at all is answered for `grace` (the lost reply was the
///   newest's, or the broker is slow): the oldest one unanswered is sent
///   again, alone, as a probe, and the silence it takes for the next
///   probe doubles each time (reset by any reply).
///
/// A slow broker's queued replies are not taken for lost ones however
/// long the queue: while replies keep coming, only overtaken messages
/// are sent again. A stall of the whole broker costs a probe or two per
/// connection, not its window.
#[derive(Default)]
struct LostReplies {
    /// The last reply on this connection, or the last probe.
    quiet_since: Option<Instant>,
    /// Probes sent since the last reply.
    probes: u32,
}

impl LostReplies {
    /// A reply with send number `seq` came: those before it still
    /// waiting are overtaken (they form a prefix of `pending`, so the
    /// walk back stops at the first one already marked).
    fn answered(&mut self, pending: &mut BTreeMap<u64, Pending>, seq: u64, now: Instant) {
        for (_, p) in pending.range_mut(..seq).rev() {
            if p.overtaken {
                break;
            }
            p.overtaken = true;
        }
        self.quiet_since = Some(now);
        self.probes = 0;
    }

    /// When the next message is due to be sent again (`None`: nothing
    /// in flight).
    fn next_due(&self, pending: &BTreeMap<u64, Pending>, grace: Duration) -> Option<Instant> {
        let (_, first) = pending.first_key_value()?;
        Some(if first.overtaken {
            first.sent_at + grace
        } else {
            self.probe_due(first, grace)
        })
    }

    fn probe_due(&self, oldest: &Pending, grace: Duration) -> Instant {
        let silence = grace.saturating_mul(1 << self.probes.min(8));
        self.quiet_since
            .map_or(oldest.sent_at, |q| q.max(oldest.sent_at))
            + silence
    }

    /// Takes the messages due now out of `pending`: every overtaken one
    /// past its grace, else (nothing overtaken) the oldest one after the
    /// silence, as a probe. Returns their event indexes and whether the
    /// taken one was a probe.
    fn take_due(
        &mut self,
        pending: &mut BTreeMap<u64, Pending>,
        grace: Duration,
        now: Instant,
    ) -> (Vec<u64>, bool) {
        let mut due = Vec::new();
        while let Some(first) = pending.first_entry() {
            if !(first.get().overtaken && now >= first.get().sent_at + grace) {
                break;
            }
            due.push(first.remove().index);
        }
        if !due.is_empty() {
            return (due, false);
        }
        match pending.first_entry() {
            Some(first) if !first.get().overtaken && now >= self.probe_due(first.get(), grace) => {
                due.push(first.remove().index);
                self.quiet_since = Some(now);
                self.probes += 1;
                (due, true)
            }
            _ => (due, false),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish_batch<B: Broker>(
    path: &Path,
    authority: u32,
    n_events: u64,
    start: u64,
    cfg: &BeskedfordelerConfig,
    broker: &mut B,
    link_slot: &mut Option<(B::Link, String)>,
    tokens: &tokio::sync::Mutex<crate::beskedfordeler::sts::Tokens>,
    unreachable: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<BatchOutcome> {
    let name = path
        .strip_prefix(
            path.parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("")),
        )
        .unwrap_or(path)
        .display()
        .to_string();
    let (_, mut envelopes) = outbox::open(path)?;
    for skipped in envelopes.by_ref().take(start as usize) {
        skipped?;
    }
    // Only the events between the cursor and the newest sent one are held
    // (for resends), streamed from the batch as they are first sent: a mass
    // day's batch is never in memory whole.
    let mut window = Window {
        envelopes,
        base: 0,
        items: std::collections::VecDeque::new(),
        spare: Vec::new(),
    };
    let total = (n_events - start) as usize;
    let mut outcome = BatchOutcome {
        batch: name.clone(),
        events: n_events,
        already_published: start,
        published: 0,
        sent: 0,
        status: BatchStatus::Published,
        message: None,
    };
    let mut confirmed = vec![false; total];
    let mut cursor = start; // absolute: events [0, cursor) confirmed
    let mut written_cursor = start;
    let mut next = 0usize; // next never-sent index (0 = the event at `start`)
    // Messages awaiting their reply, by send number (in send order).
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let correlation = Correlation::new();
    let mut seq = 0u64;
    let mut resend: BTreeSet<u64> = BTreeSet::new();
    let mut outage = Outage::new(cfg.outage_deadline);
    // After a 41 the connection's token is spent: nothing more is sent on
    // it, but the answers to what is in flight are still read (they are
    // confirmations, mostly) before a new connection takes over. Dropping
    // them would resend the whole window on every 41.
    let mut draining = false;
    // Lost replies (see `LostReplies`) are sent again after `grace`
    // (four round trips as measured now, at least 200 ms) instead of the
    // whole reply_timeout, which would stall the batch. Its event may then
    // arrive twice: what at-least-once allows, and what any resend of it
    // would cost.
    let mut rtt: Option<Duration> = None;
    let mut lost = LostReplies::default();

    let mut token = String::new();
    'outer: while cursor < n_events {
        // (Re)connect when needed, with capped, jittered backoff; a new
        // connection gets a fresh token (a cached one while it is valid).
        if token.is_empty() || link_slot.is_none() {
            let got = tokio::time::timeout(outage.attempt_limit(cfg), async {
                tokens
                    .lock()
                    .await
                    .get(authority, crate::beskedfordeler::sts::Service::Afsend)
                    .await
            })
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the token service did not answer in time")));
            match got {
                Ok(t) => {
                    token = t;
                    // A connection belongs to the token it logged in with.
                    if broker.token_login()
                        && link_slot.as_ref().is_some_and(|(_, login)| *login != token)
                    {
                        *link_slot = None;
                    }
                }
                Err(e) => {
                    let e = format!("no token: {e:#}");
                    match outage.failed(&e, cfg.max_backoff) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => {
                            outcome.fail_incomplete(&outage, &e);
                            break 'outer;
                        }
                    }
                    continue;
                }
            }
        }
        if link_slot.is_none() {
            let connected = tokio::time::timeout(outage.attempt_limit(cfg), broker.connect(&token))
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "cannot connect to Beskedfordeler at {}: no answer in time",
                        crate::secret::redact_url(cfg.url.expose())
                    ))
                });
            match connected {
                Ok(l) => *link_slot = Some((l, token.clone())),
                Err(e) => {
                    let e = format!("{e:#}");
                    if unreachable.load(std::sync::atomic::Ordering::Relaxed) {
                        outcome.fail_incomplete_with(format!(
                            "publish incomplete: Beskedfordeler unreachable (another authority's attempts outlasted outage_deadline {} s); last error: {e}",
                            cfg.outage_deadline.as_secs()
                        ));
                        break 'outer;
                    }
                    match outage.failed(&e, cfg.max_backoff) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => {
                            unreachable.store(true, std::sync::atomic::Ordering::Relaxed);
                            outcome.fail_incomplete(&outage, &e);
                            break 'outer;
                        }
                    }
                    continue;
                }
            }
            // Everything unconfirmed is sent again on the new connection.
            for p in std::mem::take(&mut pending) {
                resend.insert(p.1.index);
            }
            lost = LostReplies::default();
        }
        let link = &mut link_slot.as_mut().expect("connected").0;
        // Fill the window: resends first, then new events, handed to the
        // connection together (one write to the broker for many messages,
        // not one wake-up of the connection per message).
        let mut out: Vec<(u64, u64, String)> = Vec::new(); // (index, seq, correlation id)
        while !draining && pending.len() + out.len() < cfg.in_flight {
            let index = match resend.pop_first() {
                // (Never one already confirmed: it left the window.)
                Some(i) if confirmed[i as usize] => continue,
                Some(i) => i,
                // New events only while the held window stays bounded (a
                // lost reply holds the cursor back until it is resent).
                None if next < total && next - window.base < 4 * cfg.in_flight => {
                    window.load(next)?;
                    next += 1;
                    (next - 1) as u64
                }
                None => break,
            };
            out.push((index, seq, correlation.id(seq)));
            seq += 1;
        }
        let mut broken = None;
        if !out.is_empty() {
            let msgs: Vec<Outgoing<'_>> = out
                .iter()
                .map(|(index, _, correlation_id)| {
                    let (message_id, body) = window.get(*index as usize);
                    Outgoing {
                        body,
                        message_id,
                        correlation_id,
                    }
                })
                .collect();
            // A send that cannot even leave (a stalled connection) counts
            // as a broken link.
            let sent = tokio::time::timeout(cfg.reply_timeout, link.send_all(&token, &msgs)).await;
            drop(msgs);
            match sent {
                Ok(Ok(())) => {
                    let sent_at = Instant::now();
                    outcome.sent += out.len() as u64;
                    for &(index, seq, _) in &out {
                        pending.insert(
                            seq,
                            Pending {
                                index,
                                sent_at,
                                overtaken: false,
                            },
                        );
                    }
                }
                Ok(Err(e)) => broken = Some(e.to_string()),
                Err(_) => broken = Some("a send did not complete in time".to_owned()),
            }
            if broken.is_some() {
                // Whatever of them left can be answered on the old link
                // no more: all are sent again.
                resend.extend(out.iter().map(|(index, _, _)| *index));
            }
        }
        if let Some(e) = broken {
            *link_slot = None;
            let e = format!("publishing failed: {e}");
            match outage.failed(&e, cfg.max_backoff) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => {
                    outcome.fail_incomplete(&outage, &e);
                    break;
                }
            }
            continue;
        }
        // Wait for a reply, or until the next message is overdue.
        let grace = rtt.map_or(cfg.reply_timeout, |r| {
            (r * 4)
                .max(Duration::from_millis(200))
                .min(cfg.reply_timeout)
        });
        let wait = lost
            .next_due(&pending, grace)
            .map_or(cfg.reply_timeout, |due| {
                due.saturating_duration_since(Instant::now())
                    .min(cfg.reply_timeout)
            });
        let first =
            tokio::time::timeout(wait.max(Duration::from_millis(1)), link.next_reply()).await;
        // With one reply in, the others already here are taken too (they
        // are handled before the window is filled again).
        let (replies, ended) = match first {
            Ok(Some(Ok(reply))) => {
                let mut replies = vec![reply];
                let mut ended = None;
                while replies.len() < cfg.in_flight {
                    match futures::FutureExt::now_or_never(link.next_reply()) {
                        Some(Some(Ok(reply))) => replies.push(reply),
                        Some(other) => {
                            ended = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                (replies, ended)
            }
            Ok(other) => (Vec::new(), Some(other)),
            Err(_) => {
                // Overdue (a lost reply, or silence): send again.
                let (due, probe) = lost.take_due(&mut pending, grace, Instant::now());
                resend.extend(due);
                if draining && (probe || pending.is_empty()) {
                    // The spent connection went quiet (or owes nothing
                    // more): what it still owed is sent again on a new one.
                    *link_slot = None;
                    draining = false;
                    continue;
                }
                if outage.idle() >= cfg.reply_timeout {
                    // Up but answering nothing: a new connection (the old
                    // one may be half open), within the same deadline.
                    *link_slot = None;
                    let e = "no reply from Beskedfordeler in time";
                    match outage.failed(e, cfg.max_backoff) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => {
                            outcome.fail_incomplete(&outage, e);
                            break;
                        }
                    }
                }
                continue;
            }
        };
        for (cid, data) in replies {
            let Some(s) = cid.as_deref().and_then(|c| correlation.seq(c)) else {
                continue; // not ours
            };
            // (A late reply to an attempt already resent still shows
            // which are overtaken.)
            let now = Instant::now();
            lost.answered(&mut pending, s, now);
            let Some(p) = pending.remove(&s) else {
                continue;
            };
            let took = now - p.sent_at;
            rtt = Some(rtt.map_or(took, |r| (r * 7 + took) / 8));
            let local = p.index as usize;
            let (code, text) = besked::parse_standard_retur(&data)
                .unwrap_or((0, "unreadable StandardRetur".into()));
            match code {
                besked::OK => {
                    if !confirmed[local] {
                        confirmed[local] = true;
                        outcome.published += 1;
                        crate::crash::step("event confirmed by Beskedfordeler");
                    }
                    while cursor < n_events && confirmed[(cursor - start) as usize] {
                        cursor += 1;
                    }
                    window.advance((cursor - start) as usize);
                    outage.progress();
                }
                besked::TOKEN_EXPIRED => {
                    resend.insert(p.index);
                    if !draining {
                        tracing::warn!(
                            in_flight = pending.len(),
                            "token expired (StatusKode 41): reading the answers in flight, then reconnecting with a new token"
                        );
                        tokens.lock().await.invalidate(authority);
                        draining = true;
                    }
                }
                _ => {
                    outcome.status = BatchStatus::Rejected;
                    outcome.message = Some(format!(
                        "Beskedfordeler rejected event {} of {} (BeskedId {}): StatusKode {code}: {text}",
                        start + p.index + 1,
                        n_events,
                        window.get(local).0
                    ));
                    break 'outer;
                }
            }
            if cursor - written_cursor >= CURSOR_EVERY {
                outbox::write_cursor(path, cursor)?;
                written_cursor = cursor;
            }
            if draining && pending.is_empty() {
                *link_slot = None;
                draining = false;
            }
        }
        match ended {
            Some(Some(Err(e))) => {
                tracing::warn!(error = %e, "reply consumer failed: reconnecting");
                *link_slot = None;
                draining = false;
            }
            Some(None) => {
                tracing::warn!("reply consumer ended: reconnecting");
                *link_slot = None;
                draining = false;
            }
            Some(Some(Ok(_))) | None => {}
        }
    }
    if cursor != written_cursor {
        outbox::write_cursor(path, cursor)?;
    }
    Ok(outcome)
}

impl BatchOutcome {
    fn fail_incomplete(&mut self, outage: &Outage, error: &str) {
        self.fail_incomplete_with(format!(
            "publish incomplete: no progress for {} s ({} attempts), outage_deadline {} s passed; last error: {error}",
            outage.idle().as_secs(),
            outage.attempts,
            outage.deadline.as_secs()
        ));
    }

    fn fail_incomplete_with(&mut self, message: String) {
        self.status = BatchStatus::Incomplete;
        self.message = Some(message);
    }
}

/// The outage rule: while Beskedfordeler is unreachable, or up but
/// answering nothing, retry with capped, jittered backoff until
/// `outage_deadline` has passed without progress; every confirmed event
/// resets the clock.
struct Outage {
    deadline: Duration,
    last_progress: Instant,
    attempts: u32,
}

impl Outage {
    fn new(deadline: Duration) -> Outage {
        Outage {
            deadline,
            last_progress: Instant::now(),
            attempts: 0,
        }
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
        self.attempts = 0;
    }

    /// Time since the last progress.
    fn idle(&self) -> Duration {
        self.last_progress.elapsed()
    }

    /// What is left of the deadline.
    fn left(&self) -> Duration {
        self.deadline.saturating_sub(self.idle())
    }

    /// How long one connection or token attempt may take.
    fn attempt_limit(&self, cfg: &BeskedfordelerConfig) -> Duration {
        cfg.reply_timeout
            .min(self.left())
            .max(Duration::from_millis(100))
    }

    /// A failure: the delay before the next attempt, or `None` once the
    /// deadline has passed. Every retry is logged with the time left.
    fn failed(&mut self, error: &str, max_backoff: Duration) -> Option<Duration> {
        let left = self.left();
        if left.is_zero() {
            tracing::error!(
                error,
                attempts = self.attempts,
                deadline_s = self.deadline.as_secs(),
                "Beskedfordeler outage outlasted outage_deadline: stopping"
            );
            return None;
        }
        self.attempts += 1;
        let delay = backoff(self.attempts, max_backoff).min(left);
        tracing::warn!(
            error,
            attempt = self.attempts,
            retry_in_ms = delay.as_millis() as u64,
            deadline_left_s = left.as_secs(),
            "Beskedfordeler unavailable: retrying"
        );
        Some(delay)
    }
}

/// Full jitter over a cap that doubles from 100 ms up to `max`.
fn backoff(attempt: u32, max: Duration) -> Duration {
    use rand::Rng;
    let cap = Duration::from_millis(100)
        .saturating_mul(1 << attempt.min(10))
        .min(max)
        .max(Duration::from_millis(1));
    Duration::from_millis(rand::rng().random_range(1..=cap.as_millis().max(1) as u64))
}

/// Writes every envelope of every batch as a file under `dir`
/// (`<date>/<cvr>/<n>-<BeskedId>.xml`, mode 0600: they hold CPR
/// numbers), only the batches of `authority` and `date` when given;
/// cursors are left alone.
pub fn publish_to_dir(
    state: &Path,
    dir: &Path,
    authority: Option<u32>,
    date: Option<jiff::civil::Date>,
) -> anyhow::Result<u64> {
    let mut n = 0;
    for path in outbox::list(state)? {
        let header = outbox::read_header(&path)?;
        if authority.is_some_and(|a| a != header.authority)
            || date.is_some_and(|d| d != header.date)
        {
            continue;
        }
        let (header, envelopes) = outbox::open(&path)?;
        let out = dir
            .join(header.date.to_string())
            .join(crate::domain::keys::format(
                crate::domain::keys::KeyKind::Cvr,
                header.authority,
            ));
        fsutil::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        for (i, env) in envelopes.enumerate() {
            let env = env?;
            let id = env.besked_id;
            let file = out.join(format!("{:07}-{id}.xml", i + 1));
            fsutil::write_replace(&file, &env.envelope)
                .with_context(|| format!("cannot write {}", file.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    //! The publisher's rules through the [`Broker`] seam: a scripted
    //! Beskedfordeler that answers, drops, expires tokens, rejects or is
    //! unreachable, over a real batch file.

    use std::collections::{HashSet, VecDeque};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::beskedfordeler::sts::{TokenSource, Tokens};
    use crate::domain::diff::Change;
    use crate::domain::envelope::{BatchContext, Event, Renderer, tests::config};
    use crate::domain::keys::KeyKind;

    const AUTHORITY: u32 = 29189846;

    /// How the scripted Beskedfordeler treats the n-th message it gets
    /// (counting every send, resends included).
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Answer {
        Ok,
        Drop,
        Expired,
        Reject,
    }

    #[derive(Default)]
    struct Script {
        /// Answers by send number; `Ok` past the end.
        answers: Vec<Answer>,
        /// Messages always rejected (StatusKode 40), by BeskedId.
        reject_ids: BTreeSet<String>,
        /// Connections that fail before one succeeds (`usize::MAX`: all).
        refuse_connections: usize,
        connects: usize,
        /// Connections open now, and the most open at once.
        open: usize,
        max_open: usize,
        /// Each reply waits this long (lets authorities overlap).
        reply_delay: Duration,
        /// After this many replies, the broker stalls for that long.
        stall: Option<(usize, Duration)>,
        stall_until: Option<Instant>,
        delivered: usize,
        /// Every message id sent, in order.
        sent: Vec<String>,
    }

    #[derive(Clone, Default)]
    struct Scripted(Arc<Mutex<Script>>);

    struct ScriptedLink {
        script: Arc<Mutex<Script>>,
        replies: VecDeque<(Option<String>, Vec<u8>)>,
    }

    impl Broker for Scripted {
        type Link = ScriptedLink;

        async fn connect(&mut self, token: &str) -> anyhow::Result<ScriptedLink> {
            assert_eq!(token, "tok");
            let mut s = self.0.lock().unwrap();
            s.connects += 1;
            if s.connects <= s.refuse_connections {
                anyhow::bail!("connection refused");
            }
            s.open += 1;
            s.max_open = s.max_open.max(s.open);
            Ok(ScriptedLink {
                script: self.0.clone(),
                replies: VecDeque::new(),
            })
        }

        fn token_login(&self) -> bool {
            true
        }
    }

    impl BrokerLink for ScriptedLink {
        async fn send_all(&mut self, token: &str, msgs: &[Outgoing<'_>]) -> anyhow::Result<()> {
            for m in msgs {
                self.send(token, m.message_id, m.correlation_id);
            }
            Ok(())
        }

        // Closed at once: `open` counts the connections publishing (a real
        // one takes a round trip to close, in the background).
        fn close(self) -> impl std::future::Future<Output = ()> + Send + 'static {
            drop(self);
            async {}
        }

        async fn next_reply(&mut self) -> Option<anyhow::Result<(Option<String>, Vec<u8>)>> {
            let (delay, stall_until) = {
                let s = self.script.lock().unwrap();
                (s.reply_delay, s.stall_until)
            };
            if !delay.is_zero() && !self.replies.is_empty() {
                tokio::time::sleep(delay).await;
            }
            if let Some(until) = stall_until {
                tokio::time::sleep_until(until.into()).await;
            }
            match self.replies.pop_front() {
                Some(r) => {
                    let mut s = self.script.lock().unwrap();
                    s.delivered += 1;
                    if let Some((after, long)) = s.stall
                        && s.delivered == after
                    {
                        s.stall_until = Some(Instant::now() + long);
                    }
                    Some(Ok(r))
                }
                None => std::future::pending().await,
            }
        }
    }

    impl Drop for ScriptedLink {
        fn drop(&mut self) {
            self.script.lock().unwrap().open -= 1;
        }
    }

    impl ScriptedLink {
        fn send(&mut self, token: &str, message_id: &str, correlation_id: &str) {
            assert_eq!(token, "tok");
            let mut s = self.script.lock().unwrap();
            let n = s.sent.len();
            s.sent.push(message_id.to_owned());
            let answer = if s.reject_ids.contains(message_id) {
                Answer::Reject
            } else {
                s.answers.get(n).copied().unwrap_or(Answer::Ok)
            };
            let code = match answer {
                Answer::Drop => return,
                Answer::Ok => besked::OK,
                Answer::Expired => besked::TOKEN_EXPIRED,
                Answer::Reject => 40,
            };
            self.replies.push_back((
                Some(correlation_id.to_owned()),
                besked::standard_retur(code, "scripted").into_bytes(),
            ));
        }
    }

    fn bf_config() -> BeskedfordelerConfig {
        BeskedfordelerConfig {
            url: crate::secret::Secret::new("amqp://127.0.0.1:1/%2f"),
            exchange: "x".into(),
            tokens: TokenSource::Static(crate::secret::Secret::new("tok")),
            tls: None,
            in_flight: 8,
            parallel_authorities: 4,
            in_flight_total: 32,
            reply_timeout: Duration::from_millis(100),
            outage_deadline: Duration::from_millis(400),
            max_backoff: Duration::from_millis(20),
            publish_after_run: false,
            alive_check_before_publish: false,
        }
    }

    /// A batch of `n` events; its BeskedIds in order.
    fn batch(dir: &Path, n: u32) -> (std::path::PathBuf, Vec<String>) {
        batch_of(dir, AUTHORITY, 2, n)
    }

    /// A batch of `authority` on 2026-01-`day` with `n` events.
    fn batch_of(dir: &Path, authority: u32, day: i8, n: u32) -> (std::path::PathBuf, Vec<String>) {
        let date = jiff::civil::date(2026, 1, day);
        let r = Renderer::new(
            &config(),
            BatchContext {
                authority,
                date,
                taken_at: 0,
                id_key: crate::domain::envelope::tests::KEY,
            },
        );
        let events: Vec<Event> = (0..n)
            .map(|i| Event {
                kind: KeyKind::Cpr,
                key: 101_900_000 + i,
                change: Change::SignedUp,
            })
            .collect();
        let path = outbox::batch_path(dir, authority, date);
        outbox::write_batch(&path, &r, authority, date, &events).unwrap();
        let (_, records) = outbox::open(&path).unwrap();
        let ids = records.map(|r| r.unwrap().besked_id.to_string()).collect();
        (path, ids)
    }

    fn publish(path: &Path, n: u64, broker: &mut Scripted) -> BatchOutcome {
        publish_with(path, n, broker, &bf_config())
    }

    /// One batch from its cursor on, with `cfg`.
    fn publish_with(
        path: &Path,
        n: u64,
        broker: &mut Scripted,
        cfg: &BeskedfordelerConfig,
    ) -> BatchOutcome {
        crate::rt::runtime().unwrap().block_on(async {
            let mut link = None;
            let tokens = tokio::sync::Mutex::new(Tokens::new(&cfg.tokens).unwrap());
            let start = outbox::read_cursor(path).unwrap();
            let unreachable = std::sync::atomic::AtomicBool::new(false);
            publish_batch(
                path,
                AUTHORITY,
                n,
                start,
                cfg,
                broker,
                &mut link,
                &tokens,
                &unreachable,
            )
            .await
            .unwrap()
        })
    }

    #[test]
    fn every_event_once_in_order_and_the_cursor_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ids) = batch(dir.path(), 50);
        let mut broker = Scripted::default();
        let o = publish(&path, 50, &mut broker);
        assert_eq!(
            (o.status, o.published, o.sent),
            (BatchStatus::Published, 50, 50)
        );
        assert_eq!(
            broker.0.lock().unwrap().sent,
            ids,
            "the record's ids, in order"
        );
        assert_eq!(outbox::read_cursor(&path).unwrap(), 50);
    }

    #[test]
    fn a_lost_reply_is_sent_again_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ids) = batch(dir.path(), 20);
        let mut broker = Scripted::default();
        broker.0.lock().unwrap().answers = vec![Answer::Ok, Answer::Ok, Answer::Drop];
        let o = publish(&path, 20, &mut broker);
        assert_eq!(
            (o.status, o.published, o.sent),
            (BatchStatus::Published, 20, 21)
        );
        let sent = broker.0.lock().unwrap().sent.clone();
        assert_eq!(
            sent.iter().filter(|id| **id == ids[2]).count(),
            2,
            "resent once"
        );
        assert_eq!(outbox::read_cursor(&path).unwrap(), 20);
    }

    #[test]
    fn a_lost_reply_is_resent_after_a_few_round_trips_not_the_reply_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ids) = batch(dir.path(), 50);
        let mut broker = Scripted::default();
        broker.0.lock().unwrap().answers = vec![Answer::Ok, Answer::Drop];
        let mut cfg = bf_config();
        cfg.reply_timeout = Duration::from_secs(60);
        cfg.outage_deadline = Duration::from_secs(120);
        let clock = Instant::now();
        let o = publish_with(&path, 50, &mut broker, &cfg);
        assert_eq!(
            (o.status, o.published, o.sent),
            (BatchStatus::Published, 50, 51)
        );
        let sent = broker.0.lock().unwrap().sent.clone();
        assert_eq!(sent.iter().filter(|id| **id == ids[1]).count(), 2);
        // Later messages were answered, so the lost reply was not waited
        // for: the 60 s reply timeout never ran out (the grace is 200 ms
        // here; 30 s leaves any machine room).
        assert!(
            clock.elapsed() < Duration::from_secs(30),
            "{:?}",
            clock.elapsed()
        );
    }

    #[test]
    fn a_lost_reply_at_the_end_of_a_batch_is_not_waited_for_either() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ids) = batch(dir.path(), 10);
        let mut broker = Scripted::default();
        let mut answers = vec![Answer::Ok; 9];
        answers.push(Answer::Drop);
        broker.0.lock().unwrap().answers = answers;
        let mut cfg = bf_config();
        cfg.reply_timeout = Duration::from_secs(60);
        cfg.outage_deadline = Duration::from_secs(120);
        let clock = Instant::now();
        let o = publish_with(&path, 10, &mut broker, &cfg);
        assert_eq!(
            (o.status, o.published, o.sent),
            (BatchStatus::Published, 10, 11)
        );
        let sent = broker.0.lock().unwrap().sent.clone();
        assert_eq!(sent.iter().filter(|id| **id == ids[9]).count(), 2);
        assert!(
            clock.elapsed() < Duration::from_secs(30),
            "{:?}",
            clock.elapsed()
        );
    }

    #[test]
    fn a_lost_reply_while_draining_after_a_41_is_not_waited_for_either() {
        // The first window (8): the third is answered 41, the newest one's
        // reply is lost. Nothing more goes out on that connection, so
        // nothing later can be answered: the lost one gets the grace, then
        // everything owed goes out again on a new connection.
        let dir = tempfile::tempdir().unwrap();
        let (path, ids) = batch(dir.path(), 20);
        let mut broker = Scripted::default();
        let mut answers = vec![Answer::Ok; 8];
        answers[2] = Answer::Expired;
        answers[7] = Answer::Drop;
        broker.0.lock().unwrap().answers = answers;
        let mut cfg = bf_config();
        cfg.reply_timeout = Duration::from_secs(60);
        cfg.outage_deadline = Duration::from_secs(120);
        let clock = Instant::now();
        let o = publish_with(&path, 20, &mut broker, &cfg);
        assert_eq!((o.status, o.published), (BatchStatus::Published, 20));
        let s = broker.0.lock().unwrap();
        assert_eq!(s.connects, 2);
        for i in [2, 7] {
            assert_eq!(s.sent.iter().filter(|id| **id == ids[i]).count(), 2);
        }
        assert!(
            clock.elapsed() < Duration::from_secs(30),
            "{:?}",
            clock.elapsed()
        );
    }

    #[test]
    fn a_stalled_broker_costs_a_probe_or_two_not_the_window() {
        // The whole batch goes out at once; after two replies the broker
        // stalls for 1.5 s (a long pause, far past the 200 ms grace), then
        // answers everything. Queued replies are not lost ones: what is
        // sent again is a probe now and then, not the 6 still waiting.
        let dir = tempfile::tempdir().unwrap();
        let (path, ids) = batch(dir.path(), 8);
        let mut broker = Scripted::default();
        broker.0.lock().unwrap().stall = Some((2, Duration::from_millis(1500)));
        let mut cfg = bf_config();
        cfg.reply_timeout = Duration::from_secs(60);
        cfg.outage_deadline = Duration::from_secs(120);
        let o = publish_with(&path, 8, &mut broker, &cfg);
        assert_eq!((o.status, o.published), (BatchStatus::Published, 8));
        let s = broker.0.lock().unwrap();
        assert_eq!(s.connects, 1);
        // Probes after 200, 600 and 1400 ms of silence (the silence
        // doubles), all of the oldest ones: at most 3 of 6 resent.
        assert!(o.sent >= 9 && o.sent <= 11, "sent {}", o.sent);
        let resent: Vec<&String> = ids
            .iter()
            .filter(|id| s.sent.iter().filter(|x| x == id).count() > 1)
            .collect();
        assert_eq!(resent.len() as u64, o.sent - 8);
        assert!(resent.iter().all(|id| ids[2..5].contains(id)), "{resent:?}");
    }

    #[test]
    fn correlation_ids_are_new_v4_uuids_that_give_their_send_number_back() {
        let c = Correlation::new();
        let mut seen = HashSet::new();
        for seq in [0u64, 1, 2, 499, 1 << 20, (1 << 48) - 1] {
            let id = c.id(seq);
            let uuid = Uuid::try_parse(&id).unwrap();
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(c.seq(&id), Some(seq));
            assert!(seen.insert(id));
        }
        // Another batch's ids, and ids that are no UUID, are not ours.
        let other = Correlation::new();
        assert_eq!(c.seq(&other.id(7)), None);
        assert_eq!(c.seq("7"), None);
        assert_eq!(c.seq(""), None);
    }

    #[test]
    fn a_rejected_batch_stops_its_own_authority_only() {
        let dir = tempfile::tempdir().unwrap();
        const OTHER: u32 = 30167279;
        let (a2, a_ids) = batch_of(dir.path(), AUTHORITY, 2, 10);
        let (a3, _) = batch_of(dir.path(), AUTHORITY, 3, 10);
        let (b2, _) = batch_of(dir.path(), OTHER, 2, 10);
        let (b3, _) = batch_of(dir.path(), OTHER, 3, 10);
        let broker = Scripted::default();
        broker.0.lock().unwrap().reject_ids.insert(a_ids[4].clone());
        let cfg = bf_config();
        let outcomes = publish_all_with(dir.path(), &cfg, || broker.clone()).unwrap();
        let got: Vec<(String, BatchStatus, u64)> = outcomes
            .iter()
            .map(|o| (o.batch.clone(), o.status, o.published))
            .collect();
        let name = |p: &Path| {
            p.strip_prefix(dir.path().join("outbox"))
                .unwrap()
                .display()
                .to_string()
        };
        assert_eq!(
            got,
            vec![
                (name(&a2), BatchStatus::Rejected, 4),
                (name(&b2), BatchStatus::Published, 10),
                (name(&b3), BatchStatus::Published, 10),
            ],
            "in batch order; the rejected authority's later batch waits"
        );
        assert_eq!(outbox::read_cursor(&a2).unwrap(), 4);
        assert_eq!(outbox::read_cursor(&a3).unwrap(), 0);
        assert_eq!(outbox::read_cursor(&b3).unwrap(), 10);
    }

    #[test]
    fn authorities_go_at_once_while_their_windows_fit_the_in_flight_budget() {
        // Six authorities; in_flight 8, budget 16, at most 4 connections.
        let most_open = |events: u32| {
            let dir = tempfile::tempdir().unwrap();
            for a in 0..6 {
                batch_of(dir.path(), 30167279 + a * 11, 2, events);
            }
            let broker = Scripted::default();
            broker.0.lock().unwrap().reply_delay = Duration::from_millis(2);
            let cfg = BeskedfordelerConfig {
                in_flight_total: 16,
                ..bf_config()
            };
            let outcomes = publish_all_with(dir.path(), &cfg, || broker.clone()).unwrap();
            assert_eq!(outcomes.len(), 6);
            assert!(outcomes.iter().all(|o| o.status == BatchStatus::Published
                && o.published == u64::from(events)));
            let s = broker.0.lock().unwrap();
            assert_eq!(s.open, 0);
            s.max_open
        };
        // Big batches take a whole window (8) each: two at a time.
        assert_eq!(most_open(40), 2);
        // Batches of 3 take 3 each: parallel_authorities (4) is the bound.
        assert_eq!(most_open(3), 4);
    }

    #[test]
    fn an_expired_token_means_a_new_connection_and_a_resend() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = batch(dir.path(), 10);
        let mut broker = Scripted::default();
        broker.0.lock().unwrap().answers = vec![Answer::Ok, Answer::Expired];
        let o = publish(&path, 10, &mut broker);
        assert_eq!((o.status, o.published), (BatchStatus::Published, 10));
        assert!(broker.0.lock().unwrap().connects >= 2);
    }

    #[test]
    fn a_rejection_stops_the_batch_with_the_cursor_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ids) = batch(dir.path(), 30);
        let mut broker = Scripted::default();
        let mut answers = vec![Answer::Ok; 30];
        answers[4] = Answer::Reject;
        broker.0.lock().unwrap().answers = answers;
        let o = publish(&path, 30, &mut broker);
        assert_eq!(o.status, BatchStatus::Rejected);
        let message = o.message.unwrap();
        assert!(
            message.contains("event 5 of 30") && message.contains(&ids[4]),
            "{message}"
        );
        assert_eq!(
            outbox::read_cursor(&path).unwrap(),
            4,
            "never past an unconfirmed event"
        );
    }

    #[test]
    fn an_unreachable_broker_is_waited_out_once_not_once_per_authority() {
        // 12 authorities, 4 at a time, the broker refusing every
        // connection: the first 4 retry until outage_deadline; the other
        // 8 stop at their first failed connect, each batch incomplete
        // (its cursor where it was) with the reason.
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..12)
            .map(|i| batch_of(dir.path(), 30_000_000 + i, 2, 8).0)
            .collect();
        let broker = Scripted::default();
        broker.0.lock().unwrap().refuse_connections = usize::MAX;
        let cfg = bf_config();
        let outcomes = publish_all_with(dir.path(), &cfg, || broker.clone()).unwrap();
        assert_eq!(outcomes.len(), 12);
        assert!(
            outcomes
                .iter()
                .all(|o| o.status == BatchStatus::Incomplete && o.published == 0)
        );
        let messages: Vec<&str> = outcomes
            .iter()
            .map(|o| o.message.as_deref().unwrap())
            .collect();
        assert!(
            messages.iter().all(|m| m.contains("connection refused")),
            "{messages:?}"
        );
        let at_once = messages
            .iter()
            .filter(|m| m.contains("another authority's attempts outlasted outage_deadline"))
            .count();
        assert!(at_once >= 8, "{messages:?}");
        let s = broker.0.lock().unwrap();
        // 4 x the retries until the deadline, + 1 each for the other 8
        // (far fewer than 12 x the retries).
        let retries_each = (s.connects - at_once) / (12 - at_once);
        assert!(retries_each >= 5, "{} connects", s.connects);
        for p in &paths {
            assert_eq!(outbox::read_cursor(p).unwrap(), 0);
        }
    }

    #[test]
    fn an_unreachable_broker_ends_at_the_outage_deadline_and_resumes_later() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = batch(dir.path(), 10);
        let mut broker = Scripted::default();
        broker.0.lock().unwrap().refuse_connections = usize::MAX;
        let started = Instant::now();
        let o = publish(&path, 10, &mut broker);
        assert_eq!((o.status, o.published), (BatchStatus::Incomplete, 0));
        assert!(o.message.unwrap().contains("connection refused"));
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert_eq!(outbox::read_cursor(&path).unwrap(), 0);
        // The broker is back: the next publish delivers everything.
        let mut broker = Scripted::default();
        let o = publish(&path, 10, &mut broker);
        assert_eq!((o.status, o.published), (BatchStatus::Published, 10));
    }
}

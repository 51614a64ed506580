//! The Beskedfordeler emulator, on a real RabbitMQ broker.
//!
//! Declares the exchange (default `AFSEND_BESKED_EXCHANGE`) and its inbox
//! queue, consumes what is published, checks each message (well-formed
//! envelope, required fields, `message_id` = `BeskedId`, `token` header),
//! routes accepted messages to durable dueslag queues by subscription
//! (beskedtype, optionally a value list of `ObjektId`s) as persistent
//! messages and to HTTP push endpoints as `ModtagBeskedInput`, and answers
//! a `StandardRetur` to `reply_to` with the same `correlation_id`. Like
//! Beskedfordeler's, its StatusKode 20 is a promise: it leaves only once
//! the broker has confirmed every forward of the message (publisher
//! confirms); up to 8,000 messages are in flight meanwhile (taken, forwarded
//! and answered in groups). The inbox is consumed without acknowledgements,
//! like an RPC server's: what keeps a message from being lost is the
//! publisher, which sends again whatever got no 20, not the inbox (whose
//! messages are transient, gone with a broker restart anyway); an
//! acknowledged inbox cost the broker about a fifth of its CPU per message.
//! Fault injection: answer 41 every N
//! messages, answer an error code every N, drop every Nth reply, delay
//! replies. Also `drain`: empty a queue and print the `BeskedId`s.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use uuid::Uuid;

use crate::beskedfordeler::besked;

/// A dueslag: a queue that gets the messages of one beskedtype.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub queue: String,
    pub beskedtype: String,
    /// Only messages about one of these `ObjektId`s (`urn:oio:cpr-nr:…`).
    pub objekt_ids: Option<HashSet<String>>,
}

impl std::str::FromStr for Subscription {
    type Err = String;

    /// `QUEUE=BESKEDTYPE` or `QUEUE=BESKEDTYPE:FILE` (one ObjektId a line).
    fn from_str(s: &str) -> Result<Self, String> {
        let (queue, rest) = s
            .split_once('=')
            .ok_or("expected QUEUE=BESKEDTYPE[:FILE]")?;
        let (beskedtype, file) = match rest.split_once(':') {
            Some((t, f)) => (t, Some(f)),
            None => (rest, None),
        };
        Uuid::parse_str(beskedtype).map_err(|_| format!("{beskedtype} is not a UUID"))?;
        let objekt_ids = match file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read {f}: {e}"))?
                    .lines()
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty())
                    .collect(),
            ),
            None => None,
        };
        Ok(Subscription {
            queue: queue.to_owned(),
            beskedtype: beskedtype.to_lowercase(),
            objekt_ids,
        })
    }
}

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct Options {
    pub amqp: String,
    pub exchange: String,
    pub subscriptions: Vec<Subscription>,
    /// Push every accepted message of `push_beskedtype` to this URL.
    pub push_to: Option<String>,
    pub push_beskedtype: String,
    pub answer_41_every: u64,
    pub error_code: u32,
    pub error_every: u64,
    pub drop_reply_every: u64,
    pub delay_reply_ms: u64,
    /// Check every message's token against the STS simulator's key:
    /// expired answers 41, and `ObjektAnsvarligMyndighed` must be its CVR.
    pub token_key: Option<[u8; 32]>,
    /// Serve the AMQP front door (the real login) on this address.
    pub front_door: Option<(std::net::SocketAddr, crate::sim::frontdoor::DoorOptions)>,
}

/// The inbox queue of an exchange.
pub fn inbox(exchange: &str) -> String {
    format!("{exchange}.indbakke")
}

async fn open(amqp: &str) -> anyhow::Result<(lapin::Connection, Channel)> {
    let connection = lapin::Connection::connect(amqp, lapin::ConnectionProperties::default())
        .await
        .with_context(|| format!("cannot connect to {}", crate::secret::redact_url(amqp)))?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// The inbox: durable, its messages transient and taken at once.
async fn declare_inbox(channel: &Channel, name: &str) -> anyhow::Result<()> {
    declare_queue(channel, name, FieldTable::default()).await
}

/// A dueslag: durable and lazy, its persistent messages kept on disk, not
/// in the queue process's memory. A mass day leaves millions waiting for a
/// subscriber; RabbitMQ from 3.12 keeps classic queues this way always,
/// and Debian's 3.10 holds them in memory unless asked, where the queue
/// process's garbage collection over 600,000 waiting messages cost the
/// broker about 15 % of its CPU per envelope (mass-day benchmark).
async fn declare_dueslag(channel: &Channel, name: &str) -> anyhow::Result<()> {
    let mut args = FieldTable::default();
    args.insert("x-queue-mode".into(), AMQPValue::LongString("lazy".into()));
    declare_queue(channel, name, args).await
}

async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> anyhow::Result<()> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .with_context(|| format!("cannot declare queue {name}"))?;
    Ok(())
}

/// Runs the emulator until SIGTERM or SIGINT.
pub fn serve(opts: Options) -> anyhow::Result<()> {
    let runtime = crate::rt::runtime()?;
    let result = runtime.block_on(serve_async(opts));
    // Stopped while the broker is away, lapin's I/O threads are still
    // trying to connect on this runtime: dropping it would cancel their
    // tasks under them, and each would panic ("Task did not complete").
    // The process ends here (`simulate beskedfordeler` runs nothing
    // after), so the runtime is left to end with it.
    std::mem::forget(runtime);
    result
}

async fn serve_async(opts: Options) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut door_addr = None;
    let _door = match &opts.front_door {
        Some((listen, door)) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            door_addr = Some(listener.local_addr()?);
            Some(AbortOnDrop(tokio::spawn(crate::sim::frontdoor::serve(
                listener,
                std::sync::Arc::new(door.clone()),
            ))))
        }
        None => None,
    };
    let mut announced = false;
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            r = session(&opts, door_addr, &mut announced) => r,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        // The broker went away: reconnect (a restart of the broker is a test).
        failures += 1;
        let e = result
            .err()
            .map_or("consumer ended".to_owned(), |e| format!("{e:#}"));
        eprintln!("beskedfordeler emulator: {e}; reconnecting");
        tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
    }
    eprintln!("beskedfordeler emulator stopped");
    Ok(())
}

/// A task that stops with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the answerer does with one consumed message, once its forwards
/// are confirmed: answer (unless a fault drops it).
struct Job {
    /// The broker's confirms of the forwards to the dueslag queues.
    confirms: Vec<lapin::PublisherConfirm>,
    reply_to: Option<String>,
    correlation: Option<String>,
    code: u32,
    text: String,
    drop_reply: bool,
}

/// Forwards in flight (messages consumed but not yet answered).
const IN_FLIGHT: u16 = 8000;

async fn session(
    opts: &Options,
    door: Option<std::net::SocketAddr>,
    announced: &mut bool,
) -> anyhow::Result<()> {
    let (_connection, channel) = open(&opts.amqp).await?;
    // Forwards go on their own channel in confirm mode: a StatusKode 20
    // leaves only once the broker holds every forward of the message.
    // Forwards and answers each have a connection of their own: the
    // broker handles each connection's frames in one process, and one
    // connection for everything would make that the bottleneck.
    let (_forward_connection, forward) = open(&opts.amqp).await?;
    let (_reply_connection, replies) = open(&opts.amqp).await?;
    forward
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("cannot enable publisher confirms")?;
    channel
        .exchange_declare(
            opts.exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .context("cannot declare the exchange")?;
    let inbox = inbox(&opts.exchange);
    declare_inbox(&channel, &inbox).await?;
    channel
        .queue_bind(
            inbox.as_str().into(),
            opts.exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for s in &opts.subscriptions {
        declare_dueslag(&channel, &s.queue).await?;
    }
    // No acknowledgements (see the module's comment), so no prefetch
    // limit either: the in-flight bound is the job queue below, and
    // lapin holds what the broker sends ahead of it.
    let mut consumer = channel
        .basic_consume(
            inbox.as_str().into(),
            "bfo-emulator".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    if !*announced {
        // One line, once everything is declared: with the front door, the
        // address logins go to.
        match door {
            Some(addr) => println!("beskedfordeler front door listening on amqp://{addr}"),
            None => println!(
                "beskedfordeler emulator ready on {}, exchange {}",
                crate::secret::redact_url(&opts.amqp),
                opts.exchange
            ),
        }
        std::io::stdout().flush()?;
        *announced = true;
    }
    let push = opts
        .push_to
        .clone()
        .map(|url| (url, reqwest::Client::new()));
    // The answerer awaits the confirms in arrival order, so many forwards
    // are in flight while answers and acknowledgements keep their order.
    let (jobs, queue) = tokio::sync::mpsc::channel::<Job>(usize::from(IN_FLIGHT));
    let mut answerer = tokio::spawn(answer(replies, queue, opts.delay_reply_ms));
    let mut n = 0u64;
    // Deliveries are taken in groups (those already here), their forwards
    // published together and their answers sent together: one write to
    // the broker per group, not per message.
    const GROUP: usize = 256;
    loop {
        let first = tokio::select! {
            d = consumer.next() => match d {
                Some(d) => d?,
                None => break,
            },
            r = &mut answerer => return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("the answerer failed: {e}")),
            },
        };
        let mut deliveries = vec![first];
        let mut ended = false;
        while deliveries.len() < GROUP {
            match futures::FutureExt::now_or_never(consumer.next()) {
                Some(Some(d)) => deliveries.push(d?),
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        // Per delivery: its answer and the queues it goes to.
        let mut checked = Vec::with_capacity(deliveries.len());
        for delivery in &deliveries {
            n += 1;
            let (code, text, info) = check(opts, n, &delivery.data, &delivery.properties);
            let mut queues = Vec::new();
            if let Some(info) = &info {
                let beskedtype = info.beskedtype.clone().unwrap_or_default().to_lowercase();
                for s in &opts.subscriptions {
                    let wanted = s.beskedtype == beskedtype
                        && s.objekt_ids
                            .as_ref()
                            .is_none_or(|ids| info.objekt_ids.iter().any(|o| ids.contains(o)));
                    if wanted {
                        queues.push(s.queue.as_str());
                    }
                }
                if let Some((url, client)) = &push
                    && beskedtype == opts.push_beskedtype
                {
                    push_to(url, client, &delivery.data).await;
                }
            }
            let besked_id = info.and_then(|i| i.besked_id).unwrap_or_default();
            checked.push((code, text, besked_id, queues, n));
        }
        let forwards = deliveries
            .iter()
            .zip(&checked)
            .flat_map(|(delivery, (_, _, besked_id, queues, _))| {
                queues.iter().map(|queue| {
                    Box::pin(
                        forward.basic_publish(
                            "".into(),
                            (*queue).into(),
                            BasicPublishOptions::default(),
                            &delivery.data,
                            BasicProperties::default()
                                .with_message_id(besked_id.as_str().into())
                                .with_delivery_mode(2),
                        ),
                    )
                })
            })
            .collect();
        let mut confirms = crate::rt::in_order(forwards).await?.into_iter();
        for (delivery, (code, text, _, queues, nth)) in deliveries.iter().zip(checked) {
            let props = &delivery.properties;
            let job = Job {
                confirms: confirms.by_ref().take(queues.len()).collect(),
                reply_to: props.reply_to().as_ref().map(|s| s.to_string()),
                correlation: props.correlation_id().as_ref().map(|s| s.to_string()),
                code,
                text,
                drop_reply: opts.drop_reply_every > 0 && nth.is_multiple_of(opts.drop_reply_every),
            };
            if jobs.send(job).await.is_err() {
                ended = true; // the answerer ended; its result is the session's
                break;
            }
        }
        if ended {
            break;
        }
    }
    drop(jobs);
    match answerer.await {
        Ok(r) => r,
        Err(e) => Err(anyhow::anyhow!("the answerer failed: {e}")),
    }
}

/// Posts an accepted message to an HTTP push receiver as
/// `ModtagBeskedInput`; what goes wrong is reported, not fatal.
async fn push_to(url: &str, client: &reqwest::Client, data: &[u8]) {
    let body = besked::modtag_besked_input(data);
    match client
        .post(url)
        .header("Content-Type", "application/xml")
        .body(body)
        .send()
        .await
    {
        // The receiver's status is in StandardRetur (HTTP 200).
        Ok(r) if r.status().is_success() => {
            let body = r.bytes().await.unwrap_or_default();
            match besked::parse_standard_retur(&body) {
                Ok((besked::OK, _)) => {}
                Ok((code, text)) => eprintln!("push to {url}: StatusKode {code}: {text}"),
                Err(e) => eprintln!("push to {url}: {e}"),
            }
        }
        Ok(r) => eprintln!("push to {url}: HTTP {}", r.status()),
        Err(e) => eprintln!("push to {url}: {e}"),
    }
}

/// Answers the jobs in order: every forward confirmed, then the
/// `StandardRetur`. A forward the broker refuses ends the session: its
/// message is not answered, and the publisher sends it again.
async fn answer(
    channel: Channel,
    mut queue: tokio::sync::mpsc::Receiver<Job>,
    delay_reply_ms: u64,
) -> anyhow::Result<()> {
    while let Some(job) = queue.recv().await {
        // The jobs already here are answered together (one at a time when
        // replies are delayed).
        let mut group = vec![job];
        while delay_reply_ms == 0 && group.len() < 256 {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        for job in &mut group {
            for confirm in std::mem::take(&mut job.confirms) {
                let confirmation = confirm.await.context("a forward was not confirmed")?;
                anyhow::ensure!(
                    !confirmation.is_nack(),
                    "the broker refused to hold a forward (nack)"
                );
            }
        }
        if delay_reply_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_reply_ms)).await;
        }
        let replies: Vec<(String, BasicProperties, Vec<u8>)> = group
            .iter()
            .filter(|job| !job.drop_reply)
            .filter_map(|job| {
                let reply_to = job.reply_to.clone()?;
                let mut p = BasicProperties::default();
                if let Some(c) = &job.correlation {
                    p = p.with_correlation_id(c.as_str().into());
                }
                Some((
                    reply_to,
                    p,
                    besked::standard_retur(job.code, &job.text).into_bytes(),
                ))
            })
            .collect();
        let sends = replies
            .iter()
            .map(|(reply_to, p, body)| {
                Box::pin(channel.basic_publish(
                    "".into(),
                    reply_to.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    p.clone(),
                ))
            })
            .collect();
        crate::rt::in_order(sends).await?;
    }
    Ok(())
}

/// The answer to message `n`: (StatusKode, FejlbeskedTekst, the envelope
/// to route if it is accepted).
fn check(
    opts: &Options,
    n: u64,
    body: &[u8],
    props: &BasicProperties,
) -> (u32, String, Option<besked::EnvelopeInfo>) {
    if opts.answer_41_every > 0 && n.is_multiple_of(opts.answer_41_every) {
        return (besked::TOKEN_EXPIRED, "token udloebet".into(), None);
    }
    if opts.error_every > 0 && n.is_multiple_of(opts.error_every) {
        return (
            opts.error_code,
            format!("injected error {}", opts.error_code),
            None,
        );
    }
    let token = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("token").cloned())
        .and_then(|v| match v {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            _ => None,
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return (40, "the token header is missing".into(), None);
    };
    let claims = match &opts.token_key {
        None => None,
        Some(key) => match crate::sim::sts::verify(key, &token) {
            Ok(c) => Some(c),
            Err(crate::sim::sts::TokenError::Expired(_)) => {
                return (besked::TOKEN_EXPIRED, "token udloebet".into(), None);
            }
            Err(e) => return (40, format!("the token is refused: {e}"), None),
        },
    };
    let info = match besked::inspect(body) {
        Ok(i) => i,
        Err(e) => return (40, format!("invalid Haendelsesbesked: {e}"), None),
    };
    if let Some(c) = claims {
        let want = format!("urn:oio:cvr-nr:{}", c.cvr);
        if info.objekt_ansvarlig_myndighed.as_deref() != Some(want.as_str()) {
            return (
                40,
                format!(
                    "ObjektAnsvarligMyndighed {} is not the token's authority {want}",
                    info.objekt_ansvarlig_myndighed
                        .as_deref()
                        .unwrap_or("(missing)")
                ),
                None,
            );
        }
    }
    if let Err(e) = info.validate() {
        return (40, format!("invalid Haendelsesbesked: {e}"), None);
    }
    let message_id = props.message_id().as_ref().map(|m| m.to_string());
    if message_id != info.besked_id {
        return (40, "message_id is not the BeskedId".into(), None);
    }
    (besked::OK, String::new(), Some(info))
}

/// Consumes `queue` until it stays empty for `idle`, acking every message,
/// and returns the `BeskedId`s in arrival order (duplicates kept).
pub fn drain(amqp: &str, queue: &str, idle: Duration) -> anyhow::Result<Vec<String>> {
    let runtime = crate::rt::runtime()?;
    runtime.block_on(async {
        let (_connection, channel) = open(amqp).await?;
        declare_dueslag(&channel, queue).await?;
        channel.basic_qos(1000, BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "drain".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut ids = Vec::new();
        while let Ok(Some(delivery)) = tokio::time::timeout(idle, consumer.next()).await {
            let delivery = delivery?;
            let id = besked::inspect(&delivery.data)
                .ok()
                .and_then(|i| i.besked_id)
                .unwrap_or_else(|| "invalid".into());
            ids.push(id);
            delivery.ack(BasicAckOptions::default()).await?;
        }
        Ok(ids)
    })
}

/// What [`load`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub messages: usize,
    /// Answered StatusKode 20.
    pub accepted: usize,
    /// Answered any other code.
    pub refused: usize,
    pub seconds: f64,
}

/// The emulator's rate alone: sends every envelope of the outbox under
/// `state` (at most `limit`) at once, all in flight, and waits for every
/// answer. No cursors, no resends: what it measures is how fast the
/// emulator (and the broker under it) answers.
pub fn load(
    state: &std::path::Path,
    cfg: &crate::beskedfordeler::BeskedfordelerConfig,
    limit: Option<usize>,
) -> anyhow::Result<LoadReport> {
    let mut bodies = Vec::new();
    'batches: for path in crate::store::outbox::list(state)? {
        let (_, envelopes) = crate::store::outbox::open(&path)?;
        for e in envelopes {
            if limit.is_some_and(|l| bodies.len() >= l) {
                break 'batches;
            }
            bodies.push(e?);
        }
    }
    anyhow::ensure!(
        !bodies.is_empty(),
        "the outbox under {} is empty",
        state.display()
    );
    let (ids, bodies): (Vec<String>, Vec<Vec<u8>>) = bodies
        .into_iter()
        .map(|r: crate::store::outbox::Record| (r.besked_id.to_string(), r.envelope))
        .unzip();
    let token = match &cfg.tokens {
        crate::beskedfordeler::sts::TokenSource::Static(t) => t.expose().to_owned(),
        _ => "load-test".to_owned(),
    };
    let runtime = crate::rt::runtime()?;
    runtime.block_on(async {
        let (_connection, channel) = crate::beskedfordeler::publish::connect(cfg, &token).await?;
        let mut replies = channel
            .basic_consume(
                crate::beskedfordeler::publish::REPLY_TO.into(),
                "load".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let n = ids.len();
        let started = std::time::Instant::now();
        let sender = {
            let channel = channel.clone();
            let cfg = cfg.clone();
            tokio::spawn(async move {
                for (i, (body, id)) in bodies.iter().zip(&ids).enumerate() {
                    crate::beskedfordeler::publish::send(
                        &channel,
                        &cfg.exchange,
                        &token,
                        body,
                        id,
                        &i.to_string(),
                    )
                    .await?;
                }
                Ok::<_, lapin::Error>(bodies.len())
            })
        };
        let (mut accepted, mut refused) = (0, 0);
        while accepted + refused < n {
            let delivery = tokio::time::timeout(Duration::from_secs(30), replies.next())
                .await
                .context("no answer for 30 s: is the emulator running?")?
                .context("the reply consumer ended")??;
            match besked::parse_standard_retur(&delivery.data) {
                Ok((besked::OK, _)) => accepted += 1,
                _ => refused += 1,
            }
        }
        sender.await??;
        Ok(LoadReport {
            messages: n,
            accepted,
            refused,
            seconds: started.elapsed().as_secs_f64(),
        })
    })
}

//! The publisher's own AMQP 0-9-1 link to Beskedfordeler: one connection,
//! one channel, the direct reply-to consumer, and publishing. Frames are
//! read and written by the task that publishes, on amq-protocol's codec
//! (lapin's), with no I/O thread between: lapin hands every message to a
//! thread of its own (a frame list, a body copy, a wake-up and a promise
//! per message), which was the publisher's largest cost on a mass day.
//!
//! What it does: the connection handshake (SASL PLAIN from the URL, or
//! EXTERNAL carrying the token), heartbeats both ways, `Basic.Publish`
//! with the properties Beskedfordeler wants, and `Basic.Deliver` of the
//! replies. A `Connection.Close` or `Channel.Close` from the broker ends
//! the link with its reply text (the front door's refusals say why).
//! Everything read is buffered in the link, so a read cancelled by the
//! caller's timeout loses nothing.

use std::time::{Duration, Instant};

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use amq_protocol::uri::{AMQPUri, SASLMechanism};
use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::BeskedfordelerConfig;
use super::publish::{BrokerLink, Outgoing, REPLY_TO};

const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xCE;
const HEARTBEAT: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, FRAME_END];
/// The one channel.
const CHANNEL: u16 = 1;
/// The largest frame we ask for (RabbitMQ's default).
const FRAME_MAX: u32 = 128 * 1024;
/// The class of `Basic` content.
const BASIC: u16 = 60;
const CONTENT_TYPE: &str = "application/xml";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A reply being read: its correlation id, size and body so far.
struct Incoming {
    /// A `Basic.Deliver` (a reply); otherwise a `Basic.Return` to skip.
    reply: bool,
    correlation_id: Option<String>,
    size: Option<u64>,
    body: Vec<u8>,
}

/// One logged-in connection with its channel and reply consumer.
pub struct Link {
    io: Box<dyn Io>,
    /// Bytes read, not yet taken as frames: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    frame_max: u32,
    heartbeat: Option<Duration>,
    last_read: Instant,
    last_write: Instant,
    /// The `Basic.Publish` method frame: the same for every message.
    publish: Vec<u8>,
    incoming: Option<Incoming>,
    /// Unroutable messages returned so far (told once).
    returned: u64,
}

/// Connects and logs in: `amqps` (any scheme when `cfg.tls` is set)
/// trusts the configured CA alone and shows our client certificate.
pub async fn connect(cfg: &BeskedfordelerConfig, token: &str) -> anyhow::Result<Link> {
    let shown = crate::secret::redact_url(cfg.url.expose());
    let uri: AMQPUri = cfg
        .url
        .expose()
        .parse()
        .map_err(|e: String| anyhow::anyhow!("beskedfordeler.url {shown}: {e}"))?;
    let login = async {
        let tcp = tokio::net::TcpStream::connect((uri.authority.host.as_str(), uri.authority.port))
            .await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &cfg.tls {
            None => Box::new(tcp),
            Some((ca, cert, key)) => {
                let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
                    crate::tls::client_config(ca, cert, key)?,
                ));
                let name = rustls::pki_types::ServerName::try_from(uri.authority.host.clone())
                    .with_context(|| format!("{} is not a host name", uri.authority.host))?;
                Box::new(tls.connect(name, tcp).await?)
            }
        };
        Link::login(io, &uri, &cfg.exchange, token).await
    };
    login
        .await
        .with_context(|| format!("cannot connect to Beskedfordeler at {shown}"))
}

impl Link {
    /// A link over `io`, before anything is said.
    fn over(io: Box<dyn Io>) -> Link {
        let now = Instant::now();
        Link {
            io,
            rbuf: Vec::with_capacity(64 * 1024),
            rpos: 0,
            wbuf: Vec::new(),
            frame_max: FRAME_MAX,
            heartbeat: None,
            last_read: now,
            last_write: now,
            publish: Vec::new(),
            incoming: None,
            returned: 0,
        }
    }

    async fn login(
        io: Box<dyn Io>,
        uri: &AMQPUri,
        exchange: &str,
        token: &str,
    ) -> anyhow::Result<Link> {
        let mut link = Link::over(io);
        link.io.write_all(PROTOCOL_HEADER).await?;
        link.io.flush().await?;
        let (mechanism, response) = if uri.query.auth_mechanism == Some(SASLMechanism::External) {
            ("EXTERNAL", token.as_bytes().to_vec())
        } else {
            let u = &uri.authority.userinfo;
            let mut r = vec![0];
            r.extend_from_slice(u.username.as_bytes());
            r.push(0);
            r.extend_from_slice(u.password.as_bytes());
            ("PLAIN", r)
        };
        let start = match link.handshake_method().await? {
            connection::AMQPMethod::Start(s) => s,
            other => anyhow::bail!("the broker began with {other:?}, not Connection.Start"),
        };
        let offered = String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned();
        anyhow::ensure!(
            offered.split_whitespace().any(|m| m == mechanism),
            "the broker does not offer SASL {mechanism} (it offers {offered})"
        );
        let mut capabilities = FieldTable::default();
        for c in ["consumer_cancel_notify", "connection.blocked"] {
            capabilities.insert(c.into(), AMQPValue::Boolean(true));
        }
        let mut client = FieldTable::default();
        client.insert(
            "product".into(),
            AMQPValue::LongString("nemsms-diff".into()),
        );
        client.insert(
            "version".into(),
            AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
        );
        client.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
        link.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: client,
                mechanism: mechanism.into(),
                response: LongString::from(response),
                locale: "en_US".into(),
            })),
        )
        .await?;
        let tune = match link.handshake_method().await? {
            connection::AMQPMethod::Tune(t) => t,
            connection::AMQPMethod::Secure(_) => {
                anyhow::bail!("the broker asked for a SASL challenge, which {mechanism} has not")
            }
            other => anyhow::bail!("the broker answered the login with {other:?}"),
        };
        // Each side's limit, the smaller where both have one (0: none).
        let least = |ours: u32, theirs: u32| match (ours, theirs) {
            (0, t) => t,
            (o, 0) => o,
            (o, t) => o.min(t),
        };
        let frame_max = least(uri.query.frame_max.unwrap_or(FRAME_MAX), tune.frame_max);
        let frame_max = if frame_max == 0 { FRAME_MAX } else { frame_max };
        anyhow::ensure!(
            frame_max >= 4096,
            "the broker's frame_max {frame_max} is too small"
        );
        let heartbeat = least(
            u32::from(uri.query.heartbeat.unwrap_or(tune.heartbeat)),
            u32::from(tune.heartbeat),
        ) as u16;
        link.frame_max = frame_max;
        link.heartbeat = (heartbeat > 0).then(|| Duration::from_secs(heartbeat.into()));
        // The rest goes in one write, without waiting for each answer (the
        // broker takes the methods in order): two round trips fewer per
        // connection, which a broker across a WAN feels.
        let mut rest = Vec::new();
        for m in [
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max,
                heartbeat,
            })),
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: uri.vhost.as_str().into(),
            })),
        ] {
            rest.extend(encode(&AMQPFrame::Method(0, m))?);
        }
        for m in [
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: REPLY_TO.into(),
                consumer_tag: format!("nemsms-diff-{}", uuid::Uuid::new_v4()).into(),
                no_local: false,
                no_ack: true,
                exclusive: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        ] {
            rest.extend(encode(&AMQPFrame::Method(CHANNEL, m))?);
        }
        link.write(&rest).await?;
        match link.handshake_method().await? {
            connection::AMQPMethod::OpenOk(_) => {}
            other => anyhow::bail!("the broker answered Connection.Open with {other:?}"),
        }
        link.await_method(CHANNEL, |m| {
            matches!(m, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
        })
        .await
        .context("cannot open a channel")?;
        link.await_method(CHANNEL, |m| {
            matches!(m, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)))
        })
        .await
        .context("cannot consume direct replies")?;
        link.publish = encode(&AMQPFrame::Method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: exchange.into(),
                routing_key: ShortString::from(""),
                mandatory: true,
                immediate: false,
            })),
        ))?;
        Ok(link)
    }

    /// The next method on channel 0 during the handshake; a
    /// `Connection.Close` is the broker's refusal, with its reason.
    async fn handshake_method(&mut self) -> anyhow::Result<connection::AMQPMethod> {
        loop {
            match self.frame().await? {
                None => anyhow::bail!("the broker closed the connection during the login"),
                Some(AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Close(c)),
                )) => {
                    return Err(self.closed_by_broker(&c).await);
                }
                Some(AMQPFrame::Method(0, AMQPClass::Connection(m))) => return Ok(m),
                Some(_) => {}
            }
        }
    }

    /// Waits for the method `wanted` on `channel`; a close on the way is
    /// an error with the broker's reason.
    async fn await_method(
        &mut self,
        channel: u16,
        wanted: impl Fn(&AMQPClass) -> bool,
    ) -> anyhow::Result<()> {
        loop {
            match self.frame().await? {
                None => anyhow::bail!("the broker closed the connection"),
                Some(AMQPFrame::Method(c, m)) if c == channel && wanted(&m) => return Ok(()),
                Some(AMQPFrame::Method(_, m)) => {
                    if let Some(e) = self.closing(&m).await {
                        return Err(e);
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// The error of a close from the broker (answered with its close-ok);
    /// `None`: not a close.
    async fn closing(&mut self, m: &AMQPClass) -> Option<anyhow::Error> {
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                Some(self.closed_by_broker(c).await)
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(c)) => {
                let _ = self
                    .send_method(
                        CHANNEL,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    )
                    .await;
                Some(anyhow::anyhow!(
                    "the broker closed the channel: {} {}",
                    c.reply_code,
                    c.reply_text.as_str()
                ))
            }
            AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) => {
                Some(anyhow::anyhow!("the broker cancelled the reply consumer"))
            }
            _ => None,
        }
    }

    async fn closed_by_broker(&mut self, c: &connection::Close) -> anyhow::Error {
        let _ = self
            .send_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
            )
            .await;
        anyhow::anyhow!(
            "the broker closed the connection: {} {}",
            c.reply_code,
            c.reply_text.as_str()
        )
    }

    async fn send_method(&mut self, channel: u16, m: AMQPClass) -> anyhow::Result<()> {
        let bytes = encode(&AMQPFrame::Method(channel, m))?;
        self.write(&bytes).await
    }

    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        self.last_write = Instant::now();
        Ok(())
    }

    /// A whole frame from what is buffered, if there is one.
    fn buffered_frame(&mut self) -> anyhow::Result<Option<AMQPFrame>> {
        let buf = &self.rbuf[self.rpos..];
        if buf.len() < 7 {
            return Ok(None);
        }
        let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
        anyhow::ensure!(
            size <= self.frame_max.max(FRAME_MAX),
            "the broker sent a frame of {size} bytes, above frame_max {}",
            self.frame_max
        );
        let whole = 8 + size as usize;
        if buf.len() < whole {
            return Ok(None);
        }
        let frame = parse_frame(&buf[..whole])
            .map(|(_, f)| f)
            .map_err(|e| anyhow::anyhow!("the broker sent a malformed frame: {e}"))?;
        self.rpos += whole;
        Ok(Some(frame))
    }

    /// The next frame (heartbeats sent and checked while waiting); `None`:
    /// the connection ended. Cancel safe: what was read stays buffered.
    async fn frame(&mut self) -> anyhow::Result<Option<AMQPFrame>> {
        loop {
            if let Some(f) = self.buffered_frame()? {
                return Ok(Some(f));
            }
            if self.rpos > 0 {
                self.rbuf.drain(..self.rpos);
                self.rpos = 0;
            }
            self.rbuf.reserve(64 * 1024);
            let n = match self.heartbeat {
                None => self.io.read_buf(&mut self.rbuf).await?,
                Some(h) => {
                    let due = tokio::time::Instant::from_std(self.last_write + h / 2);
                    match tokio::time::timeout_at(due, self.io.read_buf(&mut self.rbuf)).await {
                        Ok(n) => n?,
                        Err(_) => {
                            anyhow::ensure!(
                                self.last_read.elapsed() < 2 * h,
                                "the broker missed its heartbeats ({} s without a frame)",
                                self.last_read.elapsed().as_secs()
                            );
                            self.write(&HEARTBEAT).await?;
                            continue;
                        }
                    }
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.last_read = Instant::now();
        }
    }
}

impl BrokerLink for Link {
    /// Publishes `msgs` in order, in one write.
    async fn send_all(&mut self, token: &str, msgs: &[Outgoing<'_>]) -> anyhow::Result<()> {
        let mut out = std::mem::take(&mut self.wbuf);
        out.clear();
        for m in msgs {
            out.extend_from_slice(&self.publish);
            content_header(&mut out, m, token)?;
            for chunk in m.body.chunks(self.frame_max as usize - 8) {
                out.push(FRAME_BODY);
                out.extend_from_slice(&CHANNEL.to_be_bytes());
                out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                out.extend_from_slice(chunk);
                out.push(FRAME_END);
            }
        }
        let written = self.write(&out).await;
        self.wbuf = out;
        if let Err(e) = written {
            // The broker may have said why before it hung up (the front
            // door's refusals do).
            let why = tokio::time::timeout(Duration::from_millis(300), async {
                while let Ok(Some(f)) = self.frame().await {
                    if let AMQPFrame::Method(_, m) = f
                        && let Some(e) = self.closing(&m).await
                    {
                        return Some(e);
                    }
                }
                None
            })
            .await;
            return Err(match why {
                Ok(Some(why)) => why,
                _ => e.context("cannot send"),
            });
        }
        Ok(())
    }

    /// The next reply: its correlation id and body. `None`: the connection
    /// ended. Cancel safe.
    async fn next_reply(&mut self) -> Option<anyhow::Result<(Option<String>, Vec<u8>)>> {
        loop {
            let frame = match self.frame().await {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            match frame {
                AMQPFrame::Method(CHANNEL, AMQPClass::Basic(basic::AMQPMethod::Deliver(_))) => {
                    self.incoming = Some(Incoming::new(true));
                }
                AMQPFrame::Method(CHANNEL, AMQPClass::Basic(basic::AMQPMethod::Return(r))) => {
                    if self.returned == 0 {
                        tracing::warn!(
                            reply_code = r.reply_code,
                            reason = r.reply_text.as_str(),
                            exchange = r.exchange.as_str(),
                            "the broker returned a message it could not route (it is sent again)"
                        );
                    }
                    self.returned += 1;
                    self.incoming = Some(Incoming::new(false));
                }
                AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Blocked(b))) => {
                    tracing::warn!(reason = b.reason.as_str(), "the broker blocked publishing");
                }
                AMQPFrame::Method(
                    _,
                    AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)),
                ) => {
                    tracing::info!("the broker unblocked publishing");
                }
                AMQPFrame::Method(_, m) => {
                    if let Some(e) = self.closing(&m).await {
                        return Some(Err(e));
                    }
                }
                AMQPFrame::Header(CHANNEL, h) => {
                    if let Some(i) = &mut self.incoming {
                        i.correlation_id = h
                            .properties
                            .correlation_id()
                            .as_ref()
                            .map(|c| c.to_string());
                        i.size = Some(h.body_size);
                    }
                }
                AMQPFrame::Body(CHANNEL, data) => {
                    if let Some(i) = &mut self.incoming {
                        i.body.extend_from_slice(&data);
                    }
                }
                _ => {}
            }
            if self
                .incoming
                .as_ref()
                .is_some_and(|i| i.size.is_some_and(|s| i.body.len() as u64 >= s))
            {
                let i = self.incoming.take().expect("checked");
                if i.reply {
                    return Some(Ok((i.correlation_id, i.body)));
                }
            }
        }
    }

    /// Closes the connection politely (the broker logs no "unexpectedly
    /// closed"), waiting a moment for its close-ok.
    async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            self.send_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: 200,
                    reply_text: "done".into(),
                    class_id: 0,
                    method_id: 0,
                })),
            )
            .await?;
            while let Some(f) = self.frame().await? {
                if matches!(
                    f,
                    AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))
                ) {
                    break;
                }
            }
            anyhow::Ok(())
        })
        .await;
    }
}

impl Incoming {
    fn new(reply: bool) -> Incoming {
        Incoming {
            reply,
            correlation_id: None,
            size: None,
            body: Vec::new(),
        }
    }
}

fn encode(frame: &AMQPFrame) -> anyhow::Result<Vec<u8>> {
    let ctx = gen_frame(frame)(WriteContext::from(Vec::new()))
        .map_err(|e| anyhow::anyhow!("cannot encode {frame}: {e:?}"))?;
    Ok(ctx.write)
}

fn short(out: &mut Vec<u8>, s: &str, what: &str) -> anyhow::Result<()> {
    let n = u8::try_from(s.len())
        .map_err(|_| anyhow::anyhow!("{what} is {} bytes, above AMQP's 255", s.len()))?;
    out.push(n);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A message's content header frame, written directly (per message, so
/// not through a property struct and a field table): content type,
/// headers {token}, correlation id, reply-to and message id, in the
/// order of their flag bits.
fn content_header(out: &mut Vec<u8>, m: &Outgoing<'_>, token: &str) -> anyhow::Result<()> {
    const CONTENT_TYPE_FLAG: u16 = 1 << 15;
    const HEADERS_FLAG: u16 = 1 << 13;
    const CORRELATION_ID_FLAG: u16 = 1 << 10;
    const REPLY_TO_FLAG: u16 = 1 << 9;
    const MESSAGE_ID_FLAG: u16 = 1 << 7;
    let start = out.len();
    out.push(FRAME_HEADER);
    out.extend_from_slice(&CHANNEL.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // the size, below
    out.extend_from_slice(&BASIC.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // weight
    out.extend_from_slice(&(m.body.len() as u64).to_be_bytes());
    out.extend_from_slice(
        &(CONTENT_TYPE_FLAG | HEADERS_FLAG | CORRELATION_ID_FLAG | REPLY_TO_FLAG | MESSAGE_ID_FLAG)
            .to_be_bytes(),
    );
    short(out, CONTENT_TYPE, "content_type")?;
    let table = 1 + "token".len() + 1 + 4 + token.len();
    out.extend_from_slice(&(table as u32).to_be_bytes());
    short(out, "token", "the header name")?;
    out.push(b'S');
    out.extend_from_slice(&(token.len() as u32).to_be_bytes());
    out.extend_from_slice(token.as_bytes());
    short(out, m.correlation_id, "correlation_id")?;
    short(out, REPLY_TO, "reply_to")?;
    short(out, m.message_id, "message_id")?;
    let size = out.len() - start - 7;
    out[start + 3..start + 7].copy_from_slice(&(size as u32).to_be_bytes());
    out.push(FRAME_END);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::AMQPContentHeader;

    #[test]
    fn the_content_header_is_the_one_amq_protocol_writes() {
        let m = Outgoing {
            body: b"<Haendelsesbesked/>",
            message_id: "6f1c3a1e-0000-4000-8000-000000000001",
            correlation_id: "0b7e51c2-0000-4000-8000-00000000002a",
        };
        let token = "PHNhbWw6QXNzZXJ0aW9uLz4=";
        let mut ours = Vec::new();
        content_header(&mut ours, &m, token).unwrap();
        let mut headers = FieldTable::default();
        headers.insert("token".into(), AMQPValue::LongString(token.into()));
        let properties = basic::AMQPProperties::default()
            .with_message_id(m.message_id.into())
            .with_correlation_id(m.correlation_id.into())
            .with_reply_to(REPLY_TO.into())
            .with_content_type(CONTENT_TYPE.into())
            .with_headers(headers);
        let theirs = encode(&AMQPFrame::Header(
            CHANNEL,
            AMQPContentHeader {
                class_id: BASIC,
                body_size: m.body.len() as u64,
                properties,
            },
        ))
        .unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_frame_is_taken_only_once_it_is_whole_wherever_the_reads_end() {
        let frames = [
            encode(&AMQPFrame::Method(
                CHANNEL,
                AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                    consumer_tag: "c".into(),
                    delivery_tag: 7,
                    redelivered: false,
                    exchange: "".into(),
                    routing_key: "amq.rabbitmq.reply-to.x".into(),
                })),
            ))
            .unwrap(),
            HEARTBEAT.to_vec(),
            encode(&AMQPFrame::Body(CHANNEL, b"<StandardRetur/>".to_vec())).unwrap(),
        ];
        let all = frames.concat();
        for cut in 0..=all.len() {
            let mut link = Link::over(Box::new(tokio::io::duplex(64).0));
            link.rbuf = all[..cut].to_vec();
            let mut taken = 0;
            while let Some(f) = link.buffered_frame().unwrap() {
                assert_eq!(encode(&f).unwrap(), frames[taken]);
                taken += 1;
            }
            let whole: usize = frames
                .iter()
                .scan(0, |end, f| {
                    *end += f.len();
                    Some(*end)
                })
                .take_while(|end| *end <= cut)
                .count();
            assert_eq!(taken, whole, "cut at {cut}");
            assert_eq!(
                link.rpos,
                frames[..taken].iter().map(Vec::len).sum::<usize>()
            );
        }
    }

    fn method(channel: u16, m: AMQPClass) -> Vec<u8> {
        encode(&AMQPFrame::Method(channel, m)).unwrap()
    }

    /// A broker over `io` as far as the end of the handshake (what the
    /// client pipelines is read back as it is sent); its Tune proposes
    /// `heartbeat`. Gives the server's side, reading frames as a link does.
    async fn broker_until_ready(io: tokio::io::DuplexStream, heartbeat: u16) -> Link {
        let mut server = Link::over(Box::new(io));
        let mut header = [0u8; 8];
        server.io.read_exact(&mut header).await.unwrap();
        assert_eq!(&header, PROTOCOL_HEADER);
        let start = connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::default(),
            mechanisms: "PLAIN AMQPLAIN".into(),
            locales: "en_US".into(),
        };
        server
            .write(&method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Start(start)),
            ))
            .await
            .unwrap();
        let Some(AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)))) =
            server.frame().await.unwrap()
        else {
            panic!("no Start-Ok")
        };
        assert_eq!(ok.mechanism.as_str(), "PLAIN");
        assert_eq!(ok.response.as_bytes(), b"\0guest\0secret");
        let tune = connection::Tune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat,
        };
        server
            .write(&method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Tune(tune)),
            ))
            .await
            .unwrap();
        let mut said = Vec::new();
        for _ in 0..4 {
            match server.frame().await.unwrap() {
                Some(AMQPFrame::Method(_, m)) => said.push(m),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            said[..],
            [
                AMQPClass::Connection(connection::AMQPMethod::TuneOk(_)),
                AMQPClass::Connection(connection::AMQPMethod::Open(_)),
                AMQPClass::Channel(channel::AMQPMethod::Open(_)),
                AMQPClass::Basic(basic::AMQPMethod::Consume(_)),
            ]
        ));
        let mut ready = method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
        );
        ready.extend(method(
            CHANNEL,
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
        ));
        ready.extend(method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                consumer_tag: "c".into(),
            })),
        ));
        server.write(&ready).await.unwrap();
        server
    }

    fn uri() -> AMQPUri {
        "amqp://guest:secret@127.0.0.1:5672/%2f".parse().unwrap()
    }

    #[test]
    fn replies_are_read_whole_returns_skipped_and_a_close_gives_its_reason() {
        crate::rt::runtime().unwrap().block_on(async {
            let (client_io, server_io) = tokio::io::duplex(1 << 16);
            let server = tokio::spawn(async move {
                let mut server = broker_until_ready(server_io, 0).await;
                let header = |cid: &str, size: u64| {
                    encode(&AMQPFrame::Header(
                        CHANNEL,
                        AMQPContentHeader {
                            class_id: BASIC,
                            body_size: size,
                            properties: basic::AMQPProperties::default()
                                .with_correlation_id(cid.into()),
                        },
                    ))
                    .unwrap()
                };
                let body = |b: &[u8]| encode(&AMQPFrame::Body(CHANNEL, b.to_vec())).unwrap();
                // A returned message (its content skipped), then a reply
                // in two body frames.
                let mut out = method(
                    CHANNEL,
                    AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                        reply_code: 312,
                        reply_text: "NO_ROUTE".into(),
                        exchange: "x".into(),
                        routing_key: "".into(),
                    })),
                );
                out.extend(header("returned", 3));
                out.extend(body(b"abc"));
                out.extend(method(
                    CHANNEL,
                    AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                        consumer_tag: "c".into(),
                        delivery_tag: 1,
                        redelivered: false,
                        exchange: "".into(),
                        routing_key: "r".into(),
                    })),
                ));
                out.extend(header("cid-1", 10));
                out.extend(body(b"<Sta"));
                out.extend(body(b"ndard>"));
                out.extend(method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                        reply_code: 403,
                        reply_text: "ACCESS_REFUSED - not the token of this login".into(),
                        class_id: 60,
                        method_id: 40,
                    })),
                ));
                server.write(&out).await.unwrap();
                // The client answers the close.
                loop {
                    match server.frame().await.unwrap() {
                        Some(AMQPFrame::Method(
                            0,
                            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                        )) => break true,
                        Some(_) => {}
                        None => break false,
                    }
                }
            });
            let mut link = Link::login(Box::new(client_io), &uri(), "x", "unused")
                .await
                .unwrap();
            let (cid, body) = link.next_reply().await.unwrap().unwrap();
            assert_eq!(cid.as_deref(), Some("cid-1"));
            assert_eq!(body, b"<Standard>");
            assert_eq!(link.returned, 1);
            let e = link.next_reply().await.unwrap().unwrap_err().to_string();
            assert!(
                e.contains("403 ACCESS_REFUSED - not the token of this login"),
                "{e}"
            );
            assert!(server.await.unwrap(), "Close-Ok sent");
        });
    }

    #[test]
    fn heartbeats_go_out_while_waiting_and_a_silent_broker_is_left() {
        crate::rt::runtime().unwrap().block_on(async {
            let (client_io, server_io) = tokio::io::duplex(1 << 16);
            let server = tokio::spawn(async move {
                let mut server = broker_until_ready(server_io, 1).await;
                // Silent from here; counts the client's heartbeats.
                let mut beats = 0;
                while let Ok(Some(f)) = server.frame().await {
                    if f == AMQPFrame::Heartbeat {
                        beats += 1;
                    }
                }
                beats
            });
            let mut link = Link::login(Box::new(client_io), &uri(), "x", "unused")
                .await
                .unwrap();
            assert_eq!(link.heartbeat, Some(Duration::from_secs(1)));
            let waited = Instant::now();
            let e = tokio::time::timeout(Duration::from_secs(10), link.next_reply())
                .await
                .expect("left within 10 s")
                .unwrap()
                .unwrap_err()
                .to_string();
            assert!(e.contains("missed its heartbeats"), "{e}");
            assert!(
                waited.elapsed() >= Duration::from_secs(2),
                "not before two beats"
            );
            drop(link);
            assert!(server.await.unwrap() >= 3, "a heartbeat every half second");
        });
    }
}

//! The emulator's AMQP front door: Beskedfordeler's login, for real.
//!
//! Publishers and pullers connect here, not to RabbitMQ. The door speaks
//! AMQP 0-9-1's connection handshake itself: it offers only SASL EXTERNAL,
//! takes the response as the token (the decoded SAML assertion) and checks
//! it against the STS simulator ([`crate::sim::sts::verify`]: signature,
//! expiry, and an audience that is Beskedfordeler's afsend or afhent
//! service). A refused login gets `Connection.Close` 403 ACCESS_REFUSED
//! with the reason. An accepted one is logged in to RabbitMQ with the
//! emulator's own credentials, its virtual host (`BF` for the client)
//! mapped to the broker's, and from then on every frame passes through,
//! with two checks on what the client sends:
//!
//! - `Basic.Publish` needs an afsend token, and the message's `token`
//!   header must be the token of the login (a connection belongs to one
//!   authority's token);
//! - `Basic.Consume` of a dueslag needs an afhent token (the direct
//!   reply-to pseudo queue is any publisher's).
//!
//! Either refusal closes the connection with 403 and the reason. The
//! answerer behind the exchange then checks each message's token again,
//! answering 41 once it has expired and refusing a message whose
//! `ObjektAnsvarligMyndighed` is not the token's CVR.

use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_END: u8 = 0xCE;
/// Largest frame accepted from a client.
const MAX_FRAME: u32 = 4 << 20;
const ACCESS_REFUSED: u16 = 403;

/// How the door checks logins and reaches the broker.
#[derive(Debug, Clone)]
pub struct DoorOptions {
    /// The broker behind, with the emulator's credentials.
    pub upstream: String,
    /// The STS simulator's signing key.
    pub signing_key: [u8; 32],
    /// Beskedfordeler's entity ids: tokens for sending and for pulling.
    pub afsend_entity_id: String,
    pub afhent_entity_id: String,
}

/// Serves the door on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, opts: Arc<DoorOptions>) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let opts = opts.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(client, &opts).await {
                eprintln!("beskedfordeler front door: {peer}: {e:#}");
            }
        });
    }
}

/// One frame: type, channel, payload.
struct Frame {
    kind: u8,
    channel: u16,
    payload: Vec<u8>,
}

impl Frame {
    fn method(channel: u16, class: u16, method: u16, args: &[u8]) -> Frame {
        let mut payload = Vec::with_capacity(4 + args.len());
        payload.extend_from_slice(&class.to_be_bytes());
        payload.extend_from_slice(&method.to_be_bytes());
        payload.extend_from_slice(args);
        Frame {
            kind: FRAME_METHOD,
            channel,
            payload,
        }
    }

    /// (class, method) of a method frame.
    fn ids(&self) -> Option<(u16, u16)> {
        (self.kind == FRAME_METHOD && self.payload.len() >= 4).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                u16::from_be_bytes([self.payload[2], self.payload[3]]),
            )
        })
    }
}

async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> anyhow::Result<Frame> {
    let mut head = [0u8; 7];
    r.read_exact(&mut head).await?;
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    anyhow::ensure!(size <= MAX_FRAME, "a frame of {size} bytes");
    let mut payload = vec![0u8; size as usize + 1];
    r.read_exact(&mut payload).await?;
    anyhow::ensure!(payload.pop() == Some(FRAME_END), "a frame without its end");
    Ok(Frame {
        kind: head[0],
        channel: u16::from_be_bytes([head[1], head[2]]),
        payload,
    })
}

async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    f: &Frame,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(f.payload.len() + 8);
    out.push(f.kind);
    out.extend_from_slice(&f.channel.to_be_bytes());
    out.extend_from_slice(&(f.payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&f.payload);
    out.push(FRAME_END);
    w.write_all(&out).await
}

/// A cursor over a method's arguments.
struct Args<'a>(&'a [u8]);

impl<'a> Args<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        anyhow::ensure!(self.0.len() >= n, "a truncated method");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> anyhow::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> anyhow::Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> anyhow::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn short(&mut self) -> anyhow::Result<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn long(&mut self) -> anyhow::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A field table, raw (with its length).
    fn table(&mut self) -> anyhow::Result<&'a [u8]> {
        let whole = self.0;
        let n = self.u32()? as usize;
        self.take(n)?;
        Ok(&whole[..4 + n])
    }
    /// Skips one field value of type `t`.
    fn skip_value(&mut self, t: u8) -> anyhow::Result<()> {
        match t {
            b't' | b'b' | b'B' => self.take(1).map(drop),
            b'u' | b'U' | b's' => self.take(2).map(drop),
            b'i' | b'I' | b'f' => self.take(4).map(drop),
            b'l' | b'L' | b'd' | b'T' => self.take(8).map(drop),
            b'D' => self.take(5).map(drop),
            b'S' | b'x' | b'A' | b'F' => self.long().map(drop),
            b'V' => Ok(()),
            other => anyhow::bail!("an unknown field type {other}"),
        }
    }
}

fn short(s: &[u8]) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s);
    v
}

fn long(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// `Connection.Close` with a reply code and text.
fn close(code: u16, text: &str, class: u16, method: u16) -> Frame {
    let mut args = code.to_be_bytes().to_vec();
    let text: String = text.chars().take(250).collect();
    args.extend(short(text.as_bytes()));
    args.extend_from_slice(&class.to_be_bytes());
    args.extend_from_slice(&method.to_be_bytes());
    Frame::method(0, 10, 50, &args)
}

/// Refuses the client: 403 with the reason, then the connection ends.
async fn refuse<R, W>(
    reader: &mut R,
    client: &mut W,
    why: &str,
    class: u16,
    method: u16,
) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    write_frame(client, &close(ACCESS_REFUSED, why, class, method)).await?;
    client.flush().await?;
    await_close_ok(reader).await;
    anyhow::bail!("refused: {why}")
}

/// Reads (and drops) what the client still sends until its
/// `Connection.Close-Ok`, for at most two seconds: a socket closed with
/// unread input is reset, and a reset can destroy the reason in flight.
async fn await_close_ok<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Ok(f) = read_frame(reader).await {
            if f.ids() == Some((10, 51)) {
                break;
            }
        }
    })
    .await;
}

/// The `token` header of a content header frame's properties.
fn token_header(payload: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    let mut a = Args(payload);
    a.take(12)?; // class, weight, body size
    let flags = a.u16()?;
    if flags & 0x8000 != 0 {
        a.short()?; // content-type
    }
    if flags & 0x4000 != 0 {
        a.short()?; // content-encoding
    }
    if flags & 0x2000 == 0 {
        return Ok(None);
    }
    let table = a.table()?;
    let mut t = Args(&table[4..]);
    while !t.0.is_empty() {
        let name = t.short()?;
        let kind = t.u8()?;
        if name == b"token" && matches!(kind, b'S') {
            return Ok(Some(t.long()?.to_vec()));
        }
        t.skip_value(kind)?;
    }
    Ok(None)
}

async fn connection(client: TcpStream, opts: &DoorOptions) -> anyhow::Result<()> {
    let _ = client.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let mut client_read = BufReader::with_capacity(64 * 1024, client_read);
    let mut client_write = BufWriter::with_capacity(64 * 1024, client_write);
    let mut header = [0u8; 8];
    client_read.read_exact(&mut header).await?;
    if &header != PROTOCOL_HEADER {
        client_write.write_all(PROTOCOL_HEADER).await?;
        client_write.flush().await?;
        anyhow::bail!("not AMQP 0-9-1");
    }

    // The broker behind first: its Start's server properties go to the
    // client unchanged (its capabilities), with EXTERNAL as the one mechanism.
    let uri: lapin::uri::AMQPUri = opts
        .upstream
        .parse()
        .map_err(|e: String| anyhow::anyhow!("the broker URL: {e}"))?;
    let up = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port))
        .await
        .context("cannot reach the broker behind the door")?;
    let _ = up.set_nodelay(true);
    let (up_read, up_write) = up.into_split();
    let mut up_read = BufReader::with_capacity(64 * 1024, up_read);
    let mut up_write = BufWriter::with_capacity(64 * 1024, up_write);
    up_write.write_all(PROTOCOL_HEADER).await?;
    up_write.flush().await?;
    let start = read_frame(&mut up_read).await?;
    anyhow::ensure!(start.ids() == Some((10, 10)), "the broker did not start");
    let mut a = Args(&start.payload[4..]);
    a.take(2)?; // version
    let server_properties = a.table()?.to_vec();
    let mut args = vec![0u8, 9];
    args.extend_from_slice(&server_properties);
    args.extend(long(b"EXTERNAL"));
    args.extend(long(b"en_US"));
    write_frame(&mut client_write, &Frame::method(0, 10, 10, &args)).await?;
    client_write.flush().await?;

    // Start-Ok: the login.
    let start_ok = read_frame(&mut client_read).await?;
    anyhow::ensure!(
        start_ok.ids() == Some((10, 11)),
        "expected Connection.Start-Ok"
    );
    let mut a = Args(&start_ok.payload[4..]);
    let client_properties = a.table()?.to_vec();
    let mechanism = a.short()?.to_vec();
    let response = a.long()?.to_vec();
    if mechanism != b"EXTERNAL" {
        return refuse(
            &mut client_read,
            &mut client_write,
            "ACCESS_REFUSED - Beskedfordeler logs in with SASL EXTERNAL carrying the token",
            10,
            11,
        )
        .await;
    }
    let token = String::from_utf8_lossy(&response).into_owned();
    let claims = match crate::sim::sts::verify(&opts.signing_key, &token) {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                &mut client_read,
                &mut client_write,
                &format!("ACCESS_REFUSED - {e}"),
                10,
                11,
            )
            .await;
        }
    };
    let may_send = claims.audience == opts.afsend_entity_id;
    let may_pull = claims.audience == opts.afhent_entity_id;
    if !may_send && !may_pull {
        return refuse(
            &mut client_read,
            &mut client_write,
            &format!(
                "ACCESS_REFUSED - the token is for {}, not Beskedfordeler",
                claims.audience
            ),
            10,
            11,
        )
        .await;
    }

    // Log in to the broker with the emulator's own credentials.
    let mut args = client_properties;
    args.extend(short(b"PLAIN"));
    let mut plain = vec![0u8];
    plain.extend_from_slice(uri.authority.userinfo.username.as_bytes());
    plain.push(0);
    plain.extend_from_slice(uri.authority.userinfo.password.as_bytes());
    args.extend(long(&plain));
    args.extend(short(b"en_US"));
    write_frame(&mut up_write, &Frame::method(0, 10, 11, &args)).await?;
    up_write.flush().await?;

    // From here on one writer owns the client's side: the broker's frames
    // and, if it comes to that, the door's refusal, whole frames in order.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Frame>(1024);
    let writer = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if write_frame(&mut client_write, &f).await.is_err() {
                break;
            }
            if rx.is_empty() && client_write.flush().await.is_err() {
                break;
            }
        }
        let _ = client_write.flush().await;
        let _ = client_write.shutdown().await;
    });
    let up_tx = tx.clone();
    let mut reader = tokio::spawn(async move {
        while let Ok(f) = read_frame(&mut up_read).await {
            if up_tx.send(f).await.is_err() {
                break;
            }
        }
    });
    let result = tokio::select! {
        r = forward(
            &mut client_read,
            &mut up_write,
            &uri.vhost,
            token.as_bytes(),
            (may_send, may_pull),
            &tx,
        ) => r,
        // The broker closed: so does the door.
        _ = &mut reader => Ok(()),
    };
    reader.abort();
    drop(tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    result
}

/// The client's side, frame by frame: the virtual host mapped, publishes
/// and consumes checked against the login's token.
async fn forward<R, W>(
    client: &mut BufReader<R>,
    up: &mut BufWriter<W>,
    vhost: &str,
    token: &[u8],
    (may_send, may_pull): (bool, bool),
    to_client: &tokio::sync::mpsc::Sender<Frame>,
) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    // Channels whose next content header is a publish's.
    let mut publishing = std::collections::HashSet::new();
    loop {
        let mut frame = match read_frame(client).await {
            Ok(f) => f,
            Err(_) => {
                let _ = up.flush().await;
                return Ok(()); // the client went away
            }
        };
        let refusal = match frame.ids() {
            Some((10, 40)) => {
                // Connection.Open: the client's "BF" is the broker's vhost.
                let mut args = short(vhost.as_bytes());
                args.extend_from_slice(&[0, 0]);
                frame = Frame::method(0, 10, 40, &args);
                None
            }
            Some((60, 40)) if !may_send => Some((
                "ACCESS_REFUSED - a token for pulling (afhent) cannot send".to_owned(),
                60,
                40,
            )),
            Some((60, 40)) => {
                publishing.insert(frame.channel);
                None
            }
            Some((60, 20)) => {
                let mut a = Args(&frame.payload[4..]);
                a.u16()?;
                let queue = a.short()?;
                (!may_pull && queue != b"amq.rabbitmq.reply-to").then(|| {
                    (
                        "ACCESS_REFUSED - consuming a dueslag needs a token for pulling (afhent)"
                            .to_owned(),
                        60,
                        20,
                    )
                })
            }
            _ if frame.kind == FRAME_HEADER && publishing.remove(&frame.channel) => {
                match token_header(&frame.payload)? {
                    None => Some((
                        "ACCESS_REFUSED - the message has no token header".to_owned(),
                        60,
                        40,
                    )),
                    Some(t) if t != token => Some((
                        format!(
                            "ACCESS_REFUSED - the token header ({}) is not the token of this connection's login ({})",
                            crate::sim::sts::cvr_of(&String::from_utf8_lossy(&t))
                                .map_or("not a token".to_owned(), |c| format!("CVR {c}")),
                            crate::sim::sts::cvr_of(&String::from_utf8_lossy(token))
                                .map_or("?".to_owned(), |c| format!("CVR {c}")),
                        ),
                        60,
                        40,
                    )),
                    Some(_) => None,
                }
            }
            _ => None,
        };
        if let Some((why, class, method)) = refusal {
            // Nothing of the refused message reaches the broker.
            let _ = to_client
                .send(close(ACCESS_REFUSED, &why, class, method))
                .await;
            await_close_ok(client).await;
            anyhow::bail!("refused: {why}");
        }
        write_frame(up, &frame).await?;
        if client.buffer().is_empty() {
            up.flush().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_token_header_among_other_properties() {
        // class 60, weight 0, size 5, flags: content-type + headers
        let mut p = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0xA0, 0];
        p.extend(short(b"application/xml"));
        let mut table = Vec::new();
        table.extend(short(b"n"));
        table.push(b'I');
        table.extend_from_slice(&7u32.to_be_bytes());
        table.extend(short(b"token"));
        table.push(b'S');
        table.extend(long(b"<saml:Assertion/>"));
        p.extend(long(&table));
        assert_eq!(
            token_header(&p).unwrap().as_deref(),
            Some(&b"<saml:Assertion/>"[..])
        );
        let none = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0];
        assert_eq!(token_header(&none).unwrap(), None);
        assert!(token_header(&p[..20]).is_err());
    }
}

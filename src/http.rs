//! The one HTTP accept loop (hyper, HTTP/1.1), for the push receiver and
//! the lab's HTTPS servers: plain or TLS (with client certificates if the
//! TLS config asks for them), a cap on connections served at once, a
//! deadline for the TLS handshake and each request's headers, and a clean
//! stop on SIGTERM or SIGINT. It prints `WHAT listening on SCHEME://ADDR`
//! first, which tests and scripts wait for.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

/// How a server accepts connections.
#[derive(Clone)]
pub struct Accept {
    /// TLS; `None` speaks plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Time for the TLS handshake and for each request's headers.
    pub header_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Accept {
    /// Generous limits for test servers.
    pub fn lab(tls: Arc<rustls::ServerConfig>) -> Accept {
        Accept {
            tls: Some(tls),
            header_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// The certificate a TLS client showed (DER), put in every request's
/// extensions by [`serve`].
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Vec<u8>);

/// A response whose body is any body type.
pub type Resp = Response<BoxBody<Bytes, Infallible>>;

/// Serves `handler` on `listen` until SIGTERM or SIGINT.
pub async fn serve<F, Fut>(
    what: &str,
    listen: SocketAddr,
    accept: Accept,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Resp, Infallible>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let scheme = if accept.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("{what} listening on {scheme}://{addr}");
    std::io::stdout().flush()?;
    let acceptor = accept.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(tokio::sync::Semaphore::new(accept.max_connections));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (tcp, peer) = tokio::select! {
            c = listener.accept() => match c {
                Ok(c) => c,
                // Out of file descriptors and the like: keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, max_connections = accept.max_connections,
                "too many connections: closed");
            drop(tcp);
            continue;
        };
        let (acceptor, handler, timeout) =
            (acceptor.clone(), handler.clone(), accept.header_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => connection(tcp, handler, timeout).await,
                Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let peer = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| PeerCertificate(c.to_vec()));
                        let handler = move |mut req: Request<Incoming>| {
                            if let Some(p) = &peer {
                                req.extensions_mut().insert(p.clone());
                            }
                            handler(req)
                        };
                        connection(tls, handler, timeout).await
                    }
                    // e.g. no or an unknown client certificate
                    Ok(Err(e)) => tracing::warn!(peer = %peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::warn!(peer = %peer, "TLS handshake timed out"),
                },
            }
        });
    }
    eprintln!("{what} stopped");
    Ok(())
}

/// Serves one connection to its end.
async fn connection<IO, F, Fut>(io: IO, handler: F, header_timeout: Duration)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Resp, Infallible>> + Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(
            hyper_util::rt::TokioIo::new(io),
            hyper::service::service_fn(handler),
        )
        .await;
}

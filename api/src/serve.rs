//! The server loop behind [`crate::run`] and [`crate::tls::run_tls`]: one
//! task per connection on hyper, with the client's address handed to the
//! router (`ConnectInfo`, which the per-client limits key on) and bounded
//! time for a client to say what it wants:
//!
//! - a connection must send its first byte, and an HTTP/1 request its
//!   whole header block, within `header_read` (hyper's
//!   `header_read_timeout`), or it is closed: a slowloris client cannot
//!   hold a connection by trickling headers;
//! - a request body must arrive within `body_read` (enforced by the
//!   `observe` middleware, which reads bodies before handlers run).
//!
//! Once a request is read, answering it may take as long as it needs
//! (MCP event streams stay open).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

use crate::tls::ClientCertificate;

/// How long a client may take to send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTimeouts {
    /// First byte of a connection and the header block of each request.
    pub header_read: Duration,
    /// The TLS handshake.
    pub tls_handshake: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            tls_handshake: Duration::from_secs(10),
        }
    }
}

/// Which protocol a connection speaks, when the TLS handshake said (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Detect,
    Http1,
    Http2,
}

/// Accepts connections until `shutdown` resolves and hands each to
/// `handle` (on its own task) with the peer address and a graceful-shutdown
/// watcher; then waits up to 30 s for open connections.
pub(crate) async fn accept_loop<H, F>(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handle: H,
) -> std::io::Result<()>
where
    H: Fn(tokio::net::TcpStream, SocketAddr, Watcher) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        tokio::spawn(handle(stream, peer, graceful.watcher()));
    }
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open at shutdown; closing them");
    }
    Ok(())
}

/// Waits for a plain connection's first byte, within the header timeout.
pub(crate) async fn first_byte(stream: &tokio::net::TcpStream, t: &ServerTimeouts) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(t.header_read, stream.peek(&mut b)).await,
        Ok(Ok(n)) if n > 0
    )
}

/// Serves one connection with the router.
pub(crate) async fn connection<I>(
    io: I,
    peer: SocketAddr,
    client_cert: Option<ClientCertificate>,
    protocol: Protocol,
    router: Router,
    t: ServerTimeouts,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(c) = &client_cert {
                req.extensions_mut().insert(c.clone());
            }
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(t.header_read);
    builder.http2().timer(TokioTimer::new());
    let builder = match protocol {
        Protocol::Detect => builder,
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

//! Accept loop, connection limits and graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{ConnInfo, Handler, TlsAcceptor};

/// Resource limits of a listener. The defaults follow Cloudflare's documented limits where
/// there is one (32 KB of request headers) and h2's own recommendations otherwise.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client gets to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time an HTTP/1.1 client gets to send a complete request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Bytes of request head (HTTP/1.1 buffer, HTTP/2 header list); beyond it: 431.
    pub max_header_bytes: usize,
    /// Number of request header lines (HTTP/1.1); beyond it: 431.
    pub max_headers: usize,
    /// HTTP/2 streams open at once per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 streams reset by the client before being accepted (CVE-2023-44487, rapid reset).
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 streams this side had to reset because of client errors, before GOAWAY.
    pub h2_max_local_error_reset_streams: usize,
    /// How long in-flight requests may run after shutdown was signalled.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 128,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Rejects settings that would stop the listener from serving at all.
    pub fn validate(&self) -> anyhow::Result<()> {
        let zero_duration = [
            ("tls_handshake_timeout", self.tls_handshake_timeout),
            ("header_read_timeout", self.header_read_timeout),
        ]
        .into_iter()
        .find(|(_, d)| d.is_zero());
        if let Some((name, _)) = zero_duration {
            anyhow::bail!("limits: {name} must be longer than zero");
        }
        anyhow::ensure!(
            self.max_connections > 0,
            "limits: max_connections must be at least 1"
        );
        anyhow::ensure!(
            self.max_headers > 0,
            "limits: max_headers must be at least 1"
        );
        anyhow::ensure!(
            self.h2_max_concurrent_streams > 0,
            "limits: h2_max_concurrent_streams must be at least 1"
        );
        // hyper refuses HTTP/1.1 buffers below 8 KiB.
        anyhow::ensure!(
            (8192..=u32::MAX as usize).contains(&self.max_header_bytes),
            "limits: max_header_bytes must be between 8192 and {}",
            u32::MAX
        );
        Ok(())
    }
}

/// A future resolving on SIGTERM or SIGINT: what `serve`'s `shutdown` argument usually is.
///
/// The handlers are installed by this call, not on first poll, so a signal arriving while the
/// server is still starting is not lost.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and drains.
///
/// With `tls` every connection is TLS (ALPN picks HTTP/2 or HTTP/1.1); without, it is the plain
/// listener (HTTP/1.1, or HTTP/2 with prior knowledge). Returns once every connection has
/// finished or `limits.drain_timeout` has passed, whichever comes first; connections still open
/// at the deadline are closed. Invalid `limits` are refused before anything is served.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    limits.validate()?;
    let http = Arc::new(http_builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning, keep serving the rest.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let watcher = graceful.watcher();
        let (tls, handler, http) = (tls.clone(), handler.clone(), http.clone());
        let handshake_timeout = limits.tls_handshake_timeout;
        let accepted = handler.accepted();
        connections.spawn(async move {
            let _permit = permit;
            let _accepted = accepted;
            let _ = tcp.set_nodelay(true);
            let Ok(local) = tcp.local_addr() else { return };
            match tls {
                None => {
                    let conn = ConnInfo::new(peer, local, None);
                    serve_connection(tcp, conn, handler, &http, watcher).await;
                }
                Some(tls) => {
                    match tokio::time::timeout(handshake_timeout, tls.accept(tcp, peer, local))
                        .await
                    {
                        Ok(Ok((stream, info))) => {
                            let conn = ConnInfo::new(peer, local, Some(info));
                            serve_connection(stream, conn, handler, &http, watcher).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!(connections = graceful.count(), "draining");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "drain deadline passed, closing connections"
        );
    }
    connections.shutdown().await;
    Ok(())
}

async fn serve_connection<IO, H>(
    io: IO,
    conn: ConnInfo,
    handler: H,
    http: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let peer = conn.peer;
    let conn = Arc::new(conn);
    let service = service_fn(move |req| {
        let (handler, conn) = (handler.clone(), conn.clone());
        async move { Ok::<_, Infallible>(handler.handle(conn, req).await) }
    });
    let connection = http.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Duration::from_secs(20));
    builder
}

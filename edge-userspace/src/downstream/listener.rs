//! Accept loop, connection limits and graceful drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::control_frames::ControlFrames;
use super::http2::PREFACE as H2_PREFACE;
use super::rewind::Rewind;
use super::watchdog::{Activity, Closed, Registry};
use super::{ConnInfo, Handler, TlsAcceptor, http1, http2};
use crate::per_address::PerAddress;

/// Resource limits of a listener: the config file's `limits` section (every field optional,
/// durations in milliseconds). The defaults follow Cloudflare's documented limits where there is
/// one (32 KB of request headers) and h2's own recommendations otherwise; each bounds one of the
/// attacks the hostile-traffic suite (`tests/tests/hostile_*.rs`) runs.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once; when full, the connection idle longest is closed for a new
    /// one, and without an idle one new clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connections one client address may hold open at once; beyond it a new connection is
    /// closed at accept.
    pub max_connections_per_address: usize,
    /// Time a client gets to finish the TLS handshake.
    #[serde(
        rename = "tls_handshake_timeout_ms",
        deserialize_with = "crate::duration_ms::deserialize"
    )]
    pub tls_handshake_timeout: Duration,
    /// Time an HTTP/1.1 client gets to send a complete request head once it has started it
    /// (slowloris guard).
    #[serde(
        rename = "header_read_timeout_ms",
        deserialize_with = "crate::duration_ms::deserialize"
    )]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed: one that never sends a
    /// byte, a TLS connection silent after its handshake, an HTTP/2 connection that only
    /// answers PINGs, a keep-alive connection between requests.
    #[serde(
        rename = "idle_timeout_ms",
        deserialize_with = "crate::duration_ms::deserialize"
    )]
    pub idle_timeout: Duration,
    /// A response the client does not read for this long (it takes no byte of it: a full TCP
    /// window, an HTTP/2 stream window of zero) is dropped with its origin request: the
    /// HTTP/2 stream is reset, an HTTP/1.1 connection closed, the origin's slot freed.
    #[serde(
        rename = "write_timeout_ms",
        deserialize_with = "crate::duration_ms::deserialize"
    )]
    pub write_timeout: Duration,
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
    /// HTTP/2 SETTINGS and PING frames (not ACKs) a client may send in any 10 seconds; beyond
    /// it the connection is closed (SETTINGS / PING floods, see [`super::control_frames`]).
    pub h2_max_control_frames: u32,
    /// How long in-flight requests may run after shutdown was signalled.
    #[serde(
        rename = "drain_timeout_ms",
        deserialize_with = "crate::duration_ms::deserialize"
    )]
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            // 10,000 silent connections from one address filled a listener in 5 s; 256 keep
            // forty such addresses from doing it, while a proxy or NAT in front of many users
            // still opens plenty.
            max_connections_per_address: 256,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 128,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 1024,
            // A browser sends one SETTINGS and a few PINGs a minute.
            h2_max_control_frames: 1000,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Rejects settings that would stop the listener from serving at all.
    pub fn validate(&self) -> anyhow::Result<()> {
        let zero_duration = [
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout),
            ("header_read_timeout_ms", self.header_read_timeout),
            ("idle_timeout_ms", self.idle_timeout),
            ("write_timeout_ms", self.write_timeout),
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
            self.max_connections_per_address > 0,
            "limits: max_connections_per_address must be at least 1"
        );
        anyhow::ensure!(
            self.h2_max_control_frames > 0,
            "limits: h2_max_control_frames must be at least 1"
        );
        anyhow::ensure!(
            self.max_headers > 0,
            "limits: max_headers must be at least 1"
        );
        anyhow::ensure!(
            self.h2_max_concurrent_streams > 0,
            "limits: h2_max_concurrent_streams must be at least 1"
        );
        // A head must fit a request line and a few headers.
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
    let http = Arc::new(Protocols::new(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = PerAddress::new(limits.max_connections_per_address);
    let registry = Arc::new(Registry::default());
    // Turns true on shutdown: every connection finishes what it has in flight and closes.
    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
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
        let Some(address) = per_address.admit(peer.ip()) else {
            // Closed at once: the client sees its connection reset or closed.
            handler.closed(Closed::AddressCap);
            continue;
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Full: the connection idle longest makes room; with none idle, the new one
                // waits for any to end.
                registry.shed_idlest();
                tokio::select! {
                    _ = &mut shutdown => break,
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                }
            }
        };
        while connections.try_join_next().is_some() {}
        let watcher = draining.clone();
        let (tls, handler, http) = (tls.clone(), handler.clone(), http.clone());
        let activity = Activity::new(limits.idle_timeout, limits.write_timeout);
        let registered = registry.register(&activity);
        let (handshake_timeout, control_frames) =
            (limits.tls_handshake_timeout, limits.h2_max_control_frames);
        let accepted = handler.accepted();
        connections.spawn(async move {
            let _held = (permit, address, registered, accepted);
            let _ = tcp.set_nodelay(true);
            let Ok(local) = tcp.local_addr() else { return };
            let served = match tls {
                None => {
                    let conn = ConnInfo::new(peer, local, None);
                    let io = ControlFrames::new(tcp, control_frames);
                    serve_connection(io, conn, &handler, &http, watcher, &activity).await
                }
                Some(tls) => {
                    match tokio::time::timeout(handshake_timeout, tls.accept(tcp, peer, local))
                        .await
                    {
                        Ok(Ok((stream, info))) => {
                            let conn = ConnInfo::new(peer, local, Some(info));
                            let io = ControlFrames::new(stream, control_frames);
                            serve_connection(io, conn, &handler, &http, watcher, &activity).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            None
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            None
                        }
                    }
                }
            };
            if let Some(closed) = served {
                handler.closed(closed);
            }
        });
    }
    drop(listener);
    tracing::info!(connections = connections.len(), "draining");
    let _ = drain.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.drain_timeout, drained)
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

/// How connections are served: HTTP/1.1 by the edge's own server, HTTP/2 on `h2`.
struct Protocols {
    http1: http1::Settings,
    http2: h2::server::Builder,
}

impl Protocols {
    fn new(limits: &Limits) -> Self {
        Self {
            http1: http1::Settings {
                max_header_bytes: limits.max_header_bytes,
                max_headers: limits.max_headers,
                header_read_timeout: limits.header_read_timeout,
            },
            http2: http2::builder(limits),
        }
    }
}

/// Serves one connection until it ends or its [`Activity`] expires; says why the edge closed
/// it, if it did.
async fn serve_connection<IO, H>(
    io: IO,
    conn: ConnInfo,
    handler: &H,
    protocols: &Protocols,
    draining: watch::Receiver<bool>,
    activity: &Arc<Activity>,
) -> Option<Closed>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let peer = conn.peer;
    let served = serve_protocol(io, conn, handler, protocols, draining, activity);
    tokio::select! {
        ended = served => match ended {
            Ok(()) => None,
            Err(error) => {
                // Clients under attack end thousands of connections this way (rapid reset,
                // floods, refused heads): counted, not logged one line each.
                tracing::debug!(%peer, %error, "connection ended with an error");
                Some(Closed::ProtocolError)
            }
        },
        closed = activity.expired() => {
            tracing::debug!(%peer, why = closed.as_str(), "closing the connection");
            Some(closed)
        }
    }
}

/// HTTP/2 when ALPN chose it or the client starts with its preface; HTTP/1.1 otherwise.
async fn serve_protocol<IO, H>(
    mut io: IO,
    conn: ConnInfo,
    handler: &H,
    protocols: &Protocols,
    mut draining: watch::Receiver<bool>,
    activity: &Arc<Activity>,
) -> Result<(), crate::downstream::BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let alpn_h2 = conn
        .tls
        .as_ref()
        .and_then(|tls| tls.alpn.as_deref())
        .is_some_and(|alpn| alpn == b"h2");
    let conn = Arc::new(conn);
    let mut buf = BytesMut::new();
    if !alpn_h2 {
        // Read until the bytes stop matching the preface or are all of it.
        while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
            buf.reserve(H2_PREFACE.len());
            let read = tokio::select! {
                read = io.read_buf(&mut buf) => read?,
                _ = draining.wait_for(|draining| *draining) => return Ok(()),
            };
            if read == 0 {
                return Ok(());
            }
        }
        if !buf.starts_with(H2_PREFACE) {
            return http1::serve(io, buf, conn, handler, protocols.http1, activity, draining).await;
        }
    }
    let io = Rewind::new(io, buf.freeze());
    http2::serve(io, &protocols.http2, conn, handler, activity, draining)
        .await
        .map_err(Into::into)
}

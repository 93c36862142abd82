//! The QUIC endpoint: accept loop with stateless retry under load (`admission`), one task per
//! connection (handshake deadline, h3 control, GOAWAY on shutdown) and one per request stream
//! (header timeout, cancelled requests counted).

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{self, Poll, Waker};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use edge_common::quic::CONFIG_ID;
use h3::server::RequestResolver;
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use quinn::{
    Connecting, ConnectionId, Endpoint, EndpointConfig, IdleTimeout, Incoming, TokioRuntime,
    TransportConfig, VarInt, ZeroRttAccepted,
};
use rustls::ProtocolVersion;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::admission::{Admission, CancelBudget, InProgress, Initial, Verdict};
use super::body::{self, RequestBody};
use super::cid::{self, QuicLbGenerator};
use super::{ALPN, ConnectionIds, H3Handler, Settings, guard, tls};
use crate::downstream::{ConnInfo, Limits, TlsAcceptor, TlsInfo};
use crate::memory::Spike;

/// Methods served from 0-RTT early data. RFC 9110 defines them as safe (no state change), so a
/// replayed copy cannot do anything the original did not; everything else waits for the
/// handshake or gets 425 (RFC 8470).
pub const ZERO_RTT_SAFE_METHODS: &[Method] = &[Method::GET, Method::HEAD, Method::OPTIONS];

/// RFC 8470: tells the origin the request came in early data, so it can answer 425 itself.
const EARLY_DATA: HeaderName = HeaderName::from_static("early-data");
/// Silence after which a finished connection is taken to have received everything.
const LINGER_QUIET: Duration = Duration::from_secs(1);
/// H3_NO_ERROR: how a drained connection is closed.
const NO_ERROR: u32 = 0x100;
/// H3_EXCESSIVE_LOAD: how a connection past its budget of cancelled requests is closed.
const EXCESSIVE_LOAD: u32 = 0x107;
/// Bytes a client may send on one stream before the edge has read them (quinn's default is
/// 1.25 MB): bounds what quinn buffers for a stream whose reader is slow.
const STREAM_RECEIVE_WINDOW: u32 = 1 << 20;
/// The same for a whole connection (quinn's default: unbounded), so that many slow streams
/// together cannot take more.
const RECEIVE_WINDOW: u32 = 4 << 20;

/// The UDP socket of the HTTPS listener's address, bound but not yet served.
pub struct Listener {
    socket: UdpSocket,
    settings: Settings,
}

impl Listener {
    /// Binds UDP `addr` (the address and port the HTTPS listener got); `None` when HTTP/3 is
    /// switched off. Invalid settings are refused here, before anything listens.
    pub fn bind(settings: &Settings, addr: SocketAddr) -> Result<Option<Listener>> {
        if !settings.enabled {
            return Ok(None);
        }
        settings.validate()?;
        let socket = UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}"))?;
        Ok(Some(Listener {
            socket,
            settings: settings.clone(),
        }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves until `shutdown` resolves, then refuses new connections, sends GOAWAY on every
    /// connection and waits (at most `limits.drain_timeout`) for the requests in flight.
    pub async fn serve<H: H3Handler>(
        self,
        handler: H,
        tls: &TlsAcceptor,
        limits: &Limits,
        connection_ids: Option<Arc<dyn ConnectionIds>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        limits.validate()?;
        let settings = self.settings;
        let local = self.socket.local_addr()?;
        let endpoint = endpoint(self.socket, &settings, tls)?;
        let shared = Arc::new(Shared {
            handler,
            connection_ids,
            local,
            zero_rtt: settings.zero_rtt,
            max_field_section_size: limits.max_header_bytes as u64,
            handshake_timeout: settings.handshake_timeout(),
            header_timeout: settings.header_timeout(),
            max_cancelled_requests: settings.max_cancelled_requests,
            write_timeout: limits.write_timeout,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut admission = Admission::new(
            settings.retry_above_handshakes_per_second,
            settings.retry_above_handshakes_in_progress,
            limits.max_connections,
        );
        let mut connections = JoinSet::new();
        let mut spike = Spike::default();
        tokio::pin!(shutdown);
        loop {
            let incoming = tokio::select! {
                _ = &mut shutdown => break,
                // A finished task keeps its memory (the connection future's cell) until joined:
                // joined at once, what a burst of connections took is freed when they end.
                Some(_) = connections.join_next() => {
                    spike.observe(connections.len());
                    continue;
                }
                incoming = endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => break,
                },
            };
            while connections.try_join_next().is_some() {}
            let Some(admitted) = admit(incoming, &mut admission, connections.len()) else {
                continue;
            };
            connections.spawn(connection(shared.clone(), admitted, stop_rx.clone()));
            spike.observe(connections.len());
        }
        endpoint.set_server_config(None);
        let _ = stop_tx.send(true);
        tracing::info!(connections = connections.len(), "draining HTTP/3");
        let drained = tokio::time::timeout(limits.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!(
                remaining = connections.len(),
                "HTTP/3 drain deadline passed, closing connections"
            );
            connections.shutdown().await;
        }
        endpoint.close(VarInt::from_u32(NO_ERROR), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        Ok(())
    }
}

fn endpoint(socket: UdpSocket, settings: &Settings, tls: &TlsAcceptor) -> Result<Endpoint> {
    let crypto = tls::config(tls, settings.zero_rtt)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(settings.max_concurrent_streams))
        .max_idle_timeout(Some(IdleTimeout::try_from(settings.idle_timeout())?))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(RECEIVE_WINDOW));
    server.transport_config(Arc::new(transport));
    let mut config = EndpointConfig::default();
    let server_id = settings.server_id;
    config.cid_generator(move || Box::new(QuicLbGenerator::new(CONFIG_ID, server_id)));
    Ok(Endpoint::new(
        config,
        Some(server),
        socket,
        Arc::new(TokioRuntime),
    )?)
}

/// A connection admitted to its handshake: quinn's handle, the connection IDs it was given and
/// its place among the handshakes in progress.
struct Admitted {
    connecting: Connecting,
    cids: Vec<ConnectionId>,
    in_progress: InProgress,
}

/// Starts the handshake, answers with a Retry (see [`super::admission`]: a spoofed source then
/// costs one stateless packet instead of a connection's state and a certificate signature), or
/// refuses when every connection slot is taken.
fn admit(incoming: Incoming, admission: &mut Admission, open: usize) -> Option<Admitted> {
    let initial = Initial {
        validated: incoming.remote_address_validated(),
        may_retry: incoming.may_retry(),
    };
    match admission.decide(&initial, open) {
        Verdict::Accept => {}
        Verdict::Retry => {
            if let Err(error) = incoming.retry() {
                tracing::debug!(%error, "QUIC retry failed");
            }
            return None;
        }
        Verdict::Refuse => {
            incoming.refuse();
            return None;
        }
    }
    let (connecting, cids) = cid::capture(|| incoming.accept());
    match connecting {
        Ok(connecting) => Some(Admitted {
            connecting,
            cids,
            in_progress: admission.handshake(),
        }),
        Err(error) => {
            tracing::debug!(%error, "QUIC connection refused");
            None
        }
    }
}

/// Whether a connection's handshake has completed, i.e. whether its requests can still be
/// replays of 0-RTT data.
struct Handshake {
    complete: AtomicBool,
    /// Until completion (0-RTT on): quinn's signal that the handshake is over.
    pending: Mutex<Option<ZeroRttAccepted>>,
}

impl Handshake {
    fn complete() -> Self {
        Self {
            complete: AtomicBool::new(true),
            pending: Mutex::new(None),
        }
    }

    fn pending(accepted: ZeroRttAccepted) -> Self {
        Self {
            complete: AtomicBool::new(false),
            pending: Mutex::new(Some(accepted)),
        }
    }

    /// Checked when a request is read, not by a task of its own: quinn resolves the signal in
    /// the same step that processes the client's Finished, before the requests behind it are
    /// handed out, so a request after the handshake never races a flag still unset.
    ///
    /// On a server quinn resolves it (with `false`) both when the handshake completes and when
    /// the connection dies first; only a connection still open has completed it.
    fn is_complete(&self, conn: &quinn::Connection) -> bool {
        if self.complete.load(Ordering::Acquire) {
            return true;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(accepted) = pending.as_mut() else {
            return false;
        };
        let mut cx = task::Context::from_waker(Waker::noop());
        match Pin::new(accepted).poll(&mut cx) {
            Poll::Ready(_) => {
                *pending = None;
                let done = conn.close_reason().is_none();
                self.complete.store(done, Ordering::Release);
                done
            }
            Poll::Pending => false,
        }
    }
}

/// What every connection task of one endpoint shares.
struct Shared<H> {
    handler: H,
    connection_ids: Option<Arc<dyn ConnectionIds>>,
    local: SocketAddr,
    zero_rtt: bool,
    max_field_section_size: u64,
    handshake_timeout: Duration,
    header_timeout: Duration,
    max_cancelled_requests: u32,
    /// A response write the client takes nothing of for this long resets its stream.
    write_timeout: Duration,
}

async fn connection<H: H3Handler>(
    shared: Arc<Shared<H>>,
    admitted: Admitted,
    mut stop: watch::Receiver<bool>,
) {
    let _counted = shared.handler.accepted();
    let Admitted {
        connecting,
        cids,
        in_progress,
    } = admitted;
    let peer = connecting.remote_address();
    let deadline = tokio::time::Instant::now() + shared.handshake_timeout;
    // Dropping quinn's `Connecting` at the deadline abandons the handshake and its state.
    let handshaken = tokio::time::timeout_at(deadline, handshake(&shared, connecting)).await;
    drop(in_progress);
    let (sni, conn, handshake) = match handshaken {
        Ok(Ok(handshaken)) => handshaken,
        Ok(Err(error)) => return tracing::debug!(%peer, %error, "QUIC handshake failed"),
        Err(_) => return tracing::debug!(%peer, "QUIC handshake deadline passed"),
    };
    let handshake = Arc::new(handshake);
    let named = match (&shared.connection_ids, &sni) {
        (Some(ids), Some(sni)) => {
            for cid in &cids {
                ids.named(cid, sni);
            }
            true
        }
        _ => false,
    };
    serve_requests(&shared, &conn, sni, &handshake, deadline, &mut stop).await;
    conn.close(VarInt::from_u32(NO_ERROR), b"");
    if let (true, Some(ids)) = (named, &shared.connection_ids) {
        for cid in &cids {
            ids.closed(cid);
        }
    }
}

/// The handshake up to a connection that can carry requests: the SNI (known once the
/// ClientHello is read), the connection, and whether the handshake has completed.
async fn handshake<H: H3Handler>(
    shared: &Shared<H>,
    mut connecting: Connecting,
) -> Result<(Option<Arc<str>>, quinn::Connection, Handshake), quinn::ConnectionError> {
    let data = connecting.handshake_data().await?;
    let sni = cid::server_name(Some(data)).map(Arc::from);
    // Replays of a 0-RTT flight never complete the handshake (they lack the client's keys),
    // so their requests are all early and only safe methods are served on them.
    if shared.zero_rtt {
        match connecting.into_0rtt() {
            Ok((conn, accepted)) => return Ok((sni, conn, Handshake::pending(accepted))),
            Err(still) => connecting = still,
        }
    }
    Ok((sni, connecting.await?, Handshake::complete()))
}

async fn serve_requests<H: H3Handler>(
    shared: &Arc<Shared<H>>,
    conn: &quinn::Connection,
    sni: Option<Arc<str>>,
    handshake: &Arc<Handshake>,
    handshake_deadline: tokio::time::Instant,
    stop: &mut watch::Receiver<bool>,
) {
    let peer = conn.remote_address();
    let built = h3::server::builder()
        .max_field_section_size(shared.max_field_section_size)
        .build::<_, Bytes>(guard::Connection::new(
            conn.clone(),
            shared.max_field_section_size,
        ))
        .await;
    let mut h3 = match built {
        Ok(h3) => h3,
        Err(error) => return tracing::debug!(%peer, %error, "HTTP/3 connection setup failed"),
    };
    let mut requests = JoinSet::new();
    let cancels = Arc::new(CancelBudget::new(shared.max_cancelled_requests));
    let mut closing = false;
    // A connection that went on in 0-RTT must still complete its handshake in time.
    let handshake_due = tokio::time::sleep_until(handshake_deadline);
    tokio::pin!(handshake_due);
    let mut handshake_checked = handshake.is_complete(conn);
    loop {
        while requests.try_join_next().is_some() {}
        if closing && requests.is_empty() {
            break;
        }
        tokio::select! {
            () = stopped(stop), if !closing => {
                closing = true;
                // GOAWAY past the last accepted request: those finish, later ones are refused.
                if let Err(error) = h3.shutdown(1).await {
                    tracing::debug!(%peer, %error, "GOAWAY failed");
                    break;
                }
            }
            // Joined as they finish, for the same reason as connections.
            Some(_) = requests.join_next() => {}
            () = &mut handshake_due, if !handshake_checked => {
                handshake_checked = true;
                if !handshake.is_complete(conn) {
                    tracing::debug!(%peer, "QUIC handshake deadline passed after 0-RTT");
                    conn.close(VarInt::from_u32(EXCESSIVE_LOAD), b"handshake timeout");
                    break;
                }
            }
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let request = Stream {
                        shared: shared.clone(),
                        conn: conn.clone(),
                        sni: sni.clone(),
                        handshake: handshake.clone(),
                        cancels: cancels.clone(),
                    };
                    requests.spawn(request.serve(resolver));
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%peer, %error, "HTTP/3 connection ended");
                    break;
                }
            },
        }
    }
    while requests.join_next().await.is_some() {}
    // Dropping `h3` closes the connection.
    linger(conn).await;
}

/// Waits before closing a connection whose requests are done, until the client closes it or
/// the connection has been quiet for a while.
///
/// A response is done for h3 once it sits in QUIC's send buffer, and closing a QUIC connection
/// discards what the client has not acknowledged yet (unlike TCP, which delivers its buffer
/// before the FIN). While data flows the client acknowledges it; once everything is
/// acknowledged the client goes quiet. The endpoint's drain deadline bounds the wait.
async fn linger(conn: &quinn::Connection) {
    let quiet = (conn.rtt() * 3).max(LINGER_QUIET);
    let mut heard = conn.stats().udp_rx.datagrams;
    loop {
        tokio::select! {
            _ = conn.closed() => return,
            () = tokio::time::sleep(quiet) => {}
        }
        let now = conn.stats().udp_rx.datagrams;
        if now == heard {
            return;
        }
        heard = now;
    }
}

/// Resolves once shutdown was signalled (the guard `wait_for` returns is not `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// What one request stream needs of its connection.
struct Stream<H> {
    shared: Arc<Shared<H>>,
    conn: quinn::Connection,
    sni: Option<Arc<str>>,
    handshake: Arc<Handshake>,
    cancels: Arc<CancelBudget>,
}

impl<H: H3Handler> Stream<H> {
    /// Serves one request; one the client cancelled is counted against the connection's
    /// budget, and the connection closes once the budget is spent.
    async fn serve(self, resolver: RequestResolver<guard::Connection, Bytes>) {
        if let Err(Ended::Cancelled) = self.request(resolver).await
            && self.cancels.cancelled()
        {
            tracing::debug!(peer = %self.conn.remote_address(), "HTTP/3 client cancels too many requests");
            self.conn.close(
                VarInt::from_u32(EXCESSIVE_LOAD),
                b"too many cancelled requests",
            );
        }
    }

    async fn request(
        &self,
        resolver: RequestResolver<guard::Connection, Bytes>,
    ) -> Result<(), Ended> {
        let shared = &self.shared;
        // Dropping the resolver at the deadline stops the stream: what the client sent of its
        // HEADERS frame (at most the header limit, see `guard`) is given back.
        let resolved = tokio::time::timeout(shared.header_timeout, resolver.resolve_request());
        let (req, stream) = match resolved.await {
            Ok(Ok(resolved)) => resolved,
            Ok(Err(error)) => {
                tracing::debug!(%error, "HTTP/3 request refused");
                return Err(Ended::of(&error));
            }
            Err(_) => {
                tracing::debug!("HTTP/3 header timeout");
                return Err(Ended::Failed);
            }
        };
        let (mut send, recv) = stream.split();
        let (mut parts, ()) = req.into_parts();
        parts.headers.remove(EARLY_DATA);
        if !self.handshake.is_complete(&self.conn) {
            if !ZERO_RTT_SAFE_METHODS.contains(&parts.method) {
                let too_early = Response::builder()
                    .status(StatusCode::TOO_EARLY)
                    .body(http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}))
                    .expect("a static response");
                shared.handler.answered_locally(StatusCode::TOO_EARLY);
                return body::send_response(&mut send, too_early, shared.write_timeout)
                    .await
                    .map_err(|error| Ended::of_boxed(&error, "425 not delivered"));
            }
            parts
                .headers
                .insert(EARLY_DATA, HeaderValue::from_static("1"));
        }
        let length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let req = Request::from_parts(parts, RequestBody::new(recv, length));
        // Per request, not per connection: after a migration the client's new address is the
        // visitor address rules and `cf-connecting-ip` see.
        let info = ConnInfo::new(
            self.conn.remote_address(),
            SocketAddr::new(
                self.conn.local_ip().unwrap_or(shared.local.ip()),
                shared.local.port(),
            ),
            Some(TlsInfo {
                sni: self.sni.as_deref().map(str::to_owned),
                version: Some(ProtocolVersion::TLSv1_3),
                alpn: Some(ALPN.to_vec()),
                // Not classified at accept: each request resolves its own host.
                chain: None,
            }),
        );
        let response = shared.handler.handle(Arc::new(info), req).await;
        body::send_response(&mut send, response, shared.write_timeout)
            .await
            .map_err(|error| Ended::of_boxed(&error, "HTTP/3 response cut off"))
    }
}

/// How a request ended without its response delivered.
enum Ended {
    /// The client reset the stream or stopped reading the response.
    Cancelled,
    Failed,
}

impl Ended {
    fn of(error: &h3::error::StreamError) -> Self {
        match error {
            h3::error::StreamError::RemoteTerminate { .. } => Ended::Cancelled,
            _ => Ended::Failed,
        }
    }

    fn of_boxed(error: &crate::downstream::BoxError, what: &'static str) -> Self {
        tracing::debug!(%error, "{what}");
        error
            .downcast_ref::<h3::error::StreamError>()
            .map_or(Ended::Failed, Ended::of)
    }
}

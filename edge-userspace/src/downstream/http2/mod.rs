//! HTTP/2 on the `h2` crate directly, as Pingora serves it: one task per stream, each running
//! the handler and then writing its response under the connection's watchdog.
//!
//! hyper's server layer was in the way of one guarantee: a response whose HTTP/2 stream
//! window stays at zero is never polled again, so the edge could drop its origin request
//! (the watchdog's write timeout) but could not reset the stream until the connection closed.
//! Here the response writer waits for window and for the watchdog at once
//! ([`response::send`]), so the stalled stream is reset by itself (`CANCEL`).
//!
//! `h2` does the framing, HPACK, flow control and the protocol's own limits (concurrent
//! streams, header list size, rapid reset: pending-accept and local-error reset budgets).

mod request_body;
mod response;

use std::sync::Arc;

use h2::server::{Connection, SendResponse};
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::listener::Limits;
use super::watchdog::Activity;
use super::{ConnInfo, Handler};
pub use request_body::RequestBody;

/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4); on the plain listener
/// it tells prior-knowledge HTTP/2 from HTTP/1.1.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Stream receive window: hyper's default, which the edge ran with until it served HTTP/2
/// itself (1 MiB: a 16 KiB upload never waits for a WINDOW_UPDATE).
const STREAM_WINDOW: u32 = 1024 * 1024;
/// Connection receive window, as above.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Response bytes `h2` buffers per stream beyond what the client's window lets it send;
/// past it the writer waits (and the watchdog sees a stalled response).
const SEND_BUFFER: usize = 400 * 1024;

/// `h2`'s server settings from the listener's limits.
pub fn builder(limits: &Limits) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(SEND_BUFFER)
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(limits.h2_max_local_error_reset_streams))
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Serves one HTTP/2 connection until the client ends it, the protocol fails, or `drain`
/// turns true (then: GOAWAY, the streams in flight finish, the connection closes).
pub async fn serve<IO, H>(
    io: IO,
    builder: &h2::server::Builder,
    conn: Arc<ConnInfo>,
    handler: &H,
    activity: &Arc<Activity>,
    mut drain: watch::Receiver<bool>,
) -> Result<(), h2::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let mut connection: Connection<IO, bytes::Bytes> = tokio::select! {
        handshake = builder.handshake(io) => handshake?,
        _ = drain.wait_for(|draining| *draining) => return Ok(()),
    };
    let mut draining = false;
    loop {
        let accepted = tokio::select! {
            accepted = connection.accept() => accepted,
            _ = drain.wait_for(|draining| *draining), if !draining => {
                draining = true;
                connection.graceful_shutdown();
                continue;
            }
        };
        match accepted {
            Some(Ok((request, respond))) => {
                let stream = stream(request, respond, conn.clone(), handler.clone(), activity);
                tokio::spawn(stream);
            }
            Some(Err(error)) => return Err(error),
            None => return Ok(()),
        }
    }
}

/// One request: the handler's answer, then its body, all counted as in flight on the
/// connection until the response is written or abandoned.
fn stream<H: Handler>(
    request: Request<h2::RecvStream>,
    mut respond: SendResponse<bytes::Bytes>,
    conn: Arc<ConnInfo>,
    handler: H,
    activity: &Arc<Activity>,
) -> impl Future<Output = ()> + Send + 'static {
    let in_flight = activity.request();
    let activity = activity.clone();
    async move {
        let (head, recv) = request.into_parts();
        let body = RequestBody::new(recv, &head.headers);
        let request = Request::from_parts(head, body);
        let response = tokio::select! {
            response = handler.handle(conn, request) => response,
            // The client reset the stream: the handler (and its origin request) is dropped.
            _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
        };
        let response = response.map(|body| activity.watch(body, in_flight));
        if let Err(error) = response::send(response, respond).await {
            tracing::debug!(%error, "HTTP/2 response not sent whole");
        }
    }
}

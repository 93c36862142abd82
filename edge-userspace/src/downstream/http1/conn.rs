//! One client connection's keep-alive loop: read a head (within the header timeout once it
//! has started; between requests the watchdog's idle timeout applies), hand the request to the
//! handler with its body reading from the connection, write the response, take the reader
//! back, and go on only if the body was read to its end, both sides allow it and the listener
//! is not draining. Refused heads get their status and the connection closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Response};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::ClientUpgrade;
use super::body::{Handles, Reader, RequestBody, Returned, TrailerLimits};
use super::head::{self, Framing, Head, Refused};
use super::write::{self, After, Asked};
use crate::downstream::rewind::Rewind;
use crate::downstream::watchdog::Activity;
use crate::downstream::{BoxError, ConnInfo, Handler};

/// The listener's limits that bound an HTTP/1.1 connection.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Bytes of a request head, and of a trailer section.
    pub max_header_bytes: usize,
    /// Lines of a request head, and of a trailer section.
    pub max_headers: usize,
    /// Time from a head's first byte to its end.
    pub header_read_timeout: Duration,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves HTTP/1.1 on `io` (`buf`: bytes already read from it) until the client or the edge
/// ends the connection; `drain` turning true ends it after the request in flight.
pub async fn serve<IO, H>(
    io: IO,
    buf: BytesMut,
    conn: Arc<ConnInfo>,
    handler: &H,
    settings: Settings,
    activity: &Arc<Activity>,
    mut drain: watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let (read, mut write) = tokio::io::split(io);
    let mut reader = Some(Reader { io: read, buf });
    let mut scratch = Vec::with_capacity(1024);
    let limits = TrailerLimits {
        max_bytes: settings.max_header_bytes,
        max_lines: settings.max_headers,
    };
    loop {
        let Some(mut current) = reader.take() else {
            return Ok(());
        };
        let next = read_head(&mut current, &settings, &mut drain).await;
        let head = match next? {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(refused) => {
                refuse(&mut write, &refused, &mut scratch).await;
                return Err(format!("request refused: {refused:?}").into());
            }
        };
        let Head {
            mut request,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
        } = head;
        let asked = Asked {
            version: request.version(),
            head: request.method() == Method::HEAD,
            upgrade,
        };
        let guard = activity.request();
        let upgraded = upgrade.then(|| {
            let (tx, rx) = oneshot::channel();
            request.extensions_mut().insert(ClientUpgrade::new(rx));
            tx
        });
        let (body, handles) = match framing {
            Framing::Length(0) => {
                reader = Some(current);
                (RequestBody::empty(), None)
            }
            framing => {
                let (body, handles) = RequestBody::new(current, framing, limits, expect_continue);
                (body, Some(handles))
            }
        };
        let (go_ahead, returned) = match handles {
            Some(Handles { returned, go_ahead }) => (go_ahead, Some(returned)),
            None => (None, None),
        };
        let respond = handler.handle(conn.clone(), request.map(|()| body));
        let response = answer_with_go_ahead(respond, go_ahead, &mut write).await?;
        let response = response.map(|body| activity.watch(body, guard));
        let keep_alive = keep_alive && !*drain.borrow();
        let mut after =
            write::response(&mut write, response, asked, keep_alive, &mut scratch).await?;
        if let Some(returned) = returned {
            let Ok(Returned {
                reader: back,
                complete,
            }) = returned.await
            else {
                return Ok(());
            };
            if !complete && after == After::KeepAlive {
                // The rest of the body is still on the wire, where the next head would be.
                after = After::Close;
            }
            reader = Some(back);
        }
        match after {
            After::KeepAlive => {}
            After::Close => {
                let _ = write.shutdown().await;
                return Ok(());
            }
            After::Upgrade => {
                if let (Some(tx), Some(Reader { io, buf })) = (upgraded, reader.take()) {
                    let io = Rewind::new(io.unsplit(write), buf.freeze());
                    let _ = tx.send(Box::new(io));
                }
                return Ok(());
            }
        }
    }
}

/// Runs the handler; when the body asks for the client's go-ahead (`Expect: 100-continue`),
/// writes `100 Continue` meanwhile.
async fn answer_with_go_ahead<F, B, IO>(
    respond: F,
    go_ahead: Option<oneshot::Receiver<()>>,
    write: &mut WriteHalf<IO>,
) -> Result<Response<B>, BoxError>
where
    F: Future<Output = Response<B>>,
    IO: AsyncWrite,
{
    let mut respond = std::pin::pin!(respond);
    if let Some(go_ahead) = go_ahead {
        tokio::select! {
            response = &mut respond => return Ok(response),
            Ok(()) = go_ahead => {
                write.write_all(CONTINUE).await?;
                write.flush().await?;
            }
        }
    }
    Ok(respond.await)
}

/// The next head; `None` when the client closed between requests or the listener drains.
type Next = Result<Option<Head>, Refused>;

async fn read_head<IO: AsyncRead>(
    reader: &mut Reader<ReadHalf<IO>>,
    settings: &Settings,
    drain: &mut watch::Receiver<bool>,
) -> Result<Next, BoxError> {
    let mut deadline = None;
    // Where to look for the end of the head from: parsing waits for it, so a head dripped in
    // byte by byte is not parsed again at every byte.
    let mut scanned = 0;
    loop {
        if head_may_be_complete(&reader.buf, scanned, settings.max_header_bytes) {
            match head::parse(
                &mut reader.buf,
                settings.max_header_bytes,
                settings.max_headers,
            ) {
                Ok(Some(head)) => return Ok(Ok(Some(head))),
                Ok(None) => {}
                Err(refused) => return Ok(Err(refused)),
            }
        }
        scanned = reader.buf.len();
        let read = if reader.buf.is_empty() {
            // Between requests: the watchdog's idle timeout applies, and draining ends here.
            tokio::select! {
                read = reader.fill() => read,
                _ = drain.wait_for(|draining| *draining) => return Ok(Ok(None)),
            }
        } else {
            let deadline =
                *deadline.get_or_insert_with(|| Instant::now() + settings.header_read_timeout);
            tokio::time::timeout_at(deadline, reader.fill())
                .await
                .map_err(|_| "the request head did not arrive within the header timeout")?
        };
        match read? {
            0 if reader.buf.is_empty() => return Ok(Ok(None)),
            0 => return Err("the client closed the connection inside a request head".into()),
            _ => {}
        }
    }
}

/// Whether `buf` holds an empty line (CRLF CRLF, or LF LF: refused, but parsed to be) after
/// `scanned`, or has reached the size limit.
fn head_may_be_complete(buf: &[u8], scanned: usize, max_bytes: usize) -> bool {
    if buf.len() >= max_bytes {
        return true;
    }
    let from = scanned.saturating_sub(3);
    memchr::memchr_iter(b'\n', &buf[from..]).any(|at| {
        let at = from + at;
        at > 0 && (buf[at - 1] == b'\n' || (at > 1 && buf[at - 1] == b'\r' && buf[at - 2] == b'\n'))
    })
}

/// Answers a refused head with its status and no body; the connection closes after it.
async fn refuse<IO: AsyncWrite>(
    write: &mut WriteHalf<IO>,
    refused: &Refused,
    scratch: &mut Vec<u8>,
) {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = refused.status();
    let asked = Asked {
        version: http::Version::HTTP_11,
        head: false,
        upgrade: false,
    };
    if write::response(write, response, asked, false, scratch)
        .await
        .is_ok()
    {
        let _ = write.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_head_is_found_across_reads() {
        assert!(!head_may_be_complete(
            b"GET / HTTP/1.1\r\nhost: a\r\n",
            0,
            100
        ));
        assert!(head_may_be_complete(
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
            26,
            100
        ));
        assert!(head_may_be_complete(
            b"GET / HTTP/1.1\nhost: a\n\n",
            23,
            100
        ));
        assert!(head_may_be_complete(
            b"GET / HTTP/1.1\r\nhost: a\r\n",
            0,
            20
        ));
    }
}

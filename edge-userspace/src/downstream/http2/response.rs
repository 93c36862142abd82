//! Writing one response on its stream: the head, then the body as the client's window allows,
//! while watching for the client's reset and for the connection's watchdog.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::Reason;
use h2::server::SendResponse;
use http::{HeaderMap, Response, header};
use http_body::Body;

use crate::downstream::BoxError;
use crate::downstream::date;
use crate::downstream::watchdog::Watched;
use crate::hop_by_hop::HOP_BY_HOP;

/// Why a response was not written to its end.
#[derive(Debug)]
pub enum NotSent {
    /// The client reset the stream, or the connection went away.
    Client(h2::Error),
    /// The response body failed (its origin went away, say); the stream was reset.
    Body(BoxError),
    /// The client took nothing for the write timeout; the stream was reset with `CANCEL`.
    Stalled,
}

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSent::Client(error) => write!(f, "client: {error}"),
            NotSent::Body(error) => write!(f, "response body: {error}"),
            NotSent::Stalled => f.write_str("the client did not read the response in time"),
        }
    }
}

/// Sends `response` on `respond`'s stream.
pub async fn send<B>(
    response: Response<Watched<B>>,
    mut respond: SendResponse<Bytes>,
) -> Result<(), NotSent>
where
    B: Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static,
{
    let (mut head, body) = response.into_parts();
    strip_connection_specific(&mut head.headers);
    if !head.headers.contains_key(header::DATE) {
        head.headers.insert(header::DATE, date::now());
    }
    let ends_here = body.is_end_stream();
    if !ends_here && let Some(length) = body.size_hint().exact() {
        head.headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| length.into());
    }
    let tx = respond
        .send_response(Response::from_parts(head, ()), ends_here)
        .map_err(NotSent::Client)?;
    if ends_here {
        return Ok(());
    }
    Pipe {
        body,
        tx,
        waiting: None,
    }
    .await
}

/// HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2) and `h2` refuses a response
/// carrying one: the hop-by-hop list, and whatever a `Connection` header names.
fn strip_connection_specific(headers: &mut HeaderMap) {
    if let Some(named) = headers.remove(header::CONNECTION) {
        for name in named.to_str().unwrap_or_default().split(',') {
            headers.remove(name.trim());
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The body's frames into the stream, one at a time: a frame is taken from the body only
/// once the previous one is in `h2`'s hands, so the body (and the origin behind it) runs at
/// the client's pace.
struct Pipe<B> {
    body: Watched<B>,
    tx: h2::SendStream<Bytes>,
    /// A data frame taken from the body, waiting for window; with whether it ends the body.
    waiting: Option<(Bytes, bool)>,
}

impl<B> Future for Pipe<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Output = Result<(), NotSent>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = &mut *self;
        loop {
            if let Poll::Ready(reason) = me.tx.poll_reset(cx) {
                let error = reason.map_or_else(|e| e, h2::Error::from);
                return Poll::Ready(Err(NotSent::Client(error)));
            }
            if let Some((_, ends)) = &me.waiting {
                let ends = *ends;
                ready!(me.poll_window(cx))?;
                let (data, _) = me.waiting.take().expect("checked above");
                me.tx.send_data(data, ends).map_err(NotSent::Client)?;
                if ends {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match ready!(Pin::new(&mut me.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let ends = me.body.is_end_stream();
                        if data.is_empty() {
                            // Needs no window: an explicit end of the body, say.
                            me.tx.send_data(data, ends).map_err(NotSent::Client)?;
                            if ends {
                                return Poll::Ready(Ok(()));
                            }
                        } else {
                            // A claim of one byte, not the frame's length: a large claim
                            // pins connection window that other streams may need; `h2`
                            // raises it to what is buffered in `send_data`.
                            me.tx.reserve_capacity(1);
                            me.waiting = Some((data, ends));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            me.tx.reserve_capacity(0);
                            me.tx.send_trailers(trailers).map_err(NotSent::Client)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(error)) => {
                    me.tx.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(NotSent::Body(error)));
                }
                None => {
                    me.tx
                        .send_data(Bytes::new(), true)
                        .map_err(NotSent::Client)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl<B> Pipe<B> {
    /// Ready once the stream has window for the waiting frame. While it has none, the
    /// connection's watchdog may cancel the response (the client took nothing for the write
    /// timeout): then the stream is reset, and the origin's slot was freed with the body.
    fn poll_window(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), NotSent>> {
        while self.tx.capacity() == 0 {
            match self.tx.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(NotSent::Client(error))),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(NotSent::Client(h2::Error::from(Reason::CANCEL))));
                }
                Poll::Pending => {
                    ready!(self.body.poll_cancelled(cx));
                    self.tx.send_reset(Reason::CANCEL);
                    return Poll::Ready(Err(NotSent::Stalled));
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

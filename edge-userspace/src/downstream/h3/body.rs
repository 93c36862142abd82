//! HTTP/3 streams as `http_body` bodies and back: the request body streams into the pipeline
//! frame by frame, the response body streams out the same way; nothing is buffered whole.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::downstream::BoxError;
use crate::downstream::watchdog::WriteStalled;

use super::guard;

type Recv = RequestStream<guard::RecvStream, Bytes>;
type Send = RequestStream<guard::SendStream, Bytes>;

/// The body of an HTTP/3 request: DATA frames, then trailers if the client sent any.
pub struct RequestBody {
    stream: Recv,
    /// From `content-length`, so the origin request keeps its framing.
    length: Option<u64>,
    state: State,
}

#[derive(PartialEq, Eq)]
enum State {
    Data,
    Trailers,
    Done,
}

impl RequestBody {
    pub(super) fn new(stream: Recv, length: Option<u64>) -> Self {
        Self {
            stream,
            length,
            state: State::Data,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Data => match ready!(this.stream.poll_recv_data(cx)) {
                    Ok(Some(mut data)) => {
                        let data = data.copy_to_bytes(data.remaining());
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    Ok(None) => this.state = State::Trailers,
                    Err(error) => {
                        this.state = State::Done;
                        return Poll::Ready(Some(Err(error.into())));
                    }
                },
                State::Trailers => {
                    let trailers = ready!(this.stream.poll_recv_trailers(cx));
                    this.state = State::Done;
                    return Poll::Ready(match trailers {
                        Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                        Ok(None) => None,
                        Err(error) => Some(Err(error.into())),
                    });
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done || self.length == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.length.map(SizeHint::with_exact).unwrap_or_default()
    }
}

/// Sends `response` on `stream`: head, DATA frames as the body yields them, trailers, FIN.
/// A body that fails midway resets the stream, so the client never takes a cut body as whole;
/// so does a client that takes no byte of a write for `write_timeout` (it stopped reading and
/// QUIC flow control holds the write), which then loses the body and its origin slot, as on
/// the TCP listeners.
pub(super) async fn send_response<B>(
    stream: &mut Send,
    response: Response<B>,
    write_timeout: Duration,
) -> Result<(), BoxError>
where
    B: Body<Data = Bytes, Error = BoxError> + std::marker::Send,
{
    let (parts, body) = response.into_parts();
    let sent = async {
        written(
            write_timeout,
            stream.send_response(Response::from_parts(parts, ())),
        )
        .await?;
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            match frame?.into_data() {
                Ok(data) => written(write_timeout, stream.send_data(data)).await?,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        written(write_timeout, stream.send_trailers(trailers)).await?;
                        break;
                    }
                }
            }
        }
        written(write_timeout, stream.finish()).await
    }
    .await;
    if sent.is_err() {
        stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
    }
    sent
}

/// One write of a response, failing when the client has not taken it within `limit`.
async fn written<E: Into<BoxError>>(
    limit: Duration,
    write: impl Future<Output = Result<(), E>>,
) -> Result<(), BoxError> {
    match tokio::time::timeout(limit, write).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(Box::new(WriteStalled)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_the_client_does_not_take_fails_after_the_write_timeout() {
        let limit = Duration::from_millis(50);
        let held = written(limit, std::future::pending::<Result<(), BoxError>>()).await;
        assert!(held.unwrap_err().is::<WriteStalled>());
        let slow = async {
            tokio::time::sleep(limit / 2).await;
            Ok::<_, BoxError>(())
        };
        written(limit, slow).await.unwrap();
    }
}

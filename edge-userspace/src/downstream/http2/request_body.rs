//! A request body as `h2` receives it, read as an [`http_body::Body`].

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::downstream::BoxError;

/// The body of an HTTP/2 request. Each DATA frame's bytes are given back to the client's
/// window as soon as the pipeline takes them: the origin's pace, not a buffer, is the limit.
/// `h2` itself refuses a body that disagrees with its `content-length`.
pub struct RequestBody {
    recv: h2::RecvStream,
    data_done: bool,
    /// What is left of the declared `content-length` (zero when the request ended with its
    /// headers), so that the upstream forwards the body framed the same way.
    remaining: Option<u64>,
}

impl RequestBody {
    pub fn new(recv: h2::RecvStream, headers: &http::HeaderMap) -> Self {
        let remaining = if recv.is_end_stream() {
            Some(0)
        } else {
            // `h2` has refused a stream whose `content-length` does not parse, so one value
            // is all that can be here.
            headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        };
        Self {
            recv,
            data_done: false,
            remaining,
        }
    }
}

/// A stream the client reset with `NO_ERROR` ended its body early on purpose (RFC 9113
/// §8.1): the body stops, it does not fail.
fn ended(error: h2::Error) -> Option<Result<Frame<Bytes>, BoxError>> {
    (error.reason() != Some(h2::Reason::NO_ERROR)).then(|| Err(error.into()))
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(remaining) = &mut self.remaining {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(ended(error)),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(error) => Poll::Ready(ended(error)),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining.map(SizeHint::with_exact).unwrap_or_default()
    }
}

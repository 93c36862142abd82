//! A response body that holds its origin's in-flight slot until it is fully read or dropped,
//! so the cap counts requests still streaming, not only those waiting for a head.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

pub struct Permitted<B> {
    inner: B,
    _permit: OwnedSemaphorePermit,
}

impl<B> Permitted<B> {
    pub(super) fn new(inner: B, permit: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            _permit: permit,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Permitted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! A response body that holds its origin's in-flight slot until it is fully read or dropped,
//! so the cap counts requests still streaming, not only those waiting for a head; and that
//! gives its HTTP/1.1 connection back to the pool once the body has ended (a connection whose
//! body was abandoned half-way cannot carry another request, so it is closed instead).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::client::conn::http1;
use tokio::sync::OwnedSemaphorePermit;

use super::RequestBody;
use super::pool::OriginPool;

pub struct Leased<B: Body + Unpin> {
    inner: B,
    _permit: OwnedSemaphorePermit,
    connection: Option<(Arc<OriginPool>, http1::SendRequest<RequestBody>)>,
    ended: bool,
}

impl<B: Body + Unpin> Leased<B> {
    pub(super) fn new(
        inner: B,
        permit: OwnedSemaphorePermit,
        connection: Option<(Arc<OriginPool>, http1::SendRequest<RequestBody>)>,
    ) -> Self {
        Self {
            inner,
            _permit: permit,
            connection,
            ended: false,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Leased<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body + Unpin> Drop for Leased<B> {
    fn drop(&mut self) {
        if let Some((pool, sender)) = self.connection.take()
            && (self.ended || self.inner.is_end_stream())
        {
            pool.checkin(sender);
        }
    }
}

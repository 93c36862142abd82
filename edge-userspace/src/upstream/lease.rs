//! A response body that holds its origin's in-flight slot until it is fully read or dropped,
//! so the cap counts requests still streaming, not only those waiting for a head; that drives
//! its HTTP/1.1 connection while it is read (the connection has no task of its own, see
//! [`super::http1`]); and that gives the connection back to the pool once the body has ended (a
//! connection whose body was abandoned half-way cannot carry another request, so it is closed
//! instead).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

use super::http1::Http1;
use super::pool::OriginPool;
use crate::per_address::AddressGuard;

/// The origin's in-flight slot, and the client address's among them.
pub(super) type Slot = (OwnedSemaphorePermit, AddressGuard);

pub struct Leased<B: Body + Unpin> {
    inner: B,
    _slot: Slot,
    connection: Option<(Arc<OriginPool>, Http1)>,
    ended: bool,
}

impl<B: Body + Unpin> Leased<B> {
    pub(super) fn new(inner: B, slot: Slot, connection: Option<(Arc<OriginPool>, Http1)>) -> Self {
        Self {
            inner,
            _slot: slot,
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
        let this = &mut *self;
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending()
            && let Some((_, conn)) = &mut this.connection
        {
            // The connection reads the next frame into the body (or ends it with an error),
            // and wakes this task when the origin sends more.
            let _ = conn.poll_driver(cx);
            polled = Pin::new(&mut this.inner).poll_frame(cx);
        }
        if let Poll::Ready(None) = polled {
            this.ended = true;
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
        if let Some((pool, conn)) = self.connection.take()
            && (self.ended || self.inner.is_end_stream())
        {
            pool.checkin(conn);
        }
    }
}

//! A body that fails when no frame arrives for a while.
//!
//! Total-duration timeouts would cut off legitimately long downloads; what signals a dead peer
//! is silence, so the timer restarts on every frame.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::downstream::BoxError;

/// The error a body yields after `idle` without a frame.
#[derive(Debug)]
pub struct BodyIdleTimeout(pub Duration);

impl fmt::Display for BodyIdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no body data for {:?}", self.0)
    }
}

impl std::error::Error for BodyIdleTimeout {}

/// Wraps `B`, failing it after `idle` of silence.
///
/// The timer is made the first time the inner body has nothing to give: a small body that is
/// already buffered (most responses, every empty request) ends without ever touching the
/// timer wheel. The deadline is the same either way: `idle` after the last frame.
pub struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    /// When the body was made or last yielded a frame.
    last: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            last: Instant::now(),
            timer: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.last = Instant::now();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = this.last + this.idle;
                let timer = match &mut this.timer {
                    Some(timer) => {
                        if timer.deadline() != deadline {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => this
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdleTimeout(this.idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! When did the request body last move? The origin's answer is due a header timeout after the
//! request was fully sent, not after it started: a large upload must not count against the
//! origin's think time, while an origin that stops reading the body still times out.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// Shared clock of the last request-body progress.
#[derive(Clone, Debug)]
pub(super) struct Progress {
    start: Instant,
    /// Microseconds after `start` of the last frame (or the end) passed to the origin.
    last: Arc<AtomicU64>,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last: Arc::default(),
        }
    }

    fn touch(&self) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last.fetch_max(micros, Ordering::Relaxed);
    }

    /// `timeout` after the last progress.
    pub fn deadline(&self, timeout: Duration) -> Instant {
        self.start + Duration::from_micros(self.last.load(Ordering::Relaxed)) + timeout
    }
}

/// A request body that records progress on every frame it yields.
pub(super) struct Tracked<B> {
    inner: B,
    progress: Progress,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, progress: Progress) -> Self {
        Self { inner, progress }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.progress.touch();
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

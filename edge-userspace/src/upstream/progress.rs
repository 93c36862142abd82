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
#[derive(Debug)]
pub(super) struct Progress {
    start: Instant,
    /// Microseconds after `start` of the last frame (or the end) passed to the origin; made
    /// only for a body that has frames to pass (most requests have none).
    last: Option<Arc<AtomicU64>>,
}

/// The body's half of a [`Progress`].
#[derive(Debug)]
pub(super) struct Touch {
    start: Instant,
    last: Arc<AtomicU64>,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last: None,
        }
    }

    /// Shares the clock with a request body, which moves it forward on every frame.
    pub fn track(&mut self) -> Touch {
        let last = self.last.get_or_insert_with(Arc::default).clone();
        Touch {
            start: self.start,
            last,
        }
    }

    /// `timeout` after the last progress.
    pub fn deadline(&self, timeout: Duration) -> Instant {
        let last = self
            .last
            .as_ref()
            .map_or(0, |last| last.load(Ordering::Relaxed));
        self.start + Duration::from_micros(last) + timeout
    }
}

impl Touch {
    fn touch(&self) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last.fetch_max(micros, Ordering::Relaxed);
    }
}

/// A request body that records progress on every frame it yields.
pub(super) struct Tracked<B> {
    inner: B,
    progress: Touch,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, progress: Touch) -> Self {
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

//! What a silent or slow client cannot escape: the idle timeout of a connection, the
//! write-progress timeout of a response, and shedding idle connections when a listener is full.
//!
//! Neither protocol layer closes these by itself: a header timeout starts at the first byte,
//! HTTP/2 has no idle timeout (and a client answering PINGs looks alive), and a response body is
//! only polled when the client has room for it, so a client that stops reading (a full TCP
//! window, or an HTTP/2 stream window of zero) leaves the body, and the origin slot it holds,
//! waiting for ever. So every connection gets an [`Activity`]: the requests it has in flight, since when it has had
//! none, and the responses it is writing; one timer per connection ([`Activity::expired`])
//! checks them every quarter of the shorter timeout.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::BoxError;

/// Why the edge closed a client connection (or a response) itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// No request in flight for the idle timeout (also: none ever sent).
    Idle,
    /// The listener was full and this connection was the one idle longest.
    Shed,
    /// The client address already had its maximum of connections open.
    AddressCap,
    /// The connection ended with an error: a protocol violation (rapid reset, SETTINGS or PING
    /// flood, malformed frames) or the client's socket failing.
    ProtocolError,
}

impl Closed {
    pub const ALL: [Closed; 4] = [
        Closed::Idle,
        Closed::Shed,
        Closed::AddressCap,
        Closed::ProtocolError,
    ];

    /// The reason as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Idle => "idle",
            Closed::Shed => "shed",
            Closed::AddressCap => "address_cap",
            Closed::ProtocolError => "protocol_error",
        }
    }
}

/// One client connection's requests and responses, watched by its own timer.
pub struct Activity {
    state: Mutex<State>,
    shed: Notify,
    idle_timeout: Duration,
    write_timeout: Duration,
}

struct State {
    in_flight: usize,
    /// When the last request ended (or the connection opened); meaningful while none is in
    /// flight.
    idle_since: Instant,
    writing: Vec<Weak<dyn Writing>>,
}

impl Activity {
    pub fn new(idle_timeout: Duration, write_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                writing: Vec::new(),
            }),
            shed: Notify::new(),
            idle_timeout,
            write_timeout,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("activity lock poisoned")
    }

    /// Counts a request from its head until its response has been written (or abandoned).
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.lock().in_flight += 1;
        RequestGuard(self.clone())
    }

    /// Wraps a response body so that a client that stops reading it loses it after the write
    /// timeout; `guard` is released with the body.
    pub fn watch<B>(&self, body: B, guard: RequestGuard) -> Watched<B>
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static,
    {
        let shared = Arc::new(Mutex::new(Slot {
            body: Some(body),
            guard: Some(guard),
            waiting_since: Some(Instant::now()),
            writer: None,
        }));
        let weak: Weak<dyn Writing> = Arc::downgrade(&shared) as Weak<dyn Writing>;
        let mut state = self.lock();
        state.writing.retain(|w| w.strong_count() > 0);
        state.writing.push(weak);
        drop(state);
        Watched(shared)
    }

    /// Since when the connection has had no request in flight; `None` while it has one.
    fn idleness(&self) -> Option<Instant> {
        let state = self.lock();
        (state.in_flight == 0).then_some(state.idle_since)
    }

    /// Resolves when the connection should be closed: idle for the idle timeout, or shed.
    /// Responses stalled for the write timeout are cancelled on the way.
    pub async fn expired(&self) -> Closed {
        let tick = (self.idle_timeout.min(self.write_timeout) / 4).max(Duration::from_millis(10));
        loop {
            tokio::select! {
                () = self.shed.notified() => return Closed::Shed,
                () = tokio::time::sleep(tick) => {}
            }
            let now = Instant::now();
            // Checked and cancelled outside the connection's lock: a response slot releases
            // its request guard, which takes that lock, when it is cancelled or dropped (and
            // the last strong reference may be one of these).
            let writing: Vec<Arc<dyn Writing>> = self
                .lock()
                .writing
                .drain(..)
                .filter_map(|w| w.upgrade())
                .collect();
            let mut kept = Vec::with_capacity(writing.len());
            for response in &writing {
                if response.stalled_since(now, self.write_timeout) {
                    response.cancel();
                } else {
                    kept.push(Arc::downgrade(response));
                }
            }
            let idle = {
                let mut state = self.lock();
                state.writing.extend(kept);
                state.in_flight == 0 && now - state.idle_since >= self.idle_timeout
            };
            drop(writing);
            if idle {
                return Closed::Idle;
            }
        }
    }
}

/// A request in flight on its connection.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}

/// A response being written, as its connection's timer sees it.
trait Writing: Send + Sync {
    /// Whether the client has not taken what the body last gave (or its head) since
    /// `now - timeout`.
    fn stalled_since(&self, now: Instant, timeout: Duration) -> bool;
    /// Drops the body (and with it the origin's slot and connection) and the request's count.
    fn cancel(&self);
}

struct Slot<B> {
    body: Option<B>,
    guard: Option<RequestGuard>,
    /// `Some` from when the body gave a frame (or was made) until it is asked for the next:
    /// while it is, the client has not made room for what it was given.
    waiting_since: Option<Instant>,
    /// The writer waiting for the client to make room ([`Watched::poll_cancelled`]), woken
    /// when the response is cancelled.
    writer: Option<Waker>,
}

impl<B: Send> Writing for Mutex<Slot<B>> {
    fn stalled_since(&self, now: Instant, timeout: Duration) -> bool {
        let slot = self.lock().expect("response slot lock poisoned");
        slot.body.is_some() && slot.waiting_since.is_some_and(|t| now - t >= timeout)
    }

    fn cancel(&self) {
        let (body, guard, writer) = {
            let mut slot = self.lock().expect("response slot lock poisoned");
            (slot.body.take(), slot.guard.take(), slot.writer.take())
        };
        // Outside the slot's lock: the guard takes the connection's.
        drop((body, guard));
        if let Some(writer) = writer {
            writer.wake();
        }
    }
}

/// The error a response body yields once its write timeout cancelled it; the writer then resets the
/// HTTP/2 stream or closes the HTTP/1.1 connection.
#[derive(Debug)]
pub struct WriteStalled;

impl fmt::Display for WriteStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the client did not read the response in time")
    }
}

impl std::error::Error for WriteStalled {}

/// A response body under its connection's write-progress timeout.
pub struct Watched<B>(Arc<Mutex<Slot<B>>>);

impl<B> Watched<B> {
    /// Ready once the write timeout has cancelled the response. A writer that stops polling
    /// the body while it waits for the client (the HTTP/2 writer waiting for window) polls
    /// this instead, so that the cancellation reaches the client as a reset at once.
    pub fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.0.lock().expect("response slot lock poisoned");
        if slot.body.is_none() {
            return Poll::Ready(());
        }
        match &mut slot.writer {
            Some(writer) => writer.clone_from(cx.waker()),
            None => slot.writer = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (polled, ended) = {
            let mut slot = self.0.lock().expect("response slot lock poisoned");
            slot.waiting_since = None;
            let Some(body) = &mut slot.body else {
                return Poll::Ready(Some(Err(Box::new(WriteStalled))));
            };
            let polled = Pin::new(body).poll_frame(cx);
            let ended = match &polled {
                Poll::Ready(Some(Ok(_))) => {
                    slot.waiting_since = Some(Instant::now());
                    None
                }
                Poll::Ready(None | Some(Err(_))) => {
                    slot.body = None;
                    slot.guard.take()
                }
                Poll::Pending => None,
            };
            (polled, ended)
        };
        // Released outside the slot's lock (it takes the connection's).
        drop(ended);
        polled
    }

    fn is_end_stream(&self) -> bool {
        let slot = self.0.lock().expect("response slot lock poisoned");
        slot.body.as_ref().is_some_and(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let slot = self.0.lock().expect("response slot lock poisoned");
        slot.body.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

/// Every open connection of a listener, so that a full listener can close the one idle longest.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Weak<Activity>>>,
}

impl Registry {
    /// Registers `activity` until the returned guard drops.
    pub fn register(self: &Arc<Self>, activity: &Arc<Activity>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .expect("registry lock poisoned")
            .insert(id, Arc::downgrade(activity));
        Registered(self.clone(), id)
    }

    /// Tells the connection idle longest to close; `false` when every connection is busy.
    pub fn shed_idlest(&self) -> bool {
        let open = self.open.lock().expect("registry lock poisoned");
        let idlest = open
            .values()
            .filter_map(Weak::upgrade)
            .filter_map(|activity| Some((activity.idleness()?, activity)))
            .min_by_key(|(since, _)| *since);
        match idlest {
            Some((_, activity)) => {
                activity.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in the [`Registry`].
pub struct Registered(Arc<Registry>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0
            .open
            .lock()
            .expect("registry lock poisoned")
            .remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// A body of `chunks`, each ready at once.
    struct Chunks(std::collections::VecDeque<&'static str>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes())))),
            )
        }
    }

    fn body(chunks: &[&'static str]) -> Chunks {
        Chunks(chunks.iter().copied().collect())
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn an_idle_connection_expires_and_a_busy_one_does_not() {
        let activity = Activity::new(100 * MS, 50 * MS);
        let guard = activity.request();
        let busy = tokio::time::timeout(300 * MS, activity.expired()).await;
        assert!(busy.is_err(), "a request in flight keeps the connection");
        drop(guard);
        let started = Instant::now();
        assert_eq!(activity.expired().await, Closed::Idle);
        assert!(started.elapsed() >= 100 * MS);
    }

    #[tokio::test]
    async fn a_response_nobody_reads_is_cancelled_and_a_read_one_is_not() {
        let activity = Activity::new(10_000 * MS, 200 * MS);
        let mut read = activity.watch(body(&["a", "b", "c", "d"]), activity.request());
        let unread = activity.watch(body(&["a"]), activity.request());
        let watchdog = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.expired().await })
        };
        // Read slowly, but read: every frame is taken well within the timeout, to the end.
        for _ in 0..4 {
            tokio::time::sleep(50 * MS).await;
            assert!(read.frame().await.unwrap().is_ok());
        }
        assert!(read.frame().await.is_none());
        tokio::time::sleep(300 * MS).await;
        assert!(
            unread.0.lock().unwrap().body.is_none(),
            "the unread response was dropped"
        );
        assert_eq!(
            activity.lock().in_flight,
            0,
            "neither request counts: one ended, the other was cancelled"
        );
        let mut unread = unread;
        let error = unread.frame().await.unwrap().unwrap_err();
        assert!(error.is::<WriteStalled>());
        watchdog.abort();
    }

    #[tokio::test]
    async fn a_full_listener_sheds_the_connection_idle_longest() {
        let registry = Arc::new(Registry::default());
        let old = Activity::new(10_000 * MS, 10_000 * MS);
        let old_place = registry.register(&old);
        tokio::time::sleep(10 * MS).await;
        let recent = Activity::new(10_000 * MS, 10_000 * MS);
        let recent_place = registry.register(&recent);
        let busy = Activity::new(10_000 * MS, 10_000 * MS);
        let _busy_place = registry.register(&busy);
        let _request = busy.request();
        assert!(registry.shed_idlest());
        let shed = tokio::time::timeout(100 * MS, old.expired()).await;
        assert_eq!(shed.unwrap(), Closed::Shed);
        let recent_shed = tokio::time::timeout(100 * MS, recent.expired()).await;
        assert!(recent_shed.is_err(), "only the idlest is told");
        drop((old_place, recent_place));
        assert!(!registry.shed_idlest(), "only a busy connection is left");
    }
}

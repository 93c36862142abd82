//! The connections of one origin: idle HTTP/1.1 connections, most recently used first, and
//! one shared HTTP/2 connection when the origin negotiates h2.
//!
//! hyper's own connection handles are used directly: a checkout is a `Vec::pop` under a short
//! lock, and an HTTP/1.1 connection goes back to the idle list when its response body ends
//! (see [`super::lease`]), with no task per request to wait for it. HTTP/1.1 connections have
//! no task of their own either: the request holding one drives it (see [`super::http1`]).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::per_address::PerAddress;

use super::connector::Dialer;
use super::http1::Http1;
use super::{Origin, RequestBody, UpstreamError};

/// A connection ready to carry one request.
pub(super) enum Conn {
    Http1(Http1),
    Http2(http2::SendRequest<RequestBody>),
}

struct Idle {
    conn: Http1,
    since: Instant,
}

pub(super) struct OriginPool {
    dialer: Dialer,
    /// Requests in flight to this origin (head or body still moving).
    pub slots: Arc<Semaphore>,
    /// What each client address has in flight to this origin (its own cap, taken before a
    /// slot, so that requests over it wait without holding one of the origin's).
    pub clients: Arc<PerAddress>,
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Milliseconds after `created` of the last checkout.
    last_used: AtomicU64,
    created: Instant,
}

/// Every origin's pool, at most `max` of them.
///
/// Origins are values a client can vary (a TLS origin's SNI is the request's host under a
/// wildcard hostname), so pools cannot be kept for ever: a pool nobody holds that went unused
/// for the idle timeout is removed by its own sweep task, which then ends; and a new origin
/// beyond `max` first evicts every pool nobody holds, idle connections and all. When every
/// pool is carrying a request, a further origin is refused (502) rather than let grow.
pub(super) struct Pools {
    map: Mutex<HashMap<Origin, Arc<OriginPool>, foldhash::fast::RandomState>>,
    max: usize,
}

impl Pools {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Pools {
            map: Mutex::default(),
            max,
        })
    }

    /// The pool of `origin`, made by `make` (and given its sweep task) when there is none.
    pub fn get(
        self: &Arc<Self>,
        origin: &Origin,
        make: impl FnOnce() -> Result<OriginPool, UpstreamError>,
    ) -> Result<Arc<OriginPool>, UpstreamError> {
        let mut map = self.map.lock().expect("pool map lock poisoned");
        if let Some(pool) = map.get(origin) {
            return Ok(pool.clone());
        }
        if map.len() >= self.max {
            // Held only by the map: no request in flight, no response body being read.
            map.retain(|_, pool| Arc::strong_count(pool) > 1);
            if map.len() >= self.max {
                return Err(UpstreamError::BadOrigin(format!(
                    "{} origins are carrying requests already",
                    map.len()
                )));
            }
        }
        let pool = Arc::new(make()?);
        tokio::spawn(sweep(
            Arc::downgrade(&pool),
            Arc::downgrade(self),
            origin.clone(),
        ));
        map.insert(origin.clone(), pool.clone());
        Ok(pool)
    }

    /// Pools held now.
    pub fn len(&self) -> usize {
        self.map.lock().expect("pool map lock poisoned").len()
    }

    /// Removes `origin`'s pool if it is `pool`, nobody but the map and the caller holds it and
    /// it went unused for its idle timeout.
    fn evict_unused(&self, origin: &Origin, pool: &Arc<OriginPool>) -> bool {
        let mut map = self.map.lock().expect("pool map lock poisoned");
        let unused = map.get(origin).is_some_and(|held| {
            Arc::ptr_eq(held, pool)
                && Arc::strong_count(pool) == 2
                && pool.unused_for() >= pool.idle_timeout
        });
        if unused {
            map.remove(origin);
        }
        unused
    }
}

impl OriginPool {
    /// A pool; [`Pools::get`] gives it the task that closes its idle connections and, once
    /// the pool itself went unused, removes it.
    pub fn new(
        dialer: Dialer,
        max_in_flight: usize,
        max_in_flight_per_client: usize,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            dialer,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            clients: PerAddress::new(max_in_flight_per_client),
            idle: Mutex::default(),
            h2: Mutex::default(),
            max_idle,
            idle_timeout,
            last_used: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    fn unused_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used.load(Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// A live pooled connection, else a new one. Closed, busy and expired idle connections
    /// are dropped on the way: they never carried this request, so skipping them is no retry.
    pub async fn checkout(&self) -> io::Result<Conn> {
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_used.store(now, Relaxed);
        while let Some(Idle { mut conn, since }) = self.pop_idle() {
            if since.elapsed() < self.idle_timeout && conn.is_ready_now() {
                return Ok(Conn::Http1(conn));
            }
        }
        if let Some(sender) = self.h2.lock().expect("h2 slot lock poisoned").as_ref()
            && !sender.is_closed()
        {
            return Ok(Conn::Http2(sender.clone()));
        }
        // Boxed: dialing, TLS and the HTTP handshake are most of this future's size, and a
        // request that reuses a connection would otherwise carry (and move) all of it.
        Box::pin(self.connect()).await
    }

    /// Returns an HTTP/1.1 connection whose response was read to its end.
    pub fn checkin(&self, conn: Http1) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("idle list lock poisoned");
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn pop_idle(&self) -> Option<Idle> {
        self.idle.lock().expect("idle list lock poisoned").pop()
    }

    /// A new connection, whatever is pooled.
    pub async fn connect(&self) -> io::Result<Conn> {
        let io = self.dialer.dial().await?;
        if io.is_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "origin HTTP/2 connection ended");
                }
            });
            *self.h2.lock().expect("h2 slot lock poisoned") = Some(sender.clone());
            Ok(Conn::Http2(sender))
        } else {
            let (sender, conn) = http1::handshake(io).await.map_err(io::Error::other)?;
            Ok(Conn::Http1(Http1::new(sender, conn)))
        }
    }
}

/// Closes a pool's connections once they sat idle for its idle timeout, and removes the pool
/// from `pools` (ending here) once it went unused that long with nobody holding it.
async fn sweep(pool: Weak<OriginPool>, pools: Weak<Pools>, origin: Origin) {
    let Some(idle_timeout) = pool.upgrade().map(|pool| pool.idle_timeout) else {
        return;
    };
    let mut tick = tokio::time::interval(idle_timeout.max(Duration::from_secs(1)) / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let Some(pools) = pools.upgrade() else { return };
        if pools.evict_unused(&origin, &pool) {
            return;
        }
        // Polled here, idle connections the origin closed release their sockets now rather
        // than at the next checkout.
        let mut cx = Context::from_waker(Waker::noop());
        pool.idle
            .lock()
            .expect("idle list lock poisoned")
            .retain_mut(|idle| {
                idle.since.elapsed() < idle_timeout && idle.conn.poll_driver(&mut cx).is_pending()
            });
    }
}

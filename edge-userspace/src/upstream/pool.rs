//! The connections of one origin: idle HTTP/1.1 connections, most recently used first, and
//! one shared HTTP/2 connection when the origin negotiates h2.
//!
//! hyper's own connection handles are used directly: a checkout is a `Vec::pop` under a short
//! lock, and an HTTP/1.1 connection goes back to the idle list when its response body ends
//! (see [`super::lease`]), with no task per request to wait for it. HTTP/1.1 connections have
//! no task of their own either: the request holding one drives it (see [`super::http1`]).

use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::RequestBody;
use super::connector::Dialer;
use super::http1::Http1;

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
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl OriginPool {
    /// A pool, and a task closing its connections once they sat idle for `idle_timeout`; the
    /// task ends with the pool.
    pub fn new(
        dialer: Dialer,
        max_in_flight: usize,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        let pool = Arc::new(Self {
            dialer,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            idle: Mutex::default(),
            h2: Mutex::default(),
            max_idle,
            idle_timeout,
        });
        tokio::spawn(expire_idle(Arc::downgrade(&pool), idle_timeout));
        pool
    }

    /// A live pooled connection, else a new one. Closed, busy and expired idle connections
    /// are dropped on the way: they never carried this request, so skipping them is no retry.
    pub async fn checkout(&self) -> io::Result<Conn> {
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

async fn expire_idle(pool: Weak<OriginPool>, idle_timeout: Duration) {
    let mut tick = tokio::time::interval(idle_timeout.max(Duration::from_secs(1)) / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
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

//! What a new QUIC connection costs before it has proven anything, and the bounds on it.
//!
//! An Initial the edge accepts costs a certificate signature and connection state until the
//! handshake ends; a Retry costs one stateless packet. So a client that has not proven its
//! address (no Retry token) gets a Retry instead of a handshake whenever handshakes arrive
//! faster than `retry_above_handshakes_per_second`, whenever `retry_above_handshakes_in_progress`
//! are already under way, and whenever the connections open reach the share kept for
//! validated clients ([`UNVALIDATED_SHARE`]): a flood from spoofed sources, at any rate, then
//! holds at most that many handshakes and never the last connection slots. Every handshake has
//! its own deadline (`handshake_timeout_secs`), so what a flood does hold is given back.
//!
//! [`CancelBudget`] is the HTTP/3 counterpart of HTTP/2's rapid-reset limit.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Unvalidated clients start handshakes only while fewer connections than this share of
/// `max_connections` are open (in percent): the rest is for clients that proved their address.
pub const UNVALIDATED_SHARE: usize = 90;

/// Window of [`CancelBudget`].
const CANCEL_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Prove the address first (stateless Retry).
    Retry,
    Refuse,
}

/// The admission state of one endpoint.
pub struct Admission {
    rate: HandshakeRate,
    in_progress: Arc<AtomicUsize>,
    max_in_progress: usize,
    max_connections: usize,
}

/// What is known of one Initial.
pub struct Initial {
    pub validated: bool,
    pub may_retry: bool,
}

impl Admission {
    pub fn new(retry_above_per_second: u32, max_in_progress: u32, max_connections: usize) -> Self {
        Self {
            rate: HandshakeRate::new(retry_above_per_second),
            in_progress: Arc::default(),
            max_in_progress: max_in_progress as usize,
            max_connections,
        }
    }

    /// Decides on one Initial while `open` connections (handshakes included) are open.
    pub fn decide(&mut self, initial: &Initial, open: usize) -> Verdict {
        if open >= self.max_connections {
            return Verdict::Refuse;
        }
        let busy = self.rate.arrival();
        if initial.validated {
            return Verdict::Accept;
        }
        let crowded = self.in_progress.load(Ordering::Relaxed) >= self.max_in_progress
            || open * 100 >= self.max_connections * UNVALIDATED_SHARE;
        match (busy || crowded, initial.may_retry) {
            (false, _) => Verdict::Accept,
            (true, true) => Verdict::Retry,
            // A client that cannot be asked to retry again (it carries a token that did not
            // validate) gets nothing while the edge is under load.
            (true, false) => Verdict::Refuse,
        }
    }

    /// Counts a handshake in progress until the guard drops.
    pub fn handshake(&self) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::Relaxed);
        InProgress(self.in_progress.clone())
    }
}

/// A handshake in progress, counted until dropped.
pub struct InProgress(Arc<AtomicUsize>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Handshakes started in the current one-second window.
struct HandshakeRate {
    limit: u32,
    window: Instant,
    count: u32,
}

impl HandshakeRate {
    fn new(limit: u32) -> Self {
        Self {
            limit,
            window: Instant::now(),
            count: 0,
        }
    }

    /// Counts one arrival; `true` when the window is past the limit.
    fn arrival(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count > self.limit
    }
}

/// Requests a client cancelled on one connection in the current window. Each one may have
/// reached the origin already, so a client cancelling request after request would make the
/// origin work for nothing at the rate of the round trip, on one connection forever.
pub struct CancelBudget {
    limit: u32,
    window: Mutex<(Instant, u32)>,
}

impl CancelBudget {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Counts one cancelled request; `true` once the window holds more than the budget.
    pub fn cancelled(&self) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(window.0) >= CANCEL_WINDOW {
            *window = (now, 0);
        }
        window.1 = window.1.saturating_add(1);
        window.1 > self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNPROVEN: Initial = Initial {
        validated: false,
        may_retry: true,
    };
    const PROVEN: Initial = Initial {
        validated: true,
        may_retry: false,
    };

    #[test]
    fn unvalidated_handshakes_past_the_in_progress_bound_must_retry() {
        let mut admission = Admission::new(u32::MAX, 10, 1000);
        // Ten times the bound: the first ten start, every later one gets a Retry.
        let mut held = Vec::new();
        for _ in 0..100 {
            if admission.decide(&UNPROVEN, 0) == Verdict::Accept {
                held.push(admission.handshake());
            }
        }
        assert_eq!(held.len(), 10);
        assert_eq!(admission.decide(&UNPROVEN, 0), Verdict::Retry);
        // A client that proved its address is not held back by the flood.
        assert_eq!(admission.decide(&PROVEN, 0), Verdict::Accept);
        let unretriable = Initial {
            validated: false,
            may_retry: false,
        };
        assert_eq!(admission.decide(&unretriable, 0), Verdict::Refuse);
        // Handshakes that end (completed, failed or past their deadline) give their place back.
        drop(held);
        assert_eq!(admission.decide(&UNPROVEN, 0), Verdict::Accept);
    }

    #[test]
    fn the_last_connection_slots_are_kept_for_validated_clients() {
        let mut admission = Admission::new(u32::MAX, u32::MAX, 100);
        assert_eq!(admission.decide(&UNPROVEN, 89), Verdict::Accept);
        assert_eq!(admission.decide(&UNPROVEN, 90), Verdict::Retry);
        assert_eq!(admission.decide(&PROVEN, 99), Verdict::Accept);
        assert_eq!(admission.decide(&PROVEN, 100), Verdict::Refuse);
        assert_eq!(admission.decide(&UNPROVEN, 1000), Verdict::Refuse);
    }

    #[test]
    fn handshakes_past_the_rate_must_retry() {
        let mut admission = Admission::new(10, u32::MAX, 1000);
        let accepted = (0..100)
            .filter(|_| admission.decide(&UNPROVEN, 0) == Verdict::Accept)
            .count();
        assert_eq!(accepted, 10);
    }

    #[test]
    fn cancelling_past_the_budget_is_reported() {
        let budget = CancelBudget::new(20);
        let over = (0..200).position(|_| budget.cancelled());
        assert_eq!(over, Some(20));
    }
}

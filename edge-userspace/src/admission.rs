//! Per-chain admission: one tenant's flood kept from the others.
//!
//! Every chain carries its budget (the strictest of its zones' and custom hostname's
//! `admission` settings) and a [`Meter`]: a GCRA token bucket for new TLS connections, asked
//! once the ClientHello is read and before the handshake signs anything
//! (`downstream::tls`), and a count of the chain's requests in flight, asked once the
//! request is routed (`routing.rs`) and held until its response body ends. Both are one
//! atomic each, with no lock on the hot path; there is one meter per chain, so memory is
//! bounded by the number of chains. A chain rebuilt unchanged (same id, same budget) keeps
//! its meter; a chain whose budget changes starts afresh.
//!
//! Refusals are counted per chain and reason and read on each scrape (`metrics::AdmissionCollector`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::state::Admission;

/// The burst a connection budget allows: one second's worth of its rate.
const BURST_NS: u64 = 1_000_000_000;

/// A chain's budget, taken from every `admission` setting that applies to it: for each
/// bound, the smallest one set (a customer zone cannot loosen its provider's budget, nor the
/// provider the customer's).
pub fn strictest<'a>(settings: impl IntoIterator<Item = &'a Admission>) -> Admission {
    let min = |a: Option<u32>, b: Option<u32>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    settings
        .into_iter()
        .fold(Admission::default(), |acc, s| Admission {
            new_connections_per_second: min(
                acc.new_connections_per_second,
                s.new_connections_per_second,
            ),
            max_concurrent_requests: min(acc.max_concurrent_requests, s.max_concurrent_requests),
        })
}

/// A chain's budget and its live meter. Two are equal when their budgets are: the meter is
/// the chain's running state, not part of what the chain is.
#[derive(Debug, Clone, Default)]
pub struct ChainAdmission {
    pub budget: Admission,
    meter: Arc<Meter>,
}

impl PartialEq for ChainAdmission {
    fn eq(&self, other: &Self) -> bool {
        self.budget == other.budget
    }
}

impl Eq for ChainAdmission {}

#[derive(Debug, Default)]
struct Meter {
    /// GCRA's theoretical arrival time, in nanoseconds since [`now_ns`]'s epoch.
    tat: AtomicU64,
    in_flight: AtomicU32,
    refused_connections: AtomicU64,
    refused_requests: AtomicU64,
}

/// Why a chain refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over `new_connections_per_second`: the handshake is refused.
    NewConnections,
    /// At `max_concurrent_requests`: the request gets 429.
    ConcurrentRequests,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::NewConnections, Refusal::ConcurrentRequests];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NewConnections => "new_connections",
            Refusal::ConcurrentRequests => "concurrent_requests",
        }
    }
}

/// One admitted request of a chain, counted until dropped.
#[derive(Debug)]
pub struct Permit(Arc<Meter>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl ChainAdmission {
    pub fn new(budget: Admission) -> Self {
        ChainAdmission {
            budget,
            meter: Arc::default(),
        }
    }

    /// Carries on `previous`'s meter: the same chain, rebuilt with the same budget.
    pub(crate) fn keep_meter_of(&mut self, previous: &ChainAdmission) {
        if self.budget == previous.budget {
            self.meter = previous.meter.clone();
        }
    }

    /// Whether a new connection fits the budget (taking its token); counts a refusal.
    pub fn admit_connection(&self) -> bool {
        self.admit_connection_at(now_ns())
    }

    /// GCRA: each connection moves the theoretical arrival time one interval (1 s / rate) on
    /// from the later of itself and now; one that would move it more than a second ahead of
    /// now is over the budget.
    fn admit_connection_at(&self, now: u64) -> bool {
        let Some(rate) = self.budget.new_connections_per_second else {
            return true;
        };
        let interval = (BURST_NS / u64::from(rate.max(1))).max(1);
        let meter = &self.meter;
        let mut tat = meter.tat.load(Relaxed);
        loop {
            let next = tat.max(now) + interval;
            if next > now + BURST_NS {
                meter.refused_connections.fetch_add(1, Relaxed);
                return false;
            }
            match meter.tat.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// A permit for one more request, or `Err` at the cap (counted). Without a cap, `None`:
    /// nothing to count.
    pub fn enter(&self) -> Result<Option<Permit>, Refusal> {
        let Some(max) = self.budget.max_concurrent_requests else {
            return Ok(None);
        };
        let meter = &self.meter;
        if meter.in_flight.fetch_add(1, Relaxed) >= max {
            meter.in_flight.fetch_sub(1, Relaxed);
            meter.refused_requests.fetch_add(1, Relaxed);
            return Err(Refusal::ConcurrentRequests);
        }
        Ok(Some(Permit(meter.clone())))
    }

    /// Refusals so far, by reason.
    pub fn refused(&self, reason: Refusal) -> u64 {
        match reason {
            Refusal::NewConnections => self.meter.refused_connections.load(Relaxed),
            Refusal::ConcurrentRequests => self.meter.refused_requests.load(Relaxed),
        }
    }
}

/// Nanoseconds on the monotonic clock since the first call in this process.
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let nanos = EPOCH.get_or_init(Instant::now).elapsed().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(rate: Option<u32>, concurrent: Option<u32>) -> Admission {
        Admission {
            new_connections_per_second: rate,
            max_concurrent_requests: concurrent,
        }
    }

    #[test]
    fn the_strictest_bound_of_each_kind_applies() {
        let chain = strictest(&[
            budget(Some(100), None),
            budget(Some(10), Some(50)),
            budget(None, Some(5)),
        ]);
        assert_eq!(chain, budget(Some(10), Some(5)));
        assert!(strictest(&[Admission::default()]).is_unset());
    }

    #[test]
    fn a_connection_budget_allows_one_seconds_burst_then_refuses() {
        let chain = ChainAdmission::new(budget(Some(50), None));
        let start = 5 * BURST_NS;
        let admitted = (0..500)
            .filter(|_| chain.admit_connection_at(start))
            .count();
        assert_eq!(admitted, 50, "one second's worth at once");
        assert_eq!(chain.refused(Refusal::NewConnections), 450);
        // A tenth of a second later, a tenth of the rate is back; a second later, all of it.
        let tenth = start + BURST_NS / 10;
        assert_eq!(
            (0..500)
                .filter(|_| chain.admit_connection_at(tenth))
                .count(),
            5
        );
        let later = tenth + 2 * BURST_NS;
        assert_eq!(
            (0..500)
                .filter(|_| chain.admit_connection_at(later))
                .count(),
            50
        );
        assert!(ChainAdmission::default().admit_connection());
    }

    #[test]
    fn the_request_cap_holds_and_frees() {
        let chain = ChainAdmission::new(budget(None, Some(2)));
        let a = chain.enter().unwrap().unwrap();
        let _b = chain.enter().unwrap().unwrap();
        assert_eq!(chain.enter().unwrap_err(), Refusal::ConcurrentRequests);
        drop(a);
        assert!(chain.enter().unwrap().is_some());
        assert_eq!(chain.refused(Refusal::ConcurrentRequests), 1);
        assert!(ChainAdmission::default().enter().unwrap().is_none());
    }

    #[test]
    fn a_rebuilt_chain_keeps_its_meter_only_with_the_same_budget() {
        let old = ChainAdmission::new(budget(None, Some(1)));
        let _held = old.enter().unwrap();
        let mut same = ChainAdmission::new(budget(None, Some(1)));
        same.keep_meter_of(&old);
        assert!(same.enter().is_err(), "the held request still counts");
        let mut looser = ChainAdmission::new(budget(None, Some(2)));
        looser.keep_meter_of(&old);
        assert!(looser.enter().is_ok());
    }
}

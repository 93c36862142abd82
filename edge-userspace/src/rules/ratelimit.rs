//! Rate limiting without locks: per rule, a fixed table of atomic slots
//! indexed by a keyed hash of the characteristics. Each slot packs the window
//! number and the count in one `AtomicU64`, so a request costs one hash and
//! one compare-and-swap. Two keys that share a slot share a counter: memory
//! stays bounded and a collision can only make the limit stricter, never
//! let traffic through. The hash is foldhash's quality variant with a random
//! seed per rule: a fraction of SipHash's cost per request, and clients
//! cannot compute which slot another client's key lands in.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::context::{Ctx, Val};
use super::expression::Expression;

/// Time source, injected so tests are deterministic.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since an arbitrary fixed epoch.
    fn now_secs(&self) -> u64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(secs: u64) -> Self {
        ManualClock(AtomicU64::new(secs))
    }

    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_secs(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Slots per rule: 64 KiB of counters, enough that distinct clients rarely share one.
const SLOTS: usize = 4096;

#[derive(Default)]
struct Slot {
    /// `window << 32 | count`.
    state: AtomicU64,
    /// Second until which the key stays blocked (mitigation timeout).
    blocked_until: AtomicU64,
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Requests counted in the current window, this one included.
    pub count: u32,
    pub exceeded: bool,
}

pub struct RateLimiter {
    characteristics: Vec<Expression>,
    period: u64,
    limit: u32,
    timeout: u64,
    slots: Box<[Slot]>,
    hasher: foldhash::quality::RandomState,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field(
                "characteristics",
                &self
                    .characteristics
                    .iter()
                    .map(Expression::source)
                    .collect::<Vec<_>>(),
            )
            .field("period", &self.period)
            .field("limit", &self.limit)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RateLimiter {
    pub(crate) fn new(
        characteristics: Vec<Expression>,
        period: u32,
        limit: u32,
        timeout: u32,
        clock: Arc<dyn Clock>,
    ) -> Self {
        RateLimiter {
            characteristics,
            period: u64::from(period.max(1)),
            limit,
            timeout: u64::from(timeout),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            hasher: Default::default(),
            clock,
        }
    }

    fn slot(&self, ctx: &Ctx<'_>) -> &Slot {
        let mut h = self.hasher.build_hasher();
        for c in &self.characteristics {
            match c.eval(ctx) {
                Val::Bytes(b) => b.hash(&mut h),
                Val::Int(i) => i.hash(&mut h),
                Val::Bool(b) => b.hash(&mut h),
                Val::Ip(ip) => ip.hash(&mut h),
            }
        }
        &self.slots[(h.finish() as usize) % SLOTS]
    }

    /// Counts the request and says whether its key is over the rate.
    pub fn hit(&self, ctx: &Ctx<'_>) -> RateDecision {
        let now = self.clock.now_secs();
        let slot = self.slot(ctx);
        let window = now / self.period;
        let mut count = 0;
        let _ = slot
            .state
            .try_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                count = if s >> 32 == window & 0xffff_ffff {
                    (s as u32).saturating_add(1)
                } else {
                    1
                };
                Some((window & 0xffff_ffff) << 32 | u64::from(count))
            });
        let blocked = slot.blocked_until.load(Ordering::Acquire) > now;
        let over = count > self.limit;
        if over && self.timeout > 0 {
            slot.blocked_until
                .fetch_max(now + self.timeout, Ordering::AcqRel);
        }
        RateDecision {
            count,
            exceeded: over || blocked,
        }
    }
}

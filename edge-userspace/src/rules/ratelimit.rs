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

/// Wall-clock seconds from the kernel's coarse clock: every counted request
/// reads the clock, and the coarse one is a plain load of the time the
/// kernel stamped at its last tick (a few ms old, nothing for windows of
/// whole seconds) where the precise one reads and scales the TSC.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
            return u64::try_from(ts.tv_sec).unwrap_or(0);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse clock is the wall clock to within a tick: windows are
    /// counted in the seconds every other clock of the machine shows.
    #[test]
    fn system_clock_is_the_wall_clock_in_seconds() {
        let wall = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs()
        };
        let before = wall();
        let now = SystemClock.now_secs();
        let after = wall();
        assert!(
            before.saturating_sub(1) <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }
}

//! Memory taken during a spike of connections, given back to the system after it.
//!
//! The allocator keeps pages freed by a thread in that thread's heap until the thread
//! allocates again, and an idle runtime thread does not: after a flood of connections the
//! edge would keep its peak resident size for good. The binary registers how to give a
//! thread's free memory back ([`set_trim`]: mimalloc's `mi_collect`) and runs
//! [`trim_if_requested`] from the runtime's park and unpark hooks; a listener whose open
//! connections fall to half of their peak ([`Spike`]) asks every thread to trim once.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Open connections below which a fall is not worth a trim.
const MIN_SPIKE: usize = 64;

static TRIM: OnceLock<fn()> = OnceLock::new();
/// Bumped by each request; every thread trims once per value it has not seen.
static REQUESTED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// How a thread gives its free memory back; without it (an embedding, the tests) trimming
/// does nothing.
pub fn set_trim(trim: fn()) {
    let _ = TRIM.set(trim);
}

/// Runs the trim on this thread if one was requested since it last did.
pub fn trim_if_requested() {
    let requested = REQUESTED.load(Ordering::Relaxed);
    if SEEN.with(|seen| seen.replace(requested)) != requested
        && let Some(trim) = TRIM.get()
    {
        trim();
    }
}

/// Asks every runtime thread to trim: this one now, the others when they next park or wake
/// (woken here by one empty task per worker, so an idle runtime trims too).
pub fn request_trim() {
    if TRIM.get().is_none() {
        return;
    }
    REQUESTED.fetch_add(1, Ordering::Relaxed);
    trim_if_requested();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        for _ in 0..runtime.metrics().num_workers() {
            runtime.spawn(async {});
        }
    }
}

/// The open connections of one listener since its last trim.
#[derive(Debug, Default)]
pub struct Spike {
    peak: usize,
}

impl Spike {
    /// Follows the count of open connections; a fall to half the peak requests a trim.
    pub fn observe(&mut self, open: usize) {
        if open > self.peak {
            self.peak = open;
        } else if self.peak >= MIN_SPIKE && open * 2 <= self.peak {
            self.peak = open;
            request_trim();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fall_to_half_the_peak_trims_every_thread_once() {
        static TRIMS: AtomicU64 = AtomicU64::new(0);
        set_trim(|| {
            TRIMS.fetch_add(1, Ordering::Relaxed);
        });
        let mut spike = Spike::default();
        for open in (0..=100).chain((0..100).rev()) {
            spike.observe(open);
        }
        // Down from 100, one trim at 50; the next half (25) is of a peak below 64.
        assert_eq!(TRIMS.load(Ordering::Relaxed), 1);
        // Another thread trims once when it parks, and only once.
        std::thread::spawn(|| {
            trim_if_requested();
            trim_if_requested();
        })
        .join()
        .unwrap();
        assert_eq!(TRIMS.load(Ordering::Relaxed), 2);
    }
}

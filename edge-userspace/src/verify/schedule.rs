//! Cloudflare's validation back-off as a value: where one hostname is in
//! [`validation_try_at`]'s schedule. Pure (the caller passes the time), so the
//! schedule is tested without waiting for it.

use std::time::Instant;

use crate::state::activation::{VALIDATION_TRIES, validation_try_at};

/// A hostname's place in the back-off schedule. The schedule starts when the
/// hostname is first seen awaiting validation (or is refreshed): one check at
/// once, so a hostname whose DNS is already right goes live without waiting,
/// then the [`VALIDATION_TRIES`] tries of the schedule, after which checks
/// stop until the next refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    started: Instant,
    /// The schedule point due next: 0 is the immediate check, `n` is
    /// `validation_try_at(n)`, past [`VALIDATION_TRIES`] nothing is due.
    next: u32,
}

impl Retry {
    pub fn start(now: Instant) -> Retry {
        Retry {
            started: now,
            next: 0,
        }
    }

    /// When the next check is due; `None` once the schedule is used up.
    pub fn next_due(&self) -> Option<Instant> {
        match self.next {
            0 => Some(self.started),
            n => validation_try_at(n).map(|at| self.started + at),
        }
    }

    /// Records a check made at `now`. The next one is the first schedule
    /// point after `now`: a check that ran late (a busy resolver, a
    /// suspended process) skips the points it overran instead of firing them
    /// back to back.
    pub fn tried(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        let mut n = self.next + 1;
        while validation_try_at(n).is_some_and(|at| at <= elapsed) {
            n += 1;
        }
        self.next = n.min(VALIDATION_TRIES + 1);
    }

    /// Checks made so far under this schedule, counting the immediate one.
    pub fn tries(&self) -> u32 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::state::activation::{FIRST_TRY, VALIDATION_WINDOW};

    #[test]
    fn first_check_at_once_then_the_schedule() {
        let t0 = Instant::now();
        let mut retry = Retry::start(t0);
        assert_eq!(retry.next_due(), Some(t0));
        retry.tried(t0);
        assert_eq!(retry.next_due(), Some(t0 + FIRST_TRY));
        // Checks made on time walk every point of the schedule, in order.
        let mut checks = 1;
        while let Some(due) = retry.next_due() {
            let n = retry.tries();
            assert_eq!(due, t0 + validation_try_at(n).unwrap(), "try {n}");
            retry.tried(due);
            checks += 1;
            assert!(checks <= VALIDATION_TRIES + 1, "the schedule must end");
        }
        assert_eq!(checks, VALIDATION_TRIES + 1);
        assert_eq!(retry.tries(), VALIDATION_TRIES + 1);
    }

    #[test]
    fn late_checks_skip_overrun_points() {
        let t0 = Instant::now();
        let mut retry = Retry::start(t0);
        retry.tried(t0);
        let three_days = Duration::from_secs(3 * 24 * 3600);
        retry.tried(t0 + three_days);
        let due = retry.next_due().unwrap() - t0;
        assert!(due > three_days, "{due:?}");
        let previous = validation_try_at(retry.tries() - 1).unwrap();
        assert!(
            previous <= three_days,
            "{previous:?} must have been skipped"
        );
        retry.tried(t0 + VALIDATION_WINDOW);
        assert_eq!(retry.next_due(), None);
        // Still used up, however late the next report.
        retry.tried(t0 + VALIDATION_WINDOW * 2);
        assert_eq!(retry.next_due(), None);
    }

    #[test]
    fn a_restart_begins_again_at_once() {
        let t0 = Instant::now();
        let mut retry = Retry::start(t0);
        retry.tried(t0 + VALIDATION_WINDOW);
        assert_eq!(retry.next_due(), None);
        let later = t0 + VALIDATION_WINDOW + Duration::from_secs(5);
        assert_eq!(Retry::start(later).next_due(), Some(later));
    }
}

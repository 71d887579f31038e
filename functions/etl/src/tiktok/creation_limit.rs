//! When the next TikTok report task may be created. TikTok limits task creation to
//! [`PER_SECOND`] a second and [`PER_MINUTE`] a minute on every tier, far below its report
//! QPS, and answers a creation over the limit with 40100. The rule, for the creations this
//! run has made:
//!
//! 1. Fewer than [`PER_SECOND`] in the last second and fewer than [`PER_MINUTE`] in the last
//!    minute: now.
//! 2. Otherwise: when the oldest creation that keeps a window full leaves it, the later of
//!    the two windows, plus [`MARGIN`] (a request arrives later than it leaves, and not
//!    every request by the same delay).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Task creations TikTok accepts per second.
pub const PER_SECOND: usize = 2;
/// Task creations TikTok accepts per minute.
pub const PER_MINUTE: usize = 60;
/// Added to every wait the limit imposes.
pub const MARGIN: Duration = Duration::from_millis(100);

const WINDOWS: [(usize, Duration); 2] = [
    (PER_SECOND, Duration::from_secs(1)),
    (PER_MINUTE, Duration::from_secs(60)),
];

/// The creations of one run, as far back as the longest window needs.
#[derive(Debug, Default)]
pub struct CreationLimit {
    recent: VecDeque<Instant>,
}

impl CreationLimit {
    /// The earliest moment the next creation may leave, by the rule above.
    pub fn next_allowed(&self, now: Instant) -> Instant {
        WINDOWS
            .iter()
            .filter_map(|(limit, window)| {
                let full_since = self.recent.len().checked_sub(*limit)?;
                let oldest_in_window = self.recent.get(full_since)?;
                Some(*oldest_in_window + *window + MARGIN)
            })
            .filter(|allowed| *allowed > now)
            .max()
            .unwrap_or(now)
    }

    /// Records a creation that left at `at`.
    pub fn record(&mut self, at: Instant) {
        self.recent.push_back(at);
        while self.recent.len() > PER_MINUTE {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_1_below_both_limits_now() {
        let start = Instant::now();
        let mut limit = CreationLimit::default();
        assert_eq!(limit.next_allowed(start), start);
        limit.record(start);
        assert_eq!(
            limit.next_allowed(start),
            start,
            "a second creation in the same second"
        );
    }

    #[test]
    fn rule_2_a_full_second_waits_for_its_oldest_creation_to_leave() {
        let start = Instant::now();
        let mut limit = CreationLimit::default();
        limit.record(start);
        limit.record(start + Duration::from_millis(10));
        let allowed = limit.next_allowed(start + Duration::from_millis(20));
        assert_eq!(allowed, start + Duration::from_secs(1) + MARGIN);
        limit.record(allowed);
        assert_eq!(
            limit.next_allowed(allowed),
            start + Duration::from_millis(10) + Duration::from_secs(1) + MARGIN,
            "the second creation of the first second is the next to leave"
        );
    }

    #[test]
    fn rule_2_a_full_minute_waits_for_a_minute() {
        let start = Instant::now();
        let mut limit = CreationLimit::default();
        for second in 0..PER_MINUTE as u64 {
            limit.record(start + Duration::from_secs(second));
        }
        let now = start + Duration::from_secs(PER_MINUTE as u64);
        assert_eq!(
            limit.next_allowed(now),
            start + Duration::from_secs(60) + MARGIN
        );
        assert!(limit.recent.len() <= PER_MINUTE);
    }
}

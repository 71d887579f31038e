//! The one clock every decision about "now" reads.
//!
//! Which day it is for a workspace, whether a signature is fresh, when an email is due,
//! which five-minute bucket a recompute falls in: agents ask their [`Clock`], never
//! `Utc::now()` directly. In production it is the system clock; a test fixes it at the
//! instant it wants to examine (00:30 UTC, a DST change day) or shifts a whole running
//! stack there, so no test depends on the hour it happens to run at.
//!
//! Two kinds of time stay off it. Bookkeeping the database stamps itself (`now()` in
//! `stored_at`, `claimed_at`, the run log) is on the server's clock: those columns measure
//! time elapsed between writes of the same server, not what day it is for a user. Waits (a
//! `Retry-After` date turned into a delay, a timeout) are on the real clock, because the
//! sleep they decide is real.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

#[derive(Debug)]
enum Source {
    System,
    /// Starts at `at` when `since` was read and runs at the real pace.
    Shifted {
        at: DateTime<Utc>,
        since: Instant,
    },
    /// Stands still until told otherwise.
    Fixed(Mutex<DateTime<Utc>>),
}

/// A cheap, cloneable handle on the time; clones share the same source.
#[derive(Debug, Clone)]
pub struct Clock(Arc<Source>);

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(Source::System))
    }

    /// A clock that reads `at` now and then moves forward in real time: for a whole stack
    /// that must believe it is another hour while its timeouts still elapse.
    pub fn shifted_to(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Source::Shifted {
            at,
            since: Instant::now(),
        }))
    }

    /// A clock frozen at `at` until [`Clock::set`] or [`Clock::advance`] moves it.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Source::Fixed(Mutex::new(at))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &*self.0 {
            Source::System => Utc::now(),
            Source::Shifted { at, since } => {
                *at + Duration::from_std(since.elapsed()).unwrap_or(Duration::MAX)
            }
            Source::Fixed(at) => *at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// [`Clock::now`] as a `SystemTime`, for APIs (HTTP dates) that take one.
    pub fn system_time(&self) -> SystemTime {
        self.now().into()
    }

    /// Today's date in `zone`.
    pub fn today_in<Tz: TimeZone>(&self, zone: &Tz) -> NaiveDate {
        self.now().with_timezone(zone).date_naive()
    }

    /// Today's date in the IANA zone `name` (a workspace's or a user's `timezone`), or in
    /// UTC when the name is not a zone: a bad setting must not stop anyone's day.
    pub fn today_in_named(&self, name: &str) -> NaiveDate {
        match name.parse::<chrono_tz::Tz>() {
            Ok(zone) => self.today_in(&zone),
            Err(_) => self.today_in(&Utc),
        }
    }

    /// Moves a fixed clock to `at`. Other clocks are not settable.
    ///
    /// # Panics
    /// On a clock that is not [`Clock::fixed`]: that is a test's mistake, never input's.
    pub fn set(&self, at: DateTime<Utc>) {
        match &*self.0 {
            Source::Fixed(now) => *now.lock().unwrap_or_else(|p| p.into_inner()) = at,
            _ => panic!("only a fixed clock can be set"),
        }
    }

    /// Moves a fixed clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.set(self.now() + by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_fixed_clock_stands_still_until_moved() {
        let clock = Clock::fixed(at("2026-12-07T00:30:00Z"));
        let copy = clock.clone();
        assert_eq!(clock.now(), at("2026-12-07T00:30:00Z"));
        copy.advance(Duration::hours(23));
        assert_eq!(clock.now(), at("2026-12-07T23:30:00Z"), "clones share it");
        assert_eq!(
            clock.system_time(),
            SystemTime::from(at("2026-12-07T23:30:00Z"))
        );
    }

    #[test]
    fn today_depends_on_the_zone() {
        let clock = Clock::fixed(at("2026-12-07T00:30:00Z"));
        assert_eq!(
            clock.today_in(&chrono_tz::America::Los_Angeles).to_string(),
            "2026-12-06"
        );
        assert_eq!(clock.today_in(&Utc).to_string(), "2026-12-07");
        clock.set(at("2026-12-07T23:30:00Z"));
        assert_eq!(
            clock.today_in(&chrono_tz::Pacific::Kiritimati).to_string(),
            "2026-12-08"
        );
        assert_eq!(
            clock.today_in_named("Pacific/Kiritimati").to_string(),
            "2026-12-08"
        );
        assert_eq!(
            clock.today_in_named("Mars/Olympus").to_string(),
            "2026-12-07"
        );
    }

    #[test]
    fn a_shifted_clock_starts_where_told_and_moves() {
        let start = at("2031-03-30T01:30:00Z");
        let clock = Clock::shifted_to(start);
        let first = clock.now();
        assert!(first >= start && first - start < Duration::seconds(5));
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(clock.now() > first);
    }

    #[test]
    fn the_system_clock_is_the_system_clock() {
        let before = Utc::now();
        let read = Clock::system().now();
        assert!(read >= before && read - before < Duration::seconds(5));
    }
}

//! The back-off after failed sign-ins for one email: a few failures are
//! free, then each further attempt must wait, the wait doubling with every
//! failure up to a cap. The rule only; the per-instance state lives in an
//! adapter, and time is passed in.

use chrono::{DateTime, Duration, Utc};

/// How failed sign-ins for one email slow the next attempt down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures before the first wait.
    pub free_failures: u32,
    /// The wait after the last free failure; each further failure doubles it.
    pub first_wait: Duration,
    /// No wait is longer.
    pub max_wait: Duration,
    /// A record with no failure for this long after its wait ends is
    /// forgotten: the next failure counts as the first.
    pub forget_after: Duration,
}

/// The failures recorded for one email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub last: DateTime<Utc>,
}

impl Backoff {
    /// 5 free failures, then 1 s, 2 s, 4 s, ... up to 15 minutes; forgotten
    /// an hour after the last wait ends.
    pub fn standard() -> Self {
        Self {
            free_failures: 5,
            first_wait: Duration::seconds(1),
            max_wait: Duration::minutes(15),
            forget_after: Duration::hours(1),
        }
    }

    /// The wait that `count` failures impose after the last of them.
    pub fn wait_after(&self, count: u32) -> Duration {
        if count < self.free_failures.max(1) {
            return Duration::zero();
        }
        let doublings = (count - self.free_failures.max(1)).min(40);
        let factor = 1i64 << doublings;
        let wait = self
            .first_wait
            .num_milliseconds()
            .saturating_mul(factor)
            .min(self.max_wait.num_milliseconds());
        Duration::milliseconds(wait)
    }

    /// Until when an attempt is refused; `None` while failures are free.
    pub fn blocked_until(&self, failures: &Failures) -> Option<DateTime<Utc>> {
        let wait = self.wait_after(failures.count);
        (wait > Duration::zero()).then(|| failures.last + wait)
    }

    /// How long an attempt at `now` must still wait, if it must.
    pub fn refusal(&self, failures: Option<&Failures>, now: DateTime<Utc>) -> Option<Duration> {
        let until = self.blocked_until(failures?)?;
        (until > now).then(|| until - now)
    }

    /// Whether the record no longer matters at `now` and may be dropped.
    pub fn forgotten(&self, failures: &Failures, now: DateTime<Utc>) -> bool {
        let quiet_from = self.blocked_until(failures).unwrap_or(failures.last);
        now >= quiet_from + self.forget_after
    }

    /// The record after one more failure at `now`.
    pub fn failed(&self, before: Option<Failures>, now: DateTime<Utc>) -> Failures {
        let count = match before {
            Some(f) if !self.forgotten(&f, now) => f.count.saturating_add(1),
            _ => 1,
        };
        Failures { count, last: now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn free_failures_then_waits_that_double_up_to_the_cap() {
        let b = Backoff::standard();
        let waits: Vec<i64> = (1..=16).map(|n| b.wait_after(n).num_seconds()).collect();
        assert_eq!(
            waits,
            [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]
        );
        assert_eq!(b.wait_after(u32::MAX), Duration::minutes(15));
    }

    #[test]
    fn an_attempt_waits_until_the_last_failure_plus_its_wait() {
        let b = Backoff::standard();
        let mut f = None;
        for _ in 0..4 {
            f = Some(b.failed(f, t0()));
            assert_eq!(b.refusal(f.as_ref(), t0()), None, "the first four are free");
        }
        let fifth = b.failed(f, t0());
        assert_eq!(b.refusal(Some(&fifth), t0()), Some(Duration::seconds(1)));
        let half = t0() + Duration::milliseconds(500);
        assert_eq!(
            b.refusal(Some(&fifth), half),
            Some(Duration::milliseconds(500))
        );
        let later = t0() + Duration::seconds(1);
        assert_eq!(b.refusal(Some(&fifth), later), None);
        let sixth = b.failed(Some(fifth), later);
        assert_eq!(sixth.count, 6);
        assert_eq!(b.refusal(Some(&sixth), later), Some(Duration::seconds(2)));
        assert_eq!(b.refusal(None, later), None);
    }

    #[test]
    fn a_record_is_forgotten_after_a_quiet_hour_past_its_wait() {
        let b = Backoff::standard();
        let f = Failures {
            count: 7,
            last: t0(),
        };
        let wait_ends = t0() + Duration::seconds(4);
        assert!(!b.forgotten(&f, wait_ends + Duration::minutes(59)));
        assert!(b.forgotten(&f, wait_ends + Duration::hours(1)));
        let again = b.failed(Some(f), wait_ends + Duration::hours(1));
        assert_eq!(again.count, 1, "a forgotten record starts over");
        let free = Failures {
            count: 1,
            last: t0(),
        };
        assert!(b.forgotten(&free, t0() + Duration::hours(1)));
    }
}

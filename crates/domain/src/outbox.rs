//! The outbox's state machine: a message is written `Pending` with the change
//! it reports, claimed (`Sending`) by one sender under a lease, and finished
//! `Sent`, back to `Pending` for a retry, or `Failed` for good. Both stores
//! persist these states; the rules of moving between them live here.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    Pending,
    Sending,
    Sent,
    Failed,
}

/// How one send attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    Sent,
    /// Failed; tried again once `retry_at` has come.
    Retry {
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Failed for good.
    GaveUp {
        error: String,
    },
}

impl SendResult {
    /// What a failed try leaves, by the number of tries so far.
    pub fn failed(error: String, attempts: u32, now: DateTime<Utc>) -> Self {
        if attempts >= MAX_ATTEMPTS {
            SendResult::GaveUp { error }
        } else {
            SendResult::Retry {
                error,
                retry_at: now + retry_backoff(attempts),
            }
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            SendResult::Sent => None,
            SendResult::Retry { error, .. } | SendResult::GaveUp { error } => Some(error),
        }
    }

    /// When a retried message is due; `None` for any other end.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            SendResult::Retry { retry_at, .. } => Some(*retry_at),
            _ => None,
        }
    }
}

/// Attempts before a message is marked failed (and logged) for good.
/// How long a message is kept once it is sent or given up: long enough to
/// show what was sent when, then it goes (it may hold a link, such as an
/// invitation's).
pub const FINISHED_RETENTION_DAYS: i64 = 90;

pub const MAX_ATTEMPTS: u32 = 5;

/// How long after its `attempts`-th failed try a message is tried again.
/// Minutes, growing, so the five tries span more than an hour: a receipt
/// outlives a half-hour mail outage instead of spending its tries on it.
pub fn retry_backoff(attempts: u32) -> Duration {
    match attempts {
        0 | 1 => Duration::minutes(1),
        2 => Duration::minutes(5),
        3 => Duration::minutes(15),
        _ => Duration::minutes(45),
    }
}

impl OutboxState {
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
        }
    }

    /// Claims made at or before this instant have lapsed: their sender is
    /// presumed dead, and another may take the message.
    pub fn lease_cutoff(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
        now - lease
    }

    /// Whether a sender may claim a message in this state now: a pending
    /// one once it is due (`not_before`, set by a failed try), a claimed one
    /// once its lease has lapsed.
    pub fn claimable(
        self,
        claimed_at: Option<DateTime<Utc>>,
        not_before: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> bool {
        match self {
            OutboxState::Pending => not_before.is_none_or(|t| t <= now),
            OutboxState::Sending => claimed_at.is_some_and(|c| c <= Self::lease_cutoff(now, lease)),
            OutboxState::Sent | OutboxState::Failed => false,
        }
    }

    /// The state an attempt's end leaves, or `None` when the message is not
    /// claimed (any more): a late or repeated finish changes nothing.
    pub fn after(self, result: &SendResult) -> Option<OutboxState> {
        if self != OutboxState::Sending {
            return None;
        }
        Some(match result {
            SendResult::Sent => OutboxState::Sent,
            SendResult::GaveUp { .. } => OutboxState::Failed,
            SendResult::Retry { .. } => OutboxState::Pending,
        })
    }
}

impl fmt::Display for OutboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outbox state {0:?}")]
pub struct UnknownOutboxState(pub String);

impl FromStr for OutboxState {
    type Err = UnknownOutboxState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            OutboxState::Pending,
            OutboxState::Sending,
            OutboxState::Sent,
            OutboxState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| UnknownOutboxState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OutboxState::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    #[test]
    fn a_claim_is_exclusive_until_its_lease_lapses() {
        let lease = Duration::minutes(5);
        assert!(Pending.claimable(None, None, t(0), lease));
        assert!(!Sending.claimable(Some(t(0)), None, t(4), lease));
        assert!(Sending.claimable(Some(t(0)), None, t(5), lease));
        assert!(!Sending.claimable(None, None, t(60), lease));
        assert!(!Sent.claimable(Some(t(0)), None, t(60), lease));
        assert!(!Failed.claimable(None, None, t(60), lease));
    }

    #[test]
    fn a_failed_try_waits_its_backoff_and_the_tries_outlast_a_half_hour_outage() {
        let lease = Duration::minutes(5);
        assert!(!Pending.claimable(Some(t(0)), Some(t(1)), t(0), lease));
        assert!(Pending.claimable(Some(t(0)), Some(t(1)), t(1), lease));
        let waited: Duration = (1..MAX_ATTEMPTS).map(retry_backoff).sum();
        assert!(waited > Duration::minutes(30), "{waited}");
        assert!((1..MAX_ATTEMPTS).all(|n| retry_backoff(n) >= Duration::minutes(1)));
    }

    #[test]
    fn only_a_claimed_message_is_finished() {
        let retry = SendResult::failed("421".into(), 1, t(0));
        assert_eq!(retry.retry_at(), Some(t(1)));
        let last = SendResult::failed("421".into(), MAX_ATTEMPTS, t(0));
        assert_eq!(last.retry_at(), None);
        assert_eq!(Sending.after(&SendResult::Sent), Some(Sent));
        assert_eq!(Sending.after(&retry), Some(Pending));
        assert_eq!(Sending.after(&last), Some(Failed));
        for state in [Pending, Sent, Failed] {
            assert_eq!(state.after(&SendResult::Sent), None, "{state}");
        }
    }

    #[test]
    fn states_read_back_as_written() {
        for state in [Pending, Sending, Sent, Failed] {
            assert_eq!(state.as_str().parse::<OutboxState>(), Ok(state));
        }
        assert!("queued".parse::<OutboxState>().is_err());
    }
}

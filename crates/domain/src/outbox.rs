//! The outbox's state machine: a message is written `Pending` with the change
//! it reports, claimed (`Sending`) by one sender under a lease, and finished
//! `Sent`, back to `Pending` for a retry, or `Failed` for good. Both stores
//! persist these states; the rules of moving between them live here, with
//! the one ordering rule: an account's events go out in order (`due`).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::records::{MessageKind, OutboxMessage};

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
    /// What a failed email leaves, by the number of tries so far.
    pub fn failed(error: String, attempts: u32, now: DateTime<Utc>) -> Self {
        Self::failed_under(RetryPolicy::EMAIL, error, attempts, now)
    }

    /// What a failed try leaves under `policy`, by the number of tries so far.
    pub fn failed_under(
        policy: RetryPolicy,
        error: String,
        attempts: u32,
        now: DateTime<Utc>,
    ) -> Self {
        if attempts >= policy.max_attempts {
            SendResult::GaveUp { error }
        } else {
            SendResult::Retry {
                error,
                retry_at: now + policy.backoff(attempts),
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
    RetryPolicy::EMAIL.backoff(attempts)
}

/// How often, and how far apart, a kind of message is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries before the message is marked failed (and logged) for good.
    pub max_attempts: u32,
    /// Minutes to wait after the n-th failed try (1-based); the last entry
    /// repeats.
    pub backoff_minutes: &'static [i64],
}

impl RetryPolicy {
    /// Emails: five tries over more than an hour (`retry_backoff`).
    pub const EMAIL: RetryPolicy = RetryPolicy {
        max_attempts: MAX_ATTEMPTS,
        backoff_minutes: &[1, 5, 15, 45],
    };

    /// Events for KRAFTD: Standard Webhooks' schedule in minutes (1 min,
    /// 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h): ten tries over
    /// about three days. An account's later events wait all that time
    /// (`due`); an event given up on is logged, and no longer holds them.
    pub const EVENT: RetryPolicy = RetryPolicy {
        max_attempts: 10,
        backoff_minutes: &[1, 5, 30, 120, 300, 600, 840, 1200, 1440],
    };

    pub fn of(kind: MessageKind) -> RetryPolicy {
        match kind {
            MessageKind::Email(_) => Self::EMAIL,
            MessageKind::Event(_) => Self::EVENT,
        }
    }

    /// How long after its `attempts`-th failed try a message is tried again.
    pub fn backoff(self, attempts: u32) -> Duration {
        let i = (attempts.max(1) - 1) as usize;
        let minutes = self
            .backoff_minutes
            .get(i)
            .or(self.backoff_minutes.last())
            .copied()
            .unwrap_or(1);
        Duration::minutes(minutes)
    }
}

/// Where a stored message stands: its state and the times the claim rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub state: OutboxState,
    pub claimed_at: Option<DateTime<Utc>>,
    pub not_before: Option<DateTime<Utc>>,
}

impl Standing {
    pub fn claimable(&self, now: DateTime<Utc>, lease: Duration) -> bool {
        self.state
            .claimable(self.claimed_at, self.not_before, now, lease)
    }
}

/// The messages a sender may claim now, in order, out of `unfinished`:
/// every pending or claimed message of the accounts concerned, in delivery
/// order (`created_at`, then id). A message is due when its own standing
/// says so (`OutboxState::claimable`) and, if its kind goes out in order
/// (events), no earlier message of that kind of its account is still
/// unfinished: a later event is never claimed while an earlier one is
/// pending, waiting for a retry or being sent. Other accounts are not held.
/// Both stores call this for their sweep and before every claim.
pub fn due(
    unfinished: impl IntoIterator<Item = (Standing, OutboxMessage)>,
    now: DateTime<Utc>,
    lease: Duration,
) -> Vec<OutboxMessage> {
    let mut held: HashSet<AccountId> = HashSet::new();
    let mut out = Vec::new();
    for (standing, message) in unfinished {
        let ordered = message.kind.in_order();
        let waiting = ordered && held.contains(&message.account_id);
        if ordered && standing.state.is_unfinished() {
            held.insert(message.account_id);
        }
        if !waiting && standing.claimable(now, lease) {
            out.push(message);
        }
    }
    out
}

/// The time to stamp a write's events with, in whole milliseconds (the
/// stores' order): `now`, or just after `last` (the account's previous
/// events) when a clock behind it would put them first.
pub fn stamp_after(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    let whole =
        |t: DateTime<Utc>| DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t);
    let now = whole(now);
    match last.map(whole) {
        Some(last) if last >= now => last + Duration::milliseconds(1),
        _ => now,
    }
}

impl OutboxState {
    /// Pending or being sent: not finished yet.
    pub const fn is_unfinished(self) -> bool {
        matches!(self, OutboxState::Pending | OutboxState::Sending)
    }

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

    fn message(account: u128, id: &str, kind: MessageKind) -> OutboxMessage {
        OutboxMessage {
            id: id.into(),
            account_id: AccountId(uuid::Uuid::from_u128(account)),
            to: None,
            kind,
            data: Default::default(),
            body: None,
            created_at: t(0),
        }
    }

    fn standing(state: OutboxState, not_before: Option<DateTime<Utc>>) -> Standing {
        Standing {
            state,
            claimed_at: (state == Sending).then(|| t(0)),
            not_before,
        }
    }

    fn ids(due: Vec<OutboxMessage>) -> Vec<String> {
        due.into_iter().map(|m| m.id).collect()
    }

    #[test]
    fn an_accounts_events_wait_for_its_earlier_unfinished_events_only() {
        use crate::records::{EmailKind, EventKind};
        let lease = Duration::minutes(5);
        let event: MessageKind = EventKind::MemberAdded.into();
        let email: MessageKind = EmailKind::MemberAdded.into();
        let queue = vec![
            // Account 1's first event waits for its retry: it holds the
            // account's later events, not its emails or account 2's events.
            (standing(Pending, Some(t(10))), message(1, "a1", event)),
            (standing(Pending, None), message(1, "a2", event)),
            (standing(Pending, None), message(1, "a-mail", email)),
            (standing(Pending, None), message(2, "b1", event)),
            // Account 2's second event is being sent: its third waits.
            (standing(Sending, None), message(2, "b2", event)),
            (standing(Pending, None), message(2, "b3", event)),
        ];
        assert_eq!(ids(due(queue.clone(), t(0), lease)), ["a-mail", "b1"]);
        // Once the retry is due, the first goes, still ahead of the second.
        assert_eq!(
            ids(due(queue.clone(), t(10), lease)),
            ["a1", "a-mail", "b1"]
        );
        // Sent or given up, an event no longer holds the next one.
        let later: Vec<_> = queue
            .into_iter()
            .filter(|(_, m)| !["a1", "b1", "b2"].contains(&m.id.as_str()))
            .collect();
        assert_eq!(ids(due(later, t(0), lease)), ["a2", "a-mail", "b3"]);
    }

    #[test]
    fn a_writes_events_come_after_the_accounts_last_even_on_a_slow_clock() {
        let ms = Duration::milliseconds(1);
        assert_eq!(stamp_after(None, t(1)), t(1));
        assert_eq!(stamp_after(Some(t(0)), t(1)), t(1));
        assert_eq!(stamp_after(Some(t(1)), t(1)), t(1) + ms);
        assert_eq!(stamp_after(Some(t(2)), t(1)), t(2) + ms);
        // Within one millisecond is not after it.
        let micro = Duration::microseconds(300);
        assert_eq!(stamp_after(Some(t(1)), t(1) + micro), t(1) + ms);
    }

    #[test]
    fn events_retry_for_about_three_days_and_emails_for_over_an_hour() {
        let span = |p: RetryPolicy| -> Duration { (1..p.max_attempts).map(|n| p.backoff(n)).sum() };
        let events = span(RetryPolicy::EVENT);
        assert!(
            events > Duration::days(3) && events < Duration::days(4),
            "{events}"
        );
        assert_eq!(RetryPolicy::EVENT.backoff(1), Duration::minutes(1));
        assert_eq!(RetryPolicy::EVENT.backoff(50), Duration::hours(24));
        for n in 0..8 {
            assert_eq!(RetryPolicy::EMAIL.backoff(n), retry_backoff(n));
        }
        let last = SendResult::failed_under(RetryPolicy::EVENT, "500".into(), 10, t(0));
        assert_eq!(last.retry_at(), None);
        let ninth = SendResult::failed_under(RetryPolicy::EVENT, "500".into(), 9, t(0));
        assert_eq!(ninth.retry_at(), Some(t(24 * 60)));
    }

    #[test]
    fn states_read_back_as_written() {
        for state in [Pending, Sending, Sent, Failed] {
            assert_eq!(state.as_str().parse::<OutboxState>(), Ok(state));
        }
        assert!("queued".parse::<OutboxState>().is_err());
    }
}

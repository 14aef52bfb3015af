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
    /// Failed; sent again later unless `give_up`, which marks it failed for good.
    Failed {
        error: String,
        give_up: bool,
    },
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

    /// Whether a sender may claim a message in this state now.
    pub fn claimable(
        self,
        claimed_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> bool {
        match self {
            OutboxState::Pending => true,
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
            SendResult::Failed { give_up: true, .. } => OutboxState::Failed,
            SendResult::Failed { give_up: false, .. } => OutboxState::Pending,
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
        assert!(Pending.claimable(None, t(0), lease));
        assert!(!Sending.claimable(Some(t(0)), t(4), lease));
        assert!(Sending.claimable(Some(t(0)), t(5), lease));
        assert!(!Sending.claimable(None, t(60), lease));
        assert!(!Sent.claimable(Some(t(0)), t(60), lease));
        assert!(!Failed.claimable(None, t(60), lease));
    }

    #[test]
    fn only_a_claimed_message_is_finished() {
        let retry = SendResult::Failed {
            error: "421".into(),
            give_up: false,
        };
        let last = SendResult::Failed {
            error: "421".into(),
            give_up: true,
        };
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

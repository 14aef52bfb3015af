//! Exactly-once usage writes. Every write KRAFTD's services make is an
//! *operation* they name (an `Idempotency-Key`, a batch event's id): the
//! store records it in the same atomic step as its effect, so a retry, a
//! lost answer or a crash never counts twice. Work that may fail holds its
//! quota first in a *reservation*, which is committed with what was used or
//! released; held quota counts against the limit until then, and an expired
//! hold counts for nothing. Gauges are observed levels, set (not added) by
//! the newest observation. Both stores apply the rules below.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::AccountId;
use crate::plan::Limit;
use crate::usage::{UsageKey, UsageOutcome};

/// How long an operation's record (and so its key) is kept: the contract
/// promises at least 24 hours; the margin covers clock skew and a client
/// retrying at the edge of the day.
pub const OPERATION_RETENTION: Duration = Duration::hours(48);
/// A reservation's lifetime when the caller names none.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::minutes(15);
/// The longest hold: a day's work. Past it, held quota is released by itself.
pub const MAX_RESERVATION_TTL: Duration = Duration::hours(24);
/// The most holds one counter carries at once. Holds are for documents in
/// flight, so far fewer are live; the bound keeps a store's hold list small.
pub const MAX_LIVE_HOLDS: usize = 1000;

/// Which kind of request named an operation: one key may name a usage
/// report and a reservation without the two colliding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Usage,
    Reservation,
    Event,
    /// Usage given back by an operator (a negative amount).
    Credit,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Usage => "usage",
            OperationKind::Reservation => "reservation",
            OperationKind::Event => "event",
            OperationKind::Credit => "credit",
        }
    }
}

/// An operation's id: a name-based UUID of the account, the kind and the
/// caller's key, so every retry of one request names the same record, and
/// one account's keys never meet another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OperationId(pub Uuid);

impl OperationId {
    pub fn of_key(account: AccountId, kind: OperationKind, key: &str) -> Self {
        // A namespace of our own (a fixed v4 UUID), apart from users' and
        // imported accounts' ids.
        const NAMESPACE: Uuid = Uuid::from_u128(0x9b0c_3f5e_21d4_4a77_8e61_f0a2_5c39_d7b4);
        // Length-prefixed parts, so no two (kind, key) pairs share a name.
        let kind = kind.as_str();
        let name = format!("{}:{}:{}:{key}", account.0, kind.len(), kind);
        OperationId(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

impl std::fmt::Display for OperationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A digest of what an operation asked for (its metric, quantity and
/// options), so the same key with another request is told apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub String);

/// A counter's increase, recorded once under its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageOperation {
    pub id: OperationId,
    pub fingerprint: Fingerprint,
    pub account_id: AccountId,
    pub key: UsageKey,
    /// Positive.
    pub amount: i64,
    /// Admit only if used + held + amount stays within it.
    pub limit: Limit,
    pub at: DateTime<Utc>,
}

impl UsageOperation {
    pub fn keep_until(&self) -> DateTime<Utc> {
        self.at + OPERATION_RETENTION
    }
}

/// What a store answers for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationOutcome {
    /// Decided now: admitted (and recorded with its id) or denied (and
    /// nothing recorded, so a retry is decided afresh); with what live
    /// reservations held on the counter at that moment.
    Decided(UsageOutcome, u64),
    /// Admitted before under this id with the same request: nothing
    /// counted now; `total` is what the first answer said.
    Replayed { total: u64 },
    /// The id was used for another request.
    KeyReused,
}

/// Whether `used + held + amount` fits `limit`, in checked arithmetic: a sum
/// past `i64::MAX` fits no limit and counts as no total. A decrease fits
/// down to zero used, never below.
pub fn fits(used: i64, held: i64, amount: i64, limit: Limit) -> bool {
    if amount < 0 && used.checked_add(amount).is_none_or(|u| u < 0) {
        return false;
    }
    let Some(total) = used.checked_add(held).and_then(|t| t.checked_add(amount)) else {
        return false;
    };
    match limit {
        None => true,
        Some(l) => u64::try_from(total).is_ok_and(|t| t <= l),
    }
}

/// The quota live holds take at `now`; expired ones take none.
pub fn held_at<'a>(holds: impl IntoIterator<Item = &'a Hold>, now: DateTime<Utc>) -> i64 {
    holds
        .into_iter()
        .filter(|h| h.live_at(now))
        .fold(0i64, |sum, h| sum.saturating_add(h.quantity))
}

/// The part of a reservation a counter needs to know: how much, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: OperationId,
    pub quantity: i64,
    pub expires_at: DateTime<Utc>,
}

impl Hold {
    /// Half-open: a hold ends at `expires_at`.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReservationState {
    Held,
    Committed { quantity: i64 },
    Released,
}

/// Quota held for work in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: OperationId,
    pub fingerprint: Fingerprint,
    pub account_id: AccountId,
    /// The metric and the window the quota is held in; a commit records
    /// in that window, even if it has closed since.
    pub metric: crate::usage::Metric,
    pub window: Option<crate::usage::Window>,
    pub quantity: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub state: ReservationState,
}

/// What a reservation is at a moment, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Held,
    Expired,
    Committed { quantity: i64 },
    Released,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Held => "held",
            ReservationStatus::Expired => "expired",
            ReservationStatus::Committed { .. } => "committed",
            ReservationStatus::Released => "released",
        }
    }
}

/// How a reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Records this much (at most what was held); the rest is released.
    Commit(i64),
    /// Records all that was held: decided in the store's step from the
    /// reservation it reads anyway, so the caller need not read it first.
    CommitHeld,
    Release,
}

/// Why a reservation cannot be closed as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseRefusal {
    /// Its hold ran out: the quota went back to the account.
    Expired,
    /// Committed or released already, another way than asked now.
    AlreadyClosed(ReservationStatus),
    /// A commit of more than was held (or less than nothing).
    BeyondHold { held: i64 },
}

/// What closing a reservation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseDecision {
    /// The new state, and how much the counter gains.
    Apply {
        state: ReservationState,
        records: i64,
    },
    /// Asked before, the same way: nothing changes, the same answer.
    Replay,
}

impl Reservation {
    pub fn key(&self) -> UsageKey {
        UsageKey {
            metric: self.metric,
            window: self.window,
        }
    }

    pub fn hold(&self) -> Hold {
        Hold {
            id: self.id,
            quantity: self.quantity,
            expires_at: self.expires_at,
        }
    }

    /// Kept for the operation retention after it could last be used.
    pub fn keep_until(&self) -> DateTime<Utc> {
        self.expires_at + OPERATION_RETENTION
    }

    pub fn status_at(&self, now: DateTime<Utc>) -> ReservationStatus {
        match self.state {
            ReservationState::Held if self.hold().live_at(now) => ReservationStatus::Held,
            ReservationState::Held => ReservationStatus::Expired,
            ReservationState::Committed { quantity } => ReservationStatus::Committed { quantity },
            ReservationState::Released => ReservationStatus::Released,
        }
    }

    /// The one rule for ending a reservation, applied by every store inside
    /// its atomic step.
    pub fn close(
        &self,
        closing: Closing,
        now: DateTime<Utc>,
    ) -> Result<CloseDecision, CloseRefusal> {
        let closing = match closing {
            Closing::CommitHeld => Closing::Commit(self.quantity),
            other => other,
        };
        match (self.status_at(now), closing) {
            (ReservationStatus::Held, Closing::Commit(q)) if q < 0 || q > self.quantity => {
                Err(CloseRefusal::BeyondHold {
                    held: self.quantity,
                })
            }
            (ReservationStatus::Held, Closing::Commit(q)) => Ok(CloseDecision::Apply {
                state: ReservationState::Committed { quantity: q },
                records: q,
            }),
            (ReservationStatus::Held, Closing::Release) => Ok(CloseDecision::Apply {
                state: ReservationState::Released,
                records: 0,
            }),
            (ReservationStatus::Expired, _) => Err(CloseRefusal::Expired),
            (ReservationStatus::Committed { quantity }, Closing::Commit(q)) if q == quantity => {
                Ok(CloseDecision::Replay)
            }
            (ReservationStatus::Released, Closing::Release) => Ok(CloseDecision::Replay),
            (status, _) => Err(CloseRefusal::AlreadyClosed(status)),
        }
    }
}

/// A request to hold quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    /// A new reservation, `Held`.
    pub reservation: Reservation,
    pub limit: Limit,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Held now; `used` and `held` are the counter's after it (held includes it).
    Held { used: u64, held: u64 },
    /// Refused: nothing held. `used` and `held` as they stand.
    Denied { used: u64, held: u64 },
    /// Made before under this id with the same request: that reservation.
    Replayed(Reservation),
    /// The id was used for another request.
    KeyReused,
}

/// What closing a reservation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The reservation as it now stands, and, when this call recorded a
    /// commit, the counter's total right after it (from the same atomic
    /// step: what crossing a threshold is judged by).
    Closed(Reservation, Option<u64>),
    Refused(CloseRefusal),
    NotFound,
}

/// A gauge's observed level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeObservation {
    pub account_id: AccountId,
    pub key: UsageKey,
    pub value: i64,
    pub observed_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

impl GaugeObservation {
    /// Only a strictly newer observation replaces the stored one, so
    /// reports that arrive out of order settle on the newest.
    pub fn replaces(&self, stored: Option<DateTime<Utc>>) -> bool {
        stored.is_none_or(|s| self.observed_at > s)
    }

    /// The stored level is this very observation (a retry whose first
    /// answer was lost): it stands, as the first answer said.
    pub fn repeats(&self, stored_value: i64, stored_at: Option<DateTime<Utc>>) -> bool {
        stored_at == Some(self.observed_at) && stored_value == self.value
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeOutcome {
    Set,
    /// A newer observation stands; nothing changed.
    Stale {
        value: u64,
        observed_at: DateTime<Utc>,
    },
}

/// One metric's level: what was used and what live reservations hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Level {
    pub used: u64,
    pub held: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{Metric, Period, Window};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn reservation(quantity: i64) -> Reservation {
        let at = t("2026-03-05T12:00:00Z");
        let account = AccountId(Uuid::from_u128(7));
        Reservation {
            id: OperationId::of_key(account, OperationKind::Reservation, "doc-1"),
            fingerprint: Fingerprint("f".into()),
            account_id: account,
            metric: Metric::Documents,
            window: Some(Window::containing(Period::Month, at)),
            quantity,
            created_at: at,
            expires_at: at + Duration::minutes(15),
            state: ReservationState::Held,
        }
    }

    #[test]
    fn operation_ids_are_per_account_kind_and_key() {
        let a = AccountId(Uuid::from_u128(1));
        let b = AccountId(Uuid::from_u128(2));
        let id = OperationId::of_key(a, OperationKind::Usage, "k");
        assert_eq!(id, OperationId::of_key(a, OperationKind::Usage, "k"));
        assert_ne!(id, OperationId::of_key(b, OperationKind::Usage, "k"));
        assert_ne!(id, OperationId::of_key(a, OperationKind::Reservation, "k"));
        assert_ne!(id, OperationId::of_key(a, OperationKind::Usage, "k2"));
    }

    #[test]
    fn fits_counts_holds_and_never_overflows() {
        assert!(fits(40, 5, 5, Some(50)));
        assert!(!fits(40, 5, 6, Some(50)));
        assert!(fits(i64::MAX - 1, 0, 1, None));
        assert!(!fits(i64::MAX, 0, 1, None), "an overflow fits nothing");
        assert!(!fits(i64::MAX, i64::MAX, 1, Some(u64::MAX)));
    }

    #[test]
    fn a_decrease_fits_down_to_zero_never_below() {
        assert!(fits(5, 0, -5, Some(10)));
        assert!(fits(5, 3, -5, None), "holds are not used quota");
        assert!(!fits(5, 3, -6, None), "below zero used, whatever is held");
        assert!(!fits(0, 0, -1, Some(10)));
        assert!(
            !fits(i64::MIN + 1, 0, -2, None),
            "an underflow fits nothing"
        );
    }

    #[test]
    fn expired_holds_take_no_quota() {
        let r = reservation(3);
        let holds = [r.hold()];
        assert_eq!(held_at(&holds, r.created_at), 3);
        assert_eq!(held_at(&holds, r.expires_at), 0, "half-open");
    }

    #[test]
    fn a_held_reservation_commits_up_to_its_hold_or_releases() {
        let r = reservation(3);
        let now = r.created_at;
        assert_eq!(
            r.close(Closing::Commit(2), now),
            Ok(CloseDecision::Apply {
                state: ReservationState::Committed { quantity: 2 },
                records: 2
            })
        );
        assert_eq!(
            r.close(Closing::Commit(4), now),
            Err(CloseRefusal::BeyondHold { held: 3 })
        );
        assert_eq!(
            r.close(Closing::Release, now),
            Ok(CloseDecision::Apply {
                state: ReservationState::Released,
                records: 0
            })
        );
        assert_eq!(
            r.close(Closing::Commit(1), r.expires_at),
            Err(CloseRefusal::Expired)
        );
    }

    #[test]
    fn committing_what_was_held_is_committing_its_quantity() {
        let r = reservation(3);
        assert_eq!(
            r.close(Closing::CommitHeld, r.created_at),
            r.close(Closing::Commit(3), r.created_at)
        );
        let mut done = r.clone();
        done.state = ReservationState::Committed { quantity: 3 };
        assert_eq!(
            done.close(Closing::CommitHeld, r.created_at),
            Ok(CloseDecision::Replay)
        );
        done.state = ReservationState::Committed { quantity: 2 };
        assert!(matches!(
            done.close(Closing::CommitHeld, r.created_at),
            Err(CloseRefusal::AlreadyClosed(_))
        ));
    }

    #[test]
    fn closing_twice_the_same_way_replays_and_another_way_is_refused() {
        let mut r = reservation(3);
        r.state = ReservationState::Committed { quantity: 2 };
        let later = r.expires_at + Duration::hours(1);
        assert_eq!(
            r.close(Closing::Commit(2), later),
            Ok(CloseDecision::Replay)
        );
        assert_eq!(
            r.close(Closing::Release, later),
            Err(CloseRefusal::AlreadyClosed(ReservationStatus::Committed {
                quantity: 2
            }))
        );
        r.state = ReservationState::Released;
        assert_eq!(r.close(Closing::Release, later), Ok(CloseDecision::Replay));
    }

    #[test]
    fn only_a_newer_observation_replaces_a_gauge() {
        let at = t("2026-03-05T12:00:00Z");
        let obs = GaugeObservation {
            account_id: AccountId(Uuid::from_u128(1)),
            key: UsageKey::current(Metric::StorageMb, at),
            value: 10,
            observed_at: at,
            at,
        };
        assert!(obs.replaces(None));
        assert!(obs.replaces(Some(at - Duration::seconds(1))));
        assert!(!obs.replaces(Some(at)));
        assert!(!obs.replaces(Some(at + Duration::seconds(1))));
        assert!(obs.repeats(10, Some(at)));
        assert!(!obs.repeats(11, Some(at)));
        assert!(!obs.repeats(10, None));
    }
}

//! The health of billing for whoever is on call: what the billing health
//! endpoint answers and the reconcile timer logs once a run, from what the
//! store and Stripe report. Which message counts as stuck, and when billing
//! as a whole needs someone, is decided here, once.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::outbox::{OutboxState, Standing};
use crate::records::{MessageKind, OutboxMessage};

/// An email or event still unsent this long after it was written is stuck:
/// a healthy sender sends within seconds, and the first retries of an
/// outage (1 and 5 minutes) fit well inside it.
pub const STUCK_AFTER_MINUTES: i64 = 15;

/// A Stripe event is counted as undelivered only this long after it was
/// made: until then its first delivery may simply be in flight.
pub const DELIVERY_GRACE_MINUTES: i64 = 5;

/// Failed messages and undelivered Stripe events are looked for this far
/// back: Stripe retries a webhook for three days.
pub const LOOK_BACK_HOURS: i64 = 72;

/// Stale subscriptions are counted up to this many; more reads "at least".
pub const STALE_COUNT_CAP: usize = 500;

/// A Stripe event that has not reached this service: delivery failed, or is
/// still being retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UndeliveredEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
}

/// One signal: how many, and the oldest one's time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Signal {
    pub count: usize,
    pub oldest_at: Option<DateTime<Utc>>,
}

impl Signal {
    fn of(times: impl IntoIterator<Item = DateTime<Utc>>) -> Signal {
        times.into_iter().fold(Signal::default(), |s, at| Signal {
            count: s.count + 1,
            oldest_at: Some(s.oldest_at.map_or(at, |o| o.min(at))),
        })
    }

    pub fn is_clear(&self) -> bool {
        self.count == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// At least one signal needs someone.
    Degraded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BillingHealth {
    pub status: Status,
    pub checked_at: DateTime<Utc>,
    /// Stripe events of the handled types that Stripe could not deliver
    /// (or is still retrying) in the look-back: the webhook endpoint fails.
    /// `None` when Stripe could not be asked, which degrades too.
    pub webhooks_failing: Option<Signal>,
    /// Subscriptions that look stale and wait for reconciliation (counted
    /// up to `STALE_COUNT_CAP`).
    pub subscriptions_stale: usize,
    /// Emails unsent `STUCK_AFTER_MINUTES` after they were written.
    pub emails_stuck: Signal,
    /// Emails given up on, written in the look-back.
    pub emails_failed: Signal,
    /// Events for KRAFTD unsent after `STUCK_AFTER_MINUTES`, or given up on.
    pub events_undelivered: Signal,
}

/// What the store and Stripe report, assessed at `now`. `outbox` holds the
/// unfinished messages and those that failed in the look-back;
/// `undelivered` is `None` when Stripe could not be asked.
pub fn assess(
    now: DateTime<Utc>,
    undelivered: Option<&[UndeliveredEvent]>,
    subscriptions_stale: usize,
    outbox: &[(Standing, OutboxMessage)],
) -> BillingHealth {
    let stuck_before = now - Duration::minutes(STUCK_AFTER_MINUTES);
    let failed_since = now - Duration::hours(LOOK_BACK_HOURS);
    let in_flight_after = now - Duration::minutes(DELIVERY_GRACE_MINUTES);
    let stuck =
        |s: &Standing, m: &OutboxMessage| s.state.is_unfinished() && m.created_at <= stuck_before;
    let failed = |s: &Standing, m: &OutboxMessage| {
        s.state == OutboxState::Failed && m.created_at >= failed_since
    };
    let emails = || {
        outbox
            .iter()
            .filter(|(_, m)| matches!(m.kind, MessageKind::Email(_)))
    };
    let health = BillingHealth {
        status: Status::Ok,
        checked_at: now,
        webhooks_failing: undelivered.map(|events| {
            Signal::of(
                events
                    .iter()
                    .filter(|e| e.created_at >= failed_since && e.created_at <= in_flight_after)
                    .map(|e| e.created_at),
            )
        }),
        subscriptions_stale,
        emails_stuck: Signal::of(
            emails()
                .filter(|(s, m)| stuck(s, m))
                .map(|(_, m)| m.created_at),
        ),
        emails_failed: Signal::of(
            emails()
                .filter(|(s, m)| failed(s, m))
                .map(|(_, m)| m.created_at),
        ),
        events_undelivered: Signal::of(
            outbox
                .iter()
                .filter(|(_, m)| matches!(m.kind, MessageKind::Event(_)))
                .filter(|(s, m)| stuck(s, m) || failed(s, m))
                .map(|(_, m)| m.created_at),
        ),
    };
    let clear = health
        .webhooks_failing
        .as_ref()
        .is_some_and(Signal::is_clear)
        && health.subscriptions_stale == 0
        && health.emails_stuck.is_clear()
        && health.emails_failed.is_clear()
        && health.events_undelivered.is_clear();
    BillingHealth {
        status: if clear { Status::Ok } else { Status::Degraded },
        ..health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountId;
    use crate::records::{EmailKind, EventKind};

    fn at(minutes_ago: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::minutes(minutes_ago)
    }

    fn message(kind: MessageKind, created_at: DateTime<Utc>) -> OutboxMessage {
        OutboxMessage {
            id: format!("m-{}", created_at.timestamp()),
            account_id: AccountId(uuid::Uuid::nil()),
            to: None,
            kind,
            data: Default::default(),
            body: None,
            created_at,
        }
    }

    fn standing(state: OutboxState) -> Standing {
        Standing {
            state,
            claimed_at: None,
            not_before: None,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn nothing_to_report_is_ok() {
        let h = assess(now(), Some(&[]), 0, &[]);
        assert_eq!(h.status, Status::Ok);
        assert_eq!(h.emails_stuck, Signal::default());
    }

    #[test]
    fn an_email_is_stuck_only_once_it_has_waited_past_the_threshold() {
        let now = now();
        let email = MessageKind::Email(EmailKind::PaymentReceipt);
        let fresh = (standing(OutboxState::Pending), message(email, at(14, now)));
        let waiting = (standing(OutboxState::Sending), message(email, at(15, now)));
        let h = assess(now, Some(&[]), 0, std::slice::from_ref(&fresh));
        assert_eq!(h.status, Status::Ok);
        let h = assess(now, Some(&[]), 0, &[fresh, waiting]);
        assert_eq!(h.status, Status::Degraded);
        assert_eq!(
            h.emails_stuck,
            Signal {
                count: 1,
                oldest_at: Some(at(15, now))
            }
        );
        assert!(h.events_undelivered.is_clear());
    }

    #[test]
    fn failures_count_within_the_look_back_and_events_apart_from_emails() {
        let now = now();
        let email = MessageKind::Email(EmailKind::PaymentReceipt);
        let event = MessageKind::Event(EventKind::SubscriptionUpdated);
        let outbox = [
            (standing(OutboxState::Failed), message(email, at(60, now))),
            (
                standing(OutboxState::Failed),
                message(email, at(LOOK_BACK_HOURS * 60 + 1, now)),
            ),
            (standing(OutboxState::Failed), message(event, at(30, now))),
            (standing(OutboxState::Pending), message(event, at(20, now))),
            (standing(OutboxState::Sent), message(event, at(90, now))),
        ];
        let h = assess(now, Some(&[]), 0, &outbox);
        assert_eq!(h.emails_failed.count, 1);
        assert!(h.emails_stuck.is_clear());
        assert_eq!(
            h.events_undelivered,
            Signal {
                count: 2,
                oldest_at: Some(at(30, now))
            }
        );
    }

    #[test]
    fn undelivered_stripe_events_and_stale_subscriptions_each_degrade() {
        let now = now();
        let event = |minutes_ago| UndeliveredEvent {
            id: "evt_1".into(),
            kind: "invoice.paid".into(),
            created_at: at(minutes_ago, now),
        };
        let in_flight = assess(now, Some(&[event(DELIVERY_GRACE_MINUTES - 1)]), 0, &[]);
        assert_eq!(in_flight.status, Status::Ok);
        let h = assess(now, Some(&[event(DELIVERY_GRACE_MINUTES)]), 0, &[]);
        assert_eq!(h.status, Status::Degraded);
        assert_eq!(h.webhooks_failing.map(|s| s.count), Some(1));
        let h = assess(now, None, 0, &[]);
        assert_eq!((h.status, h.webhooks_failing), (Status::Degraded, None));
        let h = assess(now, Some(&[]), 3, &[]);
        assert_eq!((h.status, h.subscriptions_stale), (Status::Degraded, 3));
    }
}

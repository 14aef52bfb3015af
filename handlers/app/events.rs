//! Events back to KRAFTD: what changed on an account, as Standard Webhooks
//! to one endpoint (`EVENTS_WEBHOOK_URL`). An event is an outbox message
//! (`MessageKind::Event`) written in the same atomic write as the change it
//! reports, like an email, and delivered from the outbox the same way; the
//! outbox delivers an account's events in order (`outbox::due`). Without an
//! endpoint configured, no event is recorded at all.
//!
//! The body is the standard's shape, `{"type", "timestamp", "data"}`, with
//! the account in `data.account_id`; it is fixed when the event is written,
//! so every try sends (and signs) the same bytes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::domain::account::{Account, AccountId, Membership, Role};
use crate::domain::outbox::stamp_after;
use crate::domain::ports::{Etag, SendResult};
use crate::domain::records::{EventKind, OutboxMessage};
use crate::domain::usage::{Metric, Window};
use crate::domain::user::UserId;

use super::{AppError, Billing};

/// No event body is larger: the service writes small ones, and the
/// endpoint should not have to take more.
pub const MAX_EVENT_BODY_BYTES: usize = 64 * 1024;

impl Billing {
    /// Whether events are recorded here (`EVENTS_WEBHOOK_URL` is set).
    pub fn events_enabled(&self) -> bool {
        self.events.is_some()
    }

    /// An event message, or `None` when events are off. `cause` makes the
    /// id: the same cause gives the same event, enqueued once.
    pub(super) fn event(
        &self,
        kind: EventKind,
        account_id: AccountId,
        cause: &str,
        data: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Option<OutboxMessage> {
        self.events.as_ref()?;
        let mut data = data;
        data.insert("account_id".into(), json!(account_id));
        let body = json!({
            "type": kind.as_str(),
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string();
        if body.len() > MAX_EVENT_BODY_BYTES {
            tracing::error!(account_id = %account_id, kind = kind.as_str(), bytes = body.len(), "event body over the cap: not recorded");
            return None;
        }
        Some(OutboxMessage {
            id: format!("{account_id}:{cause}:{}", kind.as_str()),
            account_id,
            to: None,
            kind: kind.into(),
            data: Default::default(),
            body: Some(body),
            created_at: now,
        })
    }

    /// `subscription.updated` and `entitlements.updated` for an account
    /// written from `before` (at `etag`) to `after`: each when what it
    /// reports changed. They go in the write itself
    /// (`replace_account_and_enqueue`), named by the version it replaces:
    /// one of each per version at most.
    ///
    /// They are stamped after the account's last events (`stamp_after`),
    /// which `after` then records: the write order is the delivery order.
    pub(super) fn account_events(
        &self,
        before: &Account,
        etag: &Etag,
        after: &mut Account,
        now: DateTime<Utc>,
    ) -> Vec<OutboxMessage> {
        if !self.events_enabled() {
            return Vec::new();
        }
        let cause = &format!("after:{}", etag.0.trim_matches('"'));
        let now = stamp_after(before.last_event_at, now);
        let mut events = Vec::new();
        // Events of one write go out in id order: the subscription first.
        let subscription = subscription_data(after);
        if subscription_data(before) != subscription {
            events.extend(self.event(
                EventKind::SubscriptionUpdated,
                after.id,
                &format!("{cause}:1"),
                subscription,
                now,
            ));
        }
        let entitlements = self.entitlements_data(after, now);
        if self.entitlements_data(before, now) != entitlements {
            events.extend(self.event(
                EventKind::EntitlementsUpdated,
                after.id,
                &format!("{cause}:2"),
                entitlements,
                now,
            ));
        }
        after.last_event_at = if events.is_empty() {
            before.last_event_at
        } else {
            Some(now)
        };
        events
    }

    /// What a new account's first write tells KRAFTD: its subscription,
    /// its entitlements and its owner. Written with the account.
    pub(super) fn account_created_events(
        &self,
        account: &mut Account,
        owner: &Membership,
        now: DateTime<Utc>,
    ) -> Vec<OutboxMessage> {
        if !self.events_enabled() {
            return Vec::new();
        }
        let now = stamp_after(None, now);
        account.last_event_at = Some(now);
        let account = &*account;
        // In id order: the subscription, the entitlements, the owner.
        [
            self.event(
                EventKind::SubscriptionUpdated,
                account.id,
                "created:1",
                subscription_data(account),
                now,
            ),
            self.event(
                EventKind::EntitlementsUpdated,
                account.id,
                "created:2",
                self.entitlements_data(account, now),
                now,
            ),
            self.member_event(
                EventKind::MemberAdded,
                account.id,
                owner.user_id,
                owner.role,
                "created:3",
                now,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn entitlements_data(&self, account: &Account, now: DateTime<Utc>) -> Map<String, Value> {
        let plan = self.effective_plan_at(account, now);
        let mut data = Map::new();
        data.insert("plan_id".into(), json!(plan.id));
        data.insert("limits".into(), json!(plan.limits));
        data
    }

    /// `member.added` or `member.removed`, written with the membership change.
    pub(super) fn member_event(
        &self,
        kind: EventKind,
        account_id: AccountId,
        user: UserId,
        role: Role,
        cause: &str,
        now: DateTime<Utc>,
    ) -> Option<OutboxMessage> {
        let mut data = Map::new();
        data.insert("user_id".into(), json!(user));
        data.insert("role".into(), json!(role.as_str()));
        self.event(kind, account_id, cause, data, now)
    }

    /// Records `usage.threshold_reached`: the account used `threshold`
    /// percent (80, 100) of `metric`'s `limit` in `window` (`used` so far).
    /// Idempotent: the event's id is made of the account, metric, window
    /// and threshold, so it is sent once per window however often this is
    /// called. Does nothing when events are off. For the usage code to call
    /// when an increment crosses a threshold.
    pub async fn usage_threshold_reached(
        &self,
        account_id: AccountId,
        metric: Metric,
        threshold: u8,
        window: Window,
        used: u64,
        limit: u64,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        self.usage_threshold_reached_at(account_id, metric, threshold, window, used, limit, now)
            .await
    }

    /// As `usage_threshold_reached`, stamped `at`: one use that crosses 80 %
    /// and 100 % at once stamps them a millisecond apart, so they are sent
    /// in that order.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn usage_threshold_reached_at(
        &self,
        account_id: AccountId,
        metric: Metric,
        threshold: u8,
        window: Window,
        used: u64,
        limit: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), AppError> {
        let mut data = Map::new();
        data.insert("metric".into(), json!(metric.as_str()));
        data.insert("threshold".into(), json!(threshold));
        data.insert(
            "window".into(),
            json!({ "start": window.start, "end": window.end }),
        );
        data.insert("used".into(), json!(used));
        data.insert("limit".into(), json!(limit));
        let cause = format!(
            "usage:{}:{}:{threshold}",
            metric.as_str(),
            window.start.timestamp_millis()
        );
        let Some(event) = self.event(
            EventKind::UsageThresholdReached,
            account_id,
            &cause,
            data,
            now,
        ) else {
            return Ok(());
        };
        Ok(self.store.enqueue(&[event]).await?)
    }

    /// Sends a claimed event: `None` when it cannot be sent here at all
    /// (no endpoint configured any more; the event is finished as failed).
    pub(super) async fn send_event(
        &self,
        message: &OutboxMessage,
    ) -> Result<Option<Result<(), String>>, AppError> {
        let (Some(events), Some(body)) = (&self.events, &message.body) else {
            let error = if self.events.is_none() {
                "EVENTS_WEBHOOK_URL is unset: events are not sent"
            } else {
                "an event without a body"
            };
            self.store
                .finish_outbox(
                    message.account_id,
                    &message.id,
                    &SendResult::GaveUp {
                        error: error.into(),
                    },
                    self.clock.now(),
                )
                .await?;
            return Ok(None);
        };
        // The try's own timestamp, signed with the body (the standard's
        // replay protection); the id stays the same across tries.
        let sent = events
            .send(&message.webhook_id(), self.clock.now(), body)
            .await
            .map_err(|e| e.to_string());
        Ok(Some(sent))
    }
}

/// What `subscription.updated` reports: the subscription as the account
/// holds it, without Stripe's ids or the service's own bookkeeping.
fn subscription_data(account: &Account) -> Map<String, Value> {
    let s = &account.subscription;
    let mut data = Map::new();
    data.insert("plan_id".into(), json!(s.plan_id));
    data.insert("status".into(), json!(s.status));
    data.insert("billing_interval".into(), json!(s.billing_interval));
    data.insert("current_period_end".into(), json!(s.current_period_end));
    data.insert("cancel_at_period_end".into(), json!(s.cancel_at_period_end));
    data.insert("trial_end".into(), json!(s.trial_end));
    data.insert("scheduled_change".into(), json!(s.scheduled_change));
    data
}

//! Operators' overrides of an account's plan: a limit raised or lowered,
//! a feature turned on or off, each with a reason, who set it and an
//! optional expiry. They live on the account document, so every check that
//! reads the account sees them; an expired one counts for nothing without
//! anyone removing it. A trial extension is the record of a trial made
//! longer at Stripe, whose subscription holds the trial's end: it changes
//! no limit and has no expiry.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::{fields, Actor, Fields};
use crate::plan::{Feature, Limits};
use crate::subscription::{RemoteSubscription, SubscriptionStatus};
use crate::usage::Metric;

/// The longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// The most overrides, active or expired, an account holds at once: the
/// account document stays small.
pub const MAX_OVERRIDES: usize = 50;
/// The most days one extension adds to a trial: longer free use is a sale
/// to make, not a favour.
pub const MAX_TRIAL_EXTENSION_DAYS: u32 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OverrideId(pub Uuid);

impl fmt::Display for OverrideId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an override changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OverrideKind {
    /// The metric's limit is `value`, whatever the plan's.
    Limit { metric: Metric, value: u64 },
    /// The feature is on or off, whatever the plan says.
    Feature { feature: Feature, enabled: bool },
    /// The trial was made `days` longer at Stripe.
    TrialExtension { days: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub id: OverrideId,
    #[serde(flatten)]
    pub kind: OverrideKind,
    pub reason: String,
    pub actor: Actor,
    pub set_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("must be 1 to {MAX_REASON_CHARS} characters")]
    Reason,
    #[error("must be in the future")]
    Expiry,
    #[error("{} has no limit to override", .0.as_str())]
    Unlimitable(Metric),
    #[error("the account holds {MAX_OVERRIDES} overrides already; remove one first")]
    TooMany,
    #[error("must be 1 to {MAX_TRIAL_EXTENSION_DAYS} days")]
    TrialDays,
    /// A trial's new end is Stripe's; an expiry would end nothing.
    #[error("must be absent for a trial extension")]
    ExpiryOnExtension,
}

impl Override {
    /// Checks what an operator asked for against `now`.
    pub fn new(
        id: OverrideId,
        kind: OverrideKind,
        reason: &str,
        actor: Actor,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Self, OverrideError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(OverrideError::Reason);
        }
        if expires_at.is_some_and(|e| e <= now) {
            return Err(OverrideError::Expiry);
        }
        match kind {
            // Exports are gated by format, not counted against a limit.
            OverrideKind::Limit {
                metric: Metric::Exports,
                ..
            } => return Err(OverrideError::Unlimitable(Metric::Exports)),
            OverrideKind::TrialExtension { days } => {
                if !(1..=MAX_TRIAL_EXTENSION_DAYS).contains(&days) {
                    return Err(OverrideError::TrialDays);
                }
                if expires_at.is_some() {
                    return Err(OverrideError::ExpiryOnExtension);
                }
            }
            OverrideKind::Limit { .. } | OverrideKind::Feature { .. } => {}
        }
        Ok(Self {
            id,
            kind,
            reason: reason.to_owned(),
            actor,
            set_at: now,
            expires_at,
        })
    }

    /// In force at `now`: until its expiry, exclusive.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }

    /// The override as the audit log shows it.
    pub fn describe(&self) -> Fields {
        let mut f = match self.kind {
            OverrideKind::Limit { metric, value } => fields([
                ("override_id", self.id.to_string()),
                ("limit", metric.as_str().to_owned()),
                ("value", value.to_string()),
            ]),
            OverrideKind::Feature { feature, enabled } => fields([
                ("override_id", self.id.to_string()),
                ("feature", feature.as_str().to_owned()),
                ("value", enabled.to_string()),
            ]),
            OverrideKind::TrialExtension { days } => fields([
                ("override_id", self.id.to_string()),
                ("trial_extension_days", days.to_string()),
            ]),
        };
        if let Some(e) = self.expires_at {
            f.insert("expires_at".into(), e.to_rfc3339());
        }
        f
    }
}

/// The plan's limits with the overrides in force at `now` applied, the
/// latest set winning where two name the same limit or feature.
pub fn effective_limits(plan: &Limits, overrides: &[Override], now: DateTime<Utc>) -> Limits {
    let mut limits = plan.clone();
    let mut active: Vec<&Override> = overrides.iter().filter(|o| o.is_active(now)).collect();
    active.sort_by_key(|o| o.set_at);
    for o in active {
        match o.kind {
            OverrideKind::Limit { metric, value } => {
                let slot = match metric {
                    Metric::Documents => &mut limits.documents_per_month,
                    Metric::ApiCalls => &mut limits.api_calls_per_day,
                    Metric::StorageMb => &mut limits.storage_mb,
                    Metric::TeamMembers => &mut limits.team_members,
                    Metric::Exports => continue,
                };
                *slot = Some(value);
            }
            OverrideKind::Feature { feature, enabled } => match feature {
                Feature::AiFeatures => limits.ai_features = enabled,
            },
            OverrideKind::TrialExtension { .. } => {}
        }
    }
    limits
}

/// The trial's end after extending it by `days`, from Stripe's view of the
/// subscription; `None` when it is not trialing, so there is nothing to
/// extend.
pub fn extended_trial_end(sub: &RemoteSubscription, days: u32) -> Option<DateTime<Utc>> {
    if sub.status != SubscriptionStatus::Trialing {
        return None;
    }
    Some(sub.trial_end? + chrono::Duration::days(i64::from(days)))
}

/// Adds an override, refusing past `MAX_OVERRIDES`; expired ones beyond
/// the newest are dropped first to make room, since they count for nothing.
pub fn add(
    overrides: &mut Vec<Override>,
    o: Override,
    now: DateTime<Utc>,
) -> Result<(), OverrideError> {
    if overrides.len() >= MAX_OVERRIDES {
        if let Some(i) = overrides.iter().position(|x| !x.is_active(now)) {
            overrides.remove(i);
        } else {
            return Err(OverrideError::TooMany);
        }
    }
    overrides.push(o);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Catalog, PlanId};
    use chrono::Duration;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::hours(h)
    }

    fn docs(value: u64, set: i64, expires: Option<i64>) -> Override {
        Override {
            id: OverrideId(Uuid::from_u128(set as u128 + 100)),
            kind: OverrideKind::Limit {
                metric: Metric::Documents,
                value,
            },
            reason: "pilot".into(),
            actor: Actor::System,
            set_at: t(set),
            expires_at: expires.map(t),
        }
    }

    #[test]
    fn an_override_binds_until_its_expiry_then_counts_for_nothing() {
        let free = Catalog::standard().plan(PlanId::Free).limits.clone();
        let o = [docs(5_000, 0, Some(10))];
        assert_eq!(
            effective_limits(&free, &o, t(0)).documents_per_month,
            Some(5_000)
        );
        assert_eq!(
            effective_limits(&free, &o, t(9)).documents_per_month,
            Some(5_000)
        );
        assert_eq!(
            effective_limits(&free, &o, t(10)).documents_per_month,
            Some(50)
        );
        assert_eq!(
            effective_limits(&free, &o, t(10)).api_calls_per_day,
            Some(1_000)
        );
    }

    #[test]
    fn the_latest_active_override_wins_and_features_turn_on() {
        let free = Catalog::standard().plan(PlanId::Free).limits.clone();
        let ai = Override {
            kind: OverrideKind::Feature {
                feature: Feature::AiFeatures,
                enabled: true,
            },
            ..docs(0, 0, None)
        };
        let o = [docs(700, 2, None), docs(300, 1, None), ai];
        let l = effective_limits(&free, &o, t(3));
        assert_eq!(l.documents_per_month, Some(700));
        assert!(l.ai_features);
    }

    #[test]
    fn new_overrides_need_a_reason_and_a_future_expiry() {
        let kind = docs(1, 0, None).kind;
        let new = |reason: &str, exp| {
            Override::new(
                OverrideId(Uuid::nil()),
                kind,
                reason,
                Actor::System,
                t(0),
                exp,
            )
        };
        assert_eq!(new("  ", None), Err(OverrideError::Reason));
        assert_eq!(new(&"x".repeat(501), None), Err(OverrideError::Reason));
        assert_eq!(new("ok", Some(t(0))), Err(OverrideError::Expiry));
        assert!(new("ok", Some(t(1))).is_ok());
        let exports = OverrideKind::Limit {
            metric: Metric::Exports,
            value: 1,
        };
        assert!(Override::new(
            OverrideId(Uuid::nil()),
            exports,
            "x",
            Actor::System,
            t(0),
            None
        )
        .is_err());
    }

    fn extension(days: u32, expires: Option<i64>) -> Result<Override, OverrideError> {
        Override::new(
            OverrideId(Uuid::nil()),
            OverrideKind::TrialExtension { days },
            "slow procurement",
            Actor::System,
            t(0),
            expires.map(t),
        )
    }

    #[test]
    fn a_trial_extension_is_1_to_90_days_and_never_expires() {
        assert_eq!(extension(0, None), Err(OverrideError::TrialDays));
        assert_eq!(extension(91, None), Err(OverrideError::TrialDays));
        assert_eq!(extension(7, Some(1)), Err(OverrideError::ExpiryOnExtension));
        let o = extension(90, None).unwrap();
        assert_eq!(
            o.describe().get("trial_extension_days").map(String::as_str),
            Some("90")
        );
        assert!(extension(1, None).is_ok());
    }

    #[test]
    fn a_trial_extension_changes_no_limit() {
        let pro = Catalog::standard().plan(PlanId::Pro).limits.clone();
        let o = [extension(30, None).unwrap()];
        assert_eq!(effective_limits(&pro, &o, t(1)), pro);
    }

    #[test]
    fn only_a_trialing_subscription_has_a_trial_to_extend() {
        use crate::money::Currency;
        use crate::plan::BillingInterval;
        let end = t(24 * 14);
        let mut sub = RemoteSubscription {
            id: "sub_1".into(),
            customer_id: "cus_1".into(),
            status: SubscriptionStatus::Trialing,
            plan_id: PlanId::Pro,
            interval: BillingInterval::Monthly,
            item_id: "si_1".into(),
            price_id: "price_1".into(),
            current_period_start: Some(t(0)),
            current_period_end: Some(end),
            cancel_at_period_end: false,
            ended_at: None,
            schedule_id: None,
            trial_end: Some(end),
            currency: Currency::USD,
        };
        assert_eq!(extended_trial_end(&sub, 7), Some(end + Duration::days(7)));
        sub.status = SubscriptionStatus::Active;
        assert_eq!(extended_trial_end(&sub, 7), None);
        sub.status = SubscriptionStatus::Trialing;
        sub.trial_end = None;
        assert_eq!(extended_trial_end(&sub, 7), None);
    }

    #[test]
    fn a_full_list_makes_room_only_by_dropping_an_expired_one() {
        let mut list: Vec<Override> = (0..MAX_OVERRIDES as i64)
            .map(|i| docs(1, i, None))
            .collect();
        assert_eq!(
            add(&mut list, docs(2, 99, None), t(100)),
            Err(OverrideError::TooMany)
        );
        list[3].expires_at = Some(t(50));
        assert!(add(&mut list, docs(2, 99, None), t(100)).is_ok());
        assert_eq!(list.len(), MAX_OVERRIDES);
    }
}

//! Operators' changes to an account's quota: overrides of its plan's
//! limits and features, written on the account document with their audit
//! entry in one write, and usage credited back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::account::{Account, AccountId};
use crate::domain::audit::{fields, Actor, AuditAction, AuditEntry, AuditId};
use crate::domain::overrides::{self, Override, OverrideError, OverrideId, OverrideKind};
use crate::domain::plan::Feature;
use crate::domain::ports::{StoreError, Versioned};
use crate::domain::quota::{OperationId, OperationKind, OperationOutcome, UsageOperation};
use crate::domain::usage::{Metric, MetricKind, UsageKey, UsageOutcome, MAX_QUANTITY};

use super::quota::{fingerprint, IdempotencyKey};
use super::usage::MeterReading;
use super::{AppError, Billing, StateConflict};

/// Attempts at the account's conditional write before giving up with 503.
const WRITE_ATTEMPTS: usize = 8;

/// An override's value: a limit's whole number, or a feature's on/off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OverrideValue {
    Flag(bool),
    Whole(u64),
}

/// An override an operator asks for: exactly one of `limit`, `feature`
/// and `trial_extension_days`; a limit's or feature's value (a whole
/// number for a limit, true or false for a feature).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideInput {
    #[serde(default)]
    pub limit: Option<Metric>,
    #[serde(default)]
    pub feature: Option<Feature>,
    /// Days added to the trialing subscription's trial, at Stripe.
    #[serde(default, deserialize_with = "super::whole::optional")]
    #[schema(minimum = 1, maximum = 90)]
    pub trial_extension_days: Option<i64>,
    /// Required with `limit` and `feature`; absent with
    /// `trial_extension_days`.
    #[serde(default)]
    pub value: Option<OverrideValue>,
    /// Why: 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// When it stops counting; in the future. None: until removed. Absent
    /// with `trial_extension_days`.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Usage given back in the metric's current window.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditInput {
    /// A counter: documents, api_calls or exports.
    pub metric: Metric,
    /// 1 to 1,000,000, at most what the window has used.
    #[serde(deserialize_with = "super::whole::number")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
    /// Why: 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

fn kind_of(input: &OverrideInput) -> Result<OverrideKind, AppError> {
    match (input.limit, input.feature, input.trial_extension_days) {
        (Some(metric), None, None) => match input.value {
            Some(OverrideValue::Whole(value)) => Ok(OverrideKind::Limit { metric, value }),
            _ => Err(AppError::invalid(
                "value",
                "must be a whole number for a limit",
            )),
        },
        (None, Some(feature), None) => match input.value {
            Some(OverrideValue::Flag(enabled)) => Ok(OverrideKind::Feature { feature, enabled }),
            _ => Err(AppError::invalid(
                "value",
                "must be true or false for a feature",
            )),
        },
        (None, None, Some(days)) => match input.value {
            // Out of u32's range is as wrong as 0: the domain refuses both.
            None => Ok(OverrideKind::TrialExtension {
                days: u32::try_from(days).unwrap_or(0),
            }),
            Some(_) => Err(AppError::invalid(
                "value",
                "must be absent for a trial extension",
            )),
        },
        _ => Err(AppError::invalid(
            "limit",
            "exactly one of limit, feature and trial_extension_days is required",
        )),
    }
}

pub(super) fn override_error(e: OverrideError) -> AppError {
    let field = match e {
        OverrideError::Reason => "reason",
        OverrideError::Expiry | OverrideError::ExpiryOnExtension => "expires_at",
        OverrideError::Unlimitable(_) => "limit",
        OverrideError::TooMany => "overrides",
        OverrideError::TrialDays => "trial_extension_days",
    };
    AppError::invalid(field, e.to_string())
}

fn check_reason(reason: &str) -> Result<(), AppError> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > overrides::MAX_REASON_CHARS {
        return Err(AppError::invalid(
            "reason",
            format!("must be 1 to {} characters", overrides::MAX_REASON_CHARS),
        ));
    }
    Ok(())
}

impl Billing {
    /// The audit entry of setting or removing `o`.
    pub(super) fn override_audit(
        &self,
        account_id: AccountId,
        actor: &Actor,
        action: AuditAction,
        o: &Override,
    ) -> AuditEntry {
        let (before, after) = match action {
            AuditAction::OverrideRemoved => (Some(o.describe()), None),
            _ => (None, Some(o.describe())),
        };
        let mut entry = self.audit_entry(account_id, actor.clone(), action, before, after);
        entry.reason = Some(o.reason.clone());
        entry
    }

    /// Changes the account's overrides and writes the change with its
    /// audit entry (and KRAFTD's `entitlements.updated`) in one
    /// conditional write, retried when someone else wrote in between.
    async fn write_overrides(
        &self,
        account_id: AccountId,
        actor: &Actor,
        change: impl Fn(&mut Account) -> Result<(AuditAction, Override), AppError>,
    ) -> Result<Override, AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let current: Versioned<Account> = self
                .store
                .account_by_id(account_id)
                .await?
                .ok_or(AppError::NoSuchAccount)?;
            let mut next = current.value.clone();
            let (action, changed) = change(&mut next)?;
            let now = self.clock.now();
            let events = self.account_events(&current.value, &current.etag, &mut next, now);
            let entry = self.override_audit(account_id, actor, action, &changed);
            match self
                .store
                .replace_account_and_enqueue(&next, &current.etag, &events, &[entry])
                .await
            {
                Ok(etag) => {
                    self.remember_account(&Versioned { value: next, etag });
                    return Ok(changed);
                }
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Store(StoreError::VersionConflict))
    }

    /// Sets an override on the account: in force at once for every check
    /// that reads the account, until its expiry if it has one. A trial
    /// extension is made at Stripe first and recorded with the re-synced
    /// subscription.
    pub async fn set_override(
        &self,
        account_id: &str,
        actor: Actor,
        input: OverrideInput,
    ) -> Result<Override, AppError> {
        let account = self.admin_account(account_id).await?.value;
        let kind = kind_of(&input)?;
        let now = self.clock.now();
        let new = Override::new(
            OverrideId(uuid::Uuid::new_v4()),
            kind,
            &input.reason,
            actor.clone(),
            now,
            input.expires_at,
        )
        .map_err(override_error)?;
        if let OverrideKind::TrialExtension { days } = kind {
            return self.extend_trial(&account, &actor, new, days).await;
        }
        self.write_overrides(account.id, &actor, |a| {
            overrides::add(&mut a.overrides, new.clone(), now).map_err(override_error)?;
            Ok((AuditAction::OverrideSet, new.clone()))
        })
        .await
    }

    /// Stripe's subscription is the truth of a trial: its end moves there
    /// (keyed by the override, so the adapter's retries move it once), and
    /// the account takes it up by the same sync as a webhook's, the
    /// override written in that write.
    async fn extend_trial(
        &self,
        account: &Account,
        actor: &Actor,
        new: Override,
        days: u32,
    ) -> Result<Override, AppError> {
        let sub_id = account
            .subscription
            .stripe_subscription_id
            .as_deref()
            .ok_or(AppError::State(StateConflict::NotTrialing))?;
        let remote = self
            .payments
            .subscription(sub_id)
            .await
            .map_err(AppError::Payments)?;
        let trial_end = overrides::extended_trial_end(&remote, days)
            .ok_or(AppError::State(StateConflict::NotTrialing))?;
        self.payments
            .extend_trial(account.id, sub_id, trial_end, &new.id.to_string())
            .await
            .map_err(AppError::Payments)?;
        let cause = format!("admin:{}", new.id);
        self.sync_subscription_recording(account.id, sub_id, &cause, actor, Some(&new))
            .await?;
        Ok(new)
    }

    /// Removes an override, active or expired.
    pub async fn remove_override(
        &self,
        account_id: &str,
        override_id: &str,
        actor: Actor,
    ) -> Result<Override, AppError> {
        let account = self.admin_account(account_id).await?.value;
        let id = uuid::Uuid::parse_str(override_id)
            .map(OverrideId)
            .map_err(|_| AppError::OverrideNotFound)?;
        self.write_overrides(account.id, &actor, |a| {
            let i = a
                .overrides
                .iter()
                .position(|o| o.id == id)
                .ok_or(AppError::OverrideNotFound)?;
            Ok((AuditAction::OverrideRemoved, a.overrides.remove(i)))
        })
        .await
    }

    /// Gives usage back in the metric's current window, once per key: a
    /// retry counts nothing again and writes no second audit entry (the
    /// entry is named by the key). The usage write and the entry are two
    /// writes (different containers on Cosmos DB); a crash between them is
    /// made good by the caller's retry with the same key.
    pub async fn credit_usage(
        &self,
        account_id: &str,
        actor: Actor,
        key: &IdempotencyKey,
        input: CreditInput,
    ) -> Result<(MeterReading, bool), AppError> {
        let account = self.admin_account(account_id).await?.value;
        if input.metric.kind() == MetricKind::Gauge {
            return Err(AppError::invalid(
                "metric",
                "only counters (documents, api_calls, exports) can be credited",
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&input.quantity) {
            return Err(AppError::invalid(
                "quantity",
                format!("must be a whole number from 1 to {MAX_QUANTITY}"),
            ));
        }
        check_reason(&input.reason)?;
        let now = self.clock.now();
        let usage_key = UsageKey::current(input.metric, now);
        let op = UsageOperation {
            id: OperationId::of_key(account.id, OperationKind::Credit, key.as_str()),
            fingerprint: fingerprint(&[
                "credit",
                input.metric.as_str(),
                &input.quantity.to_string(),
                input.reason.trim(),
            ]),
            account_id: account.id,
            key: usage_key,
            amount: -input.quantity,
            limit: None,
            at: now,
        };
        let (total, replayed) = match self.store.record_operation(&op).await? {
            OperationOutcome::Decided(UsageOutcome::Admitted { total }, _) => (total, false),
            OperationOutcome::Replayed { total } => (total, true),
            OperationOutcome::KeyReused => return Err(AppError::IdempotencyKeyReused),
            OperationOutcome::Decided(UsageOutcome::Denied { total }, _) => {
                return Err(AppError::invalid(
                    "quantity",
                    format!("is more than the {total} used in the current window"),
                ))
            }
        };
        let mut entry = self.audit_entry(
            account.id,
            actor,
            AuditAction::UsageCredited,
            Some(fields([
                ("metric", input.metric.as_str().to_owned()),
                ("used", (total + input.quantity as u64).to_string()),
            ])),
            Some(fields([
                ("metric", input.metric.as_str().to_owned()),
                ("used", total.to_string()),
                ("credited", input.quantity.to_string()),
            ])),
        );
        entry.id = AuditId::of_name(account.id, &format!("credit:{}", key.as_str()));
        entry.reason = Some(input.reason.trim().to_owned());
        self.store.append_audit(&[entry]).await?;
        let held = self.store.levels(account.id, &[usage_key], now).await?[0].held;
        Ok((self.reading(&account, usage_key, total, held), replayed))
    }
}

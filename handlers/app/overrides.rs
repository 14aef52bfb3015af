//! Operators' changes to an account's quota: overrides of its plan's
//! limits and features, written on the account document with their audit
//! entry in one write, and usage credited back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::account::Account;
use crate::domain::audit::{fields, Actor, AuditAction, AuditId};
use crate::domain::overrides::{self, Override, OverrideError, OverrideId, OverrideKind};
use crate::domain::plan::Feature;
use crate::domain::ports::{StoreError, Versioned};
use crate::domain::quota::{OperationId, OperationKind, OperationOutcome, UsageOperation};
use crate::domain::usage::{Metric, MetricKind, UsageKey, UsageOutcome, MAX_QUANTITY};

use super::quota::{fingerprint, IdempotencyKey};
use super::usage::MeterReading;
use super::{AppError, Billing};

/// Attempts at the account's conditional write before giving up with 503.
const WRITE_ATTEMPTS: usize = 8;

/// An override's value: a limit's whole number, or a feature's on/off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OverrideValue {
    Flag(bool),
    Whole(u64),
}

/// An override an operator asks for: exactly one of `limit` and
/// `feature`, and its value (a whole number for a limit, true or false
/// for a feature).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideInput {
    #[serde(default)]
    pub limit: Option<Metric>,
    #[serde(default)]
    pub feature: Option<Feature>,
    pub value: OverrideValue,
    /// Why: 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// When it stops counting; in the future. None: until removed.
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
    match (input.limit, input.feature) {
        (Some(metric), None) => match input.value {
            OverrideValue::Whole(value) => Ok(OverrideKind::Limit { metric, value }),
            OverrideValue::Flag(_) => Err(AppError::invalid(
                "value",
                "must be a whole number for a limit",
            )),
        },
        (None, Some(feature)) => match input.value {
            OverrideValue::Flag(enabled) => Ok(OverrideKind::Feature { feature, enabled }),
            OverrideValue::Whole(_) => Err(AppError::invalid(
                "value",
                "must be true or false for a feature",
            )),
        },
        _ => Err(AppError::invalid(
            "limit",
            "exactly one of limit and feature is required",
        )),
    }
}

fn override_error(e: OverrideError) -> AppError {
    let field = match e {
        OverrideError::Reason => "reason",
        OverrideError::Expiry => "expires_at",
        OverrideError::Unlimitable(_) => "limit",
        OverrideError::TooMany => "overrides",
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
    /// Changes the account's overrides and writes the change with its
    /// audit entry (and KRAFTD's `entitlements.updated`) in one
    /// conditional write, retried when someone else wrote in between.
    async fn write_overrides(
        &self,
        account_id: crate::domain::account::AccountId,
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
            let (before, after) = match action {
                AuditAction::OverrideRemoved => (Some(changed.describe()), None),
                _ => (None, Some(changed.describe())),
            };
            let mut entry = self.audit_entry(account_id, actor.clone(), action, before, after);
            entry.reason = Some(changed.reason.clone());
            match self
                .store
                .replace_account_and_enqueue(&next, &current.etag, &events, &[entry])
                .await
            {
                Ok(_) => return Ok(changed),
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Store(StoreError::VersionConflict))
    }

    /// Sets an override on the account: in force at once for every check
    /// that reads the account, until its expiry if it has one.
    pub async fn set_override(
        &self,
        account_id: &str,
        actor: Actor,
        input: OverrideInput,
    ) -> Result<Override, AppError> {
        let account = self.service_account(account_id).await?.value;
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
        self.write_overrides(account.id, &actor, |a| {
            overrides::add(&mut a.overrides, new.clone(), now).map_err(override_error)?;
            Ok((AuditAction::OverrideSet, new.clone()))
        })
        .await
    }

    /// Removes an override, active or expired.
    pub async fn remove_override(
        &self,
        account_id: &str,
        override_id: &str,
        actor: Actor,
    ) -> Result<Override, AppError> {
        let account = self.service_account(account_id).await?.value;
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
        let account = self.service_account(account_id).await?.value;
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

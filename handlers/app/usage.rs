use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::account::{Account, Action};
use crate::domain::plan::{ExportFormat, Feature, Limit, PlanId};
use crate::domain::usage::{
    check_gate, ConsumeGate, Metric, MetricKind, QuotaDenial, UsageIncrement, UsageKey,
    UsageOutcome, Window, MAX_QUANTITY,
};

use super::{Acting, AppError, Billing};

/// What KRAFTD's document service reports: a counter's increase, or a
/// gauge's change (negative frees storage).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConsumeRequest)]
pub struct ConsumeInput {
    pub metric: Metric,
    /// Positive for counters; a non-zero change for gauges. At most
    /// 1,000,000 either way in one report.
    #[schema(minimum = -1_000_000, maximum = 1_000_000)]
    pub quantity: i64,
    /// The gated feature this use needs, checked against the plan.
    #[serde(default)]
    pub feature: Option<Feature>,
    /// Required for `exports`: the format, checked against the plan.
    #[serde(default)]
    pub format: Option<ExportFormat>,
}

/// Where a metric stands after a successful check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterReading {
    pub metric: Metric,
    pub plan: PlanId,
    pub used: u64,
    pub limit: Limit,
    pub window: Option<Window>,
}

impl MeterReading {
    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.used))
    }

    pub fn seconds_to_reset(&self, now: DateTime<Utc>) -> Option<u64> {
        self.window.map(|w| w.seconds_until_end(now))
    }
}

/// One line of the usage report.
pub type UsageLine = MeterReading;

impl Billing {
    /// Counts one API call for the account, refusing it past the daily limit.
    pub async fn meter_api_call(&self, account: &Account) -> Result<MeterReading, AppError> {
        self.record(account, Metric::ApiCalls, 1).await
    }

    pub async fn consume(
        &self,
        acting: &Acting,
        input: ConsumeInput,
    ) -> Result<MeterReading, AppError> {
        acting.require(Action::Use)?;
        let account = &acting.account.value;
        if input.metric == Metric::TeamMembers {
            return Err(AppError::invalid(
                "metric",
                "team_members is counted from the account's members and invitations, not reported",
            ));
        }
        if input.quantity.unsigned_abs() > MAX_QUANTITY.unsigned_abs() {
            return Err(AppError::invalid(
                "quantity",
                format!("must be at most {MAX_QUANTITY} in one report"),
            ));
        }
        match input.metric.kind() {
            MetricKind::Counter(_) if input.quantity <= 0 => {
                return Err(AppError::invalid(
                    "quantity",
                    "must be a positive whole number for counters",
                ))
            }
            MetricKind::Gauge if input.quantity == 0 => {
                return Err(AppError::invalid(
                    "quantity",
                    "must be a non-zero change for gauges",
                ))
            }
            _ => {}
        }
        match (input.metric, input.format) {
            (Metric::Exports, None) => {
                return Err(AppError::invalid("format", "is required for exports"))
            }
            (m, Some(_)) if m != Metric::Exports => {
                return Err(AppError::invalid(
                    "format",
                    "applies only to the exports metric",
                ))
            }
            _ => {}
        }
        let plan = self.effective_plan(account);
        let gate = ConsumeGate {
            feature: input.feature,
            format: input.format,
        };
        check_gate(&plan.limits, gate).map_err(|denial| AppError::NotInPlan {
            denial,
            plan: plan.id,
            upgrade_to: plan.id.next_tier(),
        })?;
        self.record(account, input.metric, input.quantity).await
    }

    async fn record(
        &self,
        account: &Account,
        metric: Metric,
        amount: i64,
    ) -> Result<MeterReading, AppError> {
        let now = self.clock.now();
        let plan = self.effective_plan(account);
        let limit = metric.limit(&plan.limits);
        let key = UsageKey::current(metric, now);
        let outcome = self
            .store
            .increment_usage(&UsageIncrement {
                account_id: account.id,
                key,
                amount,
                limit,
                at: now,
            })
            .await?;
        match outcome {
            UsageOutcome::Admitted { total } => Ok(MeterReading {
                metric,
                plan: plan.id,
                used: total,
                limit,
                window: key.window,
            }),
            UsageOutcome::Denied { total } if amount < 0 => Err(AppError::invalid(
                "quantity",
                format!(
                    "would take {} below zero (currently {total})",
                    metric.as_str()
                ),
            )),
            UsageOutcome::Denied { total } => Err(AppError::QuotaExceeded(QuotaDenial {
                metric,
                limit: limit.unwrap_or(u64::MAX),
                used: total,
                requested: amount,
                plan: plan.id,
                upgrade_to: plan.id.next_tier(),
                window: key.window,
                seconds_to_reset: key.window.map(|w| w.seconds_until_end(now)),
            })),
        }
    }

    /// Usage against limits for the current windows, every metric; seats
    /// are the account's members and pending invitations.
    pub async fn usage_report(&self, acting: &Acting) -> Result<Vec<UsageLine>, AppError> {
        acting.require(Action::Use)?;
        let account = &acting.account.value;
        let now = self.clock.now();
        let plan = self.effective_plan(account);
        let keys: Vec<UsageKey> = Metric::ALL
            .iter()
            .map(|m| UsageKey::current(*m, now))
            .collect();
        let mut totals = self.store.usage(account.id, &keys).await?;
        let seats = self.seats(account.id).await?.used();
        for (key, total) in keys.iter().zip(totals.iter_mut()) {
            if key.metric == Metric::TeamMembers {
                *total = seats;
            }
        }
        Ok(keys
            .iter()
            .zip(totals)
            .map(|(key, used)| MeterReading {
                metric: key.metric,
                plan: plan.id,
                used,
                limit: key.metric.limit(&plan.limits),
                window: key.window,
            })
            .collect())
    }
}

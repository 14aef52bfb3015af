use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::account::Action;
use crate::domain::plan::{ExportFormat, Feature, Limit, PlanId};
use crate::domain::usage::{Metric, Window};

use super::{Acting, AppError, Billing};

/// What KRAFTD's services report: a counter's increase.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeInput {
    pub metric: Metric,
    /// From 1 to 1,000,000 in one report.
    #[serde(deserialize_with = "super::whole::number")]
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
    /// What live reservations hold: it counts against the limit too.
    pub held: u64,
    pub limit: Limit,
    pub window: Option<Window>,
}

impl MeterReading {
    pub fn remaining(&self) -> Option<u64> {
        self.limit
            .map(|l| l.saturating_sub(self.used.saturating_add(self.held)))
    }

    /// Past the limit: a gauge observed above it (after a downgrade, say).
    pub fn over_limit(&self) -> bool {
        self.limit.is_some_and(|l| self.used > l)
    }

    pub fn seconds_to_reset(&self, now: DateTime<Utc>) -> Option<u64> {
        self.window.map(|w| w.seconds_until_end(now))
    }
}

/// One line of the usage report.
pub type UsageLine = MeterReading;

impl Billing {
    /// Usage against limits for the current windows, every metric; seats
    /// are the account's members and pending invitations.
    pub async fn usage_report(&self, acting: &Acting) -> Result<Vec<UsageLine>, AppError> {
        acting.require(Action::Use)?;
        Ok(self.entitlements_of(&acting.account.value).await?.readings)
    }
}

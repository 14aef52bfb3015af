use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::MeterReading;
use crate::domain::plan::{Limits, PlanId};
use crate::domain::usage::{Metric, Window};

use super::error::ApiError;
use super::metering::CurrentMember;
use super::AppState;

/// Where one metric stands against the plan's limit.
#[derive(Serialize, ToSchema)]
pub struct UsageReading {
    metric: Metric,
    /// The plan limit that bounds it, as the catalog names it.
    #[schema(value_type = String, example = "documents_per_month")]
    limit_name: &'static str,
    used: u64,
    /// Held by live reservations: counts against the limit too.
    held: u64,
    /// `null`: unlimited.
    #[schema(required = true)]
    limit: Option<u64>,
    /// `null`: unlimited.
    #[schema(required = true)]
    remaining: Option<u64>,
    /// The UTC window a counter counts in; `null` for gauges.
    #[schema(required = true)]
    window: Option<Window>,
    /// When the window ends; `null` for gauges.
    #[schema(required = true)]
    resets_at: Option<DateTime<Utc>>,
}

impl From<&MeterReading> for UsageReading {
    fn from(r: &MeterReading) -> Self {
        Self {
            metric: r.metric,
            limit_name: r.metric.limit_name(),
            used: r.used,
            held: r.held,
            limit: r.limit,
            remaining: r.remaining(),
            window: r.window,
            resets_at: r.window.map(|w| w.end),
        }
    }
}

/// Usage of every metric in its current window.
#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    /// The plan whose limits apply now.
    plan: PlanId,
    /// Keyed by metric.
    #[schema(value_type = BTreeMap<Metric, UsageReading>)]
    usage: BTreeMap<&'static str, UsageReading>,
}

/// The caller's usage against the plan's limits
#[utoipa::path(
    get,
    path = "/api/usage",
    tag = "usage",
    responses((status = 200, description = "Every metric, with reset times", body = UsageReport))
)]
pub async fn report(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
) -> Result<Json<UsageReport>, ApiError> {
    let lines = state.billing.usage_report(&acting).await?;
    let plan = state.billing.effective_plan(&acting.account.value).id;
    let usage = lines
        .iter()
        .map(|l| (l.metric.as_str(), UsageReading::from(l)))
        .collect();
    Ok(Json(UsageReport { plan, usage }))
}

/// What the caller's plan allows now.
#[derive(Serialize, ToSchema)]
pub struct Entitlements {
    plan: PlanId,
    limits: Limits,
    /// The next tier up; `null` at the top.
    #[schema(required = true)]
    upgrade_to: Option<PlanId>,
}

/// The limits and features the caller's plan grants
#[utoipa::path(
    get,
    path = "/api/entitlements",
    tag = "usage",
    responses((status = 200, description = "The plan in effect and its limits", body = Entitlements))
)]
pub async fn entitlements(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
) -> Json<Entitlements> {
    let plan = state.billing.effective_plan(&acting.account.value);
    Json(Entitlements {
        plan: plan.id,
        limits: plan.limits.clone(),
        upgrade_to: plan.id.next_tier(),
    })
}

//! `GET /api/admin/health/billing`: what the on-call engineer looks at
//! first. A service credential with the `admin` scope (the route table
//! checks it before this runs).

use axum::extract::State;
use axum::Json;

use super::error::ApiError;
use super::AppState;
use crate::domain::health::BillingHealth;

/// Health of billing
///
/// Webhooks Stripe could not deliver, stale subscriptions, emails stuck or
/// failed, events for KRAFTD undelivered. `status` is `degraded` when any
/// of them needs someone; the reconcile timer logs the same once a run.
#[utoipa::path(
    get,
    path = "/api/admin/health/billing",
    tag = "admin",
    responses((status = 200, description = "Each signal's count and oldest time", body = BillingHealth))
)]
pub async fn billing(State(state): State<AppState>) -> Result<Json<BillingHealth>, ApiError> {
    Ok(Json(state.billing.billing_health().await?))
}

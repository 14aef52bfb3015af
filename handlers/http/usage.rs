use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::app::{ConsumeInput, MeterReading};

use super::error::ApiError;
use super::json::ApiJson;
use super::metering::CurrentUser;
use super::AppState;

fn reading_view(r: &MeterReading) -> Value {
    json!({
        "metric": r.metric,
        "limit_name": r.metric.limit_name(),
        "used": r.used,
        "limit": r.limit,
        "remaining": r.remaining(),
        "window": r.window,
        "resets_at": r.window.map(|w| w.end),
    })
}

pub async fn consume(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<ConsumeInput>,
) -> Result<Json<Value>, ApiError> {
    let reading = state.billing.consume(&user.value, input).await?;
    Ok(Json(reading_view(&reading)))
}

pub async fn report(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let lines = state.billing.usage_report(&user.value).await?;
    let plan = state.billing.effective_plan(&user.value).id;
    let usage: Map<String, Value> = lines
        .iter()
        .map(|l| (l.metric.as_str().to_owned(), reading_view(l)))
        .collect();
    Ok(Json(json!({ "plan": plan, "usage": usage })))
}

pub async fn entitlements(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Json<Value> {
    let plan = state.billing.effective_plan(&user.value);
    Json(json!({
        "plan": plan.id,
        "limits": plan.limits,
        "upgrade_to": plan.id.next_tier(),
    }))
}

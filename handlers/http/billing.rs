use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::metering::CurrentUser;
use super::AppState;

pub async fn subscription(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Json<Value> {
    let sub = &user.value.subscription;
    let plan = state.billing.catalog().plan(sub.plan_id);
    let price = plan.price(sub.billing_interval).map(|p| {
        json!({ "amount": p.money.amount, "currency": p.money.currency, "interval": p.interval })
    });
    Json(json!({
        "plan": {
            "id": plan.id,
            "name": plan.name,
            "tier": plan.tier,
            "price": price,
            "features": plan.features,
            "limits": plan.limits,
        },
        "effective_plan": state.billing.effective_plan(&user.value).id,
        "status": sub.status,
        "renewal_date": sub.renewal_date,
        "auto_renew": sub.auto_renew,
        "billing_interval": sub.billing_interval,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "current_period_end": sub.current_period_end,
    }))
}

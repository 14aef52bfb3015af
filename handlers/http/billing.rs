use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::{InvoicePage, Upgrade, WebhookOutcome};
use crate::domain::money::format_decimal;
use crate::domain::ports::CheckoutSession;
use crate::domain::user::User;

use super::error::ApiError;
use super::json::ApiJson;
use super::metering::CurrentUser;
use super::AppState;

/// A checkout to pay at: the answer to a paid registration or an upgrade
/// without a live subscription.
pub fn checkout_response(checkout: &CheckoutSession) -> Response {
    let body = json!({
        "checkout_url": checkout.url,
        "session_id": checkout.id,
        "message": "Complete the payment to activate your subscription.",
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

/// The subscription as the frontend shows it.
fn subscription_view(state: &AppState, user: &User) -> Value {
    let sub = &user.subscription;
    let plan = state.billing.catalog().plan(sub.plan_id);
    let price = plan.price(sub.billing_interval).map(|p| {
        json!({ "amount": p.money.amount, "currency": p.money.currency, "interval": p.interval })
    });
    json!({
        "plan": {
            "id": plan.id,
            "name": plan.name,
            "tier": plan.tier,
            "price": price,
            "features": plan.features,
            "limits": plan.limits,
        },
        "effective_plan": state.billing.effective_plan(user).id,
        "status": sub.status,
        "renewal_date": sub.renewal_date,
        "auto_renew": sub.auto_renew,
        "billing_interval": sub.billing_interval,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "current_period_end": sub.current_period_end,
        "grace_until": sub.grace_until,
        "last_payment_status": sub.last_payment_status,
        "pending_checkout_session_id": sub.checkout_session_id,
        "scheduled_change": sub.scheduled_change,
    })
}

pub async fn subscription(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Json<Value> {
    Json(subscription_view(&state, &user.value))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    new_plan_id: String,
    #[serde(default)]
    billing_interval: Option<String>,
}

pub async fn upgrade(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<PlanChange>,
) -> Result<Response, ApiError> {
    let upgrade = state
        .billing
        .upgrade(&user, &body.new_plan_id, body.billing_interval.as_deref())
        .await?;
    Ok(match upgrade {
        Upgrade::Checkout(checkout) => checkout_response(&checkout),
        Upgrade::Changed(user) => {
            Json(json!({ "subscription": subscription_view(&state, &user) })).into_response()
        }
    })
}

pub async fn preview_change(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<PlanChange>,
) -> Result<Json<Value>, ApiError> {
    let (plan, interval, due) = state
        .billing
        .preview_change(
            &user.value,
            &body.new_plan_id,
            body.billing_interval.as_deref(),
        )
        .await?;
    Ok(Json(json!({
        "new_plan_id": plan,
        "billing_interval": interval,
        "amount_due_now": { "amount": due.amount, "currency": due.currency },
        "amount_due_now_decimal": format_decimal(due.amount),
    })))
}

pub async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let user = state.billing.cancel_at_period_end(&user, true).await?;
    Ok(Json(
        json!({ "subscription": subscription_view(&state, &user) }),
    ))
}

pub async fn resume(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let user = state.billing.cancel_at_period_end(&user, false).await?;
    Ok(Json(
        json!({ "subscription": subscription_view(&state, &user) }),
    ))
}

pub async fn customer_portal(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let url = state.billing.portal_url(&user.value).await?;
    Ok(Json(json!({ "url": url })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    starting_after: Option<String>,
}

pub async fn invoices(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    query: Result<Query<InvoiceQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidBody {
        field: "query".into(),
        detail: e.body_text(),
    })?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::InvalidBody {
            field: "limit".into(),
            detail: "must be from 1 to 100".into(),
        });
    }
    let InvoicePage { invoices, has_more } = state
        .billing
        .invoices(&user.value, limit, q.starting_after.as_deref())
        .await?;
    let items: Vec<Value> = invoices
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "number": i.number,
                "amount": i.amount_due.amount,
                "amount_decimal": format_decimal(i.amount_due.amount),
                "amount_paid": i.amount_paid.amount,
                "currency": i.amount_due.currency,
                "status": i.status,
                "date": i.created_at,
                "period_start": i.period_start,
                "period_end": i.period_end,
                "hosted_invoice_url": i.hosted_invoice_url,
                "pdf_url": i.pdf_url,
            })
        })
        .collect();
    Ok(Json(json!({
        "invoices": items,
        "has_more": has_more,
        "next_starting_after": if has_more { invoices.last().map(|i| i.id.clone()) } else { None },
    })))
}

/// Stripe's webhook: the raw bytes, as signed. 2xx only once the effect
/// is stored; 400 for anything not signed by Stripe; 5xx asks for a retry.
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = state.billing.handle_webhook(&body, signature).await?;
    Ok(Json(json!({
        "received": true,
        "duplicate": outcome == WebhookOutcome::Duplicate,
        "ignored": outcome == WebhookOutcome::Ignored,
    })))
}

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::{InvoicePage, Upgrade, WebhookOutcome};
use crate::domain::account::Account;
use crate::domain::money::{Currency, Money};
use crate::domain::plan::{BillingInterval, Limits, PlanId, Price};
use crate::domain::ports::CheckoutSession;
use crate::domain::records::Invoice;
use crate::domain::subscription::{ScheduledChange, Subscription, SubscriptionStatus};

use super::error::{ApiError, ErrorResponse};
use super::json::{unreadable, ApiJson};
use super::metering::CurrentMember;
use super::openapi::JsonBodyErrors;
use super::plans::PaidSelfServePlan;
use super::AppState;

/// A checkout to pay at: the answer to a paid registration or an upgrade
/// without a live subscription.
#[derive(Serialize, ToSchema)]
pub struct Checkout {
    /// Stripe Checkout's page; send the user there.
    checkout_url: String,
    session_id: String,
    message: String,
}

impl From<&CheckoutSession> for Checkout {
    fn from(checkout: &CheckoutSession) -> Self {
        Self {
            checkout_url: checkout.url.clone(),
            session_id: checkout.id.clone(),
            message: "Complete the payment to activate your subscription.".into(),
        }
    }
}

/// The plan a subscription sells, at the price its interval bills.
#[derive(Serialize, ToSchema)]
pub struct SubscribedPlan {
    id: PlanId,
    name: &'static str,
    tier: PlanId,
    /// `null` for custom-priced plans.
    #[schema(required = true)]
    price: Option<Price>,
    features: Vec<&'static str>,
    limits: Limits,
}

/// Where a subscription stands in its billing cycle.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionState {
    status: SubscriptionStatus,
    billing_interval: BillingInterval,
    #[schema(required = true)]
    renewal_date: Option<DateTime<Utc>>,
    #[schema(required = true)]
    current_period_end: Option<DateTime<Utc>>,
    auto_renew: bool,
    cancel_at_period_end: bool,
    /// While `past_due`, the paid plan holds until then.
    #[schema(required = true)]
    grace_until: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_payment_status: Option<String>,
    /// A change that takes effect when the paid period ends.
    #[schema(required = true)]
    scheduled_change: Option<ScheduledChange>,
    /// While `trialing`, when the trial ends and the first paid period
    /// begins.
    #[schema(required = true)]
    trial_end: Option<DateTime<Utc>>,
}

impl From<&Subscription> for SubscriptionState {
    fn from(s: &Subscription) -> Self {
        Self {
            status: s.status,
            billing_interval: s.billing_interval,
            renewal_date: s.renewal_date,
            current_period_end: s.current_period_end,
            auto_renew: s.auto_renew,
            cancel_at_period_end: s.cancel_at_period_end,
            grace_until: s.grace_until,
            last_payment_status: s.last_payment_status.clone(),
            scheduled_change: s.scheduled_change.clone(),
            trial_end: s.trial_end,
        }
    }
}

/// The subscription as the frontend shows it.
#[derive(Serialize, ToSchema)]
pub struct BillingSubscription {
    plan: SubscribedPlan,
    /// The plan whose limits apply now: Free while a paid plan is unpaid.
    effective_plan: PlanId,
    /// A checkout this account is waiting on.
    #[schema(required = true)]
    pending_checkout_session_id: Option<String>,
    #[serde(flatten)]
    state: SubscriptionState,
}

fn subscription_view(state: &AppState, account: &Account) -> BillingSubscription {
    let sub = &account.subscription;
    let plan = state.billing.catalog().plan(sub.plan_id);
    BillingSubscription {
        plan: SubscribedPlan {
            id: plan.id,
            name: plan.name,
            tier: plan.tier,
            price: plan.price(sub.billing_interval).cloned(),
            features: plan.features.clone(),
            limits: plan.limits.clone(),
        },
        effective_plan: state.billing.effective_plan(account).id,
        pending_checkout_session_id: sub.checkout_session_id.clone(),
        state: sub.into(),
    }
}

/// The subscription after a change.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionChanged {
    subscription: BillingSubscription,
}

fn changed(state: &AppState, account: &Account) -> Json<SubscriptionChanged> {
    Json(SubscriptionChanged {
        subscription: subscription_view(state, account),
    })
}

/// The caller's subscription
#[utoipa::path(
    get,
    path = "/api/billing/subscription",
    tag = "billing",
    responses((status = 200, description = "The subscription", body = BillingSubscription))
)]
pub async fn subscription(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
) -> Json<BillingSubscription> {
    Json(subscription_view(&state, &acting.account.value))
}

// Plan and interval arrive as text so a wrong one is a 422 naming the
// field; the schema lists the values that are accepted.
/// The plan and interval to move to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanChangeRequest {
    #[schema(value_type = PaidSelfServePlan)]
    new_plan_id: String,
    /// The current interval when absent.
    #[serde(default)]
    #[schema(value_type = Option<BillingInterval>)]
    billing_interval: Option<String>,
    /// For a change: the `proration_date` of its preview, so it bills what
    /// the preview showed. Accepted for 10 minutes; now when absent.
    #[serde(default)]
    proration_date: Option<DateTime<Utc>>,
}

/// Change plan or billing interval
///
/// Without a live subscription: a checkout. Up a tier, or monthly to annual:
/// the same subscription moves to the new price now, prorated. Annual to
/// monthly, or down a tier: scheduled for the end of the paid period.
#[utoipa::path(
    post,
    path = "/api/billing/upgrade",
    tag = "billing",
    request_body = PlanChangeRequest,
    responses(
        (status = 200, description = "The subscription changed, or a change is scheduled", body = SubscriptionChanged),
        (status = 201, description = "Pay at this checkout first", body = Checkout),
        (status = 409, description = "`already_on_plan`: the subscription is on this plan and interval; `checkout_pending`: a paid checkout's subscription is still being activated", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn upgrade(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
    ApiJson(body): ApiJson<PlanChangeRequest>,
) -> Result<Response, ApiError> {
    let upgrade = state
        .billing
        .upgrade(
            &acting,
            &body.new_plan_id,
            body.billing_interval.as_deref(),
            body.proration_date,
        )
        .await?;
    Ok(match upgrade {
        Upgrade::Checkout(checkout) => {
            (StatusCode::CREATED, Json(Checkout::from(&checkout))).into_response()
        }
        Upgrade::Changed(account) => changed(&state, &account).into_response(),
    })
}

/// The plan and interval a preview prices.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanChangeQuoteRequest {
    #[schema(value_type = PaidSelfServePlan)]
    new_plan_id: String,
    /// The current interval when absent.
    #[serde(default)]
    #[schema(value_type = Option<BillingInterval>)]
    billing_interval: Option<String>,
}

/// What a plan change would bill now.
#[derive(Serialize, ToSchema)]
pub struct PlanChangePreview {
    new_plan_id: PlanId,
    billing_interval: BillingInterval,
    amount_due_now: Money,
    /// `amount_due_now` as a decimal string in its currency's unit ("99.00", "9900" for yen), for display only.
    #[schema(example = "99.00")]
    amount_due_now_decimal: String,
    /// The moment the amount is priced at: send it with the change (within
    /// 10 minutes) to be billed exactly this amount.
    proration_date: DateTime<Utc>,
}

/// Preview what a plan change bills now
#[utoipa::path(
    post,
    path = "/api/billing/preview-change",
    tag = "billing",
    request_body = PlanChangeQuoteRequest,
    responses(
        (status = 200, description = "The amount due now", body = PlanChangePreview),
        JsonBodyErrors,
    )
)]
pub async fn preview_change(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
    ApiJson(body): ApiJson<PlanChangeQuoteRequest>,
) -> Result<Json<PlanChangePreview>, ApiError> {
    let quote = state
        .billing
        .preview_change(&acting, &body.new_plan_id, body.billing_interval.as_deref())
        .await?;
    Ok(Json(PlanChangePreview {
        new_plan_id: quote.plan_id,
        billing_interval: quote.interval,
        amount_due_now: quote.due,
        amount_due_now_decimal: quote.due.decimal(),
        proration_date: quote.proration_date,
    }))
}

/// Cancel at the end of the paid period
#[utoipa::path(
    post,
    path = "/api/billing/cancel-subscription",
    tag = "billing",
    responses(
        (status = 200, description = "Cancels at period end; the plan holds until then", body = SubscriptionChanged),
        (status = 409, description = "`no_paid_subscription`: there is no live paid subscription to cancel", body = ErrorResponse),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
) -> Result<Json<SubscriptionChanged>, ApiError> {
    let account = state.billing.cancel_at_period_end(&acting, true).await?;
    Ok(changed(&state, &account))
}

/// Withdraw a pending cancellation
#[utoipa::path(
    post,
    path = "/api/billing/resume",
    tag = "billing",
    responses(
        (status = 200, description = "Renews again", body = SubscriptionChanged),
        (status = 409, description = "`no_paid_subscription`: there is no live paid subscription to resume", body = ErrorResponse),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
) -> Result<Json<SubscriptionChanged>, ApiError> {
    let account = state.billing.cancel_at_period_end(&acting, false).await?;
    Ok(changed(&state, &account))
}

/// A link to Stripe's customer portal.
#[derive(Serialize, ToSchema)]
pub struct PortalLink {
    url: String,
}

/// Open Stripe's customer portal
#[utoipa::path(
    get,
    path = "/api/billing/customer-portal",
    tag = "billing",
    responses(
        (status = 200, description = "A portal session's URL", body = PortalLink),
        (status = 409, description = "`no_billing_account`: never subscribed to a paid plan", body = ErrorResponse),
    )
)]
pub async fn customer_portal(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
) -> Result<Json<PortalLink>, ApiError> {
    let url = state.billing.portal_url(&acting).await?;
    Ok(Json(PortalLink { url }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceQuery {
    /// 1 to 100; 10 when absent.
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// The `next_starting_after` of the previous page.
    #[serde(default)]
    starting_after: Option<String>,
}

/// One invoice; amounts in the minor unit Stripe counts its currency in (cents, yen).
#[derive(Serialize, ToSchema)]
pub struct InvoiceSummary {
    id: String,
    #[schema(required = true)]
    number: Option<String>,
    amount: i64,
    /// `amount` as a decimal string in its currency's unit ("99.00", "9900" for yen), for display only.
    amount_decimal: String,
    amount_paid: i64,
    currency: Currency,
    /// Stripe's invoice status: draft, open, paid, uncollectible or void.
    status: String,
    date: DateTime<Utc>,
    #[schema(required = true)]
    period_start: Option<DateTime<Utc>>,
    #[schema(required = true)]
    period_end: Option<DateTime<Utc>>,
    #[schema(required = true)]
    hosted_invoice_url: Option<String>,
    #[schema(required = true)]
    pdf_url: Option<String>,
}

impl From<&Invoice> for InvoiceSummary {
    fn from(i: &Invoice) -> Self {
        Self {
            id: i.id.clone(),
            number: i.number.clone(),
            amount: i.amount_due.amount,
            amount_decimal: i.amount_due.decimal(),
            amount_paid: i.amount_paid.amount,
            currency: i.amount_due.currency,
            status: i.status.clone(),
            date: i.created_at,
            period_start: i.period_start,
            period_end: i.period_end,
            hosted_invoice_url: i.hosted_invoice_url.clone(),
            pdf_url: i.pdf_url.clone(),
        }
    }
}

/// A page of invoices, newest first.
#[derive(Serialize, ToSchema)]
pub struct InvoiceList {
    invoices: Vec<InvoiceSummary>,
    has_more: bool,
    /// Pass as `starting_after` for the next page; `null` on the last.
    #[schema(required = true)]
    next_starting_after: Option<String>,
}

/// The caller's invoices, newest first
#[utoipa::path(
    get,
    path = "/api/billing/invoices",
    tag = "billing",
    params(InvoiceQuery),
    responses(
        (status = 200, description = "A page of invoices", body = InvoiceList),
        (status = 404, description = "`invoice_not_found`: `starting_after` names no invoice of this account's; `account_not_found`", body = ErrorResponse),
        (status = 422, description = "`invalid_field`: `limit` or `query`", body = ErrorResponse),
    )
)]
pub async fn invoices(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
    query: Result<Query<InvoiceQuery>, QueryRejection>,
) -> Result<Json<InvoiceList>, ApiError> {
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
        .invoices(&acting, limit, q.starting_after.as_deref())
        .await?;
    Ok(Json(InvoiceList {
        next_starting_after: if has_more {
            invoices.last().map(|i| i.id.clone())
        } else {
            None
        },
        invoices: invoices.iter().map(InvoiceSummary::from).collect(),
        has_more,
    }))
}

/// Stripe's event, exactly as Stripe signed and sent it; the service reads
/// only its id and type, then re-reads the object it names from Stripe.
// Never built: it describes the body, which the handler reads as raw bytes.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct StripeEvent {
    /// `evt_...`
    id: String,
    #[schema(example = "customer.subscription.updated")]
    r#type: String,
    /// `{"object": {...}}`: the object the event is about.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// The webhook's answer to Stripe.
#[derive(Serialize, ToSchema)]
pub struct WebhookAck {
    received: bool,
    /// Seen before: acknowledged, nothing done.
    duplicate: bool,
    /// A type this service does not act on, or about nobody it knows.
    ignored: bool,
}

/// Stripe's webhook
///
/// Called by Stripe, not by clients. The body is verified against the
/// `Stripe-Signature` header with the configured secrets (300 s tolerance).
/// 2xx only once the effect is stored; 5xx asks Stripe to retry.
#[utoipa::path(
    post,
    path = "/api/webhooks/stripe",
    tag = "webhooks",
    params(("Stripe-Signature" = String, Header, description = "Stripe's signature of the raw body: `t=<unix time>,v1=<hex HMAC-SHA256>`")),
    request_body(content = StripeEvent, description = "A Stripe event, as Stripe sends it"),
    responses(
        (status = 200, description = "Received", body = WebhookAck),
        (status = 400, description = "`invalid_webhook`: unsigned, wrongly signed, stale or unreadable", body = ErrorResponse),
        (status = 413, description = "`payload_too_large`: over `max_bytes` (1 MiB)", body = ErrorResponse),
    )
)]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookAck>, ApiError> {
    let body = body.map_err(unreadable)?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = state.billing.handle_webhook(&body, signature).await?;
    Ok(Json(WebhookAck {
        received: true,
        duplicate: outcome == WebhookOutcome::Duplicate,
        ignored: outcome == WebhookOutcome::Ignored,
    }))
}

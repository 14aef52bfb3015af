//! The Enterprise sales flow: support's offer on an account (admin scope)
//! and the owner's acceptance through a checkout.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{AppError, OfferInput};
use crate::domain::money::{Currency, Money};
use crate::domain::offer::EnterpriseOffer;
use crate::domain::plan::{BillingInterval, PlanId};
use crate::domain::ports::OfferPrice;
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::usage::Metric;

use super::billing::Checkout;
use super::error::{ApiError, ErrorResponse};
use super::json::ApiJson;
use super::metering::{Caller, CurrentMember};
use super::openapi::JsonBodyErrors;
use super::AppState;

/// A negotiated Enterprise price for the account: an existing Stripe price
/// (`price_id`), or `amount`, `currency` and `interval` for a new one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferRequest {
    /// A recurring Stripe price of the Enterprise plan (its product's
    /// metadata `plan_id` is `enterprise`).
    #[serde(default)]
    price_id: Option<String>,
    /// In the currency's minor unit (cents), for a new price.
    #[serde(default)]
    #[schema(minimum = 1)]
    amount: Option<i64>,
    /// ISO 4217, for a new price.
    #[serde(default)]
    #[schema(example = "usd")]
    currency: Option<String>,
    /// For a new price.
    #[serde(default)]
    interval: Option<BillingInterval>,
    /// The negotiated limits, replacing the plan's for these metrics once
    /// the offer is accepted.
    #[serde(default)]
    limits: BTreeMap<Metric, u64>,
    /// Why (the deal, the ticket).
    reason: String,
    /// The offer's validity; none: until replaced.
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    /// Move the account's live subscription to the price now, prorated,
    /// with no checkout.
    #[serde(default)]
    attach: bool,
}

impl OfferRequest {
    fn price(&self) -> Result<OfferPrice, AppError> {
        match (&self.price_id, self.amount, &self.currency, self.interval) {
            (Some(id), None, None, None) if !id.trim().is_empty() => {
                Ok(OfferPrice::Existing(id.trim().to_owned()))
            }
            (None, Some(amount), Some(currency), Some(interval)) => Ok(OfferPrice::New {
                money: Money {
                    amount,
                    currency: Currency::parse(currency)
                        .map_err(|e| AppError::invalid("currency", e.to_string()))?,
                },
                interval,
            }),
            _ => Err(AppError::invalid(
                "price_id",
                "give either price_id, or amount, currency and interval",
            )),
        }
    }
}

/// The account's offer, and where its subscription stands.
#[derive(Serialize, ToSchema)]
pub struct OfferMade {
    offer: EnterpriseOffer,
    plan_id: PlanId,
    status: SubscriptionStatus,
}

/// Make an account an Enterprise offer
///
/// Replaces any earlier offer. Pending, the account's owner accepts it at
/// `POST /api/billing/enterprise-offer/accept`; with `attach`, the
/// account's live subscription moves to the price now, prorated, and the
/// offer is accepted.
#[utoipa::path(
    post,
    path = "/api/admin/accounts/{account_id}/enterprise-offers",
    tag = "admin",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("X-Admin-Actor" = Option<String>, Header, description = "The person acting (support staff's email), recorded in the audit log", max_length = 254),
    ),
    request_body = OfferRequest,
    responses(
        (status = 201, description = "The offer, pending, or accepted when attached", body = OfferMade),
        (status = 404, description = "`account_not_found`", body = ErrorResponse),
        (status = 409, description = "`no_paid_subscription`: nothing live to attach to", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn make_offer(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<OfferRequest>,
) -> Result<(StatusCode, Json<OfferMade>), ApiError> {
    let by = super::admin::actor(caller, &headers)?;
    let price = body.price()?;
    let input = OfferInput {
        price,
        limits: body.limits,
        reason: body.reason,
        expires_at: body.expires_at,
        attach: body.attach,
    };
    let account = state
        .billing
        .make_enterprise_offer(&by, &account_id, input)
        .await?;
    let offer = account
        .enterprise_offer
        .clone()
        .ok_or(AppError::OfferNotFound)?;
    Ok((
        StatusCode::CREATED,
        Json(OfferMade {
            offer,
            plan_id: account.subscription.plan_id,
            status: account.subscription.status,
        }),
    ))
}

/// Accept the account's Enterprise offer
///
/// The owner only. Answers a checkout on the offer's price; once paid, the
/// account moves to Enterprise, and a Pro subscription is cancelled with
/// its unused time credited.
#[utoipa::path(
    post,
    path = "/api/billing/enterprise-offer/accept",
    tag = "billing",
    responses(
        (status = 201, description = "Pay at this checkout", body = Checkout),
        (status = 404, description = "`offer_not_found`", body = ErrorResponse),
        (status = 409, description = "`offer_expired`, `offer_accepted`, or `checkout_pending`", body = ErrorResponse),
    )
)]
pub async fn accept_offer(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
) -> Result<(StatusCode, Json<Checkout>), ApiError> {
    let checkout = state.billing.accept_enterprise_offer(&acting).await?;
    Ok((StatusCode::CREATED, Json(Checkout::from(&checkout))))
}

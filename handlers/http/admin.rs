//! The admin API (`/api/admin/…`), for service credentials with the
//! `admin` scope: support staff's tool and KRAFTD's back office. The actor
//! of each change is the credential's name, with the person named by the
//! optional `X-Admin-Actor` header. Also the owner's own audit log.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::{
    AccountQuery, AppError, AuditPage, CreditInput, IdempotencyKey, OverrideInput, OverrideValue,
};
use crate::domain::account::{Account, Role};
use crate::domain::audit::{Actor, AuditEntry};
use crate::domain::overrides::{Override, OverrideKind};
use crate::domain::plan::{Feature, PlanId};
use crate::domain::usage::Metric;

use super::billing::InvoiceSummary;
use super::error::{ApiError, ErrorResponse};
use super::json::ApiJson;
use super::metering::{Caller, CurrentMember};
use super::openapi::JsonBodyErrors;
use super::service::{idempotency_key, replayed};
use super::usage::UsageReading;
use super::AppState;

/// Names the person behind an admin request (support staff's email).
pub const ADMIN_ACTOR: &str = "x-admin-actor";
const MAX_PERSON_CHARS: usize = 254;

/// The actor the audit log records for this request.
pub(super) fn actor(caller: Caller, headers: &HeaderMap) -> Result<Actor, ApiError> {
    let Caller::Service(principal) = caller else {
        return Err(AppError::MissingScope("admin").into());
    };
    let person = match headers.get(ADMIN_ACTOR) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.chars().count() <= MAX_PERSON_CHARS)
                .ok_or_else(|| {
                    AppError::invalid(
                        "X-Admin-Actor",
                        format!("must be 1 to {MAX_PERSON_CHARS} printable ASCII characters"),
                    )
                })?;
            Some(v.to_owned())
        }
    };
    Ok(Actor::Admin {
        service: principal.name,
        person,
    })
}

/// Who did it.
#[derive(Serialize, ToSchema)]
pub struct ActorView {
    /// `user`, `admin`, `stripe_webhook`, `reconciliation` or `system`.
    r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    /// `admin`: the service credential's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    /// `admin`: the person, from `X-Admin-Actor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    person: Option<String>,
    /// `stripe_webhook`: the Stripe event.
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
}

impl From<&Actor> for ActorView {
    fn from(a: &Actor) -> Self {
        let none = |t| ActorView {
            r#type: t,
            user_id: None,
            service: None,
            person: None,
            event_id: None,
        };
        match a {
            Actor::User { user_id } => ActorView {
                user_id: Some(user_id.to_string()),
                ..none("user")
            },
            Actor::Admin { service, person } => ActorView {
                service: Some(service.clone()),
                person: person.clone(),
                ..none("admin")
            },
            Actor::StripeWebhook { event_id } => ActorView {
                event_id: Some(event_id.clone()),
                ..none("stripe_webhook")
            },
            Actor::Reconciliation => none("reconciliation"),
            Actor::System => none("system"),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntryView {
    #[schema(format = Uuid)]
    id: String,
    at: DateTime<Utc>,
    actor: ActorView,
    /// `plan_changed`, `subscription_changed`, `override_set`,
    /// `override_removed`, `usage_credited`, `admin_resync`, ...
    #[schema(example = "override_set")]
    action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<BTreeMap<String, String>>,
}

impl From<&AuditEntry> for AuditEntryView {
    fn from(e: &AuditEntry) -> Self {
        Self {
            id: e.id.to_string(),
            at: e.at,
            actor: ActorView::from(&e.actor),
            action: serde_json::to_value(e.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            reason: e.reason.clone(),
            before: e.before.clone(),
            after: e.after.clone(),
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditList {
    entries: Vec<AuditEntryView>,
    has_more: bool,
    /// Pass as `starting_after` for the next page; `null` on the last.
    #[schema(required = true)]
    next_starting_after: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// 1 to 100; 20 when absent.
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// The `next_starting_after` of the previous page.
    #[serde(default)]
    starting_after: Option<String>,
}

fn page_of(query: Result<Query<AuditQuery>, QueryRejection>) -> Result<AuditQuery, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidBody {
        field: "query".into(),
        detail: e.body_text(),
    })?;
    if !(1..=100).contains(&q.limit.unwrap_or(20)) {
        return Err(ApiError::InvalidBody {
            field: "limit".into(),
            detail: "must be from 1 to 100".into(),
        });
    }
    Ok(q)
}

fn audit_list(page: AuditPage) -> AuditList {
    AuditList {
        next_starting_after: if page.has_more {
            page.entries.last().map(|e| e.id.to_string())
        } else {
            None
        },
        entries: page.entries.iter().map(AuditEntryView::from).collect(),
        has_more: page.has_more,
    }
}

/// An account's audit log
///
/// Every change to its plan (and its cause), overrides, usage credits and
/// operators' actions, newest first.
#[utoipa::path(
    get,
    path = "/api/admin/accounts/{account_id}/audit",
    tag = "admin",
    params(("account_id" = String, Path, format = Uuid), AuditQuery),
    responses(
        (status = 200, description = "A page of the log", body = AuditList),
        (status = 403, description = "`missing_scope`: not a service credential with `admin`", body = ErrorResponse),
        (status = 404, description = "`account_not_found`; `audit_entry_not_found`: `starting_after`", body = ErrorResponse),
        (status = 422, description = "`invalid_field`: `limit` or `query`", body = ErrorResponse),
    )
)]
pub async fn audit(
    State(state): State<AppState>,
    _caller: Caller,
    Path(account_id): Path<String>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    let q = page_of(query)?;
    let account = state.billing.service_account(&account_id).await?.value;
    let page = state
        .billing
        .audit_log(
            account.id,
            q.limit.unwrap_or(20),
            q.starting_after.as_deref(),
        )
        .await?;
    Ok(Json(audit_list(page)))
}

/// The account's audit log, for its owner
///
/// As the admin API's, for the owner of the account the request acts on;
/// other members get 403.
#[utoipa::path(
    get,
    path = "/api/account/audit",
    tag = "team",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the log", body = AuditList),
        (status = 403, description = "`forbidden`: only the owner reads it", body = ErrorResponse),
        (status = 404, description = "`audit_entry_not_found`: `starting_after`; `account_not_found`", body = ErrorResponse),
        (status = 422, description = "`invalid_field`: `limit` or `query`", body = ErrorResponse),
    )
)]
pub async fn own_audit(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    let q = page_of(query)?;
    let page = state
        .billing
        .own_audit_log(&acting, q.limit.unwrap_or(20), q.starting_after.as_deref())
        .await?;
    Ok(Json(audit_list(page)))
}

/// An override of the account's plan.
#[derive(Serialize, ToSchema)]
pub struct OverrideView {
    #[schema(format = Uuid)]
    id: String,
    /// Set for a limit override.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<Metric>,
    /// Set for a feature override.
    #[serde(skip_serializing_if = "Option::is_none")]
    feature: Option<Feature>,
    /// Set for a trial extension: the days added to the trial at Stripe.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 90)]
    trial_extension_days: Option<u32>,
    /// A limit's or feature's value; absent for a trial extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<OverrideValue>,
    reason: String,
    actor: ActorView,
    set_at: DateTime<Utc>,
    #[schema(required = true)]
    expires_at: Option<DateTime<Utc>>,
    /// In force now (not expired).
    active: bool,
}

fn override_view(o: &Override, now: DateTime<Utc>) -> OverrideView {
    let mut view = OverrideView {
        id: o.id.to_string(),
        limit: None,
        feature: None,
        trial_extension_days: None,
        value: None,
        reason: o.reason.clone(),
        actor: ActorView::from(&o.actor),
        set_at: o.set_at,
        expires_at: o.expires_at,
        active: o.is_active(now),
    };
    match o.kind {
        OverrideKind::Limit { metric, value } => {
            view.limit = Some(metric);
            view.value = Some(OverrideValue::Whole(value));
        }
        OverrideKind::Feature { feature, enabled } => {
            view.feature = Some(feature);
            view.value = Some(OverrideValue::Flag(enabled));
        }
        OverrideKind::TrialExtension { days } => view.trial_extension_days = Some(days),
    }
    view
}

/// Override a limit or a feature, or extend a trial
///
/// In force at once for every entitlement and quota check of the account,
/// until `expires_at` if given; written with its audit entry in one write.
/// `trial_extension_days` moves the trialing subscription's trial end at
/// Stripe (its first invoice with it), then records the override with the
/// re-synced subscription.
#[utoipa::path(
    post,
    path = "/api/admin/accounts/{account_id}/overrides",
    tag = "admin",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("X-Admin-Actor" = Option<String>, Header, description = "The person acting (support staff's email), recorded in the audit log", max_length = 254),
    ),
    request_body = OverrideInput,
    responses(
        (status = 201, description = "Set", body = OverrideView),
        (status = 403, description = "`missing_scope`", body = ErrorResponse),
        (status = 404, description = "`account_not_found`", body = ErrorResponse),
        (status = 409, description = "`not_trialing`: a trial extension for a subscription that is not trialing", body = ErrorResponse),
        (status = 502, description = "`payment_provider_error`", body = ErrorResponse),
        (status = 503, description = "`payments_unavailable`", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn set_override(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<OverrideInput>,
) -> Result<Response, ApiError> {
    let actor = actor(caller, &headers)?;
    let set = state
        .billing
        .set_override(&account_id, actor, input)
        .await?;
    let view = override_view(&set, state.billing.now());
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Remove an override
#[utoipa::path(
    delete,
    path = "/api/admin/accounts/{account_id}/overrides/{override_id}",
    tag = "admin",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("override_id" = String, Path, format = Uuid),
        ("X-Admin-Actor" = Option<String>, Header, description = "The person acting", max_length = 254),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`missing_scope`", body = ErrorResponse),
        (status = 404, description = "`override_not_found`; `account_not_found`", body = ErrorResponse),
    )
)]
pub async fn remove_override(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, override_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let actor = actor(caller, &headers)?;
    state
        .billing
        .remove_override(&account_id, &override_id, actor)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Credit usage back
///
/// Gives `quantity` of a counter back in its current window (down to zero
/// used, never below), once per `Idempotency-Key`, with an audit entry.
#[utoipa::path(
    post,
    path = "/api/admin/accounts/{account_id}/credits",
    tag = "admin",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("Idempotency-Key" = String, Header, description = "Names this credit: 1 to 255 printable ASCII characters, no spaces", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
        ("X-Admin-Actor" = Option<String>, Header, description = "The person acting", max_length = 254),
    ),
    request_body = CreditInput,
    responses(
        (status = 200, description = "Credited (or replayed); where the metric stands now", body = UsageReading),
        (status = 403, description = "`missing_scope`", body = ErrorResponse),
        (status = 404, description = "`account_not_found`", body = ErrorResponse),
        (status = 409, description = "`idempotency_key_reused`", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn credit(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<CreditInput>,
) -> Result<Response, ApiError> {
    let key: IdempotencyKey = idempotency_key(&headers)?;
    let actor = actor(caller, &headers)?;
    let (reading, was_replayed) = state
        .billing
        .credit_usage(&account_id, actor, &key, input)
        .await?;
    let mut response = Json(UsageReading::from(&reading)).into_response();
    replayed(&mut response, was_replayed);
    Ok(response)
}

/// An account in a list.
#[derive(Serialize, ToSchema)]
pub struct AdminAccountSummary {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    billing_email: String,
    plan: PlanId,
    /// The subscription's status as Stripe has it.
    status: String,
    #[schema(required = true)]
    stripe_customer_id: Option<String>,
    #[schema(required = true)]
    stripe_subscription_id: Option<String>,
    created_at: DateTime<Utc>,
}

fn summary(a: &Account) -> AdminAccountSummary {
    AdminAccountSummary {
        id: a.id.to_string(),
        name: a.name.clone(),
        billing_email: a.billing_email.as_str().to_owned(),
        plan: a.subscription.plan_id,
        status: serde_json::to_value(a.subscription.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        stripe_customer_id: a.subscription.stripe_customer_id.clone(),
        stripe_subscription_id: a.subscription.stripe_subscription_id.clone(),
        created_at: a.created_at,
    }
}

#[derive(Serialize, ToSchema)]
pub struct AdminAccountList {
    accounts: Vec<AdminAccountSummary>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FindQuery {
    /// A member's email (members who sign in with a password).
    #[serde(default)]
    email: Option<String>,
    /// A Stripe customer id (`cus_…`).
    #[serde(default)]
    customer: Option<String>,
    /// A Stripe subscription id (`sub_…`).
    #[serde(default)]
    subscription: Option<String>,
}

/// Find accounts
///
/// By exactly one of a member's `email`, a Stripe `customer` or a Stripe
/// `subscription`.
#[utoipa::path(
    get,
    path = "/api/admin/accounts",
    tag = "admin",
    params(FindQuery),
    responses(
        (status = 200, description = "The accounts found (maybe none)", body = AdminAccountList),
        (status = 403, description = "`missing_scope`", body = ErrorResponse),
        (status = 422, description = "`invalid_field`: not exactly one of email, customer, subscription", body = ErrorResponse),
    )
)]
pub async fn find(
    State(state): State<AppState>,
    _caller: Caller,
    query: Result<Query<FindQuery>, QueryRejection>,
) -> Result<Json<AdminAccountList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidBody {
        field: "query".into(),
        detail: e.body_text(),
    })?;
    let by = match (&q.email, &q.customer, &q.subscription) {
        (Some(e), None, None) => AccountQuery::Email(e),
        (None, Some(c), None) => AccountQuery::Customer(c),
        (None, None, Some(s)) => AccountQuery::Subscription(s),
        _ => {
            return Err(AppError::invalid(
                "query",
                "give exactly one of email, customer and subscription",
            )
            .into())
        }
    };
    let found = state.billing.find_accounts(by).await?;
    Ok(Json(AdminAccountList {
        accounts: found.iter().map(summary).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct AdminMember {
    #[schema(format = Uuid)]
    user_id: String,
    email: String,
    name: String,
    role: Role,
    joined_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminMessage {
    id: String,
    /// The email's or event's kind.
    kind: String,
    /// `pending`, `sending`, `sent` or `failed`.
    #[schema(required = true)]
    status: Option<String>,
    attempts: u32,
    created_at: DateTime<Utc>,
}

/// An account whole. Webhook events are not recorded per account, so
/// they are not here: see the logs by the account's customer id.
#[derive(Serialize, ToSchema)]
pub struct AdminAccountDetail {
    account: AdminAccountSummary,
    /// The plan whose limits apply now.
    effective_plan: PlanId,
    cancel_at_period_end: bool,
    #[schema(required = true)]
    current_period_end: Option<DateTime<Utc>>,
    members: Vec<AdminMember>,
    /// Every metric against the effective limits (overrides applied).
    usage: Vec<UsageReading>,
    /// Active and expired.
    overrides: Vec<OverrideView>,
    /// The latest, newest first.
    invoices: Vec<InvoiceSummary>,
    /// The latest emails and events about it, newest first.
    messages: Vec<AdminMessage>,
}

/// Show an account whole
#[utoipa::path(
    get,
    path = "/api/admin/accounts/{account_id}",
    tag = "admin",
    params(("account_id" = String, Path, format = Uuid)),
    responses(
        (status = 200, description = "The account", body = AdminAccountDetail),
        (status = 403, description = "`missing_scope`", body = ErrorResponse),
        (status = 404, description = "`account_not_found`", body = ErrorResponse),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(account_id): Path<String>,
) -> Result<Json<AdminAccountDetail>, ApiError> {
    let d = state.billing.account_detail(&account_id).await?;
    let now = state.billing.now();
    Ok(Json(AdminAccountDetail {
        account: summary(&d.account),
        effective_plan: state.billing.effective_plan(&d.account).id,
        cancel_at_period_end: d.account.subscription.cancel_at_period_end,
        current_period_end: d.account.subscription.current_period_end,
        members: d
            .members
            .iter()
            .map(|m| AdminMember {
                user_id: m.membership.user_id.to_string(),
                email: m.email.as_str().to_owned(),
                name: m.name.clone(),
                role: m.membership.role,
                joined_at: m.membership.joined_at,
            })
            .collect(),
        usage: d.readings.iter().map(UsageReading::from).collect(),
        overrides: d
            .account
            .overrides
            .iter()
            .map(|o| override_view(o, now))
            .collect(),
        invoices: d.invoices.iter().map(InvoiceSummary::from).collect(),
        messages: d
            .messages
            .iter()
            .map(|m| AdminMessage {
                id: m.message.id.clone(),
                kind: serde_json::to_value(m.message.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                status: m.state.map(|s| s.as_str().to_owned()),
                attempts: m.attempts,
                created_at: m.message.created_at,
            })
            .collect(),
    }))
}

/// Re-sync an account from Stripe now
///
/// Re-reads its checkout and subscription from Stripe as reconciliation
/// does, writes what changed, and records the request in the audit log.
#[utoipa::path(
    post,
    path = "/api/admin/accounts/{account_id}/resync",
    tag = "admin",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("X-Admin-Actor" = Option<String>, Header, description = "The person acting", max_length = 254),
    ),
    responses(
        (status = 200, description = "The account as it stands now", body = AdminAccountSummary),
        (status = 403, description = "`missing_scope`", body = ErrorResponse),
        (status = 404, description = "`account_not_found`", body = ErrorResponse),
        (status = 502, description = "`payment_provider_error`", body = ErrorResponse),
        (status = 503, description = "`payments_unavailable`", body = ErrorResponse),
    )
)]
pub async fn resync(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<AdminAccountSummary>, ApiError> {
    let actor = actor(caller, &headers)?;
    let account = state.billing.resync(&account_id, actor).await?;
    Ok(Json(summary(&account)))
}

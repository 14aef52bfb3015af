//! The one place errors become HTTP: status, headers and the stable body
//! `{"error": {"code", "message", ...}}`, typed so the OpenAPI document
//! describes exactly what is sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::{AppError, StateConflict};
use crate::domain::plan::{ExportFormat, Feature, PlanId};
use crate::domain::ports::{PaymentsError, StoreError};
use crate::domain::usage::{GateDenial, Metric};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("the body is not valid JSON: {detail} at line {line}, column {column}")]
    MalformedJson {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("{field}: {detail}")]
    InvalidBody { field: String, detail: String },
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the body is larger than the 1 MiB limit")]
    PayloadTooLarge,
    #[error("missing bearer token (Authorization: Bearer <token>)")]
    MissingToken,
    #[error("this endpoint answers only the Functions host")]
    NotFromHost,
    #[error("no such endpoint")]
    NotFound,
    #[error("this endpoint does not accept that method")]
    MethodNotAllowed,
}

/// Every error answer: `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and people (`message`). The other
/// fields appear with the codes that explain themselves with them.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// `invalid_field`, `email_taken`: the field at fault, a dotted path into
    /// the body (or `body`, `query`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// `malformed_json`: where the JSON broke (1-based; 0 when unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub column: Option<usize>,
    /// `payload_too_large`: the largest body accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub max_bytes: Option<usize>,
    /// `quota_exceeded`: the metric whose limit is reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub metric: Option<Metric>,
    /// `quota_exceeded`: the plan limit's name, e.g. `documents_per_month`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<String>)]
    pub limit: Option<&'static str>,
    /// `quota_exceeded`: the limit's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub limit_value: Option<u64>,
    /// `quota_exceeded`: what is used in the current window.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub usage: Option<u64>,
    /// `quota_exceeded`: the quantity that was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub requested: Option<i64>,
    /// `quota_exceeded`, `not_in_plan`: the caller's plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub plan: Option<PlanId>,
    /// `quota_exceeded`, `not_in_plan`: the next tier up; absent at the top.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub upgrade_to: Option<PlanId>,
    /// `quota_exceeded` on a counter: when its window resets (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resets_at: Option<DateTime<Utc>>,
    /// `not_in_plan`: the feature the plan lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub feature: Option<Feature>,
    /// `not_in_plan`: the export format the plan lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub format: Option<ExportFormat>,
    /// `conflict`: what collided.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<String>)]
    pub conflict: Option<&'static str>,
}

/// The stable error codes; clients branch on these, never on messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400
    MalformedJson,
    /// 422
    InvalidField,
    /// 415
    UnsupportedMediaType,
    /// 413
    PayloadTooLarge,
    /// 401
    Unauthenticated,
    /// 401
    InvalidCredentials,
    /// 404
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 409
    EmailTaken,
    /// 409
    Conflict,
    /// 403, or 429 for the daily API calls
    QuotaExceeded,
    /// 403
    NotInPlan,
    /// 400
    InvalidWebhook,
    /// 409: never subscribed to a paid plan
    NoBillingAccount,
    /// 409: no live paid subscription to cancel or resume
    NoPaidSubscription,
    /// 409: the subscription is on this plan and interval already
    AlreadyOnPlan,
    /// 409: a paid checkout's subscription is still being activated
    CheckoutPending,
    /// 409: the owner's role changes only by transfer-ownership
    OwnerRoleByTransfer,
    /// 409: the member named is the owner already
    AlreadyOwner,
    /// 409: a commit of more than the reservation holds
    BeyondHold,
    /// 404: no such invoice in this account
    InvoiceNotFound,
    /// 404: `starting_after` names no entry of this account's audit log
    AuditEntryNotFound,
    /// 404: no such override on this account
    OverrideNotFound,
    /// 403: the caller's role in the account does not allow it
    Forbidden,
    /// 404: not an account the caller belongs to
    AccountNotFound,
    /// 404
    MemberNotFound,
    /// 404: used, withdrawn, expired or unknown
    InvitationNotFound,
    /// 409
    AlreadyInvited,
    /// 409
    OwnerCannotBeRemoved,
    /// 404: used, replaced by a newer link, expired or unknown
    VerificationNotFound,
    /// 403: the caller must verify their email address first
    EmailNotVerified,
    /// 409: a plan change to fewer seats than are held
    TooManyMembers,
    /// 502
    PaymentProviderError,
    /// 503
    PaymentsUnavailable,
    /// 503
    TemporarilyUnavailable,
    /// 409: the Idempotency-Key was used for another request
    IdempotencyKeyReused,
    /// 404: no such reservation in this account
    ReservationNotFound,
    /// 409: the reservation was committed, released or expired
    ReservationClosed,
    /// 403: the credential lacks the scope the route needs (a user token
    /// on a service route)
    MissingScope,
    /// 429: too many sign-in attempts from this address or for this
    /// account, or failed logins backing off; retry after `Retry-After`
    RateLimited,
    /// 404: the account has no Enterprise offer
    OfferNotFound,
    /// 409: the Enterprise offer's validity ran out
    OfferExpired,
    /// 409: the Enterprise offer was taken up already
    OfferAccepted,
    /// 409: a trial extension for a subscription that is not trialing
    NotTrialing,
    /// 500
    #[default]
    InternalError,
}

/// Marks a response that should point the client at an upgrade; the
/// upgrade-link layer turns it into `X-Upgrade-Url` (it knows the base URL).
#[derive(Debug, Clone, Copy)]
pub struct UpgradeHint(pub PlanId);

struct Parts {
    status: StatusCode,
    detail: ErrorDetail,
    retry_after: Option<u64>,
}

impl Parts {
    fn new(status: StatusCode, detail: ErrorDetail) -> Self {
        Self {
            status,
            detail,
            retry_after: None,
        }
    }

    fn code(status: StatusCode, code: ErrorCode) -> Self {
        Self::new(status, ErrorDetail::of(code))
    }
}

impl ErrorDetail {
    fn of(code: ErrorCode) -> Self {
        Self {
            code,
            ..Self::default()
        }
    }
}

impl ApiError {
    fn parts(&self) -> Parts {
        use ErrorCode as C;
        use StatusCode as S;
        match self {
            ApiError::App(e) => app_parts(e),
            ApiError::MalformedJson { line, column, .. } => Parts::new(
                S::BAD_REQUEST,
                ErrorDetail {
                    line: Some(*line),
                    column: Some(*column),
                    ..ErrorDetail::of(C::MalformedJson)
                },
            ),
            ApiError::InvalidBody { field, .. } => Parts::new(
                S::UNPROCESSABLE_ENTITY,
                ErrorDetail {
                    field: Some(field.clone()),
                    ..ErrorDetail::of(C::InvalidField)
                },
            ),
            ApiError::UnsupportedMediaType => {
                Parts::code(S::UNSUPPORTED_MEDIA_TYPE, C::UnsupportedMediaType)
            }
            ApiError::PayloadTooLarge => Parts::new(
                S::PAYLOAD_TOO_LARGE,
                ErrorDetail {
                    max_bytes: Some(super::MAX_BODY_BYTES),
                    ..ErrorDetail::of(C::PayloadTooLarge)
                },
            ),
            ApiError::MissingToken => Parts::code(S::UNAUTHORIZED, C::Unauthenticated),
            ApiError::NotFromHost => Parts::code(S::FORBIDDEN, C::Forbidden),
            ApiError::NotFound => Parts::code(S::NOT_FOUND, C::NotFound),
            ApiError::MethodNotAllowed => Parts::code(S::METHOD_NOT_ALLOWED, C::MethodNotAllowed),
        }
    }
}

fn app_parts(e: &AppError) -> Parts {
    use ErrorCode as C;
    use StatusCode as S;
    match e {
        AppError::Invalid { field, .. } => Parts::new(
            S::UNPROCESSABLE_ENTITY,
            ErrorDetail {
                field: Some((*field).to_owned()),
                ..ErrorDetail::of(C::InvalidField)
            },
        ),
        AppError::EmailTaken => Parts::new(
            S::CONFLICT,
            ErrorDetail {
                field: Some("email".into()),
                ..ErrorDetail::of(C::EmailTaken)
            },
        ),
        AppError::BadCredentials => Parts::code(S::UNAUTHORIZED, C::InvalidCredentials),
        AppError::Unauthenticated(_) => Parts::code(S::UNAUTHORIZED, C::Unauthenticated),
        AppError::QuotaExceeded(d) => {
            // Daily API calls are a rate: wait and retry. The monthly and
            // gauge limits will not lift by waiting minutes: forbidden.
            let status = if d.metric == Metric::ApiCalls {
                S::TOO_MANY_REQUESTS
            } else {
                S::FORBIDDEN
            };
            let mut p = Parts::new(
                status,
                ErrorDetail {
                    metric: Some(d.metric),
                    limit: Some(d.metric.limit_name()),
                    limit_value: Some(d.limit),
                    usage: Some(d.used),
                    requested: Some(d.requested),
                    plan: Some(d.plan),
                    upgrade_to: d.upgrade_to,
                    resets_at: d.window.map(|w| w.end),
                    ..ErrorDetail::of(C::QuotaExceeded)
                },
            );
            if status == S::TOO_MANY_REQUESTS {
                p.retry_after = d.seconds_to_reset;
            }
            p
        }
        AppError::NotInPlan {
            denial,
            plan,
            upgrade_to,
        } => {
            let (feature, format) = match denial {
                GateDenial::Feature(f) => (Some(*f), None),
                GateDenial::ExportFormat(f) => (None, Some(*f)),
            };
            Parts::new(
                S::FORBIDDEN,
                ErrorDetail {
                    plan: Some(*plan),
                    upgrade_to: *upgrade_to,
                    feature,
                    format,
                    ..ErrorDetail::of(C::NotInPlan)
                },
            )
        }
        AppError::Payments(PaymentsError::NotConfigured) => {
            Parts::code(S::SERVICE_UNAVAILABLE, C::PaymentsUnavailable)
        }
        AppError::Payments(PaymentsError::Unavailable { .. }) => {
            let mut p = Parts::code(S::SERVICE_UNAVAILABLE, C::PaymentsUnavailable);
            p.retry_after = Some(5);
            p
        }
        AppError::Payments(PaymentsError::Rejected { .. } | PaymentsError::NotFound { .. }) => {
            Parts::code(S::BAD_GATEWAY, C::PaymentProviderError)
        }
        AppError::Webhook(_) => Parts::code(S::BAD_REQUEST, C::InvalidWebhook),
        AppError::NoBillingAccount => Parts::code(S::CONFLICT, C::NoBillingAccount),
        AppError::State(conflict) => Parts::code(
            S::CONFLICT,
            match conflict {
                StateConflict::NoPaidSubscription => C::NoPaidSubscription,
                StateConflict::AlreadyOnPlan => C::AlreadyOnPlan,
                StateConflict::CheckoutPending => C::CheckoutPending,
                StateConflict::OwnerRoleByTransfer => C::OwnerRoleByTransfer,
                StateConflict::AlreadyOwner => C::AlreadyOwner,
                StateConflict::BeyondHold(_) => C::BeyondHold,
                StateConflict::OfferExpired => C::OfferExpired,
                StateConflict::OfferAccepted => C::OfferAccepted,
                StateConflict::NotTrialing => C::NotTrialing,
            },
        ),
        AppError::InvoiceNotFound => Parts::code(S::NOT_FOUND, C::InvoiceNotFound),
        AppError::AuditEntryNotFound => Parts::code(S::NOT_FOUND, C::AuditEntryNotFound),
        AppError::OverrideNotFound => Parts::code(S::NOT_FOUND, C::OverrideNotFound),
        AppError::OfferNotFound => Parts::code(S::NOT_FOUND, C::OfferNotFound),
        AppError::Forbidden(_) => Parts::code(S::FORBIDDEN, C::Forbidden),
        AppError::AccountNotFound | AppError::NoSuchAccount => {
            Parts::code(S::NOT_FOUND, C::AccountNotFound)
        }
        AppError::MemberNotFound => Parts::code(S::NOT_FOUND, C::MemberNotFound),
        AppError::InvitationNotFound => Parts::code(S::NOT_FOUND, C::InvitationNotFound),
        AppError::AlreadyInvited(_) => Parts::new(
            S::CONFLICT,
            ErrorDetail {
                field: Some("email".into()),
                ..ErrorDetail::of(C::AlreadyInvited)
            },
        ),
        AppError::OwnerCannotBeRemoved => Parts::code(S::CONFLICT, C::OwnerCannotBeRemoved),
        AppError::VerificationNotFound => Parts::code(S::NOT_FOUND, C::VerificationNotFound),
        AppError::EmailNotVerified => Parts::code(S::FORBIDDEN, C::EmailNotVerified),
        AppError::TooManyMembers { plan, seats, limit } => Parts::new(
            S::CONFLICT,
            ErrorDetail {
                limit: Some(Metric::TeamMembers.limit_name()),
                limit_value: Some(*limit),
                usage: Some(*seats),
                plan: Some(*plan),
                ..ErrorDetail::of(C::TooManyMembers)
            },
        ),
        AppError::IdempotencyKeyReused => Parts::code(S::CONFLICT, C::IdempotencyKeyReused),
        AppError::ReservationNotFound => Parts::code(S::NOT_FOUND, C::ReservationNotFound),
        AppError::ReservationClosed(_) => Parts::code(S::CONFLICT, C::ReservationClosed),
        AppError::MissingScope(_) => Parts::code(S::FORBIDDEN, C::MissingScope),
        AppError::Busy(_) => {
            let mut p = Parts::code(S::SERVICE_UNAVAILABLE, C::TemporarilyUnavailable);
            p.retry_after = Some(1);
            p
        }
        AppError::RateLimited(limited) => {
            let mut p = Parts::code(S::TOO_MANY_REQUESTS, C::RateLimited);
            p.retry_after = Some(limited.retry_after_seconds);
            p
        }
        AppError::Store(StoreError::Unavailable(_) | StoreError::VersionConflict) => {
            let mut p = Parts::code(S::SERVICE_UNAVAILABLE, C::TemporarilyUnavailable);
            p.retry_after = Some(1);
            p
        }
        AppError::Store(StoreError::Conflict(what)) => Parts::new(
            S::CONFLICT,
            ErrorDetail {
                conflict: Some(what.as_str()),
                ..ErrorDetail::of(C::Conflict)
            },
        ),
        AppError::Store(StoreError::NotFound) => Parts::code(S::NOT_FOUND, C::NotFound),
        AppError::Store(StoreError::Corrupt(_)) => {
            Parts::code(S::INTERNAL_SERVER_ERROR, C::InternalError)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Parts {
            status,
            mut detail,
            retry_after,
        } = self.parts();
        detail.message = if status.is_server_error() {
            // The cause (a store's or Stripe's own words) goes to the log,
            // under the request id the answer names; never to the client.
            let request_id = super::layers::current_request_id().unwrap_or_default();
            tracing::error!(%request_id, error = %self, cause = %causes(&self), "request failed");
            format!(
                "{} (request id {request_id})",
                server_error_message(&self, status)
            )
        } else {
            self.to_string()
        };
        // Only refusals a higher plan would lift name a next tier.
        let upgrade_to = detail.upgrade_to;
        let mut response = (status, Json(ErrorResponse { error: detail })).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(plan) = upgrade_to {
            response.extensions_mut().insert(UpgradeHint(plan));
        }
        response
    }
}

/// What a client is told of a failure on our side: what happened in its
/// terms, and whether a retry may help.
fn server_error_message(error: &ApiError, status: StatusCode) -> &'static str {
    match (error, status) {
        (ApiError::App(AppError::Payments(PaymentsError::NotConfigured)), _) => {
            "payments are not configured on this deployment"
        }
        (ApiError::App(AppError::Payments(_)), StatusCode::SERVICE_UNAVAILABLE) => {
            "the payment provider is unavailable; retry shortly"
        }
        (_, StatusCode::BAD_GATEWAY) => "the payment provider could not complete the request",
        (ApiError::App(AppError::Busy(_)), _) => "too many sign-ins at once; retry shortly",
        (_, StatusCode::SERVICE_UNAVAILABLE) => {
            "the service is temporarily unavailable; retry shortly"
        }
        _ => "an internal error occurred",
    }
}

/// Every source under an error, for the log line.
fn causes(error: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut next = error.source();
    while let Some(e) = next {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

//! The one place errors become HTTP: status, headers and the stable body
//! `{"error": {"code", "message", ...}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::app::AppError;
use crate::domain::plan::PlanId;
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
    #[error("no such endpoint")]
    NotFound,
    #[error("this endpoint does not accept that method")]
    MethodNotAllowed,
}

/// Marks a response that should point the client at an upgrade; the
/// upgrade-link layer turns it into `X-Upgrade-Url` (it knows the base URL).
#[derive(Debug, Clone, Copy)]
pub struct UpgradeHint(pub PlanId);

struct Parts {
    status: StatusCode,
    code: &'static str,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
    upgrade_to: Option<PlanId>,
}

impl Parts {
    fn new(status: StatusCode, code: &'static str) -> Self {
        Self {
            status,
            code,
            extra: Map::new(),
            retry_after: None,
            upgrade_to: None,
        }
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl ApiError {
    fn parts(&self) -> Parts {
        use StatusCode as S;
        match self {
            ApiError::App(e) => app_parts(e),
            ApiError::MalformedJson { line, column, .. } => {
                Parts::new(S::BAD_REQUEST, "malformed_json")
                    .with("line", *line)
                    .with("column", *column)
            }
            ApiError::InvalidBody { field, .. } => {
                Parts::new(S::UNPROCESSABLE_ENTITY, "invalid_field").with("field", field.as_str())
            }
            ApiError::UnsupportedMediaType => {
                Parts::new(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::PayloadTooLarge => Parts::new(S::PAYLOAD_TOO_LARGE, "payload_too_large")
                .with("max_bytes", super::MAX_BODY_BYTES),
            ApiError::MissingToken => Parts::new(S::UNAUTHORIZED, "unauthenticated"),
            ApiError::NotFound => Parts::new(S::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => Parts::new(S::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }
}

fn app_parts(e: &AppError) -> Parts {
    use StatusCode as S;
    match e {
        AppError::Invalid { field, .. } => {
            Parts::new(S::UNPROCESSABLE_ENTITY, "invalid_field").with("field", *field)
        }
        AppError::EmailTaken => Parts::new(S::CONFLICT, "email_taken").with("field", "email"),
        AppError::BadCredentials => Parts::new(S::UNAUTHORIZED, "invalid_credentials"),
        AppError::Unauthenticated(_) => Parts::new(S::UNAUTHORIZED, "unauthenticated"),
        AppError::QuotaExceeded(d) => {
            // Daily API calls are a rate: wait and retry. The monthly and
            // gauge limits will not lift by waiting minutes: forbidden.
            let status = if d.metric == Metric::ApiCalls {
                S::TOO_MANY_REQUESTS
            } else {
                S::FORBIDDEN
            };
            let mut p = Parts::new(status, "quota_exceeded")
                .with("metric", d.metric.as_str())
                .with("limit", d.metric.limit_name())
                .with("limit_value", d.limit)
                .with("usage", d.used)
                .with("requested", d.requested)
                .with("plan", d.plan.as_str())
                .with("upgrade_to", d.upgrade_to.map(PlanId::as_str));
            if let Some(w) = d.window {
                p = p.with(
                    "resets_at",
                    w.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                );
            }
            if status == S::TOO_MANY_REQUESTS {
                p.retry_after = d.seconds_to_reset;
            }
            p.upgrade_to = d.upgrade_to;
            p
        }
        AppError::NotInPlan {
            denial,
            plan,
            upgrade_to,
        } => {
            let mut p = Parts::new(S::FORBIDDEN, "not_in_plan")
                .with("plan", plan.as_str())
                .with("upgrade_to", upgrade_to.map(PlanId::as_str));
            p = match denial {
                GateDenial::Feature(f) => {
                    p.with("feature", serde_json::to_value(f).unwrap_or_default())
                }
                GateDenial::ExportFormat(f) => {
                    p.with("format", serde_json::to_value(f).unwrap_or_default())
                }
            };
            p.upgrade_to = *upgrade_to;
            p
        }
        AppError::Payments(PaymentsError::NotConfigured) => {
            Parts::new(S::SERVICE_UNAVAILABLE, "payments_unavailable")
        }
        AppError::Payments(PaymentsError::Unavailable(_)) => {
            let mut p = Parts::new(S::SERVICE_UNAVAILABLE, "payments_unavailable");
            p.retry_after = Some(5);
            p
        }
        AppError::Payments(PaymentsError::Rejected(_) | PaymentsError::NotFound(_)) => {
            Parts::new(S::BAD_GATEWAY, "payment_provider_error")
        }
        AppError::Webhook(_) => Parts::new(S::BAD_REQUEST, "invalid_webhook"),
        AppError::NoBillingAccount => Parts::new(S::BAD_REQUEST, "no_billing_account"),
        AppError::Store(StoreError::Unavailable(_) | StoreError::VersionConflict) => {
            let mut p = Parts::new(S::SERVICE_UNAVAILABLE, "temporarily_unavailable");
            p.retry_after = Some(1);
            p
        }
        AppError::Store(StoreError::Conflict(what)) => {
            Parts::new(S::CONFLICT, "conflict").with("conflict", *what)
        }
        AppError::Store(StoreError::NotFound) => Parts::new(S::NOT_FOUND, "not_found"),
        AppError::Store(StoreError::Corrupt(_)) => {
            Parts::new(S::INTERNAL_SERVER_ERROR, "internal_error")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = self.parts();
        let message = if parts.status.is_server_error() {
            // The cause goes to the log, not to the client.
            tracing::error!(error = %self, "request failed");
            match parts.status {
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => self.to_string(),
                _ => "an internal error occurred".to_owned(),
            }
        } else {
            self.to_string()
        };
        let mut error = Map::new();
        error.insert("code".into(), parts.code.into());
        error.insert("message".into(), message.into());
        error.extend(parts.extra);
        let mut response = (parts.status, Json(json!({ "error": error }))).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = parts.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if parts.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(plan) = parts.upgrade_to {
            response.extensions_mut().insert(UpgradeHint(plan));
        }
        response
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

//! Authentication, the account a request acts on, and API-call metering:
//! the token is verified; for account routes the `X-Account-Id` account (or
//! the caller's own) is resolved against the caller's memberships, one API
//! call is checked and recorded on it atomically, and only then does the
//! handler run.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::app::{Acting, AppError, MeterReading};
use crate::domain::ports::Versioned;
use crate::domain::user::User;

use super::error::ApiError;
use super::AppState;

/// The header naming the account a request acts on.
pub const ACCOUNT_HEADER: &str = "x-account-id";

/// The signed-in caller, as stored when the request arrived.
#[derive(Clone)]
pub struct CurrentUser(pub Versioned<User>);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or(ApiError::MissingToken)
    }
}

/// The signed-in caller acting on an account they belong to.
#[derive(Clone)]
pub struct CurrentMember(pub Acting);

impl<S: Send + Sync> FromRequestParts<S> for CurrentMember {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<CurrentMember>()
            .cloned()
            .ok_or(ApiError::MissingToken)
    }
}

/// For routes that act on no account: the token only, not metered.
pub async fn require_user(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return ApiError::MissingToken.into_response();
    };
    match state.billing.authenticate(token).await {
        Ok(user) => {
            req.extensions_mut().insert(CurrentUser(user));
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub async fn require_member(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return ApiError::MissingToken.into_response();
    };
    let user = match state.billing.authenticate(token).await {
        Ok(user) => user,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // An unreadable header names no account of the caller's.
    let named = match req.headers().get(ACCOUNT_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v.to_owned()),
        Some(Err(_)) => return ApiError::from(AppError::AccountNotFound).into_response(),
    };
    let acting = match state.billing.acting(user, named.as_deref()).await {
        Ok(acting) => acting,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let now = state.billing.now();
    let (mut response, limits) = match state.billing.meter_api_call(&acting.account.value).await {
        Ok(reading) => {
            req.extensions_mut().insert(CurrentMember(acting));
            (next.run(req).await, granted(&reading, now))
        }
        Err(AppError::QuotaExceeded(d)) => {
            let limits = RateLimit {
                limit: d.limit,
                remaining: 0,
                reset: d.seconds_to_reset.unwrap_or(0),
            };
            (
                ApiError::from(AppError::QuotaExceeded(d)).into_response(),
                Some(limits),
            )
        }
        Err(e) => (ApiError::from(e).into_response(), None),
    };
    if let Some(l) = limits {
        let headers = response.headers_mut();
        headers.insert("ratelimit-limit", HeaderValue::from(l.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(l.remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(l.reset));
    }
    response
}

/// The IETF RateLimit header values for the daily API-call limit, sent on
/// every metered answer, refused ones included.
struct RateLimit {
    limit: u64,
    remaining: u64,
    reset: u64,
}

/// Unlimited plans get no RateLimit headers: there is no limit to state.
fn granted(r: &MeterReading, now: DateTime<Utc>) -> Option<RateLimit> {
    Some(RateLimit {
        limit: r.limit?,
        remaining: r.remaining()?,
        reset: r.seconds_to_reset(now)?,
    })
}

//! Authentication and the account a request acts on: the token is
//! verified; for account routes the `X-Account-Id` account (or the
//! caller's own) is resolved against the caller's memberships; for service
//! routes the credential (a service key, a service's Entra ID app token, or
//! a member's token where members may read) and its scopes are checked.
//! Nothing here counts API calls: KRAFTD's services report them, and
//! billing routes never spend them.

pub use crate::app::Caller;
use crate::app::{Acting, AppError};
use crate::domain::ports::Versioned;
use crate::domain::service::Scope;
use crate::domain::user::User;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
    req.extensions_mut().insert(CurrentMember(acting));
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::MissingToken)
    }
}

/// For routes KRAFTD's services call: a service key or a service's Entra
/// ID app token carrying `scope`; a user token only where `members_read`
/// (a member reads their account), else 403 even when valid.
pub async fn require_service(
    state: AppState,
    scope: Scope,
    members_read: bool,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return ApiError::MissingToken.into_response();
    };
    match state
        .billing
        .service_caller(token, scope, members_read)
        .await
    {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

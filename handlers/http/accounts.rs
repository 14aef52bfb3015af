use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::{self, RegisterInput, Registered, Session};
use crate::domain::account::Role;
use crate::domain::plan::{BillingInterval, PlanId};
use crate::domain::user::User;

use super::billing::Checkout;
use super::client_address::ClientAddress;
use super::error::{ApiError, ErrorResponse};
use super::json::ApiJson;
use super::metering::CurrentUser;
use super::openapi::JsonBodyErrors;
use super::plans::SelfServePlan;
use super::AppState;

// Deliberately no Debug: it holds a password. Plan and interval arrive as
// text so a wrong one is a 422 naming the field; the schema lists the
// values that are accepted.
/// A new user, with their own account on the plan it starts on.
#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 10 to 128 characters, letters mixed with digits or symbols, not
    /// containing the email's local part.
    #[schema(
        format = Password,
        min_length = 10,
        max_length = 128,
        pattern = "[A-Za-z][\\s\\S]*[^A-Za-z]|[^A-Za-z][\\s\\S]*[A-Za-z]"
    )]
    password: String,
    /// 1 to 100 characters, not only spaces, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    name: String,
    #[schema(value_type = SelfServePlan)]
    plan_id: String,
    /// Paid plans only (Free is monthly); monthly when absent.
    #[serde(default)]
    #[schema(value_type = Option<BillingInterval>)]
    billing_interval: Option<String>,
}

// Deliberately no Debug: it holds a password.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    email: String,
    #[schema(format = Password)]
    password: String,
}

/// The user as clients see it: no password hash.
#[derive(Serialize, ToSchema)]
pub struct UserProfile {
    id: Uuid,
    email: String,
    /// Whether the user has shown they receive mail at `email` (a
    /// verification link, an accepted invitation, or their identity
    /// provider's word). Inviting others needs it.
    email_verified: bool,
    name: String,
    created_at: DateTime<Utc>,
}

impl From<&User> for UserProfile {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.0,
            email: user.email.as_str().to_owned(),
            email_verified: user.email_verified,
            name: user.name.as_str().to_owned(),
            created_at: user.created_at,
        }
    }
}

/// The token from an email verification link.
#[derive(Deserialize, ToSchema)]
pub struct VerifyEmailRequest {
    /// The last segment of the link (`…/verify-email/<token>`).
    token: String,
}

/// An account the caller belongs to, and their role in it. Send its `id`
/// as `X-Account-Id` to act on it.
#[derive(Serialize, ToSchema)]
pub struct AccountSummary {
    id: Uuid,
    name: String,
    role: Role,
    /// The plan the account subscribes to.
    plan_id: PlanId,
}

impl From<&app::AccountSummary> for AccountSummary {
    fn from(a: &app::AccountSummary) -> Self {
        Self {
            id: a.account.id.0,
            name: a.account.name.clone(),
            role: a.role,
            plan_id: a.account.subscription.plan_id,
        }
    }
}

/// A signed-in session: send `access_token` as `Authorization: Bearer`.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    #[schema(value_type = String, example = "bearer")]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
    user: UserProfile,
    /// The account requests act on without `X-Account-Id`: the one the user
    /// owns, else their oldest membership; `null` when they belong to none.
    #[schema(required = true)]
    account: Option<AccountSummary>,
}

impl From<Session> for TokenResponse {
    fn from(s: Session) -> Self {
        Self {
            access_token: s.access_token,
            token_type: "bearer",
            expires_in: s.expires_in,
            user: UserProfile::from(&s.user),
            account: s.account.as_ref().map(AccountSummary::from),
        }
    }
}

/// Free: signed in at once. A paid plan: a checkout to pay at first (the
/// account waits, `incomplete`, until Stripe confirms the payment).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum RegisterResponse {
    Active(TokenResponse),
    Checkout(Checkout),
}

/// Create an account on a plan
#[utoipa::path(
    post,
    path = "/api/auth/register/with-plan",
    tag = "accounts",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered: signed in (Free) or sent to checkout (paid plans)", body = RegisterResponse),
        (status = 409, description = "`email_taken`", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    let registered = state
        .billing
        .register(RegisterInput {
            email: body.email,
            password: body.password,
            name: body.name,
            plan_id: body.plan_id,
            billing_interval: body.billing_interval,
        })
        .await?;
    let body = match registered {
        Registered::Active(session) => {
            tracing::info!(user_id = %session.user.id, "user registered");
            RegisterResponse::Active((*session).into())
        }
        Registered::Checkout(checkout) => RegisterResponse::Checkout(Checkout::from(&checkout)),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Sign in with email and password
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "accounts",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorResponse,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        JsonBodyErrors,
    )
)]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddress,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let session = state
        .billing
        .login(&body.email, &body.password, client.0)
        .await?;
    tracing::info!(user_id = %session.user.id, "user signed in");
    Ok(Json(session.into()))
}

/// Confirm an email address
///
/// Spends the token of a verification link; no sign-in needed, the token
/// is the credential. Each link works once, and only the newest one sent.
#[utoipa::path(
    post,
    path = "/api/auth/verify-email",
    tag = "accounts",
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "Verified", body = UserProfile),
        (status = 404, description = "`verification_not_found`: used, replaced by a newer link, expired or unknown", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn verify_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyEmailRequest>,
) -> Result<Json<UserProfile>, ApiError> {
    let user = state.billing.verify_email(&body.token).await?;
    Ok(Json(UserProfile::from(&user)))
}

/// Send a new verification link
///
/// The previous link stops working. Nothing is sent when the email is
/// verified already, or for a user of the identity provider.
#[utoipa::path(
    post,
    path = "/api/auth/verify-email/resend",
    tag = "accounts",
    responses((status = 202, description = "A new link is on its way (or none is needed: see `email_verified`)", body = UserProfile))
)]
pub async fn resend_verification(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<(StatusCode, Json<UserProfile>), ApiError> {
    let user = state.billing.resend_verification(&user).await?;
    Ok((StatusCode::ACCEPTED, Json(UserProfile::from(&user))))
}

/// The signed-in user
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "accounts",
    responses((status = 200, description = "Who the token speaks for", body = UserProfile))
)]
pub async fn me(CurrentUser(user): CurrentUser) -> Json<UserProfile> {
    Json(UserProfile::from(&user.value))
}

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::app::{RegisterInput, Registered, Session};
use crate::domain::user::User;

use super::error::ApiError;
use super::json::ApiJson;
use super::AppState;

#[derive(Deserialize)]
pub struct RegisterBody {
    email: String,
    password: String,
    name: String,
    plan_id: String,
    #[serde(default)]
    billing_interval: Option<String>,
}

// Deliberately no Debug: it holds a password.
#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

/// The user as clients see it: everything but the password hash.
pub fn user_view(user: &User) -> Value {
    let mut subscription = serde_json::to_value(&user.subscription).unwrap_or_default();
    subscription["tier"] = json!(user.subscription.plan_id);
    json!({
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "created_at": user.created_at,
        "subscription": subscription,
    })
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    user: Value,
}

fn token_response(s: Session) -> Json<TokenResponse> {
    Json(TokenResponse {
        access_token: s.access_token,
        token_type: "bearer",
        expires_in: s.expires_in,
        user: user_view(&s.user),
    })
}

pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, ApiError> {
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
    Ok(match registered {
        Registered::Active(session) => {
            tracing::info!(user_id = %session.user.id, "user registered");
            (StatusCode::CREATED, token_response(*session)).into_response()
        }
        Registered::Checkout(checkout) => super::billing::checkout_response(&checkout),
    })
}

pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let session = state.billing.login(&body.email, &body.password).await?;
    tracing::info!(user_id = %session.user.id, "user signed in");
    Ok(token_response(session).into_response())
}

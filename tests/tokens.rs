//! Access-token attacks: every forged, expired or misaddressed token is 401,
//! and RS256 tokens are only ever an outside issuer's, checked with its keys
//! (tests/oidc.rs tests those in depth).

mod support;

use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::jwks::{IdentityProvider, RSA, UNPUBLISHED};
use support::{error_of, TestApp, SECRET};

const PUBLIC_PEM: &str = include_str!("fixtures/rs256-public.pem");
const PRIVATE_PEM: &str = include_str!("fixtures/rs256-private.pem");

fn claims(sub: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({"sub": sub, "iss": "kraftd", "aud": "kraftd-billing", "iat": now, "exp": now + 600})
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn rs256(claims: &Value, pem: &str) -> String {
    encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn user_id(app: &TestApp, email: &str) -> String {
    let token = app.free_user(email).await;
    let me: Value = app
        .get_as(&token, "/api/entitlements")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["plan"], "free");
    let r: Value = app
        .post(
            "/api/auth/login",
            json!({"email": email, "password": support::PASSWORD}),
        )
        .await
        .json()
        .await
        .unwrap();
    r["user"]["id"].as_str().unwrap().to_owned()
}

async fn refused(app: &TestApp, token: &str, why: &str) {
    let r = app.get_as(token, "/api/billing/subscription").await;
    assert_eq!(r.status(), 401, "{why} was accepted");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    error_of(r, 401, "unauthenticated").await;
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let id = user_id(&app, "target@example.com").await;
    let good = claims(&id);
    assert_eq!(
        app.get_as(&hs256(&good, SECRET.as_bytes()), "/api/usage")
            .await
            .status(),
        200
    );

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    refused(&app, &none, "alg none").await;
    refused(
        &app,
        &hs256(&good, b"another-secret-0123456789abcdef0123"),
        "wrong key",
    )
    .await;

    let mut expired = good.clone();
    expired["exp"] = json!(Utc::now().timestamp() - 120);
    refused(&app, &hs256(&expired, SECRET.as_bytes()), "expired").await;

    let mut aud = good.clone();
    aud["aud"] = json!("some-other-service");
    refused(&app, &hs256(&aud, SECRET.as_bytes()), "wrong audience").await;

    let mut iss = good.clone();
    iss["iss"] = json!("evil");
    refused(&app, &hs256(&iss, SECRET.as_bytes()), "wrong issuer").await;

    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    refused(&app, &hs256(&no_exp, SECRET.as_bytes()), "no expiry").await;

    // A valid signature over other claims: swap the payload.
    let real = hs256(&good, SECRET.as_bytes());
    let parts: Vec<&str> = real.split('.').collect();
    let mut other = good.clone();
    other["sub"] = json!(uuid::Uuid::new_v4().to_string());
    refused(
        &app,
        &format!("{}.{}.{}", parts[0], b64(&other), parts[2]),
        "tampered payload",
    )
    .await;

    // RS256 is never this service's own: not even with its issuer.
    refused(
        &app,
        &rs256(&good, PRIVATE_PEM),
        "RS256 claiming our issuer",
    )
    .await;
    // Our own tokens name a user by id, never by email.
    refused(
        &app,
        &hs256(&claims("target@example.com"), SECRET.as_bytes()),
        "an email subject",
    )
    .await;
    // A valid token for a user that does not exist.
    refused(
        &app,
        &hs256(
            &claims(&uuid::Uuid::new_v4().to_string()),
            SECRET.as_bytes(),
        ),
        "unknown user",
    )
    .await;

    for header in [
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "bearer not.a.jwt",
    ] {
        let r = app
            .client
            .get(app.url("/api/usage"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        error_of(r, 401, "unauthenticated").await;
    }
    let r = app.client.get(app.url("/api/usage")).send().await.unwrap();
    error_of(r, 401, "unauthenticated").await;
}

#[tokio::test]
async fn rs256_tokens_are_checked_with_a_configured_issuers_keys() {
    let idp = IdentityProvider::start().await;
    let app = TestApp::spawn_with(&[("AUTH_ISSUERS", &idp.issuer())]).await;
    let id = user_id(&app, "legacy@example.com").await;
    let now = app.clock_now();

    // Neither the user's id nor email in an outside token reaches the local
    // user: outside users are keyed by (issuer, subject).
    for sub in [id.as_str(), "legacy@example.com"] {
        let token = idp.token(RSA, &idp.claims(sub, now));
        refused(&app, &token, "an outside sub naming a local user").await;
    }
    // The issuer's keys were fetched once, to check those tokens.
    assert_eq!(idp.jwks_fetches(), 1);

    let mut theirs = idp.claims(&id, now);
    // Signed by a key the issuer does not publish, under a kid it does.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(RSA.into());
    refused(
        &app,
        &idp.token_with_header(&header, UNPUBLISHED, &theirs),
        "RS256 with another key",
    )
    .await;
    // Algorithm confusion: HS256 claiming the issuer, keyed with the public
    // key text or with our own secret.
    for secret in [PUBLIC_PEM.as_bytes(), SECRET.as_bytes()] {
        refused(&app, &hs256(&theirs, secret), "HS256 claiming the issuer").await;
    }
    // Our issuer's claims signed with the issuer's key.
    theirs["iss"] = json!("kraftd");
    refused(&app, &idp.token(RSA, &theirs), "RS256 claiming our issuer").await;
    // Nothing above needed another fetch.
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test]
async fn tokens_expire_by_the_service_clock() {
    let app = TestApp::spawn().await;
    let token = app.free_user("clock@example.com").await;
    assert_eq!(app.get_as(&token, "/api/usage").await.status(), 200);
    app.clock
        .set(Utc::now() + chrono::Duration::seconds(3600 + 31));
    refused(&app, &token, "a token past its expiry").await;
}

//! Registration, login and what each bad input answers.

mod support;

use serde_json::{json, Value};
use support::{error_of, TestApp, PASSWORD};

#[tokio::test]
async fn free_registration_is_active_at_once_and_returns_a_working_token() {
    let app = TestApp::spawn().await;
    let r = app.register("  Ada@Example.COM ", "free").await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    let user = &body["user"];
    assert_eq!(user["email"], "ada@example.com");
    // The user's own account, which they own, on Free.
    let account = &body["account"];
    assert_eq!(account["role"], "owner");
    assert_eq!(account["plan_id"], "free");
    assert!(account["id"].as_str().is_some_and(|id| id.len() == 36));
    assert!(user.get("password_hash").is_none() && !body.to_string().contains("argon2"));

    let token = body["access_token"].as_str().unwrap();
    let sub: Value = app
        .get_as(token, "/api/billing/subscription")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sub["plan"]["id"], "free");
    assert_eq!(
        sub["plan"]["price"],
        json!({"amount": 0, "currency": "usd", "interval": "monthly", "lookup_key": "free_monthly"})
    );
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["cancel_at_period_end"], false);
    assert_eq!(sub["billing_interval"], "monthly");
    for field in [
        "renewal_date",
        "auto_renew",
        "current_period_end",
        "effective_plan",
    ] {
        assert!(sub.get(field).is_some(), "{field} missing from {sub}");
    }
}

#[tokio::test]
async fn a_second_registration_of_the_same_email_in_any_case_is_409() {
    let app = TestApp::spawn().await;
    app.free_user("dup@example.com").await;
    let e = error_of(
        app.register("DUP@example.com", "free").await,
        409,
        "email_taken",
    )
    .await;
    assert_eq!(e["field"], "email");
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_create_one_account() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let tries: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                app.register("race@example.com", "free")
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tries {
        codes.push(t.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, [201, 409, 409, 409, 409, 409, 409, 409]);
}

#[tokio::test]
async fn each_bad_field_is_named() {
    let app = TestApp::spawn().await;
    let good =
        json!({"email": "x@example.com", "password": PASSWORD, "name": "X", "plan_id": "free"});
    let cases = [
        ("email", json!("not-an-email")),
        ("email", json!("")),
        ("password", json!("short1")),
        ("password", json!("onlyletterspassword")),
        ("name", json!("   ")),
        ("plan_id", json!("platinum")),
        ("plan_id", json!("enterprise")),
        ("billing_interval", json!("weekly")),
    ];
    for (field, value) in cases {
        let mut body = good.clone();
        body[field] = value.clone();
        let r = app.post("/api/auth/register/with-plan", body).await;
        let e = error_of(r, 422, "invalid_field").await;
        assert_eq!(e["field"], field, "{field}={value}");
    }
    for missing in ["email", "password", "name", "plan_id"] {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(missing);
        let e = error_of(
            app.post("/api/auth/register/with-plan", body).await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(e["field"], missing);
    }
    let mut body = good.clone();
    body["email"] = json!(42);
    let e = error_of(
        app.post("/api/auth/register/with-plan", body).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(e["field"], "email");
    // None of these left an account behind.
    let r = app
        .post(
            "/api/auth/login",
            json!({"email": "x@example.com", "password": PASSWORD}),
        )
        .await;
    error_of(r, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn paid_plans_answer_503_until_payments_exist_and_leave_no_user() {
    let app = TestApp::spawn().await;
    for interval in ["monthly", "annual"] {
        let r = app
            .post(
                "/api/auth/register/with-plan",
                json!({"email": "pro@example.com", "password": PASSWORD, "name": "P", "plan_id": "pro", "billing_interval": interval}),
            )
            .await;
        error_of(r, 503, "payments_unavailable").await;
    }
    // Nothing half-created: the email is still free to register.
    assert_eq!(app.register("pro@example.com", "free").await.status(), 201);
}

#[tokio::test]
async fn login_returns_a_token_and_hides_which_part_was_wrong() {
    let app = TestApp::spawn().await;
    app.free_user("login@example.com").await;
    let ok = app
        .post(
            "/api/auth/login",
            json!({"email": "LOGIN@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["user"]["email"], "login@example.com");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(app.get_as(token, "/api/entitlements").await.status(), 200);

    let wrong_pw = app
        .post(
            "/api/auth/login",
            json!({"email": "login@example.com", "password": "wrong password 1"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/auth/login",
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    let garbage = app
        .post(
            "/api/auth/login",
            json!({"email": "not an email", "password": PASSWORD}),
        )
        .await;
    let a = error_of(wrong_pw, 401, "invalid_credentials").await;
    let b = error_of(unknown, 401, "invalid_credentials").await;
    let c = error_of(garbage, 401, "invalid_credentials").await;
    assert_eq!(a, b);
    assert_eq!(b, c);
}

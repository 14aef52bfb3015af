//! The HTTP contract every client relies on: the error shape for each bad
//! request, the plan catalog and its caching, and CORS.

mod support;

use serde_json::{json, Value};
use support::{error_of, TestApp};

#[tokio::test]
async fn plans_are_the_catalog_in_integer_cents_with_typed_limits() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/api/plans")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let plans = body["plans"].as_array().unwrap();
    let ids: Vec<&str> = plans.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["free", "pro", "enterprise"]);
    assert_eq!(body["upgrade_order"], json!(["free", "pro", "enterprise"]));
    let (free, pro, ent) = (&plans[0], &plans[1], &plans[2]);
    assert_eq!(free["prices"][0]["amount"], 0);
    assert_eq!(
        pro["prices"],
        json!([
            {"interval": "monthly", "amount": 9900, "currency": "usd", "lookup_key": "pro_monthly"},
            {"interval": "annual", "amount": 99000, "currency": "usd", "lookup_key": "pro_annual"}
        ])
    );
    assert_eq!(ent["prices"], json!([]));
    assert_eq!(ent["contact_sales"], true);
    assert_eq!(free["limits"]["export_formats"], json!(["pdf"]));
    assert_eq!(
        pro["limits"]["export_formats"],
        json!(["pdf", "excel", "json", "csv"])
    );
    assert_eq!(
        ent["limits"]["export_formats"],
        json!(["pdf", "excel", "json", "csv", "xml"])
    );
    assert_eq!(free["limits"]["documents_per_month"], 50);
    assert_eq!(pro["limits"]["api_calls_per_day"], 50000);
    assert_eq!(ent["limits"]["documents_per_month"], Value::Null);
    assert_eq!(ent["limits"]["sso"], true);
    assert_eq!(free["limits"]["ai_features"], false);
    for p in plans {
        for field in ["name", "tier", "description", "features"] {
            assert!(!p[field].is_null(), "{field} missing in {p}");
        }
    }
}

#[tokio::test]
async fn plan_limit_overrides_reach_the_catalog() {
    let app =
        TestApp::spawn_with(&[("FREE_PLAN_DOCS_LIMIT", "7"), ("PRO_PLAN_API_LIMIT", "123")]).await;
    let body: Value = app
        .client
        .get(app.url("/api/plans"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["plans"][0]["limits"]["documents_per_month"], 7);
    assert_eq!(body["plans"][1]["limits"]["api_calls_per_day"], 123);
}

#[tokio::test]
async fn plans_revalidate_with_their_etag() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/api/plans")).send().await.unwrap();
    let etag = r.headers()["etag"].clone();
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let again = app
        .client
        .get(app.url("/api/plans"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let stale = app
        .client
        .get(app.url("/api/plans"))
        .header("if-none-match", "\"old\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
}

#[tokio::test]
async fn signed_in_answers_are_never_cached() {
    let app = TestApp::spawn().await;
    let token = app.free_user("cache@example.com").await;
    let r = app.get_as(&token, "/api/usage").await;
    assert_eq!(r.headers()["cache-control"], "no-store");
}

type BadRequest<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, u16, &'a str);

#[tokio::test]
async fn every_bad_request_gets_the_error_shape_and_its_status() {
    let app = TestApp::spawn().await;
    let json = Some("application/json");
    let huge = format!(
        r#"{{"email":"a@b.io","password":"{}"}}"#,
        "x".repeat(1024 * 1024 + 1)
    );
    // method, path, content type, body → status, code
    let cases: [BadRequest; 12] = [
        ("GET", "/api/nothing-here", None, "", 404, "not_found"),
        ("GET", "/", None, "", 404, "not_found"),
        ("DELETE", "/api/plans", None, "", 405, "method_not_allowed"),
        (
            "GET",
            "/api/auth/login",
            None,
            "",
            405,
            "method_not_allowed",
        ),
        (
            "POST",
            "/api/auth/login",
            Some("text/plain"),
            "{}",
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/api/auth/login",
            None,
            r#"{"email":"a@b.io"}"#,
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/api/auth/login",
            json,
            "{\n  \"email\": \"a@b.io\",\n  \"password\" 1\n}",
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/auth/login",
            json,
            r#"{"email":"a@b.io","password":"x"} trailing"#,
            400,
            "malformed_json",
        ),
        ("POST", "/api/auth/login", json, "", 400, "malformed_json"),
        (
            "POST",
            "/api/auth/login",
            json,
            "[1,2]",
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/auth/login",
            json,
            r#"{"email":"a@b.io"}"#,
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/auth/login",
            json,
            &huge,
            413,
            "payload_too_large",
        ),
    ];
    let mut errors = Vec::new();
    for (method, path, content_type, body, status, code) in cases {
        let mut req = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .body(body.to_owned());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        errors.push(error_of(req.send().await.unwrap(), status, code).await);
    }
    // Malformed JSON says where it broke; a missing field is named; the cap is stated.
    assert_eq!(
        (errors[6]["line"].as_u64(), errors[6]["column"].as_u64()),
        (Some(3), Some(14))
    );
    assert_eq!(errors[10]["field"], "password");
    assert_eq!(errors[11]["max_bytes"], 1024 * 1024);
    let r = app
        .client
        .delete(app.url("/api/plans"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET,HEAD");
}

#[tokio::test]
async fn cors_allows_configured_origins_and_answers_preflight() {
    let app = TestApp::spawn_with(&[(
        "CORS_ALLOWED_ORIGINS",
        "https://app.kraftd.io, http://localhost:5173",
    )])
    .await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/billing/upgrade"))
        .header("origin", "https://app.kraftd.io")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.kraftd.io");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));

    let r = app
        .client
        .get(app.url("/api/plans"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert!(r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-upgrade-url"));

    let r = app
        .client
        .get(app.url("/api/plans"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

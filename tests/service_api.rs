//! The service API KRAFTD's services call, through HTTP: service keys and
//! their scopes, usage reported once per Idempotency-Key, reservations,
//! batches, entitlements, and billing that the API-call quota never blocks.

mod support;

use std::sync::Arc;

use chrono::Duration;
use kraftd_billing::app::service_keys;
use kraftd_billing::domain::service::Scope;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use support::{error_of, TestApp};

fn docs(n: i64) -> Value {
    json!({"metric": "documents", "quantity": n})
}

async fn key_with(app: &TestApp, scopes: &[Scope]) -> String {
    service_keys::issue(
        app.store.as_ref(),
        "scoped",
        scopes.to_vec(),
        app.clock_now(),
    )
    .await
    .unwrap()
    .secret
}

async fn reserve(app: &TestApp, account: &str, key: &str, body: Value) -> Response {
    app.service(
        Method::POST,
        &format!("/api/accounts/{account}/reservations"),
    )
    .header("Idempotency-Key", key)
    .json(&body)
    .send()
    .await
    .unwrap()
}

async fn commit(app: &TestApp, account: &str, id: &str, body: Option<Value>) -> Response {
    let r = app.service(
        Method::POST,
        &format!("/api/accounts/{account}/reservations/{id}/commit"),
    );
    match body {
        Some(b) => r.json(&b),
        None => r,
    }
    .send()
    .await
    .unwrap()
}

async fn release(app: &TestApp, account: &str, id: &str) -> Response {
    app.service(
        Method::DELETE,
        &format!("/api/accounts/{account}/reservations/{id}"),
    )
    .send()
    .await
    .unwrap()
}

async fn documents(app: &TestApp, account: &str) -> Value {
    let r = app
        .service(
            Method::GET,
            &format!("/api/accounts/{account}/entitlements"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["usage"]["documents"].clone()
}

#[tokio::test]
async fn user_tokens_read_their_account_but_never_write_usage() {
    let app = TestApp::spawn().await;
    let token = app.free_user("reader@example.com").await;
    let account = app.own_account_id(&token).await;
    let other = app.free_user("other@example.com").await;
    let others = app.own_account_id(&other).await;
    let write = |path: &str, body: Value| {
        app.client
            .post(app.url(&format!("/api/accounts/{account}/{path}")))
            .bearer_auth(&token)
            .header("Idempotency-Key", "k1")
            .json(&body)
            .send()
    };
    for (path, body) in [
        ("usage", docs(1)),
        ("reservations", docs(1)),
        ("usage/batch", json!({"events": []})),
        ("usage/calls", json!({"quantity": 1})),
    ] {
        let e = error_of(write(path, body).await.unwrap(), 403, "missing_scope").await;
        assert!(
            e["message"].as_str().unwrap().contains("usage:write"),
            "{e}"
        );
    }
    let id = uuid::Uuid::new_v4();
    for (method, path) in [
        (
            Method::POST,
            format!("/api/accounts/{account}/reservations/{id}/commit"),
        ),
        (
            Method::DELETE,
            format!("/api/accounts/{account}/reservations/{id}"),
        ),
        (
            Method::PUT,
            format!("/api/accounts/{account}/gauges/storage_mb"),
        ),
    ] {
        let r = app
            .client
            .request(method, app.url(&path))
            .bearer_auth(&token)
            .json(&json!({"value": 1, "observed_at": app.clock_now()}))
            .send()
            .await
            .unwrap();
        error_of(r, 403, "missing_scope").await;
    }
    // A member reads their own account's entitlements, not another's.
    let own = app
        .get_as(&token, &format!("/api/accounts/{account}/entitlements"))
        .await;
    assert_eq!(own.status(), 200);
    error_of(
        app.get_as(&token, &format!("/api/accounts/{others}/entitlements"))
            .await,
        404,
        "account_not_found",
    )
    .await;
    // No credential; a key without the scope; a revoked key; a made-up key.
    let none = app
        .client
        .post(app.url(&format!("/api/accounts/{account}/usage")))
        .json(&docs(1))
        .send()
        .await
        .unwrap();
    error_of(none, 401, "unauthenticated").await;
    let reader = key_with(&app, &[Scope::EntitlementsRead]).await;
    let r = app
        .client
        .post(app.url(&format!("/api/accounts/{account}/usage")))
        .bearer_auth(&reader)
        .header("Idempotency-Key", "k2")
        .json(&docs(1))
        .send()
        .await
        .unwrap();
    error_of(r, 403, "missing_scope").await;
    let issued = service_keys::issue(
        app.store.as_ref(),
        "leaving",
        vec![Scope::UsageWrite],
        app.clock_now(),
    )
    .await
    .unwrap();
    app.store
        .revoke_service_key(issued.key.id, app.clock_now())
        .await
        .unwrap();
    let forged = format!("{}x", &app.service_key[..app.service_key.len() - 1]);
    for key in [issued.secret.as_str(), forged.as_str(), "kbsk_nonsense"] {
        let r = app
            .client
            .post(app.url(&format!("/api/accounts/{account}/usage")))
            .bearer_auth(key)
            .header("Idempotency-Key", "k3")
            .json(&docs(1))
            .send()
            .await
            .unwrap();
        error_of(r, 401, "unauthenticated").await;
    }
    assert_eq!(
        documents(&app, &account).await["used"],
        0,
        "nothing counted"
    );
    // A service names any account, but only one that exists.
    error_of(
        app.report(&uuid::Uuid::new_v4().to_string(), "k4", docs(1))
            .await,
        404,
        "account_not_found",
    )
    .await;
}

#[tokio::test]
async fn two_hundred_parallel_reservations_against_fifty_hold_exactly_fifty() {
    let app = Arc::new(TestApp::spawn_with(&[("FREE_PLAN_DOCS_LIMIT", "50")]).await);
    let token = app.free_user("burst@example.com").await;
    let account = Arc::new(app.own_account_id(&token).await);
    let burst = |prefix: &'static str, n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (app, account) = (app.clone(), account.clone());
                tokio::spawn(async move {
                    let r = reserve(&app, &account, &format!("{prefix}-{i}"), docs(1)).await;
                    match r.status().as_u16() {
                        201 => Some(
                            r.json::<Value>().await.unwrap()["id"]
                                .as_str()
                                .unwrap()
                                .to_owned(),
                        ),
                        403 => {
                            error_of(r, 403, "quota_exceeded").await;
                            None
                        }
                        other => panic!("unexpected {other}"),
                    }
                })
            })
            .collect::<Vec<_>>();
        async move {
            let mut held = Vec::new();
            for t in tasks {
                held.extend(t.await.unwrap());
            }
            held
        }
    };
    let held = burst("doc", 200).await;
    assert_eq!(held.len(), 50, "exactly the limit is held");
    let level = documents(&app, &account).await;
    assert_eq!(
        (
            level["used"].as_u64(),
            level["held"].as_u64(),
            level["remaining"].as_u64()
        ),
        (Some(0), Some(50), Some(0))
    );
    for id in &held[..10] {
        let r = release(&app, &account, id).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "released");
    }
    let more = burst("after", 100).await;
    assert_eq!(more.len(), 10, "releasing 10 lets exactly 10 more in");
    for id in held[10..].iter().chain(&more) {
        assert_eq!(commit(&app, &account, id, None).await.status(), 200);
    }
    let level = documents(&app, &account).await;
    assert_eq!(
        (level["used"].as_u64(), level["held"].as_u64()),
        (Some(50), Some(0))
    );
}

#[tokio::test]
async fn a_replayed_idempotency_key_counts_once_and_a_reused_one_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.free_user("retry@example.com").await;
    let account = app.own_account_id(&token).await;
    let first = app.report(&account, "doc-42", docs(3)).await;
    assert_eq!(first.status(), 200);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first: Value = first.json().await.unwrap();
    for _ in 0..3 {
        let again = app.report(&account, "doc-42", docs(3)).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(
            again.json::<Value>().await.unwrap(),
            first,
            "the same answer"
        );
    }
    assert_eq!(documents(&app, &account).await["used"], 3, "counted once");
    let e = error_of(
        app.report(&account, "doc-42", docs(2)).await,
        409,
        "idempotency_key_reused",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("another request"));
    // The key is required and bounded.
    let r = app
        .service(Method::POST, &format!("/api/accounts/{account}/usage"))
        .json(&docs(1))
        .send()
        .await
        .unwrap();
    let e = error_of(r, 422, "invalid_field").await;
    assert_eq!(e["field"], "Idempotency-Key");
    let e = error_of(
        app.report(&account, &"k".repeat(256), docs(1)).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(e["field"], "Idempotency-Key");
    // A reservation's key replays the reservation.
    let a: Value = reserve(&app, &account, "doc-43", docs(2))
        .await
        .json()
        .await
        .unwrap();
    let b = reserve(&app, &account, "doc-43", docs(2)).await;
    assert_eq!(b.status(), 201);
    assert_eq!(b.headers()["idempotent-replayed"], "true");
    assert_eq!(b.json::<Value>().await.unwrap()["id"], a["id"]);
    assert_eq!(documents(&app, &account).await["held"], 2, "held once");
    // A report's answer counts the live holds in what remains.
    let r = app.report(&account, "doc-44", docs(1)).await;
    assert_eq!(r.headers()["ratelimit-remaining"], "44");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (
            body["used"].as_u64(),
            body["held"].as_u64(),
            body["remaining"].as_u64()
        ),
        (Some(4), Some(2), Some(44))
    );
}

#[tokio::test]
async fn commits_record_what_was_used_and_an_expired_hold_frees_its_quota() {
    let app = TestApp::spawn_with(&[("FREE_PLAN_DOCS_LIMIT", "5")]).await;
    let token = app.free_user("commit@example.com").await;
    let account = app.own_account_id(&token).await;
    let r = reserve(
        &app,
        &account,
        "batch-1",
        json!({"metric": "documents", "quantity": 3}),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .split(';')
            .next(),
        Some("\"documents\"")
    );
    let held: Value = r.json().await.unwrap();
    let id = held["id"].as_str().unwrap();
    assert_eq!(held["status"], "held");
    let e = error_of(
        commit(&app, &account, id, Some(json!({"quantity": 4}))).await,
        409,
        "beyond_hold",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("the 3 held"), "{e}");
    let done = commit(&app, &account, id, Some(json!({"quantity": 1}))).await;
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(
        (done["status"].as_str(), done["committed_quantity"].as_i64()),
        (Some("committed"), Some(1))
    );
    let again = commit(&app, &account, id, Some(json!({"quantity": 1}))).await;
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        done,
        "a retried commit answers the same"
    );
    error_of(
        commit(&app, &account, id, Some(json!({"quantity": 2}))).await,
        409,
        "reservation_closed",
    )
    .await;
    error_of(release(&app, &account, id).await, 409, "reservation_closed").await;
    let level = documents(&app, &account).await;
    assert_eq!(
        (level["used"].as_u64(), level["held"].as_u64()),
        (Some(1), Some(0)),
        "the two unused went back"
    );
    error_of(
        release(&app, &account, &uuid::Uuid::new_v4().to_string()).await,
        404,
        "reservation_not_found",
    )
    .await;

    // Four held for a minute: nothing else fits until the hold lapses.
    let slow: Value = reserve(
        &app,
        &account,
        "slow",
        json!({"metric": "documents", "quantity": 4, "ttl_seconds": 60}),
    )
    .await
    .json()
    .await
    .unwrap();
    error_of(
        reserve(&app, &account, "next", docs(1)).await,
        403,
        "quota_exceeded",
    )
    .await;
    app.clock.set(app.clock_now() + Duration::seconds(60));
    assert_eq!(
        reserve(&app, &account, "next", docs(1)).await.status(),
        201,
        "the expired hold gave its quota back"
    );
    error_of(
        commit(&app, &account, slow["id"].as_str().unwrap(), None).await,
        409,
        "reservation_closed",
    )
    .await;
    for (body, field) in [
        (
            json!({"metric": "documents", "quantity": 1, "ttl_seconds": 0}),
            "ttl_seconds",
        ),
        (
            json!({"metric": "documents", "quantity": 1, "ttl_seconds": 86_401}),
            "ttl_seconds",
        ),
        (json!({"metric": "documents", "quantity": 0}), "quantity"),
        (json!({"metric": "team_members", "quantity": 1}), "metric"),
        (json!({"metric": "exports", "quantity": 1}), "format"),
    ] {
        let e = error_of(
            reserve(&app, &account, "bad", body.clone()).await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(e["field"], field, "{body}");
    }
    let e = error_of(
        reserve(
            &app,
            &account,
            "ai",
            json!({"metric": "documents", "quantity": 1, "feature": "ai_features"}),
        )
        .await,
        403,
        "not_in_plan",
    )
    .await;
    assert_eq!(e["upgrade_to"], "pro");
}

#[tokio::test]
async fn batch_events_count_once_by_id_and_one_bad_event_stands_alone() {
    let app = TestApp::spawn_with(&[("FREE_PLAN_API_LIMIT", "5")]).await;
    let token = app.free_user("gateway@example.com").await;
    let account = app.own_account_id(&token).await;
    let now = app.clock_now();
    let event = |id: &str, n: i64| json!({"id": id, "metric": "api_calls", "quantity": n, "occurred_at": now});
    let batch = |events: Vec<Value>| {
        app.service(
            Method::POST,
            &format!("/api/accounts/{account}/usage/batch"),
        )
        .json(&json!({"events": events}))
        .send()
    };
    let r: Value = batch(vec![
        event("e1", 2),
        event("e2", 2),
        event("e1", 2),
        json!({"id": "old", "metric": "api_calls", "quantity": 1, "occurred_at": now - Duration::days(2)}),
        event("e3", 3),
    ])
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let statuses: Vec<_> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["recorded", "recorded", "duplicate", "rejected", "recorded"]
    );
    assert_eq!(r["results"][4]["total"], 7);
    assert_eq!(
        r["results"][4]["over_limit"], true,
        "after the fact, counted and flagged"
    );
    assert!(r["results"][3]["error"]
        .as_str()
        .unwrap()
        .contains("occurred_at"));
    let again: Value = batch(vec![event("e2", 2)])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["results"][0]["status"], "duplicate");
    let ent: Value = app
        .get_json(&token, &format!("/api/accounts/{account}/entitlements"))
        .await;
    assert_eq!(ent["usage"]["api_calls"]["used"], 7);
    let too_many: Vec<Value> = (0..1001).map(|i| event(&format!("m{i}"), 1)).collect();
    let e = error_of(batch(too_many).await.unwrap(), 422, "invalid_field").await;
    assert_eq!(e["field"], "events");
}

#[tokio::test]
async fn entitlements_are_cacheable_until_usage_moves() {
    let app = TestApp::spawn().await;
    let token = app.free_user("cache@example.com").await;
    let account = app.own_account_id(&token).await;
    let path = format!("/api/accounts/{account}/entitlements");
    let first = app.service(Method::GET, &path).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "private, max-age=30");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = first.json().await.unwrap();
    assert_eq!(
        (body["plan"].as_str(), body["over_limit"].as_bool()),
        (Some("free"), Some(false))
    );
    assert_eq!(body["usage"]["documents"]["limit"], 50);
    assert!(body["usage"]["documents"]["resets_at"].is_string());
    let cached = app
        .service(Method::GET, &path)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(app.report(&account, "one", docs(1)).await.status(), 200);
    let moved = app
        .service(Method::GET, &path)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200, "usage moved: a new ETag");
    assert_ne!(moved.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn at_the_api_call_limit_upgrade_and_the_portal_still_answer() {
    let app = TestApp::spawn_with_stripe(&[("PRO_PLAN_API_LIMIT", "3")]).await;
    app.subscribe_to_pro("paying@example.com").await;
    let token = app.login("paying@example.com").await;
    let account = app.own_account_id(&token).await;
    for i in 0..3 {
        let call = json!({"metric": "api_calls", "quantity": 1});
        assert_eq!(
            app.report(&account, &format!("c{i}"), call).await.status(),
            200
        );
    }
    error_of(
        app.report(
            &account,
            "c3",
            json!({"metric": "api_calls", "quantity": 1}),
        )
        .await,
        429,
        "quota_exceeded",
    )
    .await;
    let change = json!({"new_plan_id": "pro", "billing_interval": "annual"});
    assert_eq!(
        app.post_as(&token, "/api/billing/preview-change", change.clone())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get_as(&token, "/api/billing/customer-portal")
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get_as(&token, "/api/billing/subscription")
            .await
            .status(),
        200
    );
    let r = app.post_as(&token, "/api/billing/upgrade", change).await;
    assert_eq!(
        r.status(),
        200,
        "the user can pay at the moment they most want to"
    );
    let ent: Value = app
        .get_json(&token, &format!("/api/accounts/{account}/entitlements"))
        .await;
    assert_eq!(
        ent["usage"]["api_calls"]["used"], 3,
        "billing counted no API call"
    );
}

#[tokio::test]
async fn the_timer_and_change_feed_endpoints_refuse_browser_style_requests() {
    let app = TestApp::spawn().await;
    let timer = json!({"Data": {"myTimer": {"IsPastDue": false}}, "Metadata": {}});
    for name in [
        "SweepOutbox",
        "DailyUsageRollup",
        "ReconcileSubscriptions",
        "SendEmails",
    ] {
        let url = app.url(&format!("/{name}"));
        let cross_site = app
            .client
            .post(&url)
            .header("Origin", "https://evil.example")
            .json(&timer)
            .send()
            .await
            .unwrap();
        error_of(cross_site, 403, "forbidden").await;
        let form = app
            .client
            .post(&url)
            .header("content-type", "text/plain")
            .body(timer.to_string())
            .send()
            .await
            .unwrap();
        error_of(form, 415, "unsupported_media_type").await;
    }
    let host = app
        .client
        .post(app.url("/SweepOutbox"))
        .json(&timer)
        .send()
        .await
        .unwrap();
    assert_eq!(host.status(), 200, "the host's own request");
}

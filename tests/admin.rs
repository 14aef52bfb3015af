//! The admin API on a real server: overrides that raise a limit and lapse
//! at their expiry, credits that give quota back once, the audit log
//! (operators' and the owner's view), finding, showing and re-syncing an
//! account, and who may call it at all.

mod support;

use chrono::Duration;
use kraftd_billing::app::service_keys;
use kraftd_billing::domain::account::{AccountId, Membership, Role};
use kraftd_billing::domain::service::Scope;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use support::{error_of, TestApp};

fn docs(n: i64) -> Value {
    json!({"metric": "documents", "quantity": n})
}

fn admin(app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.service(method, path)
        .header("X-Admin-Actor", "support@kraftd.io")
}

async fn json_of(r: Response, got: u16) -> Value {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, got, "{body}");
    body
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_override_raises_a_free_limit_at_once_and_lapses_at_its_expiry() {
    let app = TestApp::spawn().await;
    let owner = app.free_user("owner@acme.io").await;
    let account = app.own_account_id(&owner).await;
    assert_eq!(app.report(&account, "fill", docs(50)).await.status(), 200);
    error_of(
        app.report(&account, "one-more", docs(1)).await,
        403,
        "quota_exceeded",
    )
    .await;

    let expires = app.clock_now() + Duration::days(7);
    let set = admin(&app, Method::POST, &format!("/api/admin/accounts/{account}/overrides"))
        .json(&json!({"limit": "documents", "value": 60, "reason": "pilot of the batch importer", "expires_at": expires}))
        .send()
        .await
        .unwrap();
    let set = json_of(set, 201).await;
    assert_eq!(set["value"], 60);
    assert_eq!(set["active"], true);
    // The next consume and reserve see it, with no other step.
    assert_eq!(app.report(&account, "after-1", docs(5)).await.status(), 200);
    let held = app
        .service(
            Method::POST,
            &format!("/api/accounts/{account}/reservations"),
        )
        .header("Idempotency-Key", "hold-1")
        .json(&docs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 201, "{}", held.text().await.unwrap());
    error_of(
        app.report(&account, "after-2", docs(1)).await,
        403,
        "quota_exceeded",
    )
    .await;
    let ent = app.get_json(&owner, "/api/entitlements").await;
    assert_eq!(ent["limits"]["documents_per_month"], 60, "{ent}");

    // At its expiry it counts for nothing, though no one removed it.
    app.clock.set(expires);
    let e = error_of(
        app.report(&account, "after-3", docs(1)).await,
        403,
        "quota_exceeded",
    )
    .await;
    assert_eq!(e["limit_value"], 50, "{e}");

    let entries = app.admin_audit(&account).await;
    assert_eq!(actions(&entries), ["override_set"]);
    assert_eq!(entries[0]["actor"]["type"], "admin");
    assert_eq!(entries[0]["actor"]["service"], "test-harness");
    assert_eq!(entries[0]["actor"]["person"], "support@kraftd.io");
    assert_eq!(entries[0]["reason"], "pilot of the batch importer");
    assert_eq!(entries[0]["after"]["value"], "60");

    // Removed: gone from the account, and the removal is audited.
    let id = set["id"].as_str().unwrap();
    let path = format!("/api/admin/accounts/{account}/overrides/{id}");
    assert_eq!(
        admin(&app, Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    error_of(
        admin(&app, Method::DELETE, &path).send().await.unwrap(),
        404,
        "override_not_found",
    )
    .await;
    let entries = app.admin_audit(&account).await;
    assert_eq!(actions(&entries), ["override_removed", "override_set"]);
}

#[tokio::test]
async fn overrides_are_refused_without_a_reason_or_with_a_past_expiry() {
    let app = TestApp::spawn().await;
    let owner = app.free_user("strict@acme.io").await;
    let account = app.own_account_id(&owner).await;
    let path = format!("/api/admin/accounts/{account}/overrides");
    for body in [
        json!({"limit": "documents", "value": 60, "reason": " "}),
        json!({"limit": "documents", "value": 60, "reason": "x", "expires_at": app.clock_now()}),
        json!({"limit": "documents", "feature": "ai_features", "value": 60, "reason": "x"}),
        json!({"feature": "ai_features", "value": 60, "reason": "x"}),
    ] {
        let r = admin(&app, Method::POST, &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
    }
    assert!(app.admin_audit(&account).await.is_empty());
}

#[tokio::test]
async fn a_credit_restores_quota_once_per_key() {
    let app = TestApp::spawn().await;
    let owner = app.free_user("credit@acme.io").await;
    let account = app.own_account_id(&owner).await;
    assert_eq!(app.report(&account, "fill", docs(50)).await.status(), 200);
    error_of(
        app.report(&account, "refused", docs(3)).await,
        403,
        "quota_exceeded",
    )
    .await;

    let credit = || {
        admin(
            &app,
            Method::POST,
            &format!("/api/admin/accounts/{account}/credits"),
        )
        .header("Idempotency-Key", "failed-batch-17")
        .json(&json!({"metric": "documents", "quantity": 3, "reason": "batch 17 failed in OCR"}))
        .send()
    };
    let first = json_of(credit().await.unwrap(), 200).await;
    assert_eq!(first["used"], 47, "{first}");
    let again = credit().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(again, 200).await["used"], 47);

    // The consume refused at the limit is admitted now; the next is not.
    assert_eq!(app.report(&account, "refused", docs(3)).await.status(), 200);
    error_of(
        app.report(&account, "next", docs(1)).await,
        403,
        "quota_exceeded",
    )
    .await;

    let entries = app.admin_audit(&account).await;
    assert_eq!(actions(&entries), ["usage_credited"]);
    assert_eq!(entries[0]["actor"]["person"], "support@kraftd.io");
    assert_eq!(entries[0]["before"]["used"], "50");
    assert_eq!(entries[0]["after"]["used"], "47");

    // No key; more than was used.
    let r = admin(
        &app,
        Method::POST,
        &format!("/api/admin/accounts/{account}/credits"),
    )
    .json(&json!({"metric": "documents", "quantity": 3, "reason": "x"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    let r = admin(
        &app,
        Method::POST,
        &format!("/api/admin/accounts/{account}/credits"),
    )
    .header("Idempotency-Key", "too-much")
    .json(&json!({"metric": "documents", "quantity": 51, "reason": "x"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn only_admin_credentials_reach_the_admin_api_and_only_owners_read_their_log() {
    let app = TestApp::spawn().await;
    let owner = app.free_user("boss@acme.io").await;
    let account = app.own_account_id(&owner).await;
    let member = app.free_user("clerk@acme.io").await;
    let clerk = app.user_by_email("clerk@acme.io").await;
    let id = AccountId(uuid::Uuid::parse_str(&account).unwrap());
    app.store
        .add_member(
            &Membership {
                account_id: id,
                user_id: clerk.id,
                role: Role::Member,
                joined_at: app.clock_now(),
            },
            &[],
        )
        .await
        .unwrap();
    let no_admin = service_keys::issue(
        app.store.as_ref(),
        "usage-only",
        vec![Scope::UsageWrite, Scope::EntitlementsRead],
        app.clock_now(),
    )
    .await
    .unwrap()
    .secret;
    let o = uuid::Uuid::new_v4();
    let routes = [
        (Method::GET, "/api/admin/accounts?customer=cus_x".to_owned()),
        (Method::GET, format!("/api/admin/accounts/{account}")),
        (
            Method::POST,
            format!("/api/admin/accounts/{account}/resync"),
        ),
        (
            Method::POST,
            format!("/api/admin/accounts/{account}/overrides"),
        ),
        (
            Method::DELETE,
            format!("/api/admin/accounts/{account}/overrides/{o}"),
        ),
        (
            Method::POST,
            format!("/api/admin/accounts/{account}/credits"),
        ),
        (Method::GET, format!("/api/admin/accounts/{account}/audit")),
    ];
    for (method, path) in &routes {
        for token in [&owner, &member, &no_admin] {
            let r = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(token)
                .header("Idempotency-Key", "k")
                .header("X-Account-Id", &account)
                .json(&json!({"limit": "documents", "value": 1, "reason": "x", "metric": "documents", "quantity": 1}))
                .send()
                .await
                .unwrap();
            error_of(r, 403, "missing_scope").await;
        }
    }
    // A change the owner makes lands in the log the owner reads.
    let set = admin(
        &app,
        Method::POST,
        &format!("/api/admin/accounts/{account}/overrides"),
    )
    .json(&json!({"feature": "ai_features", "value": true, "reason": "trial of extraction"}))
    .send()
    .await
    .unwrap();
    assert_eq!(set.status(), 201);
    let own = app.get_json(&owner, "/api/account/audit").await;
    assert_eq!(own["entries"][0]["action"], "override_set");
    assert_eq!(own["entries"][0]["actor"]["service"], "test-harness");
    let r = app
        .client
        .get(app.url("/api/account/audit"))
        .bearer_auth(&member)
        .header("X-Account-Id", &account)
        .send()
        .await
        .unwrap();
    error_of(r, 403, "forbidden").await;
}

#[tokio::test]
async fn the_log_pages_newest_first() {
    let app = TestApp::spawn().await;
    let owner = app.free_user("pages@acme.io").await;
    let account = app.own_account_id(&owner).await;
    for n in 1..=3 {
        app.clock.set(app.clock_now() + Duration::seconds(1));
        let r = admin(
            &app,
            Method::POST,
            &format!("/api/admin/accounts/{account}/overrides"),
        )
        .json(&json!({"limit": "api_calls", "value": n * 1000, "reason": format!("step {n}")}))
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
    }
    let first = app.get_json(&owner, "/api/account/audit?limit=2").await;
    let reasons = |v: &Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reason"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(reasons(&first), ["step 3", "step 2"]);
    assert_eq!(first["has_more"], true);
    let next = first["next_starting_after"].as_str().unwrap();
    let rest = app
        .get_json(
            &owner,
            &format!("/api/account/audit?limit=2&starting_after={next}"),
        )
        .await;
    assert_eq!(reasons(&rest), ["step 1"]);
    assert_eq!(rest["has_more"], false);
}

#[tokio::test]
async fn operators_find_show_and_resync_a_paying_account() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.subscribe_to_pro("payer@acme.io").await;
    let stored = app.account("payer@acme.io").await;
    let account = stored.id.to_string();
    let customer = stored.subscription.stripe_customer_id.clone().unwrap();
    let subscription = stored.subscription.stripe_subscription_id.clone().unwrap();

    for query in [
        "email=payer@acme.io".to_owned(),
        format!("customer={customer}"),
        format!("subscription={subscription}"),
    ] {
        let r = app
            .service(Method::GET, &format!("/api/admin/accounts?{query}"))
            .send()
            .await
            .unwrap();
        let found = json_of(r, 200).await;
        assert_eq!(found["accounts"][0]["id"], account.as_str(), "{query}");
        assert_eq!(found["accounts"][0]["plan"], "pro");
    }
    for query in ["", "email=a@b.io&customer=cus_1"] {
        let r = app
            .service(Method::GET, &format!("/api/admin/accounts?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{query}");
    }
    let none = app
        .service(Method::GET, "/api/admin/accounts?customer=cus_nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(none, 200).await["accounts"], json!([]));

    let r = app
        .service(Method::GET, &format!("/api/admin/accounts/{account}"))
        .send()
        .await
        .unwrap();
    let shown = json_of(r, 200).await;
    assert_eq!(shown["account"]["plan"], "pro");
    assert_eq!(shown["members"][0]["email"], "payer@acme.io");
    assert_eq!(shown["members"][0]["role"], "owner");
    assert!(shown["usage"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["metric"] == "documents"));
    assert!(!shown["messages"].as_array().unwrap().is_empty(), "{shown}");

    // The webhook that activated Pro is in the log, as the cause.
    let entries = app.admin_audit(&account).await;
    let activation = entries
        .iter()
        .find(|e| e["actor"]["type"] == "stripe_webhook" && e["after"]["status"] == "active")
        .unwrap_or_else(|| panic!("the activation is audited: {entries:?}"));
    assert_eq!(activation["after"]["plan"], "pro");

    let r = admin(
        &app,
        Method::POST,
        &format!("/api/admin/accounts/{account}/resync"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(json_of(r, 200).await["plan"], "pro");
    let entries = app.admin_audit(&account).await;
    let resync = entries
        .iter()
        .find(|e| e["action"] == "admin_resync")
        .unwrap_or_else(|| panic!("the resync is audited: {entries:?}"));
    assert_eq!(resync["actor"]["person"], "support@kraftd.io");
}

//! Usage and quota enforcement through the HTTP API: exact under
//! concurrency, correct at window boundaries, scoped to the caller.

mod support;

use std::sync::Arc;

use chrono::{Duration, Utc};
use kraftd_billing::auth::password::{self, Passwords};
use kraftd_billing::domain::account::{Account, AccountId, Membership, Role};
use kraftd_billing::domain::plan::PlanId;
use kraftd_billing::domain::subscription::{Subscription, SubscriptionStatus};
use kraftd_billing::domain::user::{Email, PersonName, User, UserId};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_of, TestApp, PASSWORD};

/// A user on a paid plan, written straight to the store (payments are not
/// part of this slice), then signed in through the API.
async fn paid_user(app: &TestApp, email: &str, plan: PlanId) -> String {
    let user = User::with_password(
        UserId(uuid::Uuid::new_v4()),
        Email::parse(email).unwrap(),
        PersonName::parse("Paid").unwrap(),
        Passwords::new(1, password::MAX_WAIT)
            .hash(PASSWORD.into())
            .await
            .unwrap(),
        Utc::now(),
    );
    let account = Account {
        id: AccountId(uuid::Uuid::new_v4()),
        name: "Paid".into(),
        billing_email: user.email.clone(),
        created_at: Utc::now(),
        subscription: Subscription {
            plan_id: plan,
            status: SubscriptionStatus::Active,
            current_period_end: Some(Utc::now() + Duration::days(30)),
            ..Subscription::free(Utc::now())
        },
        last_event_at: None,
        overrides: Vec::new(),
        enterprise_offer: None,
    };
    let owner = Membership {
        account_id: account.id,
        user_id: user.id,
        role: Role::Owner,
        joined_at: Utc::now(),
    };
    app.store
        .register(&user, &account, &owner, &[])
        .await
        .unwrap();
    app.login(email).await
}

fn docs(n: i64) -> Value {
    json!({"metric": "documents", "quantity": n})
}

#[tokio::test]
async fn sequential_consumes_admit_exactly_the_limit_then_403_with_an_upgrade_hint() {
    let app = TestApp::spawn_with(&[("FREE_PLAN_DOCS_LIMIT", "5")]).await;
    let token = app.free_user("seq@example.com").await;
    for n in 1..=5 {
        let r = app.consume(&token, docs(1)).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (body["used"].as_u64(), body["remaining"].as_u64()),
            (Some(n), Some(5 - n))
        );
    }
    let r = app.consume(&token, docs(1)).await;
    assert_eq!(
        r.headers()["x-upgrade-url"],
        "https://kraftd.io/pricing?plan=pro"
    );
    let e = error_of(r, 403, "quota_exceeded").await;
    assert_eq!(e["limit"], "documents_per_month");
    assert_eq!(e["limit_value"], 5);
    assert_eq!(e["usage"], 5);
    assert_eq!(e["plan"], "free");
    assert_eq!(e["upgrade_to"], "pro");
    // The refused consume recorded nothing.
    let usage: Value = app.get_as(&token, "/api/usage").await.json().await.unwrap();
    assert_eq!(usage["usage"]["documents"]["used"], 5);
}

#[tokio::test]
async fn hundreds_of_concurrent_consumes_never_admit_more_than_the_limit() {
    let app = Arc::new(
        TestApp::spawn_with(&[
            ("FREE_PLAN_DOCS_LIMIT", "25"),
            ("FREE_PLAN_API_LIMIT", "100000"),
        ])
        .await,
    );
    let token = Arc::new(app.free_user("burst@example.com").await);
    let calls: Vec<_> = (0..300)
        .map(|_| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move { app.consume(&token, docs(1)).await.status().as_u16() })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for c in calls {
        match c.await.unwrap() {
            200 => ok += 1,
            403 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, refused), (25, 275));
    let usage: Value = app.get_as(&token, "/api/usage").await.json().await.unwrap();
    assert_eq!(usage["usage"]["documents"]["used"], 25);
    assert_eq!(
        usage["usage"]["api_calls"]["used"], 0,
        "reports and reading usage count no API calls: KRAFTD's services report those"
    );
}

fn api_calls(n: i64) -> Value {
    json!({"metric": "api_calls", "quantity": n})
}

#[tokio::test]
async fn reported_api_calls_stop_at_the_daily_limit_exactly_under_load() {
    let app = Arc::new(TestApp::spawn_with(&[("FREE_PLAN_API_LIMIT", "30")]).await);
    let token = app.free_user("calls@example.com").await;
    let account = Arc::new(app.own_account_id(&token).await);
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let (app, account) = (app.clone(), account.clone());
            tokio::spawn(async move {
                app.report(&account, &format!("call-{i}"), api_calls(1))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut last_refusal = None;
    for c in calls {
        let r = c.await.unwrap();
        assert!(
            r.headers().contains_key("ratelimit-policy"),
            "service answers carry RateLimit headers, refusals included"
        );
        match r.status().as_u16() {
            200 => ok += 1,
            429 => last_refusal = Some(r),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 30);
    let r = last_refusal.expect("calls past the limit are refused");
    let h = r.headers().clone();
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    let midnight = (Utc::now().date_naive() + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let expected = (midnight - Utc::now()).num_seconds() as u64;
    assert!(
        retry.abs_diff(expected) <= 2,
        "Retry-After {retry} should be ~{expected}"
    );
    assert_eq!(h["ratelimit-policy"], "\"api_calls\";q=30;w=86400");
    assert_eq!(
        h["ratelimit"].to_str().unwrap(),
        format!("\"api_calls\";r=0;t={retry}")
    );
    assert_eq!(h["ratelimit-limit"], "30");
    assert_eq!(h["ratelimit-remaining"], "0");
    assert_eq!(h["ratelimit-reset"].to_str().unwrap(), retry.to_string());
    let e = error_of(r, 429, "quota_exceeded").await;
    assert_eq!(
        (
            e["limit"].as_str(),
            e["usage"].as_u64(),
            e["plan"].as_str(),
            e["upgrade_to"].as_str()
        ),
        (
            Some("api_calls_per_day"),
            Some(30),
            Some("free"),
            Some("pro")
        )
    );
    // The user's own reads are not API calls and are never refused.
    assert_eq!(app.get_as(&token, "/api/usage").await.status(), 200);
    assert_eq!(app.get_as(&token, "/api/entitlements").await.status(), 200);
}

#[tokio::test]
async fn windows_turn_at_utc_midnight_and_the_first_of_the_month() {
    let app =
        TestApp::spawn_with(&[("FREE_PLAN_API_LIMIT", "3"), ("FREE_PLAN_DOCS_LIMIT", "1")]).await;
    let token = app.free_user("boundary@example.com").await;
    let account = app.own_account_id(&token).await;
    app.at("2026-03-31T23:59:59.999Z");
    assert_eq!(app.consume(&token, docs(1)).await.status(), 200);
    error_of(app.consume(&token, docs(1)).await, 403, "quota_exceeded").await;
    for i in 0..3 {
        assert_eq!(
            app.report(&account, &format!("late-{i}"), api_calls(1))
                .await
                .status(),
            200
        );
    }
    let r = app.report(&account, "late-3", api_calls(1)).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["ratelimit-reset"], "1");
    error_of(r, 429, "quota_exceeded").await;

    app.at("2026-04-01T00:00:00Z");
    let r = app.report(&account, "late-3", api_calls(1)).await;
    assert_eq!(
        r.status(),
        200,
        "a refusal recorded nothing: the same key counts on a new day"
    );
    assert_eq!(r.headers()["ratelimit-remaining"], "2");
    assert_eq!(r.headers()["ratelimit-reset"], "86400");
    let r = app.consume(&token, docs(1)).await;
    assert_eq!(r.status(), 200, "a new day and a new month");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["used"], 1);
    assert_eq!(body["window"]["start"], "2026-04-01T00:00:00Z");
    assert_eq!(body["resets_at"], "2026-05-01T00:00:00Z");
}

#[tokio::test]
async fn unlimited_plans_never_block_but_still_count() {
    let app = TestApp::spawn().await;
    let token = paid_user(&app, "big@example.com", PlanId::Enterprise).await;
    for _ in 0..3 {
        let r = app.consume(&token, docs(1_000_000)).await;
        assert_eq!(r.status(), 200);
        assert!(
            !r.headers().contains_key("ratelimit-limit")
                && !r.headers().contains_key("ratelimit-policy"),
            "no limit to state"
        );
    }
    let xml = app
        .consume(
            &token,
            json!({"metric": "exports", "quantity": 1, "format": "xml"}),
        )
        .await;
    assert_eq!(xml.status(), 200);
    let usage: Value = app.get_as(&token, "/api/usage").await.json().await.unwrap();
    assert_eq!(usage["plan"], "enterprise");
    assert_eq!(usage["usage"]["documents"]["used"], 3_000_000);
    assert_eq!(usage["usage"]["documents"]["limit"], Value::Null);
    assert_eq!(usage["usage"]["api_calls"]["used"], 0, "none reported");
}

#[tokio::test]
async fn features_and_export_formats_follow_the_plan() {
    let app = TestApp::spawn().await;
    let free = app.free_user("free@example.com").await;
    let r = app
        .consume(
            &free,
            json!({"metric": "documents", "quantity": 1, "feature": "ai_features"}),
        )
        .await;
    assert_eq!(
        r.headers()["x-upgrade-url"],
        "https://kraftd.io/pricing?plan=pro"
    );
    let e = error_of(r, 403, "not_in_plan").await;
    assert_eq!(
        (e["feature"].as_str(), e["upgrade_to"].as_str()),
        (Some("ai_features"), Some("pro"))
    );
    let e = error_of(
        app.consume(
            &free,
            json!({"metric": "exports", "quantity": 1, "format": "csv"}),
        )
        .await,
        403,
        "not_in_plan",
    )
    .await;
    assert_eq!(e["format"], "csv");
    assert_eq!(
        app.consume(
            &free,
            json!({"metric": "exports", "quantity": 1, "format": "pdf"})
        )
        .await
        .status(),
        200
    );
    let usage: Value = app.get_as(&free, "/api/usage").await.json().await.unwrap();
    assert_eq!(
        usage["usage"]["documents"]["used"], 0,
        "a refused AI consume counts nothing"
    );
    assert_eq!(usage["usage"]["exports"]["used"], 1);

    let pro = paid_user(&app, "pro@example.com", PlanId::Pro).await;
    assert_eq!(
        app.consume(
            &pro,
            json!({"metric": "documents", "quantity": 1, "feature": "ai_features"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.consume(
            &pro,
            json!({"metric": "exports", "quantity": 1, "format": "csv"})
        )
        .await
        .status(),
        200
    );
    let e = error_of(
        app.consume(
            &pro,
            json!({"metric": "exports", "quantity": 1, "format": "xml"}),
        )
        .await,
        403,
        "not_in_plan",
    )
    .await;
    assert_eq!(e["upgrade_to"], "enterprise");
    let ent: Value = app
        .get_as(&pro, "/api/entitlements")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ent["plan"], "pro");
    assert_eq!(
        ent["limits"]["export_formats"],
        json!(["pdf", "excel", "json", "csv"])
    );
    assert_eq!(ent["upgrade_to"], "enterprise");
}

#[tokio::test]
async fn gauges_are_set_to_the_newest_observation_and_may_stand_over_the_limit() {
    let app = TestApp::spawn().await;
    let token = app.free_user("gauge@example.com").await;
    let account = app.own_account_id(&token).await;
    let put = |value: i64, at: &str| {
        app.service(
            reqwest::Method::PUT,
            &format!("/api/accounts/{account}/gauges/storage_mb"),
        )
        .json(&json!({"value": value, "observed_at": at}))
        .send()
    };
    let r: Value = put(4000, "2026-05-10T12:00:02Z")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["applied"].as_bool(), r["used"].as_u64()),
        (Some(true), Some(4000))
    );
    let r: Value = put(100, "2026-05-10T12:00:01Z")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            r["applied"].as_bool(),
            r["used"].as_u64(),
            r["observed_at"].as_str()
        ),
        (Some(false), Some(4000), Some("2026-05-10T12:00:02Z")),
        "an older observation is ignored"
    );
    // Observed over Free's 5,000 MB (a downgrade, say): shown as over.
    let r: Value = put(6000, "2026-05-10T12:00:03Z")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["over_limit"].as_bool(), r["remaining"].as_u64()),
        (Some(true), Some(0))
    );
    let ent: Value = app
        .get_json(&token, &format!("/api/accounts/{account}/entitlements"))
        .await;
    assert_eq!(ent["over_limit"], true);
    // Growing it through a reservation is refused while it is over.
    let e = error_of(
        app.service(
            reqwest::Method::POST,
            &format!("/api/accounts/{account}/reservations"),
        )
        .header("Idempotency-Key", "upload-1")
        .json(&json!({"metric": "storage_mb", "quantity": 1}))
        .send()
        .await
        .unwrap(),
        403,
        "quota_exceeded",
    )
    .await;
    assert_eq!(e["usage"], 6000);
    let e = error_of(
        put(-1, "2026-05-10T12:00:04Z").await.unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(e["field"], "value");
    // Gauges are set, never added; seats are counted, never reported.
    for (body, field) in [
        (json!({"metric": "storage_mb", "quantity": 5}), "metric"),
        (json!({"metric": "team_members", "quantity": 1}), "metric"),
    ] {
        let e = error_of(app.consume(&token, body).await, 422, "invalid_field").await;
        assert_eq!(e["field"], field);
    }
    let usage: Value = app.get_as(&token, "/api/usage").await.json().await.unwrap();
    assert_eq!(usage["usage"]["team_members"]["used"], 1);
    assert_eq!(usage["usage"]["storage_mb"]["used"], 6000);
}

#[tokio::test]
async fn one_users_usage_never_touches_another_users() {
    let app = TestApp::spawn_with(&[("FREE_PLAN_DOCS_LIMIT", "2")]).await;
    let alice = app.free_user("alice@example.com").await;
    let bob = app.free_user("bob@example.com").await;
    assert_eq!(app.consume(&alice, docs(2)).await.status(), 200);
    error_of(app.consume(&alice, docs(1)).await, 403, "quota_exceeded").await;
    assert_eq!(app.consume(&bob, docs(2)).await.status(), 200);
    let a: Value = app.get_as(&alice, "/api/usage").await.json().await.unwrap();
    let b: Value = app.get_as(&bob, "/api/usage").await.json().await.unwrap();
    assert_eq!(a["usage"]["documents"]["used"], 2);
    assert_eq!(b["usage"]["documents"]["used"], 2);
    // Nothing in a body can name another user.
    let bob_id: Value = app
        .post(
            "/api/auth/login",
            json!({"email": "bob@example.com", "password": PASSWORD}),
        )
        .await
        .json()
        .await
        .unwrap();
    let e = error_of(
        app.consume(
            &alice,
            json!({"metric": "documents", "quantity": 1, "user_id": bob_id["user"]["id"]}),
        )
        .await,
        422,
        "invalid_field",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("user_id"));
}

#[tokio::test]
async fn each_bad_consume_is_named() {
    let app = TestApp::spawn().await;
    let token = app.free_user("inputs@example.com").await;
    let cases = [
        (json!({"metric": "documents", "quantity": 0}), "quantity"),
        (json!({"metric": "documents", "quantity": -3}), "quantity"),
        (json!({"metric": "documents", "quantity": 1.5}), "quantity"),
        (json!({"metric": "documents", "quantity": "1"}), "quantity"),
        (json!({"metric": "pages", "quantity": 1}), "metric"),
        (json!({"quantity": 1}), "metric"),
        (json!({"metric": "documents"}), "quantity"),
        (
            json!({"metric": "documents", "quantity": 1, "format": "pdf"}),
            "format",
        ),
        (json!({"metric": "exports", "quantity": 1}), "format"),
        (
            json!({"metric": "exports", "quantity": 1, "format": "docx"}),
            "format",
        ),
        (
            json!({"metric": "documents", "quantity": 1, "feature": "telepathy"}),
            "feature",
        ),
    ];
    for (body, field) in cases {
        let e = error_of(
            app.consume(&token, body.clone()).await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(e["field"], field, "{body}");
    }
}

/// One report of i64::MAX exports (which no limit caps) used to overflow the
/// counter into a float: the user's /usage answered 503 for good and the
/// rollup stopped for everyone. A report is bounded, and the counter stays
/// an exact integer.
#[tokio::test]
async fn a_report_is_bounded_so_no_counter_can_overflow() {
    let app = TestApp::spawn().await;
    let token = app.free_user("huge@example.com").await;
    for quantity in [i64::MAX, 1_000_001, -1_000_001, i64::MIN, 0] {
        let body = json!({"metric": "exports", "quantity": quantity, "format": "pdf"});
        let e = error_of(app.consume(&token, body).await, 422, "invalid_field").await;
        assert_eq!(e["field"], "quantity", "{quantity}");
    }
    let most = json!({"metric": "exports", "quantity": 1_000_000, "format": "pdf"});
    for _ in 0..2 {
        assert_eq!(app.consume(&token, most.clone()).await.status(), 200);
    }
    let usage = app.get_as(&token, "/api/usage").await;
    assert_eq!(usage.status(), 200);
    let usage: Value = usage.json().await.unwrap();
    assert_eq!(usage["usage"]["exports"]["used"], 2_000_000, "{usage}");
}

/// An unnamed API-call count, as a high-rate gateway sends it.
async fn call(app: &TestApp, account: &str) -> StatusCode {
    app.service(
        Method::POST,
        &format!("/api/accounts/{account}/usage/calls"),
    )
    .json(&json!({"quantity": 1}))
    .send()
    .await
    .unwrap()
    .status()
}

#[tokio::test]
async fn unnamed_api_calls_on_two_instances_admit_exactly_the_limit() {
    let vars = [("FREE_PLAN_API_LIMIT", "500")];
    let first = Arc::new(TestApp::spawn_with(&vars).await);
    let second = Arc::new(TestApp::spawn_on(first.store.clone(), &vars).await);
    let token = first.free_user("gateway@example.com").await;
    let account = Arc::new(first.own_account_id(&token).await);
    let calls: Vec<_> = (0..800)
        .map(|i| {
            let app = [first.clone(), second.clone()][i % 2].clone();
            let account = account.clone();
            tokio::spawn(async move { call(&app, &account).await })
        })
        .collect();
    let mut admitted = 0;
    for c in calls {
        match c.await.unwrap() {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(admitted <= 500, "{admitted} admitted past the limit of 500");
    // At shutdown each instance gives its lease back: what it admitted is
    // recorded, what it held comes back to the other.
    first.billing.give_back_leases(true).await;
    second.billing.give_back_leases(true).await;
    let level = |app: Arc<TestApp>| {
        let account = account.clone();
        async move {
            let calls = app.standing(&account, "api_calls").await;
            (
                calls["used"].as_u64().unwrap(),
                calls["held"].as_u64().unwrap(),
            )
        }
    };
    assert_eq!(
        level(first.clone()).await,
        (admitted, 0),
        "each admitted call recorded once"
    );
    // A refusal is remembered a moment while quota may come back.
    let later = second.clock_now() + kraftd_billing::app::hot_path::REFUSAL_TTL;
    second.clock.set(later);
    while call(&second, &account).await == StatusCode::OK {
        admitted += 1;
    }
    second.billing.give_back_leases(true).await;
    assert_eq!(admitted, 500, "the quota another instance held came back");
    assert_eq!(level(first.clone()).await, (500, 0));
}

//! The health of billing as the on-call engineer reads it
//! (`GET /api/admin/health/billing`, and the reconcile timer's line):
//! webhooks Stripe could not deliver and emails stuck show until they are
//! settled, and only an admin credential may read it.

mod support;

use chrono::Duration;
use kraftd_billing::app::service_keys;
use kraftd_billing::domain::service::Scope;
use serde_json::Value;
use support::{error_of, TestApp};

async fn health(app: &TestApp) -> Value {
    let r = app
        .service(reqwest::Method::GET, "/api/admin/health/billing")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn undelivered(app: &TestApp) -> Vec<Value> {
    app.sim()
        .events()
        .into_iter()
        .filter(|e| e["pending_webhooks"].as_i64() > Some(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_webhooks_and_stuck_emails_show_until_they_are_settled() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let h = health(&app).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["webhooks_failing"]["count"], 0);

    // The endpoint Stripe posts to is down while a customer pays.
    let endpoint = app.url("/api/webhooks/stripe");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!(
        "http://{}/api/webhooks/stripe",
        closed.local_addr().unwrap()
    );
    drop(closed);
    app.sim().set_webhook_url(Some(down));
    app.subscribe_to_pro("paid-while-down@kraftd.io").await;
    app.sim().wait_for_webhooks().await;
    let missed = undelivered(&app);
    assert!(!missed.is_empty());
    // Just made, their delivery may still be in flight: not yet news.
    let h = health(&app).await;
    assert_eq!(h["webhooks_failing"]["count"], 0);
    app.clock.set(app.clock_now() + Duration::minutes(5));
    let h = health(&app).await;
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["webhooks_failing"]["count"], missed.len());

    // Stripe retries once the endpoint is back: nothing is missing any more.
    app.sim().set_webhook_url(Some(endpoint));
    for event in &missed {
        assert_eq!(app.sim().deliver(event).await, 200);
    }
    let h = health(&app).await;
    assert_eq!(h["webhooks_failing"]["count"], 0);
    let account = app.account("paid-while-down@kraftd.io").await;
    assert_eq!(account.subscription.plan_id.as_str(), "pro");

    // Its emails are fresh, then stuck once nobody has sent them for a while.
    assert_eq!(h["emails_stuck"]["count"], 0);
    assert_eq!(h["status"], "ok");
    app.clock.set(app.clock_now() + Duration::minutes(16));
    let h = health(&app).await;
    assert_eq!(h["status"], "degraded");
    let stuck = h["emails_stuck"]["count"].as_u64().unwrap();
    assert!(stuck >= 2, "the verification and the welcome email: {h}");
    app.sweep_outbox().await;
    let h = health(&app).await;
    assert_eq!(h["emails_stuck"]["count"], 0);
    assert_eq!(h["status"], "ok", "{h}");

    // The reconcile timer says the same, in the line the alert rules read.
    let logs = app.timer_logs("ReconcileSubscriptions").await;
    assert_eq!(
        logs[1],
        "billing health: status=ok webhooks_failing=0 subscriptions_stale=0 emails_stuck=0 emails_failed=0 events_undelivered=0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_credential_with_the_admin_scope_reads_billing_health() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let path = "/api/admin/health/billing";
    let owner = app.free_user("owner-not-admin@kraftd.io").await;
    error_of(app.get_as(&owner, path).await, 403, "missing_scope").await;
    let metering = service_keys::issue(
        app.store.as_ref(),
        "metering",
        vec![Scope::UsageWrite, Scope::EntitlementsRead],
        app.clock_now(),
    )
    .await
    .unwrap();
    error_of(
        app.get_as(&metering.secret, path).await,
        403,
        "missing_scope",
    )
    .await;
    let r = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

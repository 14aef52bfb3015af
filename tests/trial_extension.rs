//! An operator extends a trialing account's trial through the overrides
//! route: the trial moves at the Stripe double first, the account takes it
//! up by re-syncing, and the override and its audit entry are written with
//! it. Refused for an account that is not trialing and for anyone without
//! the admin scope.

mod support;

use chrono::{DateTime, Duration, Utc};
use kraftd_billing::domain::account::{AccountId, Membership, Role};
use kraftd_billing::domain::subscription::SubscriptionStatus;
use kraftd_billing::stripe_sim::SimSubscription;
use reqwest::Method;
use serde_json::{json, Value};
use support::{error_of, TestApp};

async fn stripe_subscription(app: &TestApp, email: &str) -> SimSubscription {
    let subs = app.stripe_subscriptions(email).await;
    assert_eq!(subs.len(), 1, "{subs:?}");
    subs[0].clone()
}

fn extend(app: &TestApp, account: &str, body: Value) -> reqwest::RequestBuilder {
    app.service(
        Method::POST,
        &format!("/api/admin/accounts/{account}/overrides"),
    )
    .header("X-Admin-Actor", "support@kraftd.io")
    .json(&body)
}

/// The subscription updates sent to the simulator: idempotency key, form.
fn subscription_updates(app: &TestApp) -> Vec<(String, String)> {
    app.sim()
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/v1/subscriptions/"))
        .map(|r| (r.idempotency_key.unwrap_or_default(), r.body))
        .collect()
}

async fn override_entries(app: &TestApp, account: &str) -> Vec<Value> {
    app.admin_audit(account)
        .await
        .into_iter()
        .filter(|e| e["action"] == "override_set")
        .collect()
}

fn time_of(v: &Value) -> DateTime<Utc> {
    v.as_str().expect("a time").parse().unwrap()
}

#[tokio::test]
async fn a_trial_extended_by_7_days_ends_7_days_later_at_stripe_and_here() {
    let app = TestApp::spawn_with_stripe(&[("PRO_TRIAL_DAYS", "14")]).await;
    let owner = app.checked_out_pro("try@acme.io").await;
    let account = app.own_account_id(&owner).await;
    let before = stripe_subscription(&app, "try@acme.io").await;
    let old_end = before.trial_end.expect("trialing at Stripe");
    let new_end = old_end + Duration::days(7).num_seconds();

    let r = extend(
        &app,
        &account,
        json!({"trial_extension_days": 7, "reason": "procurement needs another week"}),
    )
    .send()
    .await
    .unwrap();
    let status = r.status();
    let set: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{set}");
    assert_eq!(set["trial_extension_days"], 7, "{set}");
    assert!(set.get("value").is_none(), "{set}");
    let override_id = set["id"].as_str().unwrap();

    // At Stripe: still trialing, the trial and its period (so the first
    // paid invoice) end a week later, nothing billed for the change.
    let after = stripe_subscription(&app, "try@acme.io").await;
    assert_eq!(after.status, "trialing");
    assert_eq!(after.trial_end, Some(new_end));
    assert_eq!(after.current_period_end, new_end);
    let updates = subscription_updates(&app);
    assert_eq!(updates.len(), 1, "{updates:?}");
    let (key, body) = &updates[0];
    assert!(key.contains(override_id), "keyed by the override: {key}");
    assert!(body.contains(&format!("trial_end={new_end}")), "{body}");
    assert!(body.contains("proration_behavior=none"), "{body}");
    let updated = app
        .sim()
        .events()
        .into_iter()
        .rev()
        .find(|e| e["type"] == "customer.subscription.updated")
        .expect("customer.subscription.updated");
    assert_eq!(updated["data"]["object"]["trial_end"], new_end);
    assert_eq!(updated["data"]["previous_attributes"]["trial_end"], old_end);

    // Here: what the owner sees.
    let sub = app.get_json(&owner, "/api/billing/subscription").await;
    assert_eq!(sub["status"], "trialing", "{sub}");
    assert_eq!(time_of(&sub["trial_end"]).timestamp(), new_end, "{sub}");
    assert_eq!(
        time_of(&sub["current_period_end"]).timestamp(),
        new_end,
        "{sub}"
    );

    // The override and its audit entry, with who and why.
    let shown = app
        .service(Method::GET, &format!("/api/admin/accounts/{account}"))
        .send()
        .await
        .unwrap();
    let shown: Value = shown.json().await.unwrap();
    let overrides = shown["overrides"].as_array().unwrap();
    assert_eq!(overrides.len(), 1, "{shown}");
    assert_eq!(overrides[0]["id"], override_id);
    assert_eq!(overrides[0]["trial_extension_days"], 7);
    assert_eq!(overrides[0]["actor"]["person"], "support@kraftd.io");
    let entries = override_entries(&app, &account).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["actor"]["type"], "admin");
    assert_eq!(entry["actor"]["service"], "test-harness");
    assert_eq!(entry["actor"]["person"], "support@kraftd.io");
    assert_eq!(entry["reason"], "procurement needs another week");
    assert_eq!(entry["after"]["trial_extension_days"], "7");
    assert_eq!(entry["after"]["override_id"], override_id);
}

#[tokio::test]
async fn an_account_that_is_not_trialing_has_no_trial_to_extend() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    // Pro without a trial: active and paid.
    let paid = app.checked_out_pro("paid@acme.io").await;
    assert_eq!(
        app.account("paid@acme.io").await.subscription.status,
        SubscriptionStatus::Active
    );
    let paid = app.own_account_id(&paid).await;
    let free = app
        .own_account_id(&app.free_user("free@acme.io").await)
        .await;
    for account in [&paid, &free] {
        let r = extend(
            &app,
            account,
            json!({"trial_extension_days": 7, "reason": "goodwill"}),
        )
        .send()
        .await
        .unwrap();
        error_of(r, 409, "not_trialing").await;
        assert!(override_entries(&app, account).await.is_empty());
    }
    assert!(subscription_updates(&app).is_empty());
}

#[tokio::test]
async fn an_extension_needs_1_to_90_days_no_value_and_no_expiry() {
    let app = TestApp::spawn_with_stripe(&[("PRO_TRIAL_DAYS", "14")]).await;
    let owner = app.checked_out_pro("strict@acme.io").await;
    let account = app.own_account_id(&owner).await;
    let later = app.clock_now() + Duration::days(30);
    for body in [
        json!({"trial_extension_days": 7, "reason": "x", "expires_at": later}),
        json!({"trial_extension_days": 7, "value": 7, "reason": "x"}),
        json!({"trial_extension_days": 0, "reason": "x"}),
        json!({"trial_extension_days": 91, "reason": "x"}),
        json!({"trial_extension_days": 7, "limit": "documents", "value": 7, "reason": "x"}),
        json!({"trial_extension_days": 7, "reason": " "}),
    ] {
        let r = extend(&app, &account, body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 422, "{body}");
    }
    assert!(subscription_updates(&app).is_empty());
    assert!(override_entries(&app, &account).await.is_empty());
}

#[tokio::test]
async fn members_and_owners_cannot_extend_a_trial() {
    let app = TestApp::spawn_with_stripe(&[("PRO_TRIAL_DAYS", "14")]).await;
    let owner = app.checked_out_pro("boss@acme.io").await;
    let account = app.own_account_id(&owner).await;
    let member = app.free_user("clerk@acme.io").await;
    let clerk = app.user_by_email("clerk@acme.io").await;
    app.store
        .add_member(
            &Membership {
                account_id: AccountId(uuid::Uuid::parse_str(&account).unwrap()),
                user_id: clerk.id,
                role: Role::Member,
                joined_at: app.clock_now(),
            },
            &[],
        )
        .await
        .unwrap();
    let before = stripe_subscription(&app, "boss@acme.io").await;
    for token in [&owner, &member] {
        let r = app
            .client
            .post(app.url(&format!("/api/admin/accounts/{account}/overrides")))
            .bearer_auth(token)
            .header("X-Account-Id", &account)
            .json(&json!({"trial_extension_days": 7, "reason": "please"}))
            .send()
            .await
            .unwrap();
        error_of(r, 403, "missing_scope").await;
    }
    assert_eq!(stripe_subscription(&app, "boss@acme.io").await, before);
    assert!(subscription_updates(&app).is_empty());
}

/// Stripe's rules for `trial_end` on an update, as the double applies them.
#[tokio::test]
async fn the_simulator_moves_only_a_trialing_trial_and_only_into_the_future() {
    let app = TestApp::spawn_with_stripe(&[("PRO_TRIAL_DAYS", "14")]).await;
    app.checked_out_pro("sim@acme.io").await;
    let trial = stripe_subscription(&app, "sim@acme.io").await;
    let update = |id: &str, trial_end: String| {
        app.client
            .post(format!("{}/v1/subscriptions/{id}", app.sim().base_url()))
            .bearer_auth("sk_test_sim")
            .form(&[
                ("trial_end", trial_end),
                ("proration_behavior", "none".into()),
            ])
            .send()
    };
    let now = app.clock_now().timestamp();
    for refused in [
        now.to_string(),
        "soon".into(),
        (now + 3 * 365 * 86_400).to_string(),
    ] {
        let r = update(&trial.id, refused.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{refused}");
    }
    assert_eq!(stripe_subscription(&app, "sim@acme.io").await, trial);

    // Stripe would start a new trial on an active subscription; the
    // service never asks that, so the double refuses rather than guess.
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.checked_out_pro("active@acme.io").await;
    let active = stripe_subscription(&app, "active@acme.io").await;
    assert_eq!(active.status, "active");
    let r = app
        .client
        .post(format!(
            "{}/v1/subscriptions/{}",
            app.sim().base_url(),
            active.id
        ))
        .bearer_auth("sk_test_sim")
        .form(&[("trial_end", (now + 86_400).to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(stripe_subscription(&app, "active@acme.io").await, active);
}

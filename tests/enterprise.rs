//! The Enterprise sales flow and Pro's trial, through the HTTP API, the
//! admin route and signed webhooks, against the Stripe double on loopback.

mod support;

use chrono::Duration;
use kraftd_billing::domain::account::{Membership, Role};
use kraftd_billing::domain::offer::OfferStatus;
use kraftd_billing::domain::plan::{BillingInterval, PlanId};
use kraftd_billing::domain::service::Scope;
use kraftd_billing::domain::subscription::SubscriptionStatus;
use kraftd_billing::domain::user::Email;
use kraftd_billing::stripe_sim::SimSubscription;
use serde_json::{json, Value};
use support::{error_of, TestApp, PASSWORD};

/// Registers on Pro and pays the checkout; returns the owner's token.
async fn pro_owner(app: &TestApp, email: &str) -> String {
    pro_owner_billed(app, email, "monthly").await
}

async fn pro_owner_billed(app: &TestApp, email: &str, interval: &str) -> String {
    let r = app
        .post(
            "/api/auth/register/with-plan",
            json!({"email": email, "password": PASSWORD, "name": "Acme", "plan_id": "pro", "billing_interval": interval}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let checkout: Value = r.json().await.unwrap();
    app.sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();
    app.login(email).await
}

/// A monthly Enterprise price, as sales makes one in the dashboard.
fn sales_price(app: &TestApp) -> String {
    app.sim()
        .create_dashboard_price("enterprise", 300_000, "month")
}

async fn offer(app: &TestApp, account: &str, body: Value) -> reqwest::Response {
    app.service(
        reqwest::Method::POST,
        &format!("/api/admin/accounts/{account}/enterprise-offers"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

async fn accept(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_as(token, "/api/billing/enterprise-offer/accept", json!({}))
        .await
}

fn live(subs: &[SimSubscription]) -> Vec<&SimSubscription> {
    subs.iter().filter(|s| s.status != "canceled").collect()
}

/// The form a request sent the simulator, its brackets readable.
fn form(body: &str) -> String {
    body.replace("%5B", "[").replace("%5D", "]")
}

/// `POST /api/billing/upgrade` to Pro, which answers a checkout: the
/// session, and the form the service sent Stripe for it.
async fn upgrade_to_pro(app: &TestApp, token: &str) -> (String, String) {
    let r = app
        .post_as(token, "/api/billing/upgrade", json!({"new_plan_id": "pro"}))
        .await;
    assert_eq!(r.status(), 201);
    let checkout: Value = r.json().await.unwrap();
    let sent = checkout_requests(app).pop().expect("a checkout was made");
    (checkout["session_id"].as_str().unwrap().to_owned(), sent)
}

/// The checkout sessions the service asked the simulator for, in order.
fn checkout_requests(app: &TestApp) -> Vec<String> {
    app.sim()
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/checkout/sessions")
        .map(|r| form(&r.body))
        .collect()
}

#[tokio::test]
async fn an_offer_accepted_by_the_owner_of_a_pro_account_leaves_one_enterprise_subscription() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let owner = pro_owner(&app, "owner@acme.io").await;
    let account = app.own_account_id(&owner).await;
    let pro = live(&app.stripe_subscriptions("owner@acme.io").await)[0].clone();
    let price = app
        .sim()
        .create_dashboard_price("enterprise", 250_000, "month");

    let r = app
        .service(
            reqwest::Method::POST,
            &format!("/api/admin/accounts/{account}/enterprise-offers"),
        )
        .header("X-Admin-Actor", "sales@kraftd.io")
        .json(&json!({"price_id": price, "limits": {"documents": 50000}, "reason": "deal #42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    assert_eq!(made["offer"]["status"], "pending");
    assert_eq!(made["offer"]["created_by"], "test-harness");
    assert_eq!(made["plan_id"], "pro", "an offer alone changes no plan");

    let r = accept(&app, &owner).await;
    assert_eq!(r.status(), 201);
    let checkout: Value = r.json().await.unwrap();
    let sent = checkout_requests(&app);
    let last = sent.last().unwrap();
    assert!(
        last.contains(&format!("line_items[0][price]={price}")),
        "{last}"
    );
    assert!(
        !last.contains("trial_period_days"),
        "a negotiated price has no trial: {last}"
    );
    let enterprise = app
        .sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();

    let subs = app.stripe_subscriptions("owner@acme.io").await;
    let live = live(&subs);
    assert_eq!(live.len(), 1, "exactly one live subscription: {subs:?}");
    assert_eq!(
        (live[0].id.as_str(), live[0].price.as_str()),
        (enterprise.as_str(), price.as_str()),
        "the new one stays, never cancelled"
    );
    let old = subs.iter().find(|s| s.id == pro.id).unwrap();
    assert_eq!(old.status, "canceled", "Pro was replaced");

    let stored = app.account("owner@acme.io").await;
    assert_eq!(stored.subscription.plan_id, PlanId::Enterprise);
    assert_eq!(stored.subscription.status, SubscriptionStatus::Active);
    assert_eq!(
        stored.subscription.stripe_subscription_id.as_deref(),
        Some(enterprise.as_str())
    );
    assert_eq!(stored.subscription.replaced_subscription_id, None);
    let taken = stored.enterprise_offer.expect("the offer is kept");
    assert_eq!(taken.status, OfferStatus::Accepted);
    assert_eq!(taken.subscription_id.as_deref(), Some(enterprise.as_str()));
    assert_eq!(
        taken
            .limits
            .get(&kraftd_billing::domain::usage::Metric::Documents),
        Some(&50_000)
    );
    // Pro's unused month went back to the customer on a final invoice.
    let credited = app.sim().requests().into_iter().any(|r| {
        r.method == "DELETE"
            && r.path == format!("/v1/subscriptions/{}", pro.id)
            && form(&r.body).contains("prorate=true")
    });
    assert!(credited, "Pro was cancelled with its unused time credited");

    error_of(accept(&app, &owner).await, 409, "offer_accepted").await;

    // The negotiated limit is the account's at once, as an override.
    let ent = app.get_json(&owner, "/api/entitlements").await;
    assert_eq!(ent["plan"], "enterprise", "{ent}");
    assert_eq!(ent["limits"]["documents_per_month"], 50_000, "{ent}");

    // Each step is in the audit log, with who or what caused it.
    let entries = app.admin_audit(&account).await;
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {entries:?}"))
    };
    let made = find("enterprise_offer_made");
    assert_eq!(
        (
            &made["actor"]["type"],
            &made["actor"]["service"],
            &made["actor"]["person"]
        ),
        (
            &json!("admin"),
            &json!("test-harness"),
            &json!("sales@kraftd.io")
        )
    );
    assert_eq!(made["reason"], "deal #42");
    assert_eq!(made["after"]["limit.documents"], "50000");
    let accepted = find("enterprise_offer_accepted");
    assert_eq!(accepted["actor"]["type"], "stripe_webhook");
    let changed = entries
        .iter()
        .find(|e| e["action"] == "plan_changed" && e["after"]["plan"] == "enterprise")
        .unwrap_or_else(|| panic!("the move to Enterprise is audited: {entries:?}"));
    assert_eq!(changed["before"]["plan"], "pro");
    assert_eq!(changed["actor"]["type"], "stripe_webhook");
    let limit = find("override_set");
    assert_eq!(
        (
            &limit["after"]["limit"],
            &limit["after"]["value"],
            &limit["reason"]
        ),
        (&json!("documents"), &json!("50000"), &json!("deal #42"))
    );
    assert_eq!(limit["actor"]["service"], "test-harness");

    // The contract ends at Stripe: the negotiated limit goes with it, audited.
    app.sim()
        .set_subscription_status(&enterprise, "canceled")
        .await
        .unwrap();
    let ent = app.get_json(&owner, "/api/entitlements").await;
    assert_eq!(ent["plan"], "free", "{ent}");
    assert_ne!(ent["limits"]["documents_per_month"], 50_000, "{ent}");
    assert!(app.account("owner@acme.io").await.overrides.is_empty());
    let log = app.admin_audit(&account).await;
    let removed = log
        .iter()
        .find(|e| e["action"] == "override_removed")
        .unwrap_or_else(|| panic!("the lapse is audited: {log:?}"));
    assert_eq!(removed["before"]["limit"], "documents");
    assert_eq!(removed["actor"]["type"], "stripe_webhook");
}

#[tokio::test]
async fn an_offer_by_amount_makes_its_enterprise_price_once_and_sells_it() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let owner = app.free_user("cfo@globex.io").await;
    let account = app.own_account_id(&owner).await;
    let prices_before = app.sim().count("price");

    let r = offer(
        &app,
        &account,
        json!({"amount": 1_200_000, "currency": "usd", "interval": "annual", "reason": "annual deal"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    let offer_id = made["offer"]["id"].as_str().unwrap().to_owned();
    let price = made["offer"]["price_id"].as_str().unwrap().to_owned();
    assert_eq!(made["offer"]["amount"], 1_200_000);
    assert_eq!(made["offer"]["currency"], "usd");
    assert_eq!(made["offer"]["interval"], "annual");
    assert_eq!(app.sim().count("price"), prices_before + 1);

    let made_price = app
        .sim()
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "POST" && r.path == "/v1/prices" && form(&r.body).contains("offer_id")
        })
        .expect("the price was made");
    assert_eq!(
        made_price.idempotency_key.as_deref(),
        Some(format!("kraftd:offer:{offer_id}:price").as_str()),
        "keyed by the offer, so a retry makes no second price"
    );
    let body = form(&made_price.body);
    for part in [
        "unit_amount=1200000",
        "currency=usd",
        "recurring[interval]=year",
        "metadata[plan_id]=enterprise",
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }

    let checkout: Value = accept(&app, &owner).await.json().await.unwrap();
    app.sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();
    let stored = app.account("cfo@globex.io").await;
    assert_eq!(
        (
            stored.subscription.plan_id,
            stored.subscription.billing_interval
        ),
        (PlanId::Enterprise, BillingInterval::Annual)
    );
    let subs = app.stripe_subscriptions("cfo@globex.io").await;
    assert_eq!(live(&subs).len(), 1);
    assert_eq!(live(&subs)[0].price, price);
}

#[tokio::test]
async fn attach_moves_the_pro_subscription_itself_to_the_offers_price_with_a_proration() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let owner = pro_owner(&app, "ops@initech.io").await;
    let account = app.own_account_id(&owner).await;
    let pro = live(&app.stripe_subscriptions("ops@initech.io").await)[0].clone();
    app.clock.set(app.clock_now() + Duration::days(10));
    let price = sales_price(&app);

    let r = offer(
        &app,
        &account,
        json!({"price_id": price, "reason": "upgrade in place", "attach": true}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    assert_eq!(made["offer"]["status"], "accepted");
    assert_eq!(made["plan_id"], "enterprise");

    let subs = app.stripe_subscriptions("ops@initech.io").await;
    assert_eq!(
        subs.len(),
        1,
        "no checkout, no second subscription: {subs:?}"
    );
    assert_eq!(
        (subs[0].id.as_str(), subs[0].price.as_str()),
        (pro.id.as_str(), price.as_str())
    );
    assert_eq!(subs[0].status, "active");
    // 20 of 30 days left of (3,000.00 - 99.00), for the next invoice.
    assert!(
        subs[0].pending_proration > 0,
        "the rest of the period is prorated: {subs:?}"
    );
    let change = app
        .sim()
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == format!("/v1/subscriptions/{}", pro.id))
        .expect("the subscription was changed");
    assert!(form(&change.body).contains("proration_behavior=create_prorations"));
    assert!(
        checkout_requests(&app).len() == 1,
        "only Pro's own checkout"
    );

    let stored = app.account("ops@initech.io").await;
    assert_eq!(stored.subscription.plan_id, PlanId::Enterprise);
    assert_eq!(
        stored.subscription.stripe_subscription_id.as_deref(),
        Some(pro.id.as_str())
    );
    assert_eq!(
        stored.enterprise_offer.unwrap().status,
        OfferStatus::Accepted
    );
}

#[tokio::test]
async fn attach_drops_a_pending_downgrade_so_the_contract_is_not_undone_at_the_period_end() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let owner = pro_owner_billed(&app, "yearly@tyrell.io", "annual").await;
    let account = app.own_account_id(&owner).await;
    let r = app
        .post_as(
            &owner,
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro", "billing_interval": "monthly"}),
        )
        .await;
    assert_eq!(r.status(), 200, "annual to monthly is scheduled");
    let pro = live(&app.stripe_subscriptions("yearly@tyrell.io").await)[0].clone();
    assert!(app.sim().schedule_of(&pro.id).is_some());

    let price = sales_price(&app);
    let r = offer(
        &app,
        &account,
        json!({"price_id": price, "reason": "r", "attach": true}),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.sim().schedule_of(&pro.id), None);
    let subs = app.stripe_subscriptions("yearly@tyrell.io").await;
    assert_eq!((subs.len(), subs[0].price.as_str()), (1, price.as_str()));
    let stored = app.account("yearly@tyrell.io").await;
    assert_eq!(stored.subscription.plan_id, PlanId::Enterprise);
    assert_eq!(stored.subscription.scheduled_change, None);
}

#[tokio::test]
async fn attach_needs_a_live_subscription_and_a_price_must_sell_enterprise_monthly_or_yearly() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let owner = app.free_user("free@hooli.io").await;
    let account = app.own_account_id(&owner).await;
    let enterprise = sales_price(&app);
    let r = offer(
        &app,
        &account,
        json!({"price_id": enterprise, "reason": "r", "attach": true}),
    )
    .await;
    error_of(r, 409, "no_paid_subscription").await;

    let pro_price = app.sim().create_dashboard_price("pro", 5_000, "month");
    let weekly = app
        .sim()
        .create_dashboard_price("enterprise", 5_000, "week");
    for price in [pro_price, weekly, "price_missing".to_owned()] {
        let r = offer(&app, &account, json!({"price_id": price, "reason": "r"})).await;
        let e = error_of(r, 422, "invalid_field").await;
        assert_eq!(e["field"], "price_id");
    }
    let r = offer(
        &app,
        &account,
        json!({"price_id": enterprise, "amount": 5, "reason": "r"}),
    )
    .await;
    error_of(r, 422, "invalid_field").await;
    assert_eq!(app.account("free@hooli.io").await.enterprise_offer, None);
}

#[tokio::test]
async fn the_admin_offer_route_refuses_members_tokens_and_service_keys_without_admin() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let owner = app.free_user("boss@umbrella.io").await;
    let account = app.own_account_id(&owner).await;
    let price = sales_price(&app);
    let body = json!({"price_id": price, "reason": "r"});
    let path = format!("/api/admin/accounts/{account}/enterprise-offers");

    let r = app.post_as(&owner, &path, body.clone()).await;
    error_of(r, 403, "missing_scope").await;
    let usage_only = kraftd_billing::app::service_keys::issue(
        app.store.as_ref(),
        "document-service",
        vec![Scope::UsageWrite, Scope::EntitlementsRead],
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .secret;
    let r = app.post_as(&usage_only, &path, body.clone()).await;
    error_of(r, 403, "missing_scope").await;
    assert_eq!(app.account("boss@umbrella.io").await.enterprise_offer, None);

    let admin_only = kraftd_billing::app::service_keys::issue(
        app.store.as_ref(),
        "back-office",
        vec![Scope::Admin],
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .secret;
    let r = app.post_as(&admin_only, &path, body).await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn only_the_owner_accepts_and_only_while_the_offer_holds() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let owner = app.free_user("owner@stark.io").await;
    let account = app.own_account_id(&owner).await;
    error_of(accept(&app, &owner).await, 404, "offer_not_found").await;

    let expires = app.clock_now() + Duration::days(3);
    let price = sales_price(&app);
    let r = offer(
        &app,
        &account,
        json!({"price_id": price, "reason": "r", "expires_at": expires.to_rfc3339()}),
    )
    .await;
    assert_eq!(r.status(), 201);

    let stored = app.account("owner@stark.io").await;
    for (email, role) in [
        ("admin@stark.io", Role::Admin),
        ("dev@stark.io", Role::Member),
    ] {
        let token = app.free_user(email).await;
        let user = app
            .store
            .user_by_email(&Email::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap()
            .value;
        app.store
            .add_member(
                &Membership {
                    account_id: stored.id,
                    user_id: user.id,
                    role,
                    joined_at: app.clock_now(),
                },
                &[],
            )
            .await
            .unwrap();
        let r = app
            .client
            .post(app.url("/api/billing/enterprise-offer/accept"))
            .bearer_auth(&token)
            .header("x-account-id", &account)
            .send()
            .await
            .unwrap();
        error_of(r, 403, "forbidden").await;
    }
    assert!(checkout_requests(&app).is_empty(), "no checkout for them");

    app.clock.set(app.clock_now() + Duration::days(3));
    let owner = app.login("owner@stark.io").await;
    error_of(accept(&app, &owner).await, 409, "offer_expired").await;
    assert!(checkout_requests(&app).is_empty());
}

#[tokio::test]
async fn pro_gives_a_14_day_trial_without_a_card_once_per_account() {
    let app = TestApp::spawn_with_stripe(&[("PRO_TRIAL_DAYS", "14")]).await;
    let start = app.clock_now();
    let r = app
        .post(
            "/api/auth/register/with-plan",
            json!({"email": "try@wayne.io", "password": PASSWORD, "name": "Wayne", "plan_id": "pro"}),
        )
        .await;
    let checkout: Value = r.json().await.unwrap();
    let first = checkout_requests(&app).pop().unwrap();
    for part in [
        "subscription_data[trial_period_days]=14",
        "payment_method_collection=if_required",
        "subscription_data[trial_settings][end_behavior][missing_payment_method]=cancel",
    ] {
        assert!(first.contains(part), "{part} in {first}");
    }
    let trial = app
        .sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();
    let stored = app.account("try@wayne.io").await;
    assert_eq!(stored.subscription.status, SubscriptionStatus::Trialing);
    assert_eq!(stored.subscription.plan_id, PlanId::Pro);
    let trial_end = stored.subscription.trial_end.expect("a trial end");
    assert_eq!(
        trial_end.timestamp(),
        (start + Duration::days(14)).timestamp()
    );
    assert!(stored.subscription.trial_used_at.is_some());
    let token = app.login("try@wayne.io").await;
    let sub = app.get_json(&token, "/api/billing/subscription").await;
    assert_eq!(
        (sub["status"].as_str(), sub["effective_plan"].as_str()),
        (Some("trialing"), Some("pro"))
    );

    // No card by the trial's end: the subscription ends, back to Free.
    app.clock.set(app.clock_now() + Duration::days(14));
    app.sim().end_period(&trial).await.unwrap();
    let stored = app.account("try@wayne.io").await;
    assert_eq!(stored.subscription.plan_id, PlanId::Free);
    let token = app.login("try@wayne.io").await;

    let (again, second) = upgrade_to_pro(&app, &token).await;
    assert!(
        !second.contains("trial_period_days"),
        "no second trial: {second}"
    );
    assert!(!second.contains("if_required"), "{second}");
    app.sim().complete_checkout(&again).await.unwrap();
    let stored = app.account("try@wayne.io").await;
    assert_eq!(
        (stored.subscription.plan_id, stored.subscription.status),
        (PlanId::Pro, SubscriptionStatus::Active)
    );
    assert_eq!(stored.subscription.trial_end, None);
}

#[tokio::test]
async fn a_free_account_upgrading_to_pro_gets_the_trial() {
    let app = TestApp::spawn_with_stripe(&[("PRO_TRIAL_DAYS", "14")]).await;
    let token = app.free_user("up@oscorp.io").await;
    let (session, sent) = upgrade_to_pro(&app, &token).await;
    assert!(
        sent.contains("subscription_data[trial_period_days]=14"),
        "{sent}"
    );
    app.sim().complete_checkout(&session).await.unwrap();
    let subs = app.stripe_subscriptions("up@oscorp.io").await;
    assert_eq!(subs[0].status, "trialing");
    assert_eq!(
        subs[0].trial_end,
        Some((app.clock_now() + Duration::days(14)).timestamp())
    );
    let stored = app.account("up@oscorp.io").await;
    assert_eq!(
        (stored.subscription.plan_id, stored.subscription.status),
        (PlanId::Pro, SubscriptionStatus::Trialing)
    );
}

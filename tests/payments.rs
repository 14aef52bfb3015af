//! Money moving through the HTTP API and signed webhooks, against the
//! Stripe double (built from Stripe's fixtures) on loopback.

mod support;

use std::sync::Arc;

use chrono::{Duration, Months, Utc};
use kraftd_billing::domain::plan::{BillingInterval, PlanId};
use kraftd_billing::domain::records::EmailKind;
use kraftd_billing::domain::subscription::SubscriptionStatus;
use serde_json::{json, Value};
use support::{error_of, TestApp, PASSWORD};

async fn register_paid(app: &TestApp, email: &str, interval: &str) -> Value {
    let r = app
        .post(
            "/api/auth/register/with-plan",
            json!({"email": email, "password": PASSWORD, "name": "Paying", "plan_id": "pro", "billing_interval": interval}),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

fn stripe_client(app: &TestApp) -> stripe::Client {
    stripe::ClientBuilder::new("sk_test_outside")
        .url(app.sim().base_url())
        .build()
        .unwrap()
}

/// A subscription checkout made straight in Stripe (by sales, or anyone
/// with the account's key), not through this service.
async fn checkout_outside_the_app(
    client: &stripe::Client,
    customer: &str,
    price: String,
) -> stripe_shared::CheckoutSession {
    let mut item = stripe_checkout::checkout_session::CreateCheckoutSessionLineItems::new();
    item.price = Some(price);
    item.quantity = Some(1);
    stripe_checkout::checkout_session::CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Subscription)
        .customer(customer)
        .line_items(vec![item])
        .success_url("https://kraftd.io/done")
        .send(client)
        .await
        .unwrap()
}

/// A free user opens a checkout (which creates their customer), then sales
/// sells them `price` instead, in a checkout made outside the app, and it
/// is paid.
async fn sold_by_sales(app: &TestApp, token: &str, email: &str, price: String) {
    app.post_as(token, "/api/billing/upgrade", json!({"new_plan_id": "pro"}))
        .await;
    let customer = app
        .account(email)
        .await
        .subscription
        .stripe_customer_id
        .unwrap();
    let session = checkout_outside_the_app(&stripe_client(app), customer.as_str(), price).await;
    app.sim()
        .complete_checkout(session.id.as_str())
        .await
        .unwrap();
}

/// Registers on Pro, billed monthly, and pays; returns the access token.
async fn pro_user(app: &TestApp, email: &str) -> String {
    pro_user_billed(app, email, "monthly").await
}

/// Registers on Pro with the interval given and pays; returns the access token.
async fn pro_user_billed(app: &TestApp, email: &str, interval: &str) -> String {
    let checkout = register_paid(app, email, interval).await;
    app.sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();
    app.login(email).await
}

#[tokio::test]
async fn paid_registration_is_incomplete_until_checkout_completes() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let checkout = register_paid(&app, "pay@example.com", "monthly").await;
    assert!(checkout["checkout_url"]
        .as_str()
        .unwrap()
        .starts_with(&app.sim().base_url()));
    assert!(checkout["message"].is_string());

    // Signed in before paying: incomplete, Free limits, checkout resumable.
    let token = app.login("pay@example.com").await;
    let sub: Value = app
        .get_as(&token, "/api/billing/subscription")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (sub["status"].as_str(), sub["effective_plan"].as_str()),
        (Some("incomplete"), Some("free"))
    );
    assert_eq!(sub["pending_checkout_session_id"], checkout["session_id"]);
    let user = app.account("pay@example.com").await;
    let customer = user
        .subscription
        .stripe_customer_id
        .clone()
        .expect("customer stored before checkout");

    let session = checkout["session_id"].as_str().unwrap();
    let sub_id = app.sim().complete_checkout(session).await.unwrap();
    let user = app.account("pay@example.com").await;
    assert_eq!(user.subscription.status, SubscriptionStatus::Active);
    assert_eq!(user.subscription.plan_id, PlanId::Pro);
    assert_eq!(
        user.subscription.stripe_subscription_id.as_deref(),
        Some(sub_id.as_str())
    );
    assert_eq!(
        user.subscription.stripe_customer_id.as_deref(),
        Some(customer.as_str())
    );
    // The renewal date is Stripe's period end, not "now + 30 days".
    let expected = app.clock_now().checked_add_months(Months::new(1)).unwrap();
    let renewal = user.subscription.renewal_date.expect("renewal date");
    assert!(
        (renewal - expected).num_seconds().abs() <= 1,
        "{renewal} vs {expected}"
    );
    assert_eq!(
        app.sim().count("subscription"),
        1,
        "checkout made the subscription; nobody made another"
    );
    assert_eq!(app.sim().count("customer"), 1);

    let invoices: Value = app
        .get_as(&token, "/api/billing/invoices")
        .await
        .json()
        .await
        .unwrap();
    let first = &invoices["invoices"][0];
    assert_eq!(
        (first["amount"].as_i64(), first["amount_decimal"].as_str()),
        (Some(9900), Some("99.00"))
    );
    assert_eq!(first["status"], "paid");
    assert_eq!(first["currency"], "usd");
    let payments = app
        .store
        .payments(user.id, Utc::now() + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].amount.amount, 9900);
    let kinds = app.email_kinds(user.id).await;
    assert!(
        kinds.contains(&EmailKind::SubscriptionConfirmed),
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EmailKind::PaymentReceipt)
            .count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn free_to_pro_to_annual_then_cancel_resume_cancel_and_back_to_free() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = app.free_user("life@example.com").await;
    let r = app
        .post_as(
            &token,
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro", "billing_interval": "monthly"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let checkout: Value = r.json().await.unwrap();
    let sub_id = app
        .sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        app.account("life@example.com").await.subscription.plan_id,
        PlanId::Pro
    );

    // Half-way through the month, monthly → annual: previewed, then billed now.
    app.clock.set(app.clock_now() + Duration::days(15));
    let token = app.login("life@example.com").await;
    let change = json!({"new_plan_id": "pro", "billing_interval": "annual"});
    let preview: Value = app
        .post_as(&token, "/api/billing/preview-change", change.clone())
        .await
        .json()
        .await
        .unwrap();
    let due = preview["amount_due_now"]["amount"].as_i64().unwrap();
    assert!(due > 0 && due < 99_000, "prorated: {preview}");
    let r = app.post_as(&token, "/api/billing/upgrade", change).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["subscription"]["billing_interval"], "annual");
    let user = app.account("life@example.com").await;
    assert_eq!(
        user.subscription.stripe_subscription_id.as_deref(),
        Some(sub_id.as_str()),
        "the same subscription"
    );
    assert_eq!(user.subscription.billing_interval, BillingInterval::Annual);
    assert_eq!(app.sim().count("subscription"), 1);

    // Cancel: still Pro until the period ends, and it says when.
    let r: Value = app
        .post_as(&token, "/api/billing/cancel-subscription", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["subscription"]["cancel_at_period_end"], true);
    assert_eq!(r["subscription"]["effective_plan"], "pro");
    assert!(r["subscription"]["current_period_end"].is_string());
    let r: Value = app
        .post_as(&token, "/api/billing/resume", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["subscription"]["cancel_at_period_end"], false);
    app.post_as(&token, "/api/billing/cancel-subscription", json!({}))
        .await;

    app.sim().end_period(&sub_id).await.unwrap();
    let user = app.account("life@example.com").await;
    assert_eq!(user.subscription.plan_id, PlanId::Free);
    assert_eq!(user.subscription.stripe_subscription_id, None);
    let ent: Value = app
        .get_as(&token, "/api/entitlements")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ent["plan"], "free");
    let kinds = app.email_kinds(user.id).await;
    for k in [
        EmailKind::SubscriptionConfirmed,
        EmailKind::PlanChanged,
        EmailKind::CancellationScheduled,
        EmailKind::SubscriptionEnded,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing from {kinds:?}");
    }
}

#[tokio::test]
async fn a_price_made_in_the_dashboard_sells_enterprise() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = app.free_user("corp@example.com").await;
    let price = app
        .sim()
        .create_dashboard_price("enterprise", 250_000, "month");
    sold_by_sales(&app, &token, "corp@example.com", price).await;
    let ent: Value = app
        .get_as(&token, "/api/entitlements")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ent["plan"], "enterprise");
    assert_eq!(ent["limits"]["documents_per_month"], Value::Null);
}

#[tokio::test]
async fn an_invoice_in_yen_is_recorded_in_yen_and_its_receipt_says_so() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = app.free_user("tokyo@example.com").await;
    // Yen: a currency whose amounts Stripe counts in whole units.
    let price = app
        .sim()
        .create_dashboard_price_in("pro", 15_000, "month", "jpy");
    sold_by_sales(&app, &token, "tokyo@example.com", price).await;
    let account = app.account("tokyo@example.com").await;

    let ent = app.get_json(&token, "/api/entitlements").await;
    assert_eq!(ent["plan"], "pro");
    let invoices = app.get_json(&token, "/api/billing/invoices").await;
    let first = &invoices["invoices"][0];
    assert_eq!(
        (
            first["amount"].as_i64(),
            first["amount_decimal"].as_str(),
            first["currency"].as_str(),
            first["status"].as_str()
        ),
        (Some(15_000), Some("15000"), Some("jpy"), Some("paid")),
        "{invoices}"
    );
    let payments = app
        .store
        .payments(account.id, Utc::now() + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].amount.amount, 15_000);
    assert_eq!(payments[0].amount.currency.code(), "jpy");

    let log = app.sweep_outbox().await;
    assert!(log.ends_with("retrying 0, failed 0"), "{log}");
    let mail = support::files(&app.mail_dir());
    let receipt = mail
        .iter()
        .map(|m| support::quoted_printable(m))
        .find(|m| m.contains("We received your payment"))
        .expect("a receipt");
    assert!(
        receipt.contains("We received your payment of ¥15,000 for Professional."),
        "{receipt}"
    );
}

#[tokio::test]
async fn a_preview_that_bills_nothing_says_so_in_the_subscriptions_currency() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = app.free_user("osaka@example.com").await;
    let price = app
        .sim()
        .create_dashboard_price_in("pro", 150_000, "year", "jpy");
    sold_by_sales(&app, &token, "osaka@example.com", price).await;
    // Annual to monthly waits for the period's end: nothing due now, in yen.
    let preview: Value = app
        .post_as(
            &token,
            "/api/billing/preview-change",
            json!({"new_plan_id": "pro", "billing_interval": "monthly"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        preview["amount_due_now"],
        json!({"amount": 0, "currency": "jpy"}),
        "{preview}"
    );
}

#[tokio::test]
async fn a_failed_payment_keeps_pro_for_the_grace_period_then_free_and_recovery_restores_it() {
    let app = TestApp::spawn_with_stripe(&[("PAST_DUE_GRACE_DAYS", "7")]).await;
    pro_user(&app, "dunning@example.com").await;
    let user = app.account("dunning@example.com").await;
    let (sub_id, customer) = (
        user.subscription.stripe_subscription_id.clone().unwrap(),
        user.subscription.stripe_customer_id.clone().unwrap(),
    );
    app.sim().set_card_declines(&customer, true);
    app.clock.set(user.subscription.current_period_end.unwrap());
    app.sim().end_period(&sub_id).await.unwrap();
    let token = app.login("dunning@example.com").await;
    let sub: Value = app
        .get_as(&token, "/api/billing/subscription")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (sub["status"].as_str(), sub["effective_plan"].as_str()),
        (Some("past_due"), Some("pro"))
    );
    assert_eq!(sub["last_payment_status"], "failed");
    let user = app.account("dunning@example.com").await;
    let kinds = app.email_kinds(user.id).await;
    assert!(kinds.contains(&EmailKind::PaymentFailed));

    app.clock.set(app.clock_now() + Duration::days(7));
    let token = app.login("dunning@example.com").await;
    let ent: Value = app
        .get_as(&token, "/api/entitlements")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ent["plan"], "free", "grace is over");

    app.sim().set_card_declines(&customer, false);
    app.sim().retry_payment(&sub_id).await.unwrap();
    let sub: Value = app
        .get_as(&token, "/api/billing/subscription")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (sub["status"].as_str(), sub["effective_plan"].as_str()),
        (Some("active"), Some("pro"))
    );

    app.sim()
        .set_subscription_status(&sub_id, "unpaid")
        .await
        .unwrap();
    let ent: Value = app
        .get_as(&token, "/api/entitlements")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ent["plan"], "free", "unpaid grants nothing");
}

/// Runs one scripted lifecycle with webhooks held, delivers them with
/// `order`, and returns the end state as the user sees it.
async fn lifecycle_delivered(order: fn(Vec<Value>) -> Vec<Value>) -> Value {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.sim().hold_webhooks(true);
    let checkout = register_paid(&app, "order@example.com", "monthly").await;
    let sub_id = app
        .sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();
    app.sim().end_period(&sub_id).await.unwrap();
    app.sim().set_card_declines(
        &app.account("order@example.com")
            .await
            .subscription
            .stripe_customer_id
            .unwrap(),
        true,
    );
    app.sim().end_period(&sub_id).await.unwrap();
    let events = app.sim().held_events();
    assert!(events.len() >= 10, "a full lifecycle: {}", events.len());
    app.sim().clear_held();
    for event in order(events) {
        let status = app.sim().deliver(&event).await;
        assert_eq!(status, 200, "{event}");
    }
    let token = app.login("order@example.com").await;
    let mut sub: Value = app
        .get_as(&token, "/api/billing/subscription")
        .await
        .json()
        .await
        .unwrap();
    let invoices: Value = app
        .get_as(&token, "/api/billing/invoices")
        .await
        .json()
        .await
        .unwrap();
    sub["invoice_count"] = json!(invoices["invoices"].as_array().unwrap().len());
    sub["grace_until"] = json!(sub["grace_until"].is_string());
    sub
}

#[tokio::test]
async fn duplicated_reversed_and_shuffled_events_end_in_the_same_state() {
    let in_order = lifecycle_delivered(|e| e).await;
    assert_eq!(in_order["status"], "past_due");
    let tripled_reversed = lifecycle_delivered(|e| {
        let mut out: Vec<Value> = e
            .into_iter()
            .rev()
            .flat_map(|x| [x.clone(), x.clone(), x])
            .collect();
        out.rotate_left(1);
        out
    })
    .await;
    let shuffled = lifecycle_delivered(|mut e| {
        // A fixed interleaving: odd positions first, then even, then all again.
        let odd: Vec<Value> = e.iter().skip(1).step_by(2).cloned().collect();
        let even: Vec<Value> = e.iter().step_by(2).cloned().collect();
        let again = e.clone();
        e = odd
            .into_iter()
            .chain(even)
            .chain(again.into_iter().rev())
            .collect();
        e
    })
    .await;
    let strip = |mut v: Value| {
        for k in [
            "renewal_date",
            "current_period_end",
            "pending_checkout_session_id",
        ] {
            v[k] = json!(v[k].is_string());
        }
        v
    };
    assert_eq!(strip(tripled_reversed), strip(in_order.clone()));
    assert_eq!(strip(shuffled), strip(in_order));
}

#[tokio::test]
async fn concurrent_upgrades_make_one_customer_one_checkout_and_one_subscription() {
    let app = Arc::new(TestApp::spawn_with_stripe(&[]).await);
    let token = Arc::new(app.free_user("twice@example.com").await);
    let clicks: Vec<_> = (0..6)
        .map(|_| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move {
                let r = app
                    .post_as(
                        &token,
                        "/api/billing/upgrade",
                        json!({"new_plan_id": "pro"}),
                    )
                    .await;
                let status = r.status();
                let body: Value = r.json().await.unwrap();
                assert_eq!(status, 201, "{body}");
                body["session_id"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut sessions = Vec::new();
    for c in clicks {
        sessions.push(c.await.unwrap());
    }
    sessions.dedup();
    assert_eq!(app.sim().count("customer"), 1);
    assert_eq!(app.sim().count("checkout.session"), 1, "{sessions:?}");
    app.sim().complete_checkout(&sessions[0]).await.unwrap();

    let changes: Vec<_> = (0..6)
        .map(|_| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move {
                app.post_as(
                    &token,
                    "/api/billing/upgrade",
                    json!({"new_plan_id": "pro", "billing_interval": "annual"}),
                )
                .await
                .status()
                .as_u16()
            })
        })
        .collect();
    for c in changes {
        let status = c.await.unwrap();
        // The loser of the race finds the subscription on the plan already.
        assert!(status == 200 || status == 409, "{status}");
    }
    assert_eq!(app.sim().count("subscription"), 1);
    let updates = app
        .sim()
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/v1/subscriptions/"))
        .map(|r| r.idempotency_key)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        updates.len(),
        1,
        "one price change, however many clicks: {updates:?}"
    );
}

#[tokio::test]
async fn concurrent_paid_registrations_make_one_customer() {
    let app = Arc::new(TestApp::spawn_with_stripe(&[]).await);
    let tries: Vec<_> = (0..5)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                app.post(
                    "/api/auth/register/with-plan",
                    json!({"email": "race@example.com", "password": PASSWORD, "name": "R", "plan_id": "pro"}),
                )
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
    assert_eq!(codes, [201, 409, 409, 409, 409]);
    assert_eq!(app.sim().count("customer"), 1);
}

#[tokio::test]
async fn forged_stale_and_malformed_webhooks_are_400_and_change_nothing() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = pro_user(&app, "safe@example.com").await;
    let before = app.account("safe@example.com").await;
    let sub_id = before.subscription.stripe_subscription_id.clone().unwrap();
    let event = json!({
        "id": "evt_forged", "object": "event", "type": "customer.subscription.deleted",
        "created": Utc::now().timestamp(), "data": {"object": {"id": sub_id, "object": "subscription"}}
    })
    .to_string();
    let now = app.clock_now().timestamp();
    let send = |sig: Option<String>, body: String| {
        let mut r = app
            .client
            .post(app.url("/api/webhooks/stripe"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = sig {
            r = r.header("stripe-signature", s);
        }
        r.send()
    };
    let forged = stripe_webhook::Webhook::generate_test_header(&event, "whsec_attacker", Some(now));
    error_of(
        send(Some(forged), event.clone()).await.unwrap(),
        400,
        "invalid_webhook",
    )
    .await;
    error_of(
        send(None, event.clone()).await.unwrap(),
        400,
        "invalid_webhook",
    )
    .await;
    let stale = app.sim().signature(&event, now - 301);
    error_of(
        send(Some(stale), event.clone()).await.unwrap(),
        400,
        "invalid_webhook",
    )
    .await;
    let garbage = "{not json";
    error_of(
        send(Some(app.sim().signature(garbage, now)), garbage.into())
            .await
            .unwrap(),
        400,
        "invalid_webhook",
    )
    .await;
    let tampered = event.replace("evt_forged", "evt_other");
    error_of(
        send(Some(app.sim().signature(&event, now)), tampered)
            .await
            .unwrap(),
        400,
        "invalid_webhook",
    )
    .await;
    for id in ["evt_forged", "evt_other"] {
        assert!(
            !app.store.event_seen(id).await.unwrap(),
            "{id} was recorded"
        );
    }
    assert_eq!(app.account("safe@example.com").await, before);
    let ent: Value = app
        .get_as(&token, "/api/entitlements")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ent["plan"], "pro");
}

/// `stripe listen` forwards every event type: a verified event the service
/// does not act on is acknowledged whatever its object looks like, and
/// recorded, so its retry is a duplicate.
#[tokio::test]
async fn verified_events_of_ignored_types_are_200_whatever_their_shape() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let now = app.clock_now().timestamp();
    let events = [
        // Stripe's balance.available: its object has no id.
        json!({"id": "evt_balance", "object": "event", "type": "balance.available",
               "created": now, "data": {"object": {"object": "balance", "available": [{"amount": 1200, "currency": "usd"}]}}}),
        json!({"id": "evt_payout", "object": "event", "type": "payout.paid",
               "created": now, "data": {"object": {"id": "po_1", "object": "payout", "customer": {"unexpected": true}}}}),
        json!({"id": "evt_bare", "object": "event", "type": "account.updated", "created": now}),
        // A handled type whose object has no id: nothing to re-read.
        json!({"id": "evt_odd", "object": "event", "type": "invoice.paid",
               "created": now, "data": {"object": {"object": "invoice"}}}),
    ];
    for event in events {
        let body = event.to_string();
        let id = event["id"].as_str().unwrap();
        for _ in 0..2 {
            let answer = app
                .client
                .post(app.url("/api/webhooks/stripe"))
                .header("content-type", "application/json")
                .header("stripe-signature", app.sim().signature(&body, now))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(
                answer.status(),
                200,
                "{id}: {}",
                answer.text().await.unwrap()
            );
        }
        assert!(app.store.event_seen(id).await.unwrap(), "{id} is recorded");
    }
}

/// Stripe applies a retried POST once only when it carries the key of the
/// first try: every POST the service sends has one.
#[tokio::test]
async fn every_post_to_stripe_carries_an_idempotency_key() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = pro_user(&app, "keys@example.com").await;
    let change = json!({"new_plan_id": "pro", "billing_interval": "annual"});
    for _ in 0..2 {
        let preview = app
            .post_as(&token, "/api/billing/preview-change", change.clone())
            .await;
        assert_eq!(preview.status(), 200);
        let portal = app.get_as(&token, "/api/billing/customer-portal").await;
        assert_eq!(portal.status(), 200);
    }
    let posts: Vec<_> = app
        .sim()
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    for path in ["/v1/invoices/create_preview", "/v1/billing_portal/sessions"] {
        let keys: Vec<_> = posts
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.idempotency_key.clone())
            .collect();
        assert_eq!(keys.len(), 2, "{path}: {keys:?}");
        assert!(keys.iter().all(Option::is_some), "{path}: {keys:?}");
        assert_ne!(keys[0], keys[1], "{path}: one key per attempt");
    }
    let unkeyed: Vec<_> = posts
        .iter()
        .filter(|r| r.idempotency_key.is_none())
        .map(|r| &r.path)
        .collect();
    assert!(unkeyed.is_empty(), "POSTs without a key: {unkeyed:?}");
}

/// A failure on our side or Stripe's is told in the client's terms: no
/// provider or store text, and the request id under which the log has it.
#[tokio::test]
async fn server_errors_name_the_request_id_and_leak_no_internal_text() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.sim().fail_next("POST", "/v1/customers", 500, 50);
    let token = app.free_user("down@example.com").await;
    let r = app
        .post_as(
            &token,
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro", "billing_interval": "monthly"}),
        )
        .await;
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!request_id.is_empty());
    let body = error_of(r, 503, "payments_unavailable").await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("(request id {request_id})")),
        "{message}"
    );
    for internal in ["HTTP", "500", "customer", "Stripe", "stripe"] {
        assert!(!message.contains(internal), "{internal:?} in {message:?}");
    }

    // Every answer carries an id, and a client cannot choose ours.
    let r = app
        .client
        .get(app.url("/api/plans"))
        .header("x-request-id", "mine")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "mine");
    assert_ne!(id, request_id);
}

/// A change bills what its preview showed: the preview names the moment it
/// priced, and the change made with it within 10 minutes prorates from that
/// moment, however long the user took to confirm.
#[tokio::test]
async fn a_change_bills_exactly_what_its_preview_showed() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    pro_user(&app, "quote@example.com").await;
    app.clock.set(app.clock_now() + Duration::days(10));
    // Tokens last an hour: sign in again ten days on.
    let token2 = app.login("quote@example.com").await;
    let change = json!({"new_plan_id": "pro", "billing_interval": "annual"});
    let preview: Value = app
        .post_as(&token2, "/api/billing/preview-change", change.clone())
        .await
        .json()
        .await
        .unwrap();
    let shown = preview["amount_due_now"]["amount"].as_i64().unwrap();
    let priced_at = preview["proration_date"].as_str().unwrap().to_owned();
    assert!(shown > 0, "{preview}");

    // Nine minutes later the remaining time is worth less, yet the change
    // with the preview's date bills what was shown.
    app.clock.set(app.clock_now() + Duration::minutes(9));
    let stale = json!({"new_plan_id": "pro", "billing_interval": "annual",
                       "proration_date": (app.clock_now() - Duration::minutes(11)).to_rfc3339()});
    let e = error_of(
        app.post_as(&token2, "/api/billing/upgrade", stale).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(e["field"], "proration_date");
    let confirmed = json!({"new_plan_id": "pro", "billing_interval": "annual",
                           "proration_date": priced_at});
    let r = app
        .post_as(&token2, "/api/billing/upgrade", confirmed)
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let invoices: Value = app
        .get_as(&token2, "/api/billing/invoices")
        .await
        .json()
        .await
        .unwrap();
    let latest = &invoices["invoices"][0];
    assert_eq!(latest["amount"].as_i64(), Some(shown), "{invoices}");
}

#[tokio::test]
async fn stripe_failures_mid_flow_are_retried_once_or_reported_never_duplicated() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.sim().fail_next("POST", "/v1/customers", 500, 2);
    app.sim().fail_next("POST", "/v1/checkout/sessions", 503, 1);
    let checkout = register_paid(&app, "flaky@example.com", "monthly").await;
    assert!(checkout["session_id"].is_string());
    assert_eq!(app.sim().count("customer"), 1);
    assert_eq!(app.sim().count("checkout.session"), 1);

    // A timeout: the first attempt is applied late; the retry with the same key is not applied again.
    let token = app.free_user("slow@example.com").await;
    app.sim().delay_next(
        "POST",
        "/v1/customers",
        std::time::Duration::from_millis(2500),
        1,
    );
    let r = app
        .post_as(
            &token,
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.sim().count("customer"), 2, "one per user");

    // Stripe down for good: a clear 503, and the user can resume later.
    let token = app.free_user("down@example.com").await;
    // Four failures: every attempt of one call (the adapter tries 4 times).
    app.sim().fail_next("POST", "/v1/checkout/sessions", 500, 4);
    let e = error_of(
        app.post_as(
            &token,
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro"}),
        )
        .await,
        503,
        "payments_unavailable",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("unavailable"));
    let r = app
        .post_as(
            &token,
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.sim().count("customer"), 3);
}

#[tokio::test]
async fn the_portal_needs_a_billing_account_and_invoices_are_the_callers_own() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let free = app.free_user("nofee@example.com").await;
    error_of(
        app.get_as(&free, "/api/billing/customer-portal").await,
        409,
        "no_billing_account",
    )
    .await;
    for path in ["/api/billing/cancel-subscription", "/api/billing/resume"] {
        error_of(
            app.post_as(&free, path, json!({})).await,
            409,
            "no_paid_subscription",
        )
        .await;
    }
    let pro = pro_user(&app, "portal@example.com").await;
    let r: Value = app
        .get_as(&pro, "/api/billing/customer-portal")
        .await
        .json()
        .await
        .unwrap();
    assert!(r["url"].as_str().unwrap().starts_with("http"));

    let invoices: Value = app
        .get_as(&free, "/api/billing/invoices")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(invoices["invoices"], json!([]));
    let page: Value = app
        .get_as(&pro, "/api/billing/invoices?limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["invoices"].as_array().unwrap().len(), 1);
    error_of(
        app.get_as(&pro, "/api/billing/invoices?limit=0").await,
        422,
        "invalid_field",
    )
    .await;
    error_of(
        app.get_as(
            &pro,
            "/api/billing/invoices?starting_after=in_somebody_else",
        )
        .await,
        404,
        "invoice_not_found",
    )
    .await;
}

#[tokio::test]
async fn downgrades_and_sales_plans_are_refused_clearly() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = pro_user(&app, "down@example.com").await;
    for (body, field) in [
        (json!({"new_plan_id": "free"}), "new_plan_id"),
        (json!({"new_plan_id": "enterprise"}), "new_plan_id"),
        (json!({"new_plan_id": "gold"}), "new_plan_id"),
        (
            json!({"new_plan_id": "pro", "billing_interval": "weekly"}),
            "billing_interval",
        ),
    ] {
        let e = error_of(
            app.post_as(&token, "/api/billing/upgrade", body.clone())
                .await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(e["field"], field, "{body}");
    }
    // Well formed, but the subscription is there already: the account's
    // state refuses it, not the request.
    error_of(
        app.post_as(
            &token,
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro", "billing_interval": "monthly"}),
        )
        .await,
        409,
        "already_on_plan",
    )
    .await;
}

#[tokio::test]
async fn a_lost_webhook_is_repaired_by_reconciliation() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let checkout = register_paid(&app, "lost@example.com", "monthly").await;
    // Every event of the checkout is lost.
    app.sim().hold_webhooks(true);
    let sub_id = app
        .sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();
    app.sim().clear_held();
    let run = || async {
        let r = app
            .client
            .post(app.url("/ReconcileSubscriptions"))
            .json(&json!({"Data": {}, "Metadata": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["Logs"][0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Within the hour nothing looks stale yet.
    assert!(run().await.contains("checked 0"));
    assert_eq!(
        app.account("lost@example.com").await.subscription.status,
        SubscriptionStatus::Incomplete
    );
    app.clock.set(app.clock_now() + Duration::minutes(61));
    let log = run().await;
    assert!(log.contains("repaired 1"), "{log}");
    let user = app.account("lost@example.com").await;
    assert_eq!(
        (user.subscription.status, user.subscription.plan_id),
        (SubscriptionStatus::Active, PlanId::Pro)
    );

    // The cancellation at period end is lost too: the period passes, reconciliation ends it.
    let token = app.login("lost@example.com").await;
    app.sim().hold_webhooks(false);
    let r = app
        .post_as(&token, "/api/billing/cancel-subscription", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    app.sim().wait_for_webhooks().await;
    app.sim().hold_webhooks(true);
    app.clock.set(user.subscription.current_period_end.unwrap());
    app.sim().end_period(&sub_id).await.unwrap();
    app.sim().clear_held();
    app.clock.set(app.clock_now() + Duration::minutes(61));
    let log = run().await;
    assert!(log.contains("repaired 1"), "{log}");
    assert_eq!(
        app.account("lost@example.com").await.subscription.plan_id,
        PlanId::Free
    );
}

#[tokio::test]
async fn syncing_the_catalog_twice_changes_nothing_the_second_time() {
    use kraftd_billing::domain::secret::Secret;
    use kraftd_billing::payments::stripe::{StripePayments, StripeSettings};
    let app = TestApp::spawn_with_stripe(&[]).await;
    let settings = StripeSettings {
        secret_key: Secret::from("sk_test_ops"),
        api_base: Some(app.sim().base_url()),
        checkout_success_url: "https://kraftd.io/ok".into(),
        checkout_cancel_url: "https://kraftd.io/no".into(),
        timeout: std::time::Duration::from_secs(2),
        backoff: std::time::Duration::from_millis(10),
    };
    let catalog = kraftd_billing::domain::plan::Catalog::standard();
    let payments = StripePayments::new(settings, catalog).unwrap();
    // The app synced once at start; a second run finds it all in place.
    let (products, prices) = (app.sim().count("product"), app.sim().count("price"));
    assert_eq!(payments.sync_catalog().await.unwrap(), Vec::<String>::new());
    assert_eq!(
        (app.sim().count("product"), app.sim().count("price")),
        (products, prices)
    );
    assert_eq!((products, prices), (1, 2), "Pro, monthly and annual");
}

#[tokio::test]
async fn a_second_click_pays_the_same_checkout_and_another_plan_closes_the_first() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = app.free_user("clicks@example.com").await;
    let click = |interval: &'static str| {
        let (app, token) = (&app, token.clone());
        async move {
            let r = app
                .post_as(
                    &token,
                    "/api/billing/upgrade",
                    json!({"new_plan_id": "pro", "billing_interval": interval}),
                )
                .await;
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()["session_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = click("monthly").await;
    assert_eq!(
        click("monthly").await,
        first,
        "the same session, not a second one"
    );
    assert_eq!(app.sim().count("checkout.session"), 1);
    let annual = click("annual").await;
    assert_ne!(annual, first);
    // The first can no longer be paid, so two subscriptions cannot happen.
    assert!(app.sim().complete_checkout(&first).await.is_err());
    app.sim().complete_checkout(&annual).await.unwrap();
    assert_eq!(app.sim().count("subscription"), 1);
    assert_eq!(
        app.account("clicks@example.com")
            .await
            .subscription
            .billing_interval,
        BillingInterval::Annual
    );
}

/// What a customer with two live subscriptions ends with, as Stripe and
/// the account have it.
#[derive(Debug, PartialEq)]
struct Settled {
    plan: PlanId,
    subscription: Option<String>,
    owed: Option<String>,
    /// Each subscription of the customer and its Stripe status, oldest first.
    statuses: Vec<(String, stripe_shared::SubscriptionStatus)>,
    /// The customer's credit balance (negative is credit).
    balance: i64,
    /// `DELETE /v1/subscriptions/{id}` calls: path, whether they asked for
    /// a prorated credit invoiced now, and whether they carried a key.
    deletes: Vec<(String, bool, bool)>,
}

async fn settled(app: &TestApp, email: &str, subscriptions: &[&str]) -> Settled {
    let account = app.account(email).await;
    let client = stripe_client(app);
    let mut statuses = Vec::new();
    for id in subscriptions {
        let s = stripe_billing::subscription::RetrieveSubscription::new(*id)
            .send(&client)
            .await
            .unwrap();
        statuses.push((id.to_string(), s.status));
    }
    let customer = account.subscription.stripe_customer_id.clone().unwrap();
    let balance = stripe_core::customer::RetrieveCustomer::new(customer.as_str())
        .send(&client)
        .await
        .unwrap();
    let balance = match balance {
        stripe_core::customer::RetrieveCustomerReturned::Customer(c) => c.balance.unwrap_or(0),
        _ => panic!("customer {customer} is gone"),
    };
    let deletes = app
        .sim()
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| {
            let credited = r.body.contains("prorate=true") && r.body.contains("invoice_now=true");
            (r.path, credited, r.idempotency_key.is_some())
        })
        .collect();
    Settled {
        plan: account.subscription.effective_plan(app.clock_now()),
        subscription: account.subscription.stripe_subscription_id,
        owed: account.subscription.replaced_subscription_id,
        statuses,
        balance,
        deletes,
    }
}

/// The unused part of the current period of a subscription at `price`
/// cents, as Stripe credits it at `now`.
fn unused_credit(
    app: &TestApp,
    email_account: &kraftd_billing::domain::account::Account,
    price: i64,
) -> i64 {
    let end = email_account.subscription.current_period_end.unwrap();
    let start = email_account.subscription.start_date.unwrap();
    let remaining = (end - app.clock_now()).num_seconds() as f64;
    let period = (end - start).num_seconds() as f64;
    -((price as f64) * remaining / period).round() as i64
}

/// Sales sells the customer Enterprise at a custom price straight in
/// Stripe, as in the dashboard. Returns the subscription id.
async fn sales_subscribe_to_enterprise(app: &TestApp, customer: &str) -> String {
    let price = app
        .sim()
        .create_dashboard_price("enterprise", 250_000, "month");
    app.sim()
        .create_subscription(customer, &price)
        .await
        .unwrap()
}

/// Every event Stripe sent, delivered again under new ids, as Stripe does
/// when it sends another event about the same objects.
async fn redeliver_all_anew(app: &TestApp) {
    for mut event in app.sim().events() {
        event["id"] = json!(format!("{}_again", event["id"].as_str().unwrap()));
        assert_eq!(app.sim().deliver(&event).await, 200, "{event}");
    }
    app.sim().wait_for_webhooks().await;
}

/// A Pro customer, ten days into their month, whom sales sells Enterprise
/// straight in Stripe; webhooks go to the app in `order`, batch by batch
/// (the cancellations the app makes send more). Returns the Pro and the
/// Enterprise subscription ids.
async fn sales_sell_enterprise_to_pro(
    app: &TestApp,
    email: &str,
    order: fn(Vec<Value>) -> Vec<Value>,
) -> (String, String) {
    pro_user(app, email).await;
    let pro = app.account(email).await.subscription;
    app.clock.set(app.clock_now() + Duration::days(10));
    app.sim().hold_webhooks(true);
    let enterprise =
        sales_subscribe_to_enterprise(app, pro.stripe_customer_id.as_deref().unwrap()).await;
    loop {
        let held = app.sim().held_events();
        if held.is_empty() {
            break;
        }
        app.sim().clear_held();
        for event in order(held) {
            assert_eq!(app.sim().deliver(&event).await, 200, "{event}");
        }
    }
    app.sim().hold_webhooks(false);
    (pro.stripe_subscription_id.unwrap(), enterprise)
}

#[tokio::test]
async fn enterprise_sold_by_sales_to_a_pro_customer_replaces_pro_with_credit() {
    use stripe_shared::SubscriptionStatus::{Active, Canceled};
    let app = TestApp::spawn_with_stripe(&[]).await;
    let email = "upsold@example.com";
    pro_user(&app, email).await;
    let before = app.account(email).await;
    app.clock.set(app.clock_now() + Duration::days(10));
    let credit = unused_credit(&app, &before, 9_900);
    let pro = before.subscription.stripe_subscription_id.clone().unwrap();
    let enterprise = sales_subscribe_to_enterprise(
        &app,
        before.subscription.stripe_customer_id.as_deref().unwrap(),
    )
    .await;
    let expected = Settled {
        plan: PlanId::Enterprise,
        subscription: Some(enterprise.clone()),
        owed: None,
        statuses: vec![(pro.clone(), Canceled), (enterprise.clone(), Active)],
        balance: credit,
        deletes: vec![(format!("/v1/subscriptions/{pro}"), true, true)],
    };
    assert!(credit < -6_000, "two thirds of a month of Pro: {credit}");
    assert_eq!(settled(&app, email, &[&pro, &enterprise]).await, expected);
    let kinds = app.email_kinds(before.id).await;
    assert!(kinds.contains(&EmailKind::PlanChanged), "{kinds:?}");
    assert!(!kinds.contains(&EmailKind::SubscriptionEnded), "{kinds:?}");

    // Stripe telling it all again, and reconciliation, change nothing.
    redeliver_all_anew(&app).await;
    app.clock.set(app.clock_now() + Duration::days(40));
    app.billing.reconcile().await.unwrap();
    assert_eq!(settled(&app, email, &[&pro, &enterprise]).await, expected);
}

#[tokio::test]
async fn a_past_due_plan_replaced_by_enterprise_is_canceled_without_credit() {
    use stripe_shared::SubscriptionStatus::{Active, Canceled};
    let app = TestApp::spawn_with_stripe(&[]).await;
    let email = "overdue@example.com";
    pro_user(&app, email).await;
    let before = app.account(email).await;
    let pro = before.subscription.stripe_subscription_id.clone().unwrap();
    app.clock.set(app.clock_now() + Duration::days(10));
    app.sim()
        .set_subscription_status(&pro, "past_due")
        .await
        .unwrap();
    let enterprise = sales_subscribe_to_enterprise(
        &app,
        before.subscription.stripe_customer_id.as_deref().unwrap(),
    )
    .await;
    // Its open invoice was never collected: crediting the rest of its
    // period would pay the customer for a month they never paid.
    assert_eq!(
        settled(&app, email, &[&pro, &enterprise]).await,
        Settled {
            plan: PlanId::Enterprise,
            subscription: Some(enterprise.clone()),
            owed: None,
            statuses: vec![(pro.clone(), Canceled), (enterprise.clone(), Active)],
            balance: 0,
            deletes: vec![(format!("/v1/subscriptions/{pro}"), false, true)],
        }
    );
}

#[tokio::test]
async fn a_replacement_in_any_order_of_webhooks_ends_the_same() {
    use stripe_shared::SubscriptionStatus::{Active, Canceled};
    let outcome = |order: fn(Vec<Value>) -> Vec<Value>| async move {
        let app = TestApp::spawn_with_stripe(&[]).await;
        let email = "ordered@example.com";
        let (pro, enterprise) = sales_sell_enterprise_to_pro(&app, email, order).await;
        let mut end = settled(&app, email, &[&pro, &enterprise]).await;
        assert_eq!(
            (end.plan, end.subscription.as_deref(), &end.statuses[..]),
            (
                PlanId::Enterprise,
                Some(enterprise.as_str()),
                &[(pro.clone(), Canceled), (enterprise.clone(), Active)][..]
            )
        );
        // Ids differ between runs; what was done to them must not.
        end.subscription = None;
        end.statuses.clear();
        end.deletes = end
            .deletes
            .into_iter()
            .map(|(path, credited, keyed)| (path.replace(&pro, "PRO"), credited, keyed))
            .collect();
        end
    };
    let in_order = outcome(|e| e).await;
    assert_eq!(
        in_order.deletes,
        vec![("/v1/subscriptions/PRO".to_owned(), true, true)]
    );
    let reversed = outcome(|e| e.into_iter().rev().collect()).await;
    let doubled_reversed = outcome(|e| e.iter().rev().chain(e.iter()).cloned().collect()).await;
    assert_eq!(reversed, in_order);
    assert_eq!(doubled_reversed, in_order);
}

#[tokio::test]
async fn a_second_pro_checkout_is_canceled_with_credit_and_the_first_stays() {
    use stripe_shared::SubscriptionStatus::{Active, Canceled};
    let app = TestApp::spawn_with_stripe(&[]).await;
    let email = "double@example.com";
    pro_user(&app, email).await;
    let user = app.account(email).await;
    let first = user.subscription.stripe_subscription_id.clone().unwrap();
    let customer = user.subscription.stripe_customer_id.clone().unwrap();
    // A second checkout made behind the app's back, for the same customer.
    let price = app.sim().create_dashboard_price("pro", 9_900, "month");
    let client = stripe_client(&app);
    let session = checkout_outside_the_app(&client, customer.as_str(), price).await;
    let second = app
        .sim()
        .complete_checkout(session.id.as_str())
        .await
        .unwrap();
    let expected = Settled {
        plan: PlanId::Pro,
        subscription: Some(first.clone()),
        owed: None,
        statuses: vec![(first.clone(), Active), (second.clone(), Canceled)],
        // Canceled the moment it was paid: all of its month comes back.
        balance: -9_900,
        deletes: vec![(format!("/v1/subscriptions/{second}"), true, true)],
    };
    assert_eq!(settled(&app, email, &[&first, &second]).await, expected);
    redeliver_all_anew(&app).await;
    assert_eq!(settled(&app, email, &[&first, &second]).await, expected);
}

#[tokio::test]
async fn a_replacement_whose_cancellation_failed_is_settled_by_the_next_sync() {
    use stripe_shared::SubscriptionStatus::{Active, Canceled};
    let app = TestApp::spawn_with_stripe(&[]).await;
    let email = "owed@example.com";
    pro_user(&app, email).await;
    let before = app.account(email).await;
    let pro = before.subscription.stripe_subscription_id.clone().unwrap();
    app.sim().hold_webhooks(true);
    let enterprise = sales_subscribe_to_enterprise(
        &app,
        before.subscription.stripe_customer_id.as_deref().unwrap(),
    )
    .await;
    let created = app.sim().held_events().into_iter().next().unwrap();
    assert_eq!(created["type"], "customer.subscription.created");
    // Only the first event arrives, and Stripe fails every attempt at
    // canceling Pro after the switch was written.
    app.sim().clear_held();
    app.sim().fail_next("DELETE", "/v1/subscriptions/", 500, 4);
    let status = app.sim().deliver(&created).await;
    assert!(status >= 500, "Stripe is asked to retry: {status}");
    let owed = settled(&app, email, &[&pro, &enterprise]).await;
    assert_eq!(
        (owed.plan, owed.owed.as_deref(), &owed.statuses[..]),
        (
            PlanId::Enterprise,
            Some(pro.as_str()),
            &[(pro.clone(), Active), (enterprise.clone(), Active)][..]
        ),
        "switched, and the cancellation still owed"
    );
    app.sim().hold_webhooks(false);
    assert_eq!(
        app.billing.reconcile().await.unwrap().repaired,
        1,
        "an owed cancellation is due at once"
    );
    let end = settled(&app, email, &[&pro, &enterprise]).await;
    assert_eq!(
        (end.plan, end.owed, end.statuses),
        (
            PlanId::Enterprise,
            None,
            vec![(pro.clone(), Canceled), (enterprise.clone(), Active)]
        )
    );
    assert_eq!(end.balance, -9_900);
}

#[tokio::test]
async fn a_webhook_whose_effect_cannot_be_stored_asks_stripe_to_retry_and_is_not_recorded() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let checkout = register_paid(&app, "retry@example.com", "monthly").await;
    app.sim().hold_webhooks(true);
    app.sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();
    let events = app.sim().held_events();
    app.sim().clear_held();
    let created = events
        .iter()
        .find(|e| e["type"] == "customer.subscription.created")
        .unwrap();
    // Stripe itself is down while the service re-reads the subscription.
    app.sim().fail_next("GET", "/v1/subscriptions/", 500, 4);
    assert_eq!(app.sim().deliver(created).await, 503);
    assert!(!app
        .store
        .event_seen(created["id"].as_str().unwrap())
        .await
        .unwrap());
    assert_eq!(
        app.account("retry@example.com").await.subscription.status,
        SubscriptionStatus::Incomplete
    );
    // Stripe's retry succeeds and is applied in full.
    assert_eq!(app.sim().deliver(created).await, 200);
    assert!(app
        .store
        .event_seen(created["id"].as_str().unwrap())
        .await
        .unwrap());
    assert_eq!(
        app.account("retry@example.com").await.subscription.status,
        SubscriptionStatus::Active
    );
}

#[tokio::test]
async fn events_about_other_customers_and_products_are_acknowledged_and_ignored() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let client = stripe_client(&app);
    let stranger = stripe_core::customer::CreateCustomer::new()
        .email("stranger@elsewhere.io")
        .send(&client)
        .await
        .unwrap();
    let price = app.sim().create_dashboard_price("", 500, "month");
    let session = checkout_outside_the_app(&client, stranger.id.as_str(), price).await;
    app.sim().hold_webhooks(true);
    app.sim()
        .complete_checkout(session.id.as_str())
        .await
        .unwrap();
    for event in app.sim().held_events() {
        assert_eq!(app.sim().deliver(&event).await, 200, "{}", event["type"]);
    }
}

#[tokio::test]
async fn reconciliation_repairs_an_upgrade_whose_webhooks_were_lost_and_forgets_abandoned_checkouts(
) {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = app.free_user("upg@example.com").await;
    let r: Value = app
        .post_as(
            &token,
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro"}),
        )
        .await
        .json()
        .await
        .unwrap();
    app.sim().hold_webhooks(true);
    app.sim()
        .complete_checkout(r["session_id"].as_str().unwrap())
        .await
        .unwrap();
    app.sim().clear_held();
    app.free_user("abandon@example.com").await;
    let abandoner = app.login("abandon@example.com").await;
    let r: Value = app
        .post_as(
            &abandoner,
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let abandoned = r["session_id"].as_str().unwrap().to_owned();
    let client = stripe_client(&app);
    stripe_checkout::checkout_session::ExpireCheckoutSession::new(abandoned.as_str())
        .send(&client)
        .await
        .unwrap();

    app.clock.set(app.clock_now() + Duration::minutes(61));
    let run = || async {
        let r = app
            .client
            .post(app.url("/ReconcileSubscriptions"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["Logs"][0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let log = run().await;
    assert!(log.contains("checked 2, repaired 2"), "{log}");
    assert_eq!(
        app.account("upg@example.com").await.subscription.plan_id,
        PlanId::Pro
    );
    let gone = app.account("abandon@example.com").await;
    assert_eq!(
        (
            gone.subscription.checkout_session_id,
            gone.subscription.plan_id
        ),
        (None, PlanId::Free)
    );
    // Nothing is left to look at, and nothing is looked at twice in a row.
    assert!(run().await.contains("checked 0"));
}

#[tokio::test]
async fn annual_to_monthly_waits_for_the_end_of_the_paid_year() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = pro_user_billed(&app, "yearly@example.com", "annual").await;
    let to_monthly = json!({"new_plan_id": "pro", "billing_interval": "monthly"});
    let preview: Value = app
        .post_as(&token, "/api/billing/preview-change", to_monthly.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        preview["amount_due_now"]["amount"], 0,
        "nothing is billed now"
    );
    let r = app
        .post_as(&token, "/api/billing/upgrade", to_monthly)
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let sub = &body["subscription"];
    assert_eq!(sub["billing_interval"], "annual", "the paid year stands");
    assert_eq!(sub["scheduled_change"]["billing_interval"], "monthly");
    assert_eq!(
        sub["scheduled_change"]["effective_at"],
        sub["current_period_end"]
    );

    let user = app.account("yearly@example.com").await;
    let sub_id = user.subscription.stripe_subscription_id.clone().unwrap();
    app.clock.set(user.subscription.current_period_end.unwrap());
    app.sim().end_period(&sub_id).await.unwrap();
    let user = app.account("yearly@example.com").await;
    assert_eq!(user.subscription.billing_interval, BillingInterval::Monthly);
    assert_eq!(user.subscription.scheduled_change, None);
    assert_eq!(
        user.subscription.stripe_subscription_id.as_deref(),
        Some(sub_id.as_str())
    );
    let token = app.login("yearly@example.com").await;
    let invoices: Value = app
        .get_as(&token, "/api/billing/invoices")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        invoices["invoices"][0]["amount"], 9900,
        "the renewal is monthly"
    );
}

#[tokio::test]
async fn a_pending_downgrade_can_be_taken_back_and_gives_way_to_a_cancellation() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let token = pro_user_billed(&app, "undo@example.com", "annual").await;
    let to = |interval: &str| json!({"new_plan_id": "pro", "billing_interval": interval});
    app.post_as(&token, "/api/billing/upgrade", to("monthly"))
        .await;
    let sub_id = app
        .account("undo@example.com")
        .await
        .subscription
        .stripe_subscription_id
        .unwrap();
    assert!(app.sim().schedule_of(&sub_id).is_some());
    // Back to annual: the downgrade is dropped, nothing billed.
    let r: Value = app
        .post_as(&token, "/api/billing/upgrade", to("annual"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["subscription"]["scheduled_change"], Value::Null);
    assert!(app.sim().schedule_of(&sub_id).is_none());

    // Schedule it again, then cancel: the cancellation wins.
    app.post_as(&token, "/api/billing/upgrade", to("monthly"))
        .await;
    let r: Value = app
        .post_as(&token, "/api/billing/cancel-subscription", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["subscription"]["cancel_at_period_end"], true);
    assert_eq!(r["subscription"]["scheduled_change"], Value::Null);
    let user = app.account("undo@example.com").await;
    app.clock.set(user.subscription.current_period_end.unwrap());
    app.sim().end_period(&sub_id).await.unwrap();
    assert_eq!(
        app.account("undo@example.com").await.subscription.plan_id,
        PlanId::Free
    );
}

#[tokio::test]
async fn a_trial_ending_notice_records_one_email() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    pro_user(&app, "trial@example.com").await;
    let user = app.account("trial@example.com").await;
    let event = json!({
        "id": "evt_trial_1", "object": "event", "type": "customer.subscription.trial_will_end",
        "created": app.clock_now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "data": {"object": {
            "id": user.subscription.stripe_subscription_id.clone().unwrap(),
            "object": "subscription",
            "customer": user.subscription.stripe_customer_id.clone().unwrap()
        }}
    });
    assert_eq!(app.sim().deliver(&event).await, 200);
    assert_eq!(
        app.sim().deliver(&event).await,
        200,
        "a duplicate is acknowledged"
    );
    let trial: Vec<_> = app.emails(user.id, Some(EmailKind::TrialEnding)).await;
    assert_eq!(trial.len(), 1);
    assert_eq!(trial[0].data["plan"], "Professional");
}

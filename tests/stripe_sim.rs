//! The Stripe simulator judged by the real async-stripe client: every call
//! below goes through the typed requests the adapter uses, and every webhook
//! through stripe_webhook's verifier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use chrono::{DateTime, Duration, TimeZone, Utc};
use kraftd_billing::domain::clock::{Clock, ManualClock};
use kraftd_billing::stripe_sim::{SimOptions, StripeSim};
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::{
    CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
    CreatePreviewInvoiceSubscriptionDetailsItems,
    CreatePreviewInvoiceSubscriptionDetailsProrationBehavior, ListInvoice, RetrieveInvoice,
};
use stripe_billing::subscription::{
    CancelSubscription, RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionProrationBehavior,
};
use stripe_billing::subscription_schedule::{
    CreateSubscriptionSchedule, ReleaseSubscriptionSchedule, RetrieveSubscriptionSchedule,
    UpdateSubscriptionSchedule, UpdateSubscriptionSchedulePhases,
    UpdateSubscriptionSchedulePhasesDuration, UpdateSubscriptionSchedulePhasesDurationInterval,
    UpdateSubscriptionSchedulePhasesEndDate, UpdateSubscriptionSchedulePhasesItems,
    UpdateSubscriptionSchedulePhasesStartDate,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
    RetrieveCheckoutSession,
};
use stripe_core::customer::{CreateCustomer, RetrieveCustomer};
use stripe_product::price::{
    CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, ListPrice,
};
use stripe_product::product::CreateProduct;
use stripe_shared::{
    CheckoutSessionMode, CheckoutSessionPaymentStatus, CheckoutSessionStatus, InvoiceStatus,
    SubscriptionSchedule, SubscriptionScheduleEndBehavior, SubscriptionScheduleStatus,
    SubscriptionStatus,
};
use stripe_webhook::{EventObject, Webhook};

const SECRET: &str = "whsec_test_sim";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

struct Harness {
    sim: StripeSim,
    clock: Arc<ManualClock>,
    client: Client,
}

async fn harness() -> Harness {
    // These tests build Stripe clients directly, as the adapter does.
    kraftd_billing::tls::install_crypto_provider();
    let clock = Arc::new(ManualClock::new(t0()));
    let sim = StripeSim::start(SimOptions {
        webhook_secret: SECRET.into(),
        clock: clock.clone(),
    })
    .await
    .unwrap();
    let client = ClientBuilder::new("sk_test_sim")
        .url(sim.base_url())
        .build()
        .unwrap();
    Harness { sim, clock, client }
}

/// A customer, a plan product and two monthly prices (basic $10, pro $30).
struct Catalog {
    customer: String,
    basic: String,
    pro: String,
}

async fn catalog(h: &Harness) -> Catalog {
    let customer = CreateCustomer::new()
        .email("ada@example.com")
        .name("Ada")
        .metadata(HashMap::from([("user_id".to_owned(), "u1".to_owned())]))
        .send(&h.client)
        .await
        .unwrap();
    let product = CreateProduct::new("KRAFTD Pro")
        .metadata(HashMap::from([("plan_id".to_owned(), "pro".to_owned())]))
        .send(&h.client)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (key, amount) in [("basic_monthly", 1000), ("pro_monthly", 3000)] {
        let price = CreatePrice::new(stripe_types::Currency::USD)
            .product(product.id.as_str())
            .unit_amount(amount)
            .recurring(CreatePriceRecurring::new(
                CreatePriceRecurringInterval::Month,
            ))
            .lookup_key(key)
            .send(&h.client)
            .await
            .unwrap();
        assert_eq!(price.lookup_key.as_deref(), Some(key));
        assert_eq!(price.unit_amount, Some(amount));
        ids.push(price.id.to_string());
    }
    Catalog {
        customer: customer.id.to_string(),
        basic: ids[0].clone(),
        pro: ids[1].clone(),
    }
}

async fn checkout(h: &Harness, c: &Catalog, price: &str) -> String {
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price = Some(price.to_owned());
    item.quantity = Some(1);
    let mut data = CreateCheckoutSessionSubscriptionData::new();
    data.metadata = Some(HashMap::from([("user_id".to_owned(), "u1".to_owned())]));
    let session = CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Subscription)
        .customer(c.customer.as_str())
        .client_reference_id("u1")
        .line_items(vec![item])
        .subscription_data(data)
        .allow_promotion_codes(true)
        .success_url("http://127.0.0.1:1/done")
        .cancel_url("http://127.0.0.1:1/cancel")
        .send(&h.client)
        .await
        .unwrap();
    session.id.to_string()
}

#[tokio::test]
async fn catalog_customers_and_price_lookup() {
    let h = harness().await;
    let c = catalog(&h).await;
    let customer = RetrieveCustomer::new(c.customer.as_str())
        .send(&h.client)
        .await
        .unwrap();
    let stripe_core::customer::RetrieveCustomerReturned::Customer(customer) = customer else {
        panic!("customer was deleted");
    };
    assert_eq!(customer.email.as_deref(), Some("ada@example.com"));
    assert_eq!(customer.metadata.unwrap()["user_id"], "u1");

    let list = ListPrice::new()
        .lookup_keys(vec!["pro_monthly".to_owned()])
        .active(true)
        .expand(vec!["data.product".to_owned()])
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(list.data.len(), 1);
    let price = &list.data[0];
    assert_eq!(price.id.as_str(), c.pro);
    let product = price.product.as_object().expect("product expanded");
    assert_eq!(product.metadata["plan_id"], "pro");

    let dashboard = h.sim.create_dashboard_price("team", 9900, "year");
    let all = ListPrice::new().send(&h.client).await.unwrap();
    assert_eq!(all.data.len(), 3);
    assert_eq!(all.data[0].id.as_str(), dashboard, "newest first");
    assert!(all.data[0].lookup_key.is_none());
}

#[tokio::test]
async fn checkout_subscription_change_cancel_and_invoices() {
    let h = harness().await;
    let c = catalog(&h).await;
    let session_id = checkout(&h, &c, &c.basic).await;
    let session = RetrieveCheckoutSession::new(session_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(session.status, Some(CheckoutSessionStatus::Open));
    assert_eq!(
        session.url.as_deref(),
        Some(format!("{}/sim/checkout/{session_id}", h.sim.base_url()).as_str())
    );
    assert_eq!(session.amount_total, Some(1000));

    let sub_id = h.sim.complete_checkout(&session_id).await.unwrap();
    let session = RetrieveCheckoutSession::new(session_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(session.status, Some(CheckoutSessionStatus::Complete));
    assert_eq!(session.payment_status, CheckoutSessionPaymentStatus::Paid);
    assert_eq!(session.subscription.unwrap().id().as_str(), sub_id);

    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.customer.id().as_str(), c.customer);
    assert_eq!(sub.metadata["user_id"], "u1");
    assert_eq!(sub.items.data.len(), 1);
    let item = &sub.items.data[0];
    assert_eq!(item.price.id.as_str(), c.basic);
    assert_eq!(item.current_period_start, t0().timestamp());
    let feb15 = Utc.with_ymd_and_hms(2026, 2, 15, 12, 0, 0).unwrap();
    assert_eq!(item.current_period_end, feb15.timestamp());

    // Half-way through (by seconds), upgrade with an immediate invoice.
    let half = t0() + Duration::seconds((feb15 - t0()).num_seconds() / 2);
    h.clock.set(half);
    let expected = ((3000.0 - 1000.0) * 0.5_f64).round() as i64;

    let mut p_item = CreatePreviewInvoiceSubscriptionDetailsItems::new();
    p_item.id = Some(item.id.to_string());
    p_item.price = Some(c.pro.clone());
    let mut details = CreatePreviewInvoiceSubscriptionDetails::new();
    details.items = Some(vec![p_item]);
    details.proration_behavior =
        Some(CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::AlwaysInvoice);
    let preview = CreatePreviewInvoice::new()
        .customer(c.customer.as_str())
        .subscription(sub_id.as_str())
        .subscription_details(details)
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(preview.amount_due, expected);
    assert_eq!(preview.lines.data[0].amount, expected);

    let mut u_item = UpdateSubscriptionItems::new();
    u_item.id = Some(item.id.to_string());
    u_item.price = Some(c.pro.clone());
    let updated = UpdateSubscription::new(sub_id.as_str())
        .items(vec![u_item])
        .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(updated.id.as_str(), sub_id);
    assert_eq!(updated.items.data.len(), 1);
    assert_eq!(updated.items.data[0].id, item.id);
    assert_eq!(updated.items.data[0].price.id.as_str(), c.pro);
    assert_eq!(h.sim.count("subscription"), 1);

    let invoices = ListInvoice::new()
        .customer(c.customer.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(invoices.data.len(), 2);
    let proration = &invoices.data[0];
    assert_eq!(proration.amount_due, expected, "newest first");
    assert_eq!(proration.amount_paid, expected);
    assert_eq!(proration.status, Some(InvoiceStatus::Paid));
    let first = RetrieveInvoice::new(invoices.data[1].id.clone().unwrap().as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(first.amount_paid, 1000);
    let parent_sub = first
        .parent
        .unwrap()
        .subscription_details
        .unwrap()
        .subscription;
    assert_eq!(parent_sub.id().as_str(), sub_id);
    assert!(first
        .hosted_invoice_url
        .unwrap()
        .starts_with(&h.sim.base_url()));
    assert_eq!(first.period_start, t0().timestamp());

    let canceling = UpdateSubscription::new(sub_id.as_str())
        .cancel_at_period_end(true)
        .send(&h.client)
        .await
        .unwrap();
    assert!(canceling.cancel_at_period_end);
    assert_eq!(canceling.cancel_at, Some(feb15.timestamp()));
    let resumed = UpdateSubscription::new(sub_id.as_str())
        .cancel_at_period_end(false)
        .send(&h.client)
        .await
        .unwrap();
    assert!(!resumed.cancel_at_period_end);
    assert_eq!(resumed.status, SubscriptionStatus::Active);

    let portal = CreateBillingPortalSession::new()
        .customer(c.customer.as_str())
        .return_url("http://127.0.0.1:1/account")
        .send(&h.client)
        .await
        .unwrap();
    assert!(portal
        .url
        .starts_with(&format!("{}/sim/portal/", h.sim.base_url())));
    assert_eq!(
        portal.return_url.as_deref(),
        Some("http://127.0.0.1:1/account")
    );

    let canceled = CancelSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(canceled.status, SubscriptionStatus::Canceled);
    assert_eq!(canceled.ended_at, Some(half.timestamp()));
}

#[tokio::test]
async fn renewal_decline_retry_and_period_end_cancel() {
    let h = harness().await;
    let c = catalog(&h).await;
    let session_id = checkout(&h, &c, &c.basic).await;
    let sub_id = h.sim.complete_checkout(&session_id).await.unwrap();
    let feb15 = Utc.with_ymd_and_hms(2026, 2, 15, 12, 0, 0).unwrap();
    let mar15 = Utc.with_ymd_and_hms(2026, 3, 15, 12, 0, 0).unwrap();

    h.clock.set(feb15);
    h.sim.set_card_declines(&c.customer, true);
    h.sim.end_period(&sub_id).await.unwrap();
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::PastDue);
    assert_eq!(sub.items.data[0].current_period_end, mar15.timestamp());
    let latest = RetrieveInvoice::new(sub.latest_invoice.unwrap().id().clone().unwrap().as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(latest.status, Some(InvoiceStatus::Open));
    assert_eq!(latest.amount_due, 1000);
    assert_eq!(latest.amount_paid, 0);

    h.sim.set_card_declines(&c.customer, false);
    h.sim.retry_payment(&sub_id).await.unwrap();
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);
    let latest = RetrieveInvoice::new(sub.latest_invoice.unwrap().id().clone().unwrap().as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(latest.status, Some(InvoiceStatus::Paid));

    h.sim
        .set_subscription_status(&sub_id, "unpaid")
        .await
        .unwrap();
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Unpaid);
    h.sim
        .set_subscription_status(&sub_id, "active")
        .await
        .unwrap();

    UpdateSubscription::new(sub_id.as_str())
        .cancel_at_period_end(true)
        .send(&h.client)
        .await
        .unwrap();
    h.clock.set(mar15);
    h.sim.end_period(&sub_id).await.unwrap();
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Canceled);
    assert_eq!(sub.ended_at, Some(mar15.timestamp()));
    assert_eq!(h.sim.count("invoice"), 2);
}

#[tokio::test]
async fn idempotency_faults_and_auth() {
    let h = harness().await;
    let send = |key: &str, email: &str| {
        CreateCustomer::new()
            .email(email)
            .customize()
            .request_strategy(RequestStrategy::Idempotent(
                IdempotencyKey::new(key).unwrap(),
            ))
            .send(&h.client)
    };
    let a = send("k1", "a@example.com").await.unwrap();
    let b = send("k1", "a@example.com").await.unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(h.sim.count("customer"), 1);
    match send("k1", "other@example.com").await {
        Err(StripeError::Stripe(e, 400)) => {
            assert_eq!(e.type_, stripe::ApiErrorsType::IdempotencyError)
        }
        other => panic!("expected an idempotency error, got {other:?}"),
    }
    let recorded = h.sim.requests();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0].path, "/v1/customers");
    assert_eq!(recorded[0].idempotency_key.as_deref(), Some("k1"));
    assert!(
        recorded[0].body.starts_with("email=a"),
        "{}",
        recorded[0].body
    );

    h.sim.fail_next("POST", "/v1/customers", 500, 1);
    match CreateCustomer::new().send(&h.client).await {
        Err(StripeError::Stripe(_, 500)) => {}
        other => panic!("expected a 500, got {other:?}"),
    }
    assert_eq!(
        h.sim.count("customer"),
        1,
        "a failed request is not applied"
    );
    CreateCustomer::new().send(&h.client).await.unwrap();
    assert_eq!(h.sim.count("customer"), 2);

    match RetrieveSubscription::new("sub_missing")
        .send(&h.client)
        .await
    {
        Err(StripeError::Stripe(e, 404)) => {
            assert_eq!(e.code, Some(stripe::ApiErrorsCode::ResourceMissing))
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    let bad = ClientBuilder::new("nope")
        .url(h.sim.base_url())
        .build()
        .unwrap();
    match CreateCustomer::new().send(&bad).await {
        Err(StripeError::Stripe(_, 401)) => {}
        other => panic!("expected a 401, got {other:?}"),
    }
}

type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A webhook endpoint on loopback that keeps each payload and its signature.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let store = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                let sig = headers
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                store
                    .lock()
                    .unwrap()
                    .push((String::from_utf8_lossy(&body).into_owned(), sig));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test]
async fn webhooks_are_signed_ordered_and_decode() {
    let h = harness().await;
    let (url, got) = receiver().await;
    h.sim.set_webhook_url(Some(url));
    let c = catalog(&h).await;
    let session_id = checkout(&h, &c, &c.basic).await;
    let sub_id = h.sim.complete_checkout(&session_id).await.unwrap();

    let now = h.clock.now().timestamp();
    let received = got.lock().unwrap().clone();
    let types: Vec<String> = received
        .iter()
        .map(|(payload, sig)| {
            let event = Webhook::construct_event_with_timestamp(payload, sig, SECRET, now)
                .unwrap_or_else(|e| panic!("{e:?} for {payload}"));
            assert_eq!(
                event.api_version.as_ref().map(|v| v.as_str()),
                Some(stripe_shared::version::VERSION.as_str())
            );
            match &event.data.object {
                EventObject::CustomerSubscriptionCreated(s) => assert_eq!(s.id.as_str(), sub_id),
                EventObject::InvoicePaid(i) => assert_eq!(i.amount_paid, 1000),
                EventObject::CheckoutSessionCompleted(s) => {
                    assert_eq!(s.subscription.as_ref().unwrap().id().as_str(), sub_id)
                }
                EventObject::InvoiceFinalized(_) | EventObject::InvoicePaymentSucceeded(_) => {}
                other => panic!("unexpected event object {other:?}"),
            }
            event.type_.as_str().to_owned()
        })
        .collect();
    assert_eq!(
        types,
        [
            "customer.subscription.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded",
            "checkout.session.completed"
        ]
    );

    // API changes deliver in the background; wait, then check the update.
    got.lock().unwrap().clear();
    UpdateSubscription::new(sub_id.as_str())
        .cancel_at_period_end(true)
        .send(&h.client)
        .await
        .unwrap();
    h.sim.wait_for_webhooks().await;
    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let event =
        Webhook::construct_event_with_timestamp(&received[0].0, &received[0].1, SECRET, now)
            .unwrap();
    let EventObject::CustomerSubscriptionUpdated(sub) = event.data.object else {
        panic!("expected customer.subscription.updated");
    };
    assert!(sub.cancel_at_period_end);
    let prev: serde_json::Value = serde_json::from_str(&received[0].0).unwrap();
    assert_eq!(
        prev["data"]["previous_attributes"]["cancel_at_period_end"],
        false
    );

    // Held events can be replayed, duplicated and re-signed at a later now.
    got.lock().unwrap().clear();
    h.sim.hold_webhooks(true);
    h.sim.end_period(&sub_id).await.unwrap();
    let held = h.sim.held_events();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["type"], "customer.subscription.deleted");
    assert!(got.lock().unwrap().is_empty());
    h.clock.set(t0() + Duration::hours(1));
    assert_eq!(h.sim.deliver(&held[0]).await, 200);
    assert_eq!(h.sim.deliver(&held[0]).await, 200);
    h.sim.clear_held();
    assert!(h.sim.held_events().is_empty());
    let later = h.clock.now().timestamp();
    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    for (payload, sig) in &received {
        assert!(sig.starts_with(&format!("t={later},")));
        assert_eq!(*sig, h.sim.signature(payload, later));
        let event = Webhook::construct_event_with_timestamp(payload, sig, SECRET, later).unwrap();
        assert!(matches!(
            event.data.object,
            EventObject::CustomerSubscriptionDeleted(_)
        ));
    }
}

#[tokio::test]
async fn checkout_page_pays_and_redirects() {
    let h = harness().await;
    let c = catalog(&h).await;
    let session_id = checkout(&h, &c, &c.pro).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{}/sim/checkout/{session_id}", h.sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("KRAFTD Pro"));
    assert!(page.contains("$30.00"));
    assert!(page.contains("http://127.0.0.1:1/cancel"));
    let paid = http
        .post(format!(
            "{}/sim/checkout/{session_id}/pay",
            h.sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);
    assert_eq!(paid.headers()["location"], "http://127.0.0.1:1/done");
    assert_eq!(h.sim.count("subscription"), 1);
}

#[tokio::test]
async fn every_lifecycle_event_decodes() {
    let h = harness().await;
    let (url, got) = receiver().await;
    h.sim.set_webhook_url(Some(url));
    let c = catalog(&h).await;
    let session_id = checkout(&h, &c, &c.basic).await;
    let sub_id = h.sim.complete_checkout(&session_id).await.unwrap();
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    let mut item = UpdateSubscriptionItems::new();
    item.id = Some(sub.items.data[0].id.to_string());
    item.price = Some(c.pro.clone());
    UpdateSubscription::new(sub_id.as_str())
        .items(vec![item])
        .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
        .send(&h.client)
        .await
        .unwrap();
    h.sim.wait_for_webhooks().await;
    h.sim.set_card_declines(&c.customer, true);
    h.sim.end_period(&sub_id).await.unwrap();
    h.sim.set_card_declines(&c.customer, false);
    h.sim.retry_payment(&sub_id).await.unwrap();
    h.sim.end_period(&sub_id).await.unwrap();
    h.sim
        .set_subscription_status(&sub_id, "paused")
        .await
        .unwrap();
    h.sim
        .set_subscription_status(&sub_id, "active")
        .await
        .unwrap();
    CancelSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    h.sim.wait_for_webhooks().await;

    let now = h.clock.now().timestamp();
    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), h.sim.events().len());
    let mut types = Vec::new();
    for (payload, sig) in &received {
        let event = Webhook::construct_event_with_timestamp(payload, sig, SECRET, now)
            .unwrap_or_else(|e| panic!("{e:?} for {payload}"));
        assert!(
            !matches!(event.data.object, EventObject::Unknown(_)),
            "{} did not decode to its typed object",
            event.type_.as_str()
        );
        types.push(event.type_.as_str().to_owned());
    }
    for expected in [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.deleted",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "checkout.session.completed",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "no {expected} in {types:?}"
        );
    }
}

#[tokio::test]
async fn a_request_whose_client_hung_up_applies_nothing_and_its_retry_applies_once() {
    let h = harness().await;
    h.sim.delay_next(
        "POST",
        "/v1/customers",
        std::time::Duration::from_millis(300),
        1,
    );
    let impatient = ClientBuilder::new("sk_test_sim")
        .url(h.sim.base_url())
        .timeout(std::time::Duration::from_millis(20))
        .build()
        .unwrap();
    let key = IdempotencyKey::new("slow-1").unwrap();
    let first = CreateCustomer::new()
        .customize()
        .request_strategy(RequestStrategy::Idempotent(key.clone()))
        .send(&impatient)
        .await;
    assert!(matches!(first, Err(StripeError::Timeout)), "{first:?}");
    // The client hung up, and the simulator's server drops a request with
    // its connection: the timed-out one applies nothing. The retry with the
    // same key applies, and stores the key under the lock that created the
    // customer, so no request with that key can create another one later:
    // the count below is final once the retry has answered.
    let retry = CreateCustomer::new()
        .customize()
        .request_strategy(RequestStrategy::Idempotent(key))
        .send(&h.client)
        .await
        .unwrap();
    assert!(retry.id.as_str().starts_with("cus_"));
    assert_eq!(h.sim.count("customer"), 1);
}

#[tokio::test]
async fn a_retry_landing_while_the_first_try_is_in_flight_creates_one_customer() {
    // Stripe may still be working on a request its client gave up on. Here
    // the first try's connection stays open, so the simulator finishes it.
    let h = harness().await;
    h.sim.delay_next(
        "POST",
        "/v1/customers",
        std::time::Duration::from_millis(300),
        1,
    );
    let key = IdempotencyKey::new("slow-2").unwrap();
    let slow = tokio::spawn({
        let (client, key) = (h.client.clone(), key.clone());
        async move {
            CreateCustomer::new()
                .customize()
                .request_strategy(RequestStrategy::Idempotent(key))
                .send(&client)
                .await
        }
    });
    // In flight: the simulator records a request, and takes its delay,
    // before it sleeps.
    until("the first try is in flight", || {
        h.sim
            .requests()
            .iter()
            .any(|r| r.idempotency_key.as_deref() == Some("slow-2"))
    })
    .await;
    // The retry is not delayed (the one delay went to the first try), so it
    // normally lands while the first try sleeps and creates the customer; the
    // first try then finds its key and replays that answer. Should the
    // retry come late, the roles swap: one customer either way.
    let retry = CreateCustomer::new()
        .customize()
        .request_strategy(RequestStrategy::Idempotent(key))
        .send(&h.client)
        .await
        .unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), slow)
        .await
        .expect("the first try answers")
        .unwrap()
        .unwrap();
    assert_eq!(first.id, retry.id);
    assert!(retry.id.as_str().starts_with("cus_"));
    assert_eq!(h.sim.count("customer"), 1);
}

/// Polls `condition` until it holds; fails the test after 10 s.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

fn phase_item(price: &str) -> UpdateSubscriptionSchedulePhasesItems {
    let mut item = UpdateSubscriptionSchedulePhasesItems::new();
    item.price = Some(price.to_owned());
    item.quantity = Some(1);
    item
}

fn price_of(s: &SubscriptionSchedule, phase: usize) -> String {
    s.phases[phase].items[0].price.id().to_string()
}

/// An annual subscription (pro, $300/year, via a dashboard price) with a
/// schedule made from it; returns (subscription, schedule, annual price).
async fn annual_with_schedule(h: &Harness, c: &Catalog) -> (String, SubscriptionSchedule, String) {
    let annual = h.sim.create_dashboard_price("pro", 30000, "year");
    let session_id = checkout(h, c, &annual).await;
    let sub_id = h.sim.complete_checkout(&session_id).await.unwrap();
    let schedule = CreateSubscriptionSchedule::new()
        .from_subscription(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    (sub_id, schedule, annual)
}

/// The downgrade a service schedules: the current phase until the period
/// end, then one month of `next`.
async fn schedule_switch(
    h: &Harness,
    schedule: &SubscriptionSchedule,
    current: &str,
    next: &str,
) -> SubscriptionSchedule {
    let mut now_phase = UpdateSubscriptionSchedulePhases::new(vec![phase_item(current)]);
    now_phase.start_date = Some(UpdateSubscriptionSchedulePhasesStartDate::Timestamp(
        schedule.phases[0].start_date,
    ));
    now_phase.end_date = Some(UpdateSubscriptionSchedulePhasesEndDate::Timestamp(
        schedule.phases[0].end_date,
    ));
    let mut next_phase = UpdateSubscriptionSchedulePhases::new(vec![phase_item(next)]);
    next_phase.duration = Some(UpdateSubscriptionSchedulePhasesDuration::new(
        UpdateSubscriptionSchedulePhasesDurationInterval::Month,
    ));
    UpdateSubscriptionSchedule::new(schedule.id.as_str())
        .phases(vec![now_phase, next_phase])
        .end_behavior(SubscriptionScheduleEndBehavior::Release)
        .send(&h.client)
        .await
        .unwrap()
}

async fn latest_invoice_amount(h: &Harness, sub_id: &str) -> (i64, i64, i64) {
    let list = ListInvoice::new()
        .subscription(sub_id)
        .send(&h.client)
        .await
        .unwrap();
    let inv = &list.data[0];
    (inv.amount_paid, inv.period_start, inv.period_end)
}

#[tokio::test]
async fn schedule_switches_annual_to_monthly_at_period_end() {
    let h = harness().await;
    let (url, got) = receiver().await;
    h.sim.set_webhook_url(Some(url));
    let c = catalog(&h).await;
    let (sub_id, schedule, annual) = annual_with_schedule(&h, &c).await;
    let start = t0().timestamp();
    let year_end = (t0() + chrono::Months::new(12)).timestamp();

    assert!(schedule.id.as_str().starts_with("sub_sched_"));
    assert_eq!(schedule.status, SubscriptionScheduleStatus::Active);
    assert_eq!(
        schedule.end_behavior,
        SubscriptionScheduleEndBehavior::Release
    );
    assert_eq!(
        schedule.subscription.as_ref().unwrap().id().as_str(),
        sub_id
    );
    assert_eq!(schedule.customer.id().as_str(), c.customer);
    assert_eq!(schedule.phases.len(), 1);
    assert_eq!(
        (schedule.phases[0].start_date, schedule.phases[0].end_date),
        (start, year_end)
    );
    assert_eq!(price_of(&schedule, 0), annual);
    assert_eq!(schedule.phases[0].items[0].quantity, Some(1));
    let current = schedule.current_phase.as_ref().unwrap();
    assert_eq!((current.start_date, current.end_date), (start, year_end));
    assert_eq!(
        h.sim.schedule_of(&sub_id).as_deref(),
        Some(schedule.id.as_str())
    );
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(sub.schedule.unwrap().id().as_str(), schedule.id.as_str());

    // One schedule per subscription.
    match CreateSubscriptionSchedule::new()
        .from_subscription(sub_id.as_str())
        .send(&h.client)
        .await
    {
        Err(StripeError::Stripe(e, 400)) => {
            assert_eq!(e.type_, stripe::ApiErrorsType::InvalidRequestError)
        }
        other => panic!("expected a 400, got {other:?}"),
    }

    let updated = schedule_switch(&h, &schedule, &annual, &c.basic).await;
    assert_eq!(updated.phases.len(), 2);
    assert_eq!(price_of(&updated, 1), c.basic);
    let month_after = (t0() + chrono::Months::new(13)).timestamp();
    assert_eq!(
        (updated.phases[1].start_date, updated.phases[1].end_date),
        (year_end, month_after)
    );
    let fetched = RetrieveSubscriptionSchedule::new(updated.id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(fetched.phases.len(), 2);

    // Nothing changes before the period ends.
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(sub.items.data[0].price.id.as_str(), annual);

    h.sim.end_period(&sub_id).await.unwrap();
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    let item = &sub.items.data[0];
    assert_eq!(item.price.id.as_str(), c.basic);
    assert_eq!(
        (item.current_period_start, item.current_period_end),
        (year_end, month_after)
    );
    assert!((28..=31).contains(&((month_after - year_end) / 86400)));
    assert_eq!(
        latest_invoice_amount(&h, &sub_id).await,
        (1000, year_end, month_after)
    );
    // Like Stripe, the schedule holds the subscription through its last
    // phase and releases it when that phase ends.
    assert_eq!(
        h.sim.schedule_of(&sub_id).as_deref(),
        Some(schedule.id.as_str())
    );
    let during = RetrieveSubscriptionSchedule::new(schedule.id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(during.current_phase.unwrap().start_date, year_end);

    h.sim.end_period(&sub_id).await.unwrap();
    let released = RetrieveSubscriptionSchedule::new(schedule.id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(released.status, SubscriptionScheduleStatus::Released);
    assert_eq!(
        released.released_subscription.as_deref(),
        Some(sub_id.as_str())
    );
    assert!(released.subscription.is_none());
    assert!(released.released_at.is_some());
    assert_eq!(h.sim.schedule_of(&sub_id), None);
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert!(sub.schedule.is_none());
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(sub.items.data[0].price.id.as_str(), c.basic);
    assert_eq!(latest_invoice_amount(&h, &sub_id).await.0, 1000);

    // Every event, the schedule ones included, verifies and decodes.
    h.sim.wait_for_webhooks().await;
    let now = h.clock.now().timestamp();
    let received = got.lock().unwrap().clone();
    assert_eq!(received.len(), h.sim.events().len());
    let mut types = Vec::new();
    let mut switched = false;
    for (payload, sig) in &received {
        let event = Webhook::construct_event_with_timestamp(payload, sig, SECRET, now)
            .unwrap_or_else(|e| panic!("{e:?} for {payload}"));
        match &event.data.object {
            EventObject::Unknown(_) => {
                panic!("{} did not decode", event.type_.as_str())
            }
            EventObject::SubscriptionScheduleCreated(s)
            | EventObject::SubscriptionScheduleUpdated(s)
            | EventObject::SubscriptionScheduleReleased(s) => {
                assert_eq!(s.id.as_str(), schedule.id.as_str())
            }
            EventObject::CustomerSubscriptionUpdated(s) => {
                let raw: serde_json::Value = serde_json::from_str(payload).unwrap();
                if s.items.data[0].price.id.as_str() == c.basic
                    && raw["data"]["previous_attributes"].get("items").is_some()
                {
                    switched = true;
                }
            }
            _ => {}
        }
        types.push(event.type_.as_str().to_owned());
    }
    for expected in [
        "subscription_schedule.created",
        "subscription_schedule.updated",
        "subscription_schedule.released",
        "customer.subscription.updated",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "no {expected} in {types:?}"
        );
    }
    assert!(switched, "no customer.subscription.updated for the switch");
}

#[tokio::test]
async fn released_schedule_leaves_the_annual_price() {
    let h = harness().await;
    let c = catalog(&h).await;
    let (sub_id, schedule, annual) = annual_with_schedule(&h, &c).await;
    schedule_switch(&h, &schedule, &annual, &c.basic).await;
    let released = ReleaseSubscriptionSchedule::new(schedule.id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(released.status, SubscriptionScheduleStatus::Released);
    assert_eq!(released.released_at, Some(t0().timestamp()));
    assert_eq!(
        released.released_subscription.as_deref(),
        Some(sub_id.as_str())
    );
    assert_eq!(h.sim.schedule_of(&sub_id), None);
    match ReleaseSubscriptionSchedule::new(schedule.id.as_str())
        .send(&h.client)
        .await
    {
        Err(StripeError::Stripe(_, 400)) => {}
        other => panic!("expected a 400, got {other:?}"),
    }

    h.sim.end_period(&sub_id).await.unwrap();
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert!(sub.schedule.is_none());
    let item = &sub.items.data[0];
    assert_eq!(item.price.id.as_str(), annual);
    let year_end = (t0() + chrono::Months::new(12)).timestamp();
    let next_year = (t0() + chrono::Months::new(24)).timestamp();
    assert_eq!(
        (item.current_period_start, item.current_period_end),
        (year_end, next_year)
    );
    assert_eq!(latest_invoice_amount(&h, &sub_id).await.0, 30000);
}

#[tokio::test]
async fn schedule_refusals_and_cancel_end_behavior() {
    let h = harness().await;
    let (url, got) = receiver().await;
    h.sim.set_webhook_url(Some(url));
    let c = catalog(&h).await;
    let (sub_id, schedule, annual) = annual_with_schedule(&h, &c).await;

    match UpdateSubscription::new(sub_id.as_str())
        .cancel_at_period_end(true)
        .send(&h.client)
        .await
    {
        Err(StripeError::Stripe(e, 400)) => {
            assert!(e.message.unwrap().contains("schedule"))
        }
        other => panic!("expected a 400, got {other:?}"),
    }

    let mut phase = UpdateSubscriptionSchedulePhases::new(vec![phase_item("price_missing")]);
    phase.start_date = Some(UpdateSubscriptionSchedulePhasesStartDate::Now);
    match UpdateSubscriptionSchedule::new(schedule.id.as_str())
        .phases(vec![phase])
        .send(&h.client)
        .await
    {
        Err(StripeError::Stripe(e, 400)) => {
            assert_eq!(e.code, Some(stripe::ApiErrorsCode::ResourceMissing))
        }
        other => panic!("expected a 400, got {other:?}"),
    }

    // With end_behavior=cancel, the end of the last phase cancels.
    let updated = UpdateSubscriptionSchedule::new(schedule.id.as_str())
        .end_behavior(SubscriptionScheduleEndBehavior::Cancel)
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(
        updated.end_behavior,
        SubscriptionScheduleEndBehavior::Cancel
    );
    assert_eq!(price_of(&updated, 0), annual);
    h.sim.end_period(&sub_id).await.unwrap();
    let sub = RetrieveSubscription::new(sub_id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Canceled);
    let done = RetrieveSubscriptionSchedule::new(schedule.id.as_str())
        .send(&h.client)
        .await
        .unwrap();
    assert_eq!(done.status, SubscriptionScheduleStatus::Completed);

    h.sim.wait_for_webhooks().await;
    let now = h.clock.now().timestamp();
    let received = got.lock().unwrap().clone();
    let last = received.last().unwrap();
    let event = Webhook::construct_event_with_timestamp(&last.0, &last.1, SECRET, now).unwrap();
    assert!(matches!(
        event.data.object,
        EventObject::CustomerSubscriptionDeleted(_)
    ));
    assert!(received.iter().any(|(p, s)| matches!(
        Webhook::construct_event_with_timestamp(p, s, SECRET, now)
            .unwrap()
            .data
            .object,
        EventObject::SubscriptionScheduleCompleted(_)
    )));
}

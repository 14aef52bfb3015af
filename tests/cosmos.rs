//! What the Cosmos DB store promises beyond the contract suite, on the SDK's
//! in-process emulator: the whole service running on it, emails read from
//! the real change feed, exact quotas under heavy concurrency, TTLs, and
//! throttling or unavailability that loses and doubles nothing.

mod support;

use std::sync::Arc;

use azure_data_cosmos::fault_injection::{
    CustomResponseBuilder, FaultInjectionConditionBuilder, FaultInjectionErrorType,
    FaultInjectionResultBuilder, FaultInjectionRule, FaultInjectionRuleBuilder, FaultOperationType,
};
use azure_data_cosmos::options::ChangeFeedStartFrom;
use azure_data_cosmos::{CosmosClient, FeedScope};
use chrono::Utc;
use futures::StreamExt;
use kraftd_billing::domain::money::Money;
use kraftd_billing::domain::ports::{LedgerStore, Store, UsageStore, WebhookLog};
use kraftd_billing::domain::records::{
    Payment, PAYMENT_RETENTION_DAYS, WEBHOOK_EVENT_RETENTION_DAYS,
};
use kraftd_billing::domain::usage::{
    Metric, UsageIncrement, UsageKey, UsageOutcome, USAGE_RETENTION_DAYS,
};
use kraftd_billing::domain::user::UserId;
use kraftd_billing::store::cosmos::{self, layout};
use serde_json::{json, Value};
use support::cosmos_memory::{self, DATABASE};
use support::TestApp;

const DAY: i64 = 86_400;

/// `hits` injected failures of one operation type. A 429 is what Cosmos DB
/// sends when a partition runs out of RUs: substatus 3200 and a
/// `x-ms-retry-after-ms` hint (short here, so the storm is quick).
fn fault(
    id: &str,
    op: FaultOperationType,
    error: FaultInjectionErrorType,
    hits: u32,
) -> Arc<FaultInjectionRule> {
    let result = match error {
        FaultInjectionErrorType::TooManyRequests => FaultInjectionResultBuilder::new()
            .with_custom_response(
                CustomResponseBuilder::new(azure_core::http::StatusCode::TooManyRequests)
                    .with_sub_status(3200)
                    .with_header("x-ms-retry-after-ms", "5")
                    .with_body(r#"{"code":"TooManyRequests","message":"Request rate is large"}"#)
                    .build(),
            ),
        other => FaultInjectionResultBuilder::new().with_error(other),
    };
    Arc::new(
        FaultInjectionRuleBuilder::new(id, result.build())
            .with_condition(
                FaultInjectionConditionBuilder::new()
                    .with_operation_type(op)
                    .build(),
            )
            .with_hit_limit(hits)
            .build(),
    )
}

async fn raw(client: &CosmosClient, container: &str, pk: &str, id: &str) -> Value {
    client
        .database_client(DATABASE)
        .container_client(container, None)
        .await
        .unwrap()
        .read_item(pk.to_owned(), id, None)
        .await
        .unwrap()
        .into_model()
        .unwrap()
}

fn api_call(user: UserId, limit: u64) -> UsageIncrement {
    let now = Utc::now();
    UsageIncrement {
        user_id: user,
        key: UsageKey::current(Metric::ApiCalls, now),
        amount: 1,
        limit: Some(limit),
        at: now,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_subscription_runs_on_cosmos_and_its_emails_come_from_the_users_change_feed() {
    let (store, client) = cosmos_memory::store_with(Vec::new()).await;
    let app = TestApp::spawn_on(Arc::new(store), &[]).await;
    app.subscribe_to_pro("feed@example.com").await;
    let token = app.login("feed@example.com").await;
    let sub: Value = app
        .get_as(&token, "/api/billing/subscription")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sub["plan"]["id"], "pro", "{sub}");
    assert_eq!(sub["status"], "active", "{sub}");

    // What the Functions host would hand SendEmails: the users container's
    // change feed, user documents and outbox messages together.
    let user = app.user("feed@example.com").await;
    let users = client
        .database_client(DATABASE)
        .container_client(layout::USERS.name, None)
        .await
        .unwrap();
    let mut pages = Box::pin(
        users
            .query_change_feed::<Value>(
                FeedScope::partition(user.id.to_string()),
                ChangeFeedStartFrom::Beginning,
                None,
            )
            .await
            .unwrap(),
    );
    let page = pages.next().await.unwrap().unwrap();
    let documents: Vec<Value> = page
        .items()
        .iter()
        .filter_map(|item| item.current().cloned())
        .collect();
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"user") && kinds.contains(&"outbox"),
        "{kinds:?}"
    );

    let r = app
        .client
        .post(app.url("/SendEmails"))
        .json(&json!({"Data": {"documents": documents}, "Metadata": {"sys": {"MethodName": "SendEmails"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["Logs"][0], "emails: sent 2, skipped 0, retrying 0, failed 0",
        "the user document is passed over; confirmation and receipt are sent"
    );
    let sent = std::fs::read_dir(app.mail_dir()).unwrap().count();
    assert_eq!(sent, 2, "two .eml files written");
    for m in app.emails(user.id, None).await {
        assert_eq!(
            app.store.outbox_status(user.id, &m.id).await.unwrap(),
            Some((kraftd_billing::domain::outbox::OutboxState::Sent, 1))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_concurrent_consumes_never_pass_a_small_limit() {
    let (store, _) = cosmos_memory::store_with(Vec::new()).await;
    let store: Arc<dyn Store> = Arc::new(store);
    let user = UserId(uuid::Uuid::new_v4());
    let limit = 25;
    let racers: Vec<_> = (0..400)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.increment_usage(&api_call(user, limit)).await })
        })
        .collect();
    let mut admitted = 0;
    for r in racers {
        if let UsageOutcome::Admitted { total } = r.await.unwrap().unwrap() {
            assert!(total <= limit);
            admitted += 1;
        }
    }
    assert_eq!(admitted, limit, "exactly the limit is admitted");
    let key = UsageKey::current(Metric::ApiCalls, Utc::now());
    assert_eq!(
        store.usage(user, &[key]).await.unwrap(),
        vec![limit],
        "every denied increment was taken back"
    );
}

#[tokio::test]
async fn each_container_has_its_partition_key_and_default_ttl_and_init_is_idempotent() {
    let (_, client) = cosmos_memory::store_with(Vec::new()).await;
    assert!(
        cosmos::init(&client, DATABASE).await.unwrap().is_empty(),
        "a second init creates nothing"
    );
    for spec in layout::CONTAINERS {
        let (paths, ttl) = cosmos::describe(&client, DATABASE, spec.name)
            .await
            .unwrap();
        assert_eq!(paths, [spec.partition_key], "{}", spec.name);
        assert_eq!(ttl, spec.default_ttl.as_cosmos(), "{}", spec.name);
    }
    let ttl = |name: &str| {
        layout::CONTAINERS
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .default_ttl
            .as_cosmos()
    };
    // The retentions the design asks for, spelled out: seven years (and
    // two leap days), 90 days, 30 days.
    assert_eq!(ttl("payments"), Some((7 * 365 + 2) * DAY));
    assert_eq!(ttl("invoices"), Some((7 * 365 + 2) * DAY));
    assert_eq!(ttl("usage_records"), Some(90 * DAY));
    assert_eq!(ttl("webhook_events"), Some(30 * DAY));
    assert_eq!(
        ttl("users"),
        Some(-1),
        "outbox messages expire, users never"
    );
    assert_eq!(ttl("leases"), None);
}

#[tokio::test]
async fn each_record_carries_the_ttl_of_its_retention() {
    let (store, client) = cosmos_memory::store_with(Vec::new()).await;
    let user = UserId(uuid::Uuid::new_v4());
    let now = Utc::now();
    store
        .record_payment(&Payment {
            id: "pi_ttl".into(),
            user_id: user,
            amount: Money::usd_cents(9_900),
            status: "succeeded".into(),
            description: "Professional, monthly".into(),
            stripe_invoice_id: None,
            receipt_url: None,
            created_at: now,
        })
        .await
        .unwrap();
    let payment = raw(&client, "payments", &user.to_string(), "pi_ttl").await;
    assert_eq!(payment["ttl"], PAYMENT_RETENTION_DAYS * DAY);

    store.increment_usage(&api_call(user, 10)).await.unwrap();
    let key = UsageKey::current(Metric::ApiCalls, now);
    let window = key.window.unwrap();
    let id = format!("api_calls:{}", window.start.timestamp_millis());
    let counter = raw(&client, "usage_records", &user.to_string(), &id).await;
    let expected = (window.end + chrono::Duration::days(USAGE_RETENTION_DAYS) - now).num_seconds();
    let ttl = counter["ttl"].as_i64().unwrap();
    assert!(
        (expected - 1..=expected).contains(&ttl),
        "{ttl} vs {expected}"
    );

    let gauge = UsageIncrement {
        user_id: user,
        key: UsageKey::current(Metric::StorageMb, now),
        amount: 5,
        limit: None,
        at: now,
    };
    store.increment_usage(&gauge).await.unwrap();
    let level = raw(
        &client,
        "usage_records",
        &user.to_string(),
        "storage_mb:level",
    )
    .await;
    assert_eq!(
        level["ttl"], -1,
        "a gauge is a current level and never expires"
    );

    store.claim_event("evt_ttl", now).await.unwrap();
    let event = raw(&client, "webhook_events", "evt_ttl", "evt_ttl").await;
    assert_eq!(event["ttl"], WEBHOOK_EVENT_RETENTION_DAYS * DAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_storms_and_unavailability_lose_nothing_and_double_nothing() {
    use FaultInjectionErrorType::{ServiceUnavailable, TooManyRequests};
    use FaultOperationType::{BatchItem, CreateItem, PatchItem, ReadItem, ReplaceItem};
    let faults = vec![
        fault("patch-429", PatchItem, TooManyRequests, 40),
        fault("patch-503", PatchItem, ServiceUnavailable, 10),
        fault("create-429", CreateItem, TooManyRequests, 30),
        fault("create-503", CreateItem, ServiceUnavailable, 10),
        fault("read-503", ReadItem, ServiceUnavailable, 10),
        fault("replace-429", ReplaceItem, TooManyRequests, 10),
        fault("batch-429", BatchItem, TooManyRequests, 10),
    ];
    let (store, _) = cosmos_memory::store_with(faults.clone()).await;
    let app = TestApp::spawn_on(Arc::new(store), &[]).await;

    // Registration: one account, one email claim.
    let token = app.free_user("storm@example.com").await;
    let again = app.register("storm@example.com", "free").await;
    assert_eq!(again.status(), 409);

    // Quota checks: 60 consumes against the Free month's 50 documents admit
    // exactly 50, each counted once.
    let mut admitted = 0;
    for _ in 0..60 {
        let r = app
            .consume(&token, json!({"metric": "documents", "quantity": 1}))
            .await;
        match r.status().as_u16() {
            200 => admitted += 1,
            403 => {}
            other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!(admitted, 50);
    let usage: Value = app.get_as(&token, "/api/usage").await.json().await.unwrap();
    assert_eq!(usage["usage"]["documents"]["used"], 50, "{usage}");
    assert_eq!(
        usage["usage"]["api_calls"]["used"], 61,
        "60 consumes and this read, each counted once: {usage}"
    );

    // Webhook processing: a paid subscription goes through, emails once.
    app.subscribe_to_pro("storm-pro@example.com").await;
    let user = app.user("storm-pro@example.com").await;
    assert_eq!(user.subscription.plan_id.as_str(), "pro");
    let kinds = app.email_kinds(user.id).await;
    assert_eq!(kinds.len(), 2, "{kinds:?}");

    for f in &faults {
        assert_eq!(
            f.hit_count(),
            f.hit_limit().unwrap(),
            "{} was injected in full",
            f.id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_repeated_safely_and_an_increment_never_twice() {
    use FaultInjectionErrorType::ResponseTimeoutAfterService as AppliedThenLost;
    use FaultOperationType::{CreateItem, PatchItem};
    // The service applied these writes, but their answers never arrived.
    let creates = fault("create-lost", CreateItem, AppliedThenLost, 2);
    let (store, _) = cosmos_memory::store_with(vec![creates.clone()]).await;
    let app = TestApp::spawn_on(Arc::new(store), &[]).await;
    app.free_user("lost@example.com").await;
    assert_eq!(
        creates.hit_count(),
        2,
        "the user document and its email claim"
    );
    assert_eq!(app.register("lost@example.com", "free").await.status(), 409);
    let user = app.user("lost@example.com").await;

    let patches = fault("patch-lost", PatchItem, AppliedThenLost, 1);
    patches.disable();
    let (store, _) = cosmos_memory::store_with(vec![patches.clone()]).await;
    let store: Arc<dyn Store> = Arc::new(store);
    let first = api_call(user.id, 10);
    store.increment_usage(&first).await.unwrap(); // creates the counter
    patches.enable();
    let lost = store.increment_usage(&first).await;
    assert_eq!(patches.hit_count(), 1);
    assert!(
        lost.is_err(),
        "an increment with a lost answer is reported, not repeated"
    );
    let key = UsageKey::current(Metric::ApiCalls, Utc::now());
    assert_eq!(
        store.usage(user.id, &[key]).await.unwrap(),
        vec![2],
        "it landed once: counted once, never twice"
    );
}

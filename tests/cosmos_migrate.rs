//! `handler migrate`'s copy (`store::cosmos::migrate`) on the SDK's
//! in-process emulator: a database of the one-user era (containers
//! partitioned on `/user_id`, documents in their old shapes, written as
//! JSON) is copied into a new database made by `cosmos::init`, twice, and
//! the result is read back through the store's ports.

mod support;

use azure_data_cosmos::clients::DatabaseClient;
use azure_data_cosmos::models::{ContainerProperties, TimeToLive};
use azure_data_cosmos::CosmosClient;
use chrono::{DateTime, Duration, Utc};
use kraftd_billing::domain::account::{Account, AccountId, Membership, Role};
use kraftd_billing::domain::outbox::OutboxState;
use kraftd_billing::domain::ports::{
    AccountStore, LedgerStore, MemberStore, Outbox, Rollups, UsageStore, UserStore, WebhookLog,
};
use kraftd_billing::domain::subscription::Subscription;
use kraftd_billing::domain::usage::{
    Metric, Period, UsageIncrement, UsageKey, UsageOutcome, Window,
};
use kraftd_billing::domain::user::{Email, PersonName, User, UserId};
use kraftd_billing::store::cosmos::migrate::{migrate, MigrationReport, Tally};
use kraftd_billing::store::cosmos::{self, CosmosStore};
use serde_json::{json, Value};
use uuid::Uuid;

const OLD: &str = "billing";
const NEW: &str = "billing-accounts";

/// The one-user era's containers: `payments`, `invoices` and
/// `usage_records` partitioned on `/user_id`, as commit e127c42 laid them out.
async fn old_database(client: &CosmosClient, name: &str) -> DatabaseClient {
    client.create_database(name, None).await.unwrap();
    let db = client.database_client(name.to_owned());
    for (name, pk, ttl) in [
        ("users", "/user_id", TimeToLive::NoDefault),
        ("lookups", "/id", TimeToLive::Forever),
        ("payments", "/user_id", TimeToLive::Seconds(220_838_400)),
        ("invoices", "/user_id", TimeToLive::Seconds(220_838_400)),
        ("usage_records", "/user_id", TimeToLive::Seconds(7_776_000)),
        ("webhook_events", "/id", TimeToLive::Seconds(2_592_000)),
        ("leases", "/id", TimeToLive::Forever),
    ] {
        db.create_container(
            ContainerProperties::new(name, pk.into()).with_default_ttl(ttl),
            None,
        )
        .await
        .unwrap();
    }
    db
}

async fn put(db: &DatabaseClient, container: &str, pk: &str, doc: Value) {
    let id = doc["id"].as_str().unwrap().to_owned();
    db.container_client(container, None)
        .await
        .unwrap()
        .create_item(pk.to_owned(), &id, &doc, None)
        .await
        .unwrap();
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Now, to the second, so timestamps survive JSON unchanged.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn pro_subscription(now: DateTime<Utc>, customer: &str) -> Value {
    json!({
        "plan_id": "pro",
        "status": "active",
        "billing_interval": "monthly",
        "stripe_customer_id": customer,
        "stripe_subscription_id": format!("sub_{customer}"),
        "start_date": now - Duration::days(100),
        "end_date": null,
        "renewal_date": now + Duration::days(20),
        "current_period_end": now + Duration::days(20),
        "auto_renew": true,
        "cancel_at_period_end": false,
        "billing_email": null,
        "last_payment_status": "paid"
    })
}

fn free_subscription(now: DateTime<Utc>) -> Value {
    json!({
        "plan_id": "free",
        "status": "active",
        "billing_interval": "monthly",
        "stripe_customer_id": null,
        "stripe_subscription_id": null,
        "start_date": now - Duration::days(10),
        "end_date": null,
        "renewal_date": null,
        "current_period_end": null,
        "auto_renew": false,
        "cancel_at_period_end": false,
        "billing_email": null,
        "last_payment_status": null
    })
}

/// A user document of the one-user era, with its subscription.
fn old_user(
    id: Uuid,
    email: &str,
    name: &str,
    created: DateTime<Utc>,
    subscription: Value,
) -> Value {
    json!({
        "id": id.to_string(),
        "user_id": id.to_string(),
        "type": "user",
        "watch_at": null,
        "user": {
            "id": id.to_string(),
            "email": email,
            "name": name,
            "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "created_at": created,
            "subscription": subscription
        }
    })
}

fn old_outbox(id: &str, user: Uuid, status: &str, attempts: u32, now: DateTime<Utc>) -> Value {
    let created = now - Duration::minutes(5);
    json!({
        "id": id,
        "user_id": user.to_string(),
        "type": "outbox",
        "kind": "payment_receipt",
        "data": {"amount": "99.00", "plan": "Pro"},
        "created_at": created,
        "status": status,
        "attempts": attempts,
        "claimed_at": (status == "sending").then(|| ms(now - Duration::minutes(1))),
        "not_before": null,
        "sent_at": (status == "sent").then(|| ms(now - Duration::minutes(2))),
        "last_error": (status == "failed").then_some("550 no such mailbox"),
        "created_ms": ms(created),
        "ttl": 7_776_000
    })
}

fn money(cents: i64) -> Value {
    json!({"amount": cents, "currency": "usd"})
}

fn old_payment(id: &str, user: Uuid, created: DateTime<Utc>) -> Value {
    let expires = created + Duration::days(7 * 365 + 2);
    json!({
        "id": id,
        "user_id": user.to_string(),
        "created_ms": ms(created),
        "expires_at": ms(expires),
        "ttl": (expires - created).num_seconds(),
        "payment": {
            "id": id,
            "user_id": user.to_string(),
            "amount": money(9900),
            "status": "succeeded",
            "description": "KRAFTD Pro",
            "stripe_invoice_id": "in_ada_1",
            "receipt_url": null,
            "created_at": created
        }
    })
}

fn old_invoice(id: &str, user: Uuid, created: DateTime<Utc>) -> Value {
    let expires = created + Duration::days(7 * 365 + 2);
    json!({
        "id": id,
        "user_id": user.to_string(),
        "created_ms": ms(created),
        "expires_at": ms(expires),
        "ttl": (expires - created).num_seconds(),
        "invoice": {
            "id": id,
            "user_id": user.to_string(),
            "number": format!("KR-{id}"),
            "amount_due": money(9900),
            "amount_paid": money(9900),
            "status": "paid",
            "period_start": created,
            "period_end": created + Duration::days(30),
            "hosted_invoice_url": null,
            "pdf_url": null,
            "created_at": created
        }
    })
}

/// A counter as the one-user era's `increment_usage` created it.
fn old_counter(user: Uuid, metric: Metric, window: Option<Window>, quantity: i64) -> Value {
    let expires = window.map(|w| w.end + Duration::days(90));
    json!({
        "id": match window {
            Some(w) => format!("{}:{}", metric.as_str(), ms(w.start)),
            None => format!("{}:level", metric.as_str()),
        },
        "user_id": user.to_string(),
        "type": "usage",
        "metric": metric.as_str(),
        "window_start": window.map(|w| ms(w.start)),
        "window_end": window.map(|w| ms(w.end)),
        "quantity": quantity,
        "expires_at": expires.map(ms),
        "ttl": if window.is_some() { 7_776_000 } else { -1 }
    })
}

struct Old {
    ada: Uuid,
    bob: Uuid,
    /// This month, this day and last month at `now`.
    month: Window,
    day: Window,
    last_month: Window,
}

/// Ada pays for Pro (Stripe customer, invoices, a payment, usage, emails
/// in every state); Bob is on Free with a little usage.
async fn seed(db: &DatabaseClient, now: DateTime<Utc>) -> Old {
    let ada = Uuid::new_v4();
    let bob = Uuid::new_v4();
    let a = ada.to_string();
    let b = bob.to_string();
    let month = Window::containing(Period::Month, now);
    let day = Window::containing(Period::Day, now);
    let last_month = Window::containing(Period::Month, month.start - Duration::days(1));

    put(
        db,
        "users",
        &a,
        old_user(
            ada,
            "ada@example.com",
            "Ada Lovelace",
            now - Duration::days(100),
            pro_subscription(now, "cus_ada"),
        ),
    )
    .await;
    put(
        db,
        "users",
        &b,
        old_user(
            bob,
            "bob@example.com",
            "Bob",
            now - Duration::days(10),
            free_subscription(now),
        ),
    )
    .await;
    for (id, status, attempts) in [
        ("receipt-pending", "pending", 0),
        ("receipt-sending", "sending", 1),
        ("receipt-sent", "sent", 1),
        ("receipt-failed", "failed", 5),
    ] {
        put(db, "users", &a, old_outbox(id, ada, status, attempts, now)).await;
    }

    put(
        db,
        "payments",
        &a,
        old_payment("pi_ada_1", ada, now - Duration::days(40)),
    )
    .await;
    // Past its seven years: not copied.
    put(
        db,
        "payments",
        &a,
        old_payment("pi_ada_0", ada, now - Duration::days(8 * 365)),
    )
    .await;
    put(
        db,
        "invoices",
        &a,
        old_invoice("in_ada_1", ada, now - Duration::days(40)),
    )
    .await;
    put(
        db,
        "invoices",
        &a,
        old_invoice("in_ada_2", ada, now - Duration::days(10)),
    )
    .await;

    put(
        db,
        "usage_records",
        &a,
        old_counter(ada, Metric::Documents, Some(month), 7),
    )
    .await;
    put(
        db,
        "usage_records",
        &a,
        old_counter(ada, Metric::ApiCalls, Some(day), 12),
    )
    .await;
    put(
        db,
        "usage_records",
        &a,
        old_counter(ada, Metric::StorageMb, None, 30),
    )
    .await;
    // A window that closed more than 90 days ago: past retention.
    let old_month = Window::containing(Period::Month, now - Duration::days(200));
    put(
        db,
        "usage_records",
        &a,
        old_counter(ada, Metric::Documents, Some(old_month), 50),
    )
    .await;
    put(
        db,
        "usage_records",
        &b,
        old_counter(bob, Metric::Documents, Some(month), 2),
    )
    .await;
    let day_partition = format!("day:{}", day.start.date_naive());
    let index_expires = day.end + Duration::days(90);
    put(
        db,
        "usage_records",
        &day_partition,
        json!({
            "id": a,
            "user_id": day_partition,
            "type": "active",
            "expires_at": ms(index_expires),
            "ttl": (index_expires - now).num_seconds()
        }),
    )
    .await;
    put(
        db,
        "usage_records",
        &a,
        json!({
            "id": format!("summary:{}", ms(last_month.start)),
            "user_id": a,
            "type": "summary",
            "month_start": ms(last_month.start),
            "month_end": ms(last_month.end),
            "api_calls": 310,
            "documents": 40,
            "exports": 3,
            "updated_at": ms(last_month.end),
            "ttl": -1
        }),
    )
    .await;

    let event_expires = now + Duration::days(29);
    put(
        db,
        "webhook_events",
        "evt_1",
        json!({
            "id": "evt_1",
            "processed_at": ms(now - Duration::days(1)),
            "expires_at": ms(event_expires),
            "ttl": 2_592_000
        }),
    )
    .await;

    // The old claims name users; the migration makes its own.
    for (id, owner) in [
        ("email:ada@example.com", &a),
        ("email:bob@example.com", &b),
        ("customer:cus_ada", &a),
        ("invoice:in_ada_1", &a),
        ("invoice:in_ada_2", &a),
    ] {
        put(db, "lookups", id, json!({"id": id, "user_id": owner})).await;
    }
    put(
        db,
        "lookups",
        "rollup-cursor",
        json!({"id": "rollup-cursor", "day": (now - Duration::days(1)).date_naive()}),
    )
    .await;
    Old {
        ada,
        bob,
        month,
        day,
        last_month,
    }
}

/// A user of the new era with their own account, as registration makes them.
fn registration(email: &str, now: DateTime<Utc>) -> (User, Account, Membership) {
    let user = User::with_password(
        UserId(Uuid::new_v4()),
        Email::parse(email).unwrap(),
        PersonName::parse("Someone Else").unwrap(),
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        now,
    );
    let account = Account {
        id: AccountId::own_account_of(user.id),
        name: "Someone Else".into(),
        billing_email: user.email.clone(),
        created_at: now,
        subscription: Subscription::free(now),
        last_event_at: None,
        overrides: Vec::new(),
        enterprise_offer: None,
    };
    let owner = Membership {
        account_id: account.id,
        user_id: user.id,
        role: Role::Owner,
        joined_at: now,
    };
    (user, account, owner)
}

fn tally(copied: u64, present: u64, skipped: u64) -> Tally {
    Tally {
        copied,
        present,
        skipped,
    }
}

#[tokio::test]
async fn a_one_user_era_database_is_copied_into_accounts_once() {
    let client = support::cosmos_memory::client(Vec::new()).await;
    let db = old_database(&client, OLD).await;
    let now = now();
    let old = seed(&db, now).await;
    cosmos::init(&client, NEW).await.unwrap();

    let first = migrate(&client, OLD, NEW, now).await.unwrap();
    assert_eq!(
        first,
        MigrationReport {
            users: tally(2, 0, 0),
            outbox: tally(2, 0, 2),
            payments: tally(1, 0, 1),
            invoices: tally(2, 0, 0),
            usage_counters: tally(4, 0, 1),
            day_index: tally(1, 0, 0),
            monthly_summaries: tally(1, 0, 0),
            webhook_events: tally(1, 0, 0),
            rollup_cursor: tally(1, 0, 0),
            problems: Vec::new(),
        },
        "{:#?}",
        first.lines()
    );
    // A second run copies nothing and finds everything there.
    let second = migrate(&client, OLD, NEW, now).await.unwrap();
    assert_eq!(
        second,
        MigrationReport {
            users: tally(0, 2, 0),
            outbox: tally(0, 2, 2),
            payments: tally(0, 1, 1),
            invoices: tally(0, 2, 0),
            usage_counters: tally(0, 4, 1),
            day_index: tally(0, 1, 0),
            monthly_summaries: tally(0, 1, 0),
            webhook_events: tally(0, 1, 0),
            rollup_cursor: tally(0, 1, 0),
            problems: Vec::new(),
        },
        "{:#?}",
        second.lines()
    );
    assert!(second.lines()[0]
        .starts_with("users (each with their own account): 0 copied, 2 already there"));

    let store = CosmosStore::open(&client, NEW).await.unwrap();
    let ada_id = UserId(old.ada);
    let ada_account = AccountId::own_account_of(ada_id);
    assert_eq!(ada_account.0, old.ada, "the account has the user's id");

    // The user, found by email (the claim was made), without billing.
    let ada = store
        .user_by_email(&Email::parse("ada@example.com").unwrap())
        .await
        .unwrap()
        .expect("Ada is found by email")
        .value;
    assert_eq!(ada.id, ada_id);
    assert_eq!(ada.name.as_str(), "Ada Lovelace");
    assert!(ada
        .password_hash
        .as_deref()
        .is_some_and(|h| h.starts_with("$argon2id$")));
    assert_eq!(ada.created_at, now - Duration::days(100));

    // Her account holds the subscription, found by id and by customer.
    let account = store
        .account_by_id(ada_account)
        .await
        .unwrap()
        .expect("Ada's account")
        .value;
    let subscription: Subscription =
        serde_json::from_value(pro_subscription(now, "cus_ada")).unwrap();
    assert_eq!(account.subscription, subscription);
    assert_eq!(account.name, "Ada Lovelace");
    assert_eq!(account.billing_email.as_str(), "ada@example.com");
    assert_eq!(account.created_at, ada.created_at);
    let by_customer = store
        .account_by_stripe_customer("cus_ada")
        .await
        .unwrap()
        .expect("the Stripe customer is claimed by the account");
    assert_eq!(by_customer.value.id, ada_account);
    let bob_account = store
        .account_by_id(AccountId(old.bob))
        .await
        .unwrap()
        .expect("Bob's account")
        .value;
    assert_eq!(bob_account.subscription.plan_id.as_str(), "free");

    // Ada owns it since she registered, alone.
    let members = store.members(ada_account).await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].user_id, ada_id);
    assert_eq!(members[0].role, Role::Owner);
    assert_eq!(members[0].joined_at, ada.created_at);
    assert_eq!(store.memberships_of(ada_id).await.unwrap(), members);
    assert_eq!(store.seats(ada_account, now).await.unwrap().members, 1);

    // Usage: the counters' totals, not doubled by the second run.
    let keys = [
        UsageKey::current(Metric::Documents, now),
        UsageKey::current(Metric::ApiCalls, now),
        UsageKey::current(Metric::StorageMb, now),
    ];
    assert_eq!(store.usage(ada_account, &keys).await.unwrap(), [7, 12, 30]);
    assert_eq!(
        store.usage(AccountId(old.bob), &keys).await.unwrap(),
        [2, 0, 0]
    );
    assert_eq!(
        store
            .monthly_summary(ada_account, old.last_month)
            .await
            .unwrap()
            .map(|s| (s.api_calls, s.documents, s.exports)),
        Some((310, 40, 3))
    );
    assert_eq!(
        store.rollup_cursor().await.unwrap(),
        Some((now - Duration::days(1)).date_naive())
    );

    // Money records, each once.
    let invoices = store.invoices(ada_account, now).await.unwrap();
    assert_eq!(
        invoices.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["in_ada_2", "in_ada_1"]
    );
    assert!(invoices.iter().all(|i| i.account_id == ada_account));
    let payments = store.payments(ada_account, now).await.unwrap();
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].id, "pi_ada_1");
    assert_eq!(payments[0].amount.amount, 9900);

    // The emails still to send, in their states; sent and failed ones dropped.
    let outbox = store.outbox_for_account(ada_account).await.unwrap();
    assert_eq!(
        outbox.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["receipt-pending", "receipt-sending"]
    );
    assert!(outbox
        .iter()
        .all(|m| m.account_id == ada_account && m.to.is_none()));
    assert_eq!(
        store
            .outbox_status(ada_account, "receipt-pending")
            .await
            .unwrap(),
        Some((OutboxState::Pending, 0))
    );
    assert_eq!(
        store
            .outbox_status(ada_account, "receipt-sending")
            .await
            .unwrap(),
        Some((OutboxState::Sending, 1))
    );
    let due = store
        .pending_outbox(now, Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["receipt-pending"],
        "the sending one is still claimed"
    );
    assert!(store.event_seen("evt_1").await.unwrap());
    assert!(!store.claim_event("evt_1", now).await.unwrap());

    // The copies are live documents: the counter takes increments, and the
    // day index leads the rollup to Ada.
    let outcome = store
        .increment_usage(&UsageIncrement {
            account_id: ada_account,
            key: keys[0],
            amount: 1,
            limit: Some(10),
            at: now,
        })
        .await
        .unwrap();
    assert_eq!(outcome, UsageOutcome::Admitted { total: 8 });
    let rolled = store
        .roll_up_day(old.day, old.month, None, 10)
        .await
        .unwrap();
    assert_eq!(rolled.len(), 1, "{rolled:?}");
    assert_eq!(rolled[0].account_id, ada_account);
    assert_eq!((rolled[0].documents, rolled[0].api_calls), (8, 12));
}

#[tokio::test]
async fn a_half_done_run_is_finished_and_conflicts_are_reported() {
    let client = support::cosmos_memory::client(Vec::new()).await;
    let db = old_database(&client, OLD).await;
    let now = now();
    let old = seed(&db, now).await;
    cosmos::init(&client, NEW).await.unwrap();

    // A run that stopped after Ada's user document, before her account.
    let users = client
        .database_client(NEW.to_owned())
        .container_client("users", None)
        .await
        .unwrap();
    let mut ada = old_user(
        old.ada,
        "ada@example.com",
        "Ada Lovelace",
        now - Duration::days(100),
        Value::Null,
    );
    ada.as_object_mut().unwrap().remove("watch_at");
    ada["user"].as_object_mut().unwrap().remove("subscription");
    users
        .create_item(old.ada.to_string(), &old.ada.to_string(), &ada, None)
        .await
        .unwrap();
    // And someone registered with Bob's address in the new database.
    let store = CosmosStore::open(&client, NEW).await.unwrap();
    let squatter = registration("bob@example.com", now);
    store
        .register(&squatter.0, &squatter.1, &squatter.2, &[])
        .await
        .unwrap();

    let report = migrate(&client, OLD, NEW, now).await.unwrap();
    assert_eq!(report.users, tally(1, 0, 1), "{:#?}", report.lines());
    assert_eq!(
        report.usage_counters,
        tally(3, 0, 2),
        "{:#?}",
        report.lines()
    );
    assert_eq!(report.problems.len(), 2, "{:#?}", report.lines());
    assert!(
        report.problems[0].contains(&old.bob.to_string()) && report.problems[0].contains("email"),
        "{:?}",
        report.problems
    );
    assert!(
        report.problems[1].starts_with(&format!("1 record(s) of user {}", old.bob)),
        "{:?}",
        report.problems
    );
    assert!(report
        .lines()
        .iter()
        .any(|l| l.starts_with("not migrated: ") && l.contains("email")));

    // Ada is complete; Bob's address still belongs to the other user.
    let ada_account = AccountId(old.ada);
    assert_eq!(
        store
            .account_by_stripe_customer("cus_ada")
            .await
            .unwrap()
            .map(|a| a.value.id),
        Some(ada_account)
    );
    assert_eq!(store.members(ada_account).await.unwrap().len(), 1);
    assert_eq!(
        store
            .user_by_email(&Email::parse("bob@example.com").unwrap())
            .await
            .unwrap()
            .map(|u| u.value.id),
        Some(squatter.0.id)
    );
    assert!(store
        .account_by_id(AccountId(old.bob))
        .await
        .unwrap()
        .is_none());

    // A run into the old database itself, or from a new one, is refused.
    let same = migrate(&client, OLD, OLD, now).await.unwrap_err();
    assert!(same.to_string().contains("new one"), "{same}");
    let backwards = migrate(&client, NEW, OLD, now).await.unwrap_err();
    assert!(
        backwards.to_string().contains("handler cosmos init"),
        "{backwards}"
    );
}

mod handler_binary {
    //! `handler migrate` as an engineer runs it, against the Cosmos REST
    //! server on loopback (tests/cosmos-server): `cosmos init` for the new
    //! database, then the migration, twice.

    use std::process::Command;

    use super::*;

    const HANDLER: &str = env!("CARGO_BIN_EXE_handler");

    /// Runs the handler with the settings of `database`; its success,
    /// standard output and standard error.
    fn handler(database: &str, args: &[&str]) -> (bool, String, String) {
        let s = super::support::cosmos_server::settings(database);
        let key = s.key.as_ref().unwrap();
        let out = Command::new(HANDLER)
            .args(args)
            .env_clear()
            .env("COSMOS__accountEndpoint", &s.endpoint)
            .env(
                "COSMOS_KEY",
                kraftd_billing::domain::secret::ExposeSecret::expose_secret(key),
            )
            .env("COSMOS_DATABASE", database)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[tokio::test]
    async fn handler_migrate_copies_into_the_configured_database_once() {
        let old_name = format!("old-{}", Uuid::new_v4().simple());
        let new_name = format!("new-{}", Uuid::new_v4().simple());
        let client = cosmos::client::connect(&super::support::cosmos_server::settings(&old_name))
            .await
            .unwrap();
        let db = old_database(&client, &old_name).await;
        let now = now();
        let old = seed(&db, now).await;
        let migrate = ["migrate", "--from-database", old_name.as_str()];

        // Not before the new database is made.
        let (ok, _, err) = handler(&new_name, &migrate);
        assert!(!ok && err.contains("handler cosmos init"), "{err}");
        // Nor into the old one.
        let (ok, _, err) = handler(&old_name, &migrate);
        assert!(!ok && err.contains("migrate into a new one"), "{err}");

        let (ok, _, err) = handler(&new_name, &["cosmos", "init"]);
        assert!(ok, "{err}");
        let (ok, first, err) = handler(&new_name, &migrate);
        assert!(ok, "{first}{err}");
        for line in [
            "users (each with their own account): 2 copied, 0 already there, 0 skipped",
            "outbox messages: 2 copied, 0 already there, 2 skipped (sent or failed, dropped",
            "usage counters: 4 copied, 0 already there, 1 skipped",
            "invoices: 2 copied, 0 already there, 0 skipped",
        ] {
            assert!(first.contains(line), "{line:?} not in:\n{first}");
        }
        let (ok, second, err) = handler(&new_name, &migrate);
        assert!(ok, "{second}{err}");
        for line in [
            "users (each with their own account): 0 copied, 2 already there, 0 skipped",
            "usage counters: 0 copied, 4 already there, 1 skipped",
            "payments: 0 copied, 1 already there, 1 skipped",
        ] {
            assert!(second.contains(line), "{line:?} not in:\n{second}");
        }
        assert!(!second.contains("not migrated"), "{second}");

        let store = CosmosStore::open(&client, &new_name).await.unwrap();
        let ada = AccountId(old.ada);
        assert_eq!(
            store
                .user_by_email(&Email::parse("ada@example.com").unwrap())
                .await
                .unwrap()
                .map(|u| u.value.id),
            Some(UserId(old.ada))
        );
        assert_eq!(
            store
                .account_by_stripe_customer("cus_ada")
                .await
                .unwrap()
                .map(|a| a.value.id),
            Some(ada)
        );
        let keys = [
            UsageKey::current(Metric::Documents, now),
            UsageKey::current(Metric::ApiCalls, now),
        ];
        assert_eq!(store.usage(ada, &keys).await.unwrap(), [7, 12]);
        assert_eq!(store.outbox_for_account(ada).await.unwrap().len(), 2);
        assert_eq!(store.invoices(ada, now).await.unwrap().len(), 2);
    }
}

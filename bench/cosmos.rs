//! Cosmos DB cost behind `scripts/bench`: round trips and request units per
//! operation of the service, on the Cosmos SDK's in-process emulator, whose
//! RU charges follow its cost model of the service (1 RU a 1 KB point read,
//! about 6 RU a small write, more for indexed properties). The whole
//! service runs (HTTP, webhooks from the Stripe simulator, the rollup use
//! case); the store's meter reads each response's `x-ms-request-charge`.
//!
//! Usage: cosmos. Prints a Markdown table.

#[path = "../tests/support/cosmos_memory.rs"]
mod cosmos_memory;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kraftd_billing::config::Config;
use kraftd_billing::domain::clock::ManualClock;
use kraftd_billing::domain::ports::Store;
use kraftd_billing::domain::secret::Secret;
use kraftd_billing::http;
use kraftd_billing::payments::stripe::{StripePayments, StripeSettings};
use kraftd_billing::payments::webhook::StripeWebhookVerifier;
use kraftd_billing::server::{self, Adapters};
use kraftd_billing::store::cosmos::{Meter, MeterReading};
use kraftd_billing::stripe_sim::{SimOptions, StripeSim};
use serde_json::{json, Value};

const WEBHOOK_SECRET: &str = "whsec_bench_0123456789";
const PASSWORD: &str = "correct horse 9";

struct Row {
    what: String,
    per: Per,
}

/// A cost per operation: round trips and request units, each a mean.
struct Per(f64, f64);

fn per(total: MeterReading, n: usize) -> Per {
    let n = n.max(1) as f64;
    Per(total.round_trips as f64 / n, total.request_units / n)
}

async fn measure<F: std::future::Future<Output = usize>>(meter: &Meter, f: F) -> Per {
    let before = meter.reading();
    let n = f.await;
    per(meter.reading() - before, n)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _client) = cosmos_memory::store_with(Vec::new()).await;
    let meter = store.meter().clone();
    let store: Arc<dyn Store> = Arc::new(store);
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let data_dir = dir.path().to_string_lossy().into_owned();
    let vars = [
        ("JWT_SECRET", "bench-secret-0123456789abcdef0123456789"),
        ("DATA_DIR", data_dir.as_str()),
        ("FREE_PLAN_DOCS_LIMIT", "10"),
    ];
    let config = Config::from_lookup(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let sim = StripeSim::start(SimOptions {
        webhook_secret: WEBHOOK_SECRET.into(),
        clock: clock.clone(),
    })
    .await
    .unwrap();
    let payments = StripePayments::new(
        StripeSettings {
            secret_key: Secret::from("sk_test_bench"),
            api_base: Some(sim.base_url()),
            checkout_success_url: config.checkout_success_url.clone(),
            checkout_cancel_url: config.checkout_cancel_url.clone(),
            timeout: Duration::from_secs(5),
            backoff: Duration::from_millis(20),
        },
        server::catalog(&config),
    )
    .unwrap();
    payments.sync_catalog().await.unwrap();
    let state = server::state(
        &config,
        Adapters {
            store: store.clone(),
            payments: Arc::new(payments),
            webhooks: Arc::new(StripeWebhookVerifier::new(vec![Secret::from(
                WEBHOOK_SECRET,
            )])),
            mailer: server::mailer(&config).unwrap(),
            clock: clock.clone(),
        },
    )
    .unwrap();
    let billing = state.billing.clone();
    let router = http::router(state, &[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    sim.set_webhook_url(Some(format!("http://{addr}/api/webhooks/stripe")));
    let base = format!("http://{addr}/api");
    let client = reqwest::Client::new();
    let register = |email: String, plan: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .post(format!("{base}/auth/register/with-plan"))
                .json(&json!({"email": email, "password": PASSWORD, "name": "Bench", "plan_id": plan}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let mut rows = Vec::new();

    let mut token = String::new();
    let r = measure(&meter, async {
        let body = register("free@bench.io".into(), "free").await;
        token = body["access_token"].as_str().unwrap().to_owned();
        1
    })
    .await;
    rows.push(Row {
        what: "registration on Free".into(),
        per: r,
    });

    let get = |path: &'static str| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
    };
    let r = measure(&meter, async {
        assert_eq!(get("/entitlements").await.unwrap().status(), 200);
        1
    })
    .await;
    rows.push(Row {
        what: "metered request, the account's first of the day (creates the day's counter)".into(),
        per: r,
    });
    let r = measure(&meter, async {
        for _ in 0..200 {
            assert_eq!(get("/entitlements").await.unwrap().status(), 200);
        }
        200
    })
    .await;
    rows.push(Row {
        what: "metered request (JWT, the reads that find the acting account, counter increment), mean of 200".into(),
        per: r,
    });
    let consume = || {
        client
            .post(format!("{base}/usage/consume"))
            .bearer_auth(&token)
            .json(&json!({"metric": "documents", "quantity": 1}))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(consume().await.unwrap().status(), 200);
    }
    let r = measure(&meter, async {
        for _ in 0..20 {
            assert_eq!(consume().await.unwrap().status(), 403);
        }
        20
    })
    .await;
    rows.push(Row {
        what: "consume refused at the limit (API call counted, document increment taken back)"
            .into(),
        per: r,
    });

    // Webhooks: the whole lifecycle of paid checkouts, per event applied.
    let before_events = sim.events().len();
    let mut sessions = Vec::new();
    for n in 0..20 {
        let body = register(format!("pro{n}@bench.io"), "pro").await;
        sessions.push(body["session_id"].as_str().unwrap().to_owned());
    }
    let before = meter.reading();
    for s in &sessions {
        sim.complete_checkout(s).await.unwrap();
    }
    sim.wait_for_webhooks().await;
    let events = sim.events().len() - before_events;
    rows.push(Row {
        what: format!("webhook event, mean of the {events} events of 20 paid checkouts"),
        per: per(meter.reading() - before, events),
    });
    let before = meter.reading();
    for event in sim.events().iter().skip(before_events).take(20) {
        sim.deliver(event).await;
    }
    rows.push(Row {
        what: "webhook event delivered again (deduplicated)".into(),
        per: per(meter.reading() - before, 20),
    });

    // The daily rollup of yesterday, per active account: the paid users
    // make a metered call each, so the day has 21 active accounts.
    for n in 0..20 {
        let login: Value = client
            .post(format!("{base}/auth/login"))
            .json(&json!({"email": format!("pro{n}@bench.io"), "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = client
            .get(format!("{base}/entitlements"))
            .bearer_auth(login["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    clock.set(clock_now(&clock) + chrono::Duration::days(1));
    let before = meter.reading();
    let report = billing.roll_up_usage().await.unwrap();
    rows.push(Row {
        what: format!(
            "daily rollup, per active account ({} accounts summarised)",
            report.summaries
        ),
        per: per(meter.reading() - before, report.summaries),
    });

    // Team seats: a Pro owner invites five people, and each accepts (the
    // seat count, lock, invitation or membership and email in one batch).
    let owner: Value = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "pro0@bench.io", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let owner_token = owner["access_token"].as_str().unwrap().to_owned();
    let account = owner["account"]["id"].as_str().unwrap().to_owned();
    let r = measure(&meter, async {
        for n in 0..5 {
            let status = client
                .post(format!("{base}/account/invitations"))
                .bearer_auth(&owner_token)
                .json(&json!({"email": format!("joiner{n}@bench.io"), "role": "member"}))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 201);
        }
        5
    })
    .await;
    rows.push(Row {
        what: "invitation sent (seats counted and locked, invitation and email in one batch)"
            .into(),
        per: r,
    });
    let account_id = kraftd_billing::domain::account::AccountId(account.parse().unwrap());
    let tokens: Vec<String> = store
        .outbox_for_account(account_id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| m.data.get("invitation_url").cloned())
        .map(|url| url.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 5);
    let mut joiners = Vec::new();
    for n in 0..5 {
        let body = register(format!("joiner{n}@bench.io"), "free").await;
        joiners.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let r = measure(&meter, async {
        for (joiner, token) in joiners.iter().zip(&tokens) {
            let status = client
                .post(format!("{base}/invitations/{token}/accept"))
                .bearer_auth(joiner)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
        5
    })
    .await;
    rows.push(Row {
        what: "invitation accepted (invitation used up, membership and email in one batch)".into(),
        per: r,
    });

    println!("| Cosmos DB cost (SDK in-memory emulator's RU model) | round trips | RU |");
    println!("|---|---:|---:|");
    for row in rows {
        println!("| {} | {:.1} | {:.1} |", row.what, row.per.0, row.per.1);
    }
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<Utc> {
    use kraftd_billing::domain::clock::Clock;
    clock.now()
}

//! Webhook burst benchmark behind `scripts/bench`: signed lifecycle events
//! per second that the service verifies, deduplicates and applies (re-reading
//! each object from the Stripe simulator on loopback and writing to the
//! embedded store), against signature verification alone on the same events.
//!
//! Usage: webhooks [USERS] (default 200). Prints a Markdown table.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use kraftd_billing::clock::SystemClock;
use kraftd_billing::config::Config;
use kraftd_billing::domain::clock::Clock;
use kraftd_billing::domain::ports::{Store, WebhookVerifier};
use kraftd_billing::domain::secret::Secret;
use kraftd_billing::payments::stripe::{StripePayments, StripeSettings};
use kraftd_billing::payments::webhook::StripeWebhookVerifier;
use kraftd_billing::server::{self, Adapters};
use kraftd_billing::store::SqliteStore;
use kraftd_billing::stripe_sim::{SimOptions, StripeSim};
use serde_json::{json, Value};

const SECRET: &str = "whsec_bench";
const CONCURRENCY: usize = 16;

#[tokio::main]
async fn main() {
    let users: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sim = StripeSim::start(SimOptions {
        webhook_secret: SECRET.into(),
        clock: clock.clone(),
    })
    .await
    .unwrap();
    let data_dir = dir.path().to_string_lossy().into_owned();
    let vars = [
        ("JWT_SECRET", "bench-secret-0123456789abcdef0123456789"),
        ("FREE_PLAN_API_LIMIT", "1000000000"),
        ("DATA_DIR", data_dir.as_str()),
    ];
    let config = Config::from_lookup(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let payments = StripePayments::new(
        StripeSettings {
            secret_key: Secret::from("sk_test_bench"),
            api_base: Some(sim.base_url()),
            checkout_success_url: config.checkout_success_url.clone(),
            checkout_cancel_url: config.checkout_cancel_url.clone(),
            timeout: std::time::Duration::from_secs(10),
            backoff: std::time::Duration::from_millis(50),
        },
        server::catalog(&config),
    )
    .unwrap();
    payments.sync_catalog().await.unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("billing.sqlite3")).unwrap());
    let verifier = Arc::new(StripeWebhookVerifier::new(vec![Secret::from(SECRET)]));
    let router = server::app(
        &config,
        Adapters {
            store,
            payments: Arc::new(payments),
            webhooks: verifier.clone(),
            mailer: server::mailer(&config).unwrap(),
            clock: clock.clone(),
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();

    // Paid registrations whose checkout events are held back, then replayed as a burst.
    sim.hold_webhooks(true);
    for n in 0..users {
        let r: Value = http
            .post(format!("{base}/api/auth/register/with-plan"))
            .json(&json!({"email": format!("burst{n}@example.com"), "password": "correct horse 9", "name": "B", "plan_id": "pro"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sim.complete_checkout(r["session_id"].as_str().unwrap())
            .await
            .unwrap();
    }
    sim.wait_for_webhooks().await;
    let events: Vec<String> = sim.held_events().iter().map(Value::to_string).collect();
    sim.clear_held();

    let start = Instant::now();
    for payload in &events {
        let sig = sim.signature(payload, Utc::now().timestamp());
        verifier
            .verify(payload.as_bytes(), Some(&sig), Utc::now())
            .unwrap();
    }
    let verify_rate = events.len() as f64 / start.elapsed().as_secs_f64();

    let deliver = |label: &'static str| {
        let (http, base, sim, events) = (http.clone(), base.clone(), sim.clone(), events.clone());
        async move {
            let start = Instant::now();
            let chunks: Vec<Vec<String>> = events
                .chunks(events.len().div_ceil(CONCURRENCY))
                .map(<[String]>::to_vec)
                .collect();
            let tasks: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let (http, base, sim) = (http.clone(), base.clone(), sim.clone());
                    tokio::spawn(async move {
                        for payload in chunk {
                            let sig = sim.signature(&payload, Utc::now().timestamp());
                            let r = http
                                .post(format!("{base}/api/webhooks/stripe"))
                                .header("stripe-signature", sig)
                                .header("content-type", "application/json")
                                .body(payload)
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(r.status(), 200, "{label}");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            events.len() as f64 / start.elapsed().as_secs_f64()
        }
    };
    let applied = deliver("first delivery").await;
    let duplicates = deliver("duplicate delivery").await;

    println!("| webhook figure ({} events from {users} checkouts, {CONCURRENCY} concurrent senders) | events/s | ratio to verification alone |", events.len());
    println!("|---|---:|---:|");
    println!("| signature verification alone (in process) | {verify_rate:.0} | 1.00 |");
    println!("| verified, deduplicated and applied (HTTP, Stripe re-read on loopback, SQLite) | {applied:.0} | {:.3} |", applied / verify_rate);
    println!(
        "| duplicates: verified and acknowledged | {duplicates:.0} | {:.3} |",
        duplicates / verify_rate
    );
}

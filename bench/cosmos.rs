//! Cosmos DB cost behind `scripts/bench`: round trips and request units per
//! operation of the service, on the Cosmos SDK's in-process emulator, whose
//! RU charges follow its cost model of the service (1 RU a 1 KB point read,
//! about 6 RU a small write, more for indexed properties). The whole
//! service runs (HTTP, the service routes KRAFTD's services call with a
//! service key, webhooks from the Stripe simulator, the rollup use case);
//! the store's meter reads each response's `x-ms-request-charge`. Round
//! trips are requests to the store, parallel ones counted each.
//!
//! Usage: cosmos. Prints a Markdown table.

#[path = "../tests/support/cosmos_memory.rs"]
mod cosmos_memory;
#[path = "serve.rs"]
mod serve;

use std::sync::Arc;

use chrono::Utc;
use kraftd_billing::app::service_keys;
use kraftd_billing::domain::clock::ManualClock;
use kraftd_billing::domain::ports::Store;
use kraftd_billing::domain::service::Scope;
use kraftd_billing::store::cosmos::{Meter, MeterReading};
use kraftd_billing::stripe_sim::{SimOptions, StripeSim};
use serde_json::{json, Value};

use serve::WEBHOOK_SECRET;
const PASSWORD: &str = "correct horse 9";

struct Row {
    what: String,
    per: Per,
}

/// A cost per operation: round trips and request units, each a mean.
struct Per(f64, f64);

/// Costs summed over operations measured one at a time.
#[derive(Default)]
struct Tally(MeterReading);

impl Tally {
    fn add(&mut self, r: MeterReading) {
        self.0.round_trips += r.round_trips;
        self.0.request_units += r.request_units;
    }

    fn plus(&self, other: &Tally) -> Tally {
        let mut sum = Tally(self.0);
        sum.add(other.0);
        sum
    }

    fn per(&self, n: usize) -> Per {
        per(self.0, n)
    }
}

/// One of KRAFTD's services, calling the service routes of one account
/// with its key.
#[derive(Clone)]
struct Service {
    client: reqwest::Client,
    /// `…/api/accounts/<id>`.
    base: String,
    key: String,
}

impl Service {
    /// `POST …/usage` named by `key`; the status.
    async fn report(&self, key: &str, metric: &str, quantity: i64) -> u16 {
        self.client
            .post(format!("{}/usage", self.base))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", key)
            .json(&json!({"metric": metric, "quantity": quantity}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Holds one document under `key`, expecting `status`; the
    /// reservation's id when held.
    async fn reserve(&self, key: &str, status: u16) -> String {
        let response = self
            .client
            .post(format!("{}/reservations", self.base))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", key)
            .json(&json!({"metric": "documents", "quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap_or_default().to_owned()
    }
}

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
        // Every registration and sign-in here comes from 127.0.0.1: the
        // per-address sign-in throttle would refuse the 21st.
        ("SIGN_IN_PER_ADDRESS_PER_MINUTE", "1000000"),
        ("SIGN_IN_PER_ADDRESS_BURST", "1000000"),
    ];
    let config = serve::config(&vars);
    let sim = StripeSim::start(SimOptions {
        webhook_secret: WEBHOOK_SECRET.into(),
        clock: clock.clone(),
    })
    .await
    .unwrap();
    let (billing, addr) = serve::instance(&config, store.clone(), &sim, clock.clone()).await;
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

    let mut registered = Value::Null;
    let r = measure(&meter, async {
        registered = register("free@bench.io".into(), "free").await;
        1
    })
    .await;
    rows.push(Row {
        what: "registration on Free".into(),
        per: r,
    });
    let token = registered["access_token"].as_str().unwrap().to_owned();

    let free_account = registered["account"]["id"].as_str().unwrap().to_owned();

    // The baseline: one point read of a 1 KB document, straight from the
    // store (no HTTP), so every other row reads as a multiple of it.
    let free_id = kraftd_billing::domain::account::AccountId(free_account.parse().unwrap());
    let r = measure(&meter, async {
        assert!(store.account_by_id(free_id).await.unwrap().is_some());
        1
    })
    .await;
    rows.push(Row {
        what: "baseline: one point read (the account, from the store, no HTTP)".into(),
        per: r,
    });

    // A signed-in read: since the service API, no signed-in request counts
    // an API call (KRAFTD's services report them), so it costs its reads.
    let r = measure(&meter, async {
        for _ in 0..200 {
            let status = client
                .get(format!("{base}/entitlements"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
        200
    })
    .await;
    rows.push(Row {
        what: "signed-in read, GET /api/entitlements (JWT; user, membership and account reads; no longer metered), mean of 200".into(),
        per: r,
    });

    // KRAFTD's services, with a service key, on the free account
    // (documents limit 10).
    let key = service_keys::issue(
        store.as_ref(),
        "bench",
        vec![Scope::UsageWrite, Scope::EntitlementsRead],
        clock_now(&clock),
    )
    .await
    .unwrap()
    .secret;
    let service = Service {
        client: client.clone(),
        base: format!("{base}/accounts/{free_account}"),
        key,
    };
    let r = measure(&meter, async {
        let status = service.report("calls-0", "api_calls", 1).await;
        assert_eq!(status, 200);
        1
    })
    .await;
    rows.push(Row {
        what: "usage report (POST …/usage, Idempotency-Key), the account's first API calls of the day (creates the counter and the rollup's day index)".into(),
        per: r,
    });
    let r = measure(&meter, async {
        for n in 1..=100 {
            assert_eq!(
                service.report(&format!("calls-{n}"), "api_calls", 1).await,
                200
            );
        }
        100
    })
    .await;
    rows.push(Row {
        what: "usage report, named (counter and record reads, one batch; the service key and the account kept 5 s), mean of 100".into(),
        per: r,
    });
    let r = measure(&meter, async {
        for n in 1..=20 {
            assert_eq!(
                service.report(&format!("calls-{n}"), "api_calls", 1).await,
                200
            );
        }
        20
    })
    .await;
    rows.push(Row {
        what: "usage report replayed (same Idempotency-Key: answered from its record, nothing written), mean of 20".into(),
        per: r,
    });

    // Reservations of documents: five held and committed whole (an empty
    // commit body), five held and released.
    let (mut reserves, mut commits, mut releases) =
        (Tally::default(), Tally::default(), Tally::default());
    for n in 0..5 {
        let before = meter.reading();
        let id = service.reserve(&format!("doc-{n}"), 201).await;
        reserves.add(meter.reading() - before);
        let before = meter.reading();
        let status = service
            .client
            .post(format!("{}/reservations/{id}/commit", service.base))
            .bearer_auth(&service.key)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        commits.add(meter.reading() - before);
    }
    for n in 0..5 {
        let id = service.reserve(&format!("draft-{n}"), 201).await;
        let before = meter.reading();
        let status = service
            .client
            .delete(format!("{}/reservations/{id}", service.base))
            .bearer_auth(&service.key)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        releases.add(meter.reading() - before);
    }
    rows.push(Row {
        what: "reservation round trip: reserve + commit (empty body), the pair, mean of 5 (the first writes the day's first documents)".into(),
        per: reserves.plus(&commits).per(5),
    });
    rows.push(Row {
        what: "reserve (POST …/reservations: the record read, one batch on the counter as the instance last wrote it), mean of 5".into(),
        per: reserves.per(5),
    });
    rows.push(Row {
        what: "commit, empty body (one batch on the reservation and counter its reserve wrote), mean of 5".into(),
        per: commits.per(5),
    });
    rows.push(Row {
        what: "release (DELETE …/reservations/{id}: one batch, as a commit), mean of 5".into(),
        per: releases.per(5),
    });

    // Up to the documents limit (10), then refusals: nothing is written.
    assert_eq!(service.report("fill", "documents", 5).await, 200);
    let r = measure(&meter, async {
        for n in 0..20 {
            service.reserve(&format!("over-{n}"), 403).await;
        }
        20
    })
    .await;
    rows.push(Row {
        what: "reservation refused at the limit (403; reads only, nothing written), mean of 20"
            .into(),
        per: r,
    });
    let r = measure(&meter, async {
        for n in 0..20 {
            assert_eq!(
                service.report(&format!("over-{n}"), "documents", 1).await,
                403
            );
        }
        20
    })
    .await;
    rows.push(Row {
        what: "usage report refused at the limit (403; reads only, nothing recorded), mean of 20"
            .into(),
        per: r,
    });
    let r = measure(&meter, async {
        for _ in 0..20 {
            let status = service
                .client
                .get(format!("{}/entitlements", service.base))
                .bearer_auth(&service.key)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
        20
    })
    .await;
    rows.push(Row {
        what: "entitlements read by a service (GET …/entitlements: every metric's counter, the seats), mean of 20".into(),
        per: r,
    });

    // Webhooks: the whole lifecycle of paid checkouts, per event applied.
    let before_events = sim.events().len();
    let mut sessions = Vec::new();
    for n in 0..20 {
        let body = register(format!("pro{n}@bench.io"), "pro").await;
        sessions.push(
            body["session_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned(),
        );
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

    // The daily rollup of yesterday, per active account: a service reports
    // an API call for each paid account, so the day has 21 active accounts.
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
        let paid = Service {
            base: format!(
                "{base}/accounts/{}",
                login["account"]["id"].as_str().unwrap()
            ),
            ..service.clone()
        };
        assert_eq!(paid.report("call", "api_calls", 1).await, 200);
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
    let account_id = kraftd_billing::domain::account::AccountId(account.parse().unwrap());
    // Only an owner who verified their email may invite: follow the link
    // registration mailed.
    let verify = store
        .outbox_for_account(account_id)
        .await
        .unwrap()
        .into_iter()
        .find_map(|m| m.data.get("verify_url").cloned())
        .unwrap();
    let status = client
        .post(format!("{base}/auth/verify-email"))
        .json(&json!({"token": verify.rsplit('/').next().unwrap()}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
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

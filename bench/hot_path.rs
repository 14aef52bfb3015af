//! The hot path's Cosmos DB cost behind `scripts/bench` (issue 18), on the
//! Cosmos SDK's in-process emulator and on the Cosmos REST test server
//! (tests/cosmos-server, over loopback HTTPS), each beside the floor of
//! one point read measured in the same run: round trips and RU per
//! admitted API call over a burst from concurrent clients on TWO billing
//! instances sharing one store (`POST …/usage/calls`, admitted from quota
//! leases), per refused call, per document (reserve + commit, with their
//! Idempotency-Keys), a check that the burst admitted exactly the limit,
//! and the deployment package's size (dist/, as `scripts/package` left it).
//!
//! Usage: hot_path [BURST] [LIMIT]. Prints a Markdown table.

#[path = "../tests/support/cosmos_memory.rs"]
mod cosmos_memory;
#[path = "../tests/support/cosmos_server.rs"]
mod cosmos_server;
#[path = "serve.rs"]
mod serve;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kraftd_billing::app::service_keys;
use kraftd_billing::clock::SystemClock;
use kraftd_billing::config::Config;
use kraftd_billing::domain::account::AccountId;
use kraftd_billing::domain::ports::Store;
use kraftd_billing::domain::service::Scope;
use kraftd_billing::domain::usage::{Metric, UsageKey};
use kraftd_billing::store::cosmos::{self, CosmosStore, Meter, MeterReading};
use kraftd_billing::stripe_sim::{SimOptions, StripeSim};
use serde_json::{json, Value};

use serve::WEBHOOK_SECRET;
/// Concurrent clients in the burst, half on each instance.
const CLIENTS: usize = 16;

/// One billing instance: its use-cases and where it listens.
struct Instance {
    billing: Arc<kraftd_billing::app::Billing>,
    base: String,
}

async fn instance(config: &Config, store: Arc<dyn Store>, sim: &StripeSim) -> Instance {
    let (billing, addr) = serve::instance(config, store, sim, Arc::new(SystemClock)).await;
    Instance {
        billing,
        base: format!("http://{addr}/api"),
    }
}

struct Figures {
    floor: (f64, f64),
    admitted: usize,
    refused_in_burst: usize,
    per_admitted: (f64, f64),
    per_refused: (f64, f64),
    per_document: (f64, f64),
    first_document: (f64, f64),
    recorded: (u64, u64),
    seconds: f64,
}

fn per(r: MeterReading, n: usize) -> (f64, f64) {
    let n = n.max(1) as f64;
    (r.round_trips as f64 / n, r.request_units / n)
}

/// The burst and the rest on one store.
async fn run(store: CosmosStore, burst: usize, limit: u64, sim: &StripeSim) -> Figures {
    let meter: Meter = store.meter().clone();
    let store: Arc<dyn Store> = Arc::new(store);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_string_lossy().into_owned();
    let limit_var = limit.to_string();
    let vars = [
        ("JWT_SECRET", "bench-secret-0123456789abcdef0123456789"),
        ("DATA_DIR", data_dir.as_str()),
        ("FREE_PLAN_API_LIMIT", limit_var.as_str()),
        ("FREE_PLAN_DOCS_LIMIT", "1000"),
    ];
    let config = serve::config(&vars);
    let instances = [
        instance(&config, store.clone(), sim).await,
        instance(&config, store.clone(), sim).await,
    ];
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let registered: Value = client
        .post(format!("{}/auth/register/with-plan", instances[0].base))
        .json(&json!({"email": "gateway@bench.io", "password": "correct horse 9", "name": "Bench", "plan_id": "free"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account = registered["account"]["id"].as_str().unwrap().to_owned();
    let account_id = AccountId(account.parse().unwrap());
    let key = service_keys::issue(
        store.as_ref(),
        "gateway",
        vec![Scope::UsageWrite, Scope::EntitlementsRead],
        chrono::Utc::now(),
    )
    .await
    .unwrap()
    .secret;

    let before = meter.reading();
    assert!(store.account_by_id(account_id).await.unwrap().is_some());
    let floor = per(meter.reading() - before, 1);

    let usage: Vec<String> = instances
        .iter()
        .map(|i| format!("{}/accounts/{account}/usage/calls", i.base))
        .collect();
    let (client_c, key_c) = (client.clone(), key.clone());
    let call = move |n: usize| {
        let (client, key, url) = (client_c.clone(), key_c.clone(), usage[n % 2].clone());
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"quantity": 1}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    // The burst: CLIENTS clients, each on one instance, `burst` calls.
    let started = std::time::Instant::now();
    let before = meter.reading();
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (next, tally, call) = (next.clone(), tally.clone(), call.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < burst {
                    match call(c).await {
                        200 => tally[0].fetch_add(1, Ordering::Relaxed),
                        429 => tally[1].fetch_add(1, Ordering::Relaxed),
                        other => panic!("status {other}"),
                    };
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    // As at shutdown: the leases come back, with what they admitted.
    for i in &instances {
        i.billing.give_back_leases(true).await;
    }
    let burst_cost = meter.reading() - before;
    let seconds = started.elapsed().as_secs_f64();
    let (admitted, refused_in_burst) = (
        tally[0].load(Ordering::Relaxed),
        tally[1].load(Ordering::Relaxed),
    );
    let now = chrono::Utc::now();
    let level = store
        .levels(account_id, &[UsageKey::current(Metric::ApiCalls, now)], now)
        .await
        .unwrap()[0];

    // Refusals once the day's calls are used up, on both instances.
    let before = meter.reading();
    for n in 0..1000 {
        assert_eq!(call(n).await, 429);
    }
    let per_refused = per(meter.reading() - before, 1000);

    // Documents: a reservation and its commit (empty body), each named;
    // the instance's first of the day apart (it reads the counter and
    // indexes the day), then the mean of the next five.
    let docs = format!("{}/accounts/{account}", instances[0].base);
    let mut first_document = (0.0, 0.0);
    let mut before = meter.reading();
    for n in 0..6 {
        if n == 1 {
            first_document = per(meter.reading() - before, 1);
            before = meter.reading();
        }
        let held: Value = client
            .post(format!("{docs}/reservations"))
            .bearer_auth(&key)
            .header("Idempotency-Key", format!("doc-{n}"))
            .json(&json!({"metric": "documents", "quantity": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = held["id"].as_str().unwrap_or_else(|| panic!("{held}"));
        let status = client
            .post(format!("{docs}/reservations/{id}/commit"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let per_document = per(meter.reading() - before, 5);

    Figures {
        floor,
        admitted,
        refused_in_burst,
        per_admitted: per(burst_cost, admitted),
        per_refused,
        per_document,
        first_document,
        recorded: (level.used, level.held),
        seconds,
    }
}

fn row(what: &str, (rt, ru): (f64, f64), floor: (f64, f64)) -> String {
    format!(
        "| {what} | {rt:.3} | {ru:.2} | {:.3}× / {:.2}× |",
        rt / floor.0,
        ru / floor.1
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let burst: usize = args.next().map_or(12_000, |a| a.parse().unwrap());
    let limit: u64 = args.next().map_or(10_000, |a| a.parse().unwrap());
    let sim = StripeSim::start(SimOptions {
        webhook_secret: WEBHOOK_SECRET.into(),
        clock: Arc::new(SystemClock),
    })
    .await
    .unwrap();
    let memory = cosmos_memory::store_with(Vec::new()).await.0;
    let settings = cosmos_server::settings(&format!("bench-{}", uuid::Uuid::new_v4()));
    let client = cosmos::client::connect(&settings).await.unwrap();
    cosmos::init(&client, &settings.database).await.unwrap();
    let server = CosmosStore::open(&client, &settings.database)
        .await
        .unwrap();
    println!("| hot path ({burst} unnamed API calls against a daily limit of {limit}, {CLIENTS} clients on two instances sharing one store) | round trips | RU | to the floor (RT / RU) |");
    println!("|---|---:|---:|---:|");
    for (name, store) in [("SDK emulator", memory), ("Cosmos test server", server)] {
        let f = run(store, burst, limit, &sim).await;
        let exact = f.admitted as u64 == limit && f.recorded == (limit, 0);
        println!(
            "{}",
            row(&format!("{name}: floor, one point read"), f.floor, f.floor)
        );
        println!(
            "{}",
            row(
                &format!(
                    "{name}: per admitted API call ({} admitted, {} refused in {:.1} s; leases given back)",
                    f.admitted, f.refused_in_burst, f.seconds
                ),
                f.per_admitted,
                f.floor
            )
        );
        println!(
            "{}",
            row(
                &format!("{name}: per refused API call (mean of 1000 past the limit)"),
                f.per_refused,
                f.floor
            )
        );
        println!("{}", row(&format!("{name}: first document of the day on an instance, reserve + commit (Idempotency-Key, empty commit body)"), f.first_document, f.floor));
        println!(
            "{}",
            row(
                &format!("{name}: per document after it, reserve + commit (mean of 5)"),
                f.per_document,
                f.floor
            )
        );
        println!(
            "| {name}: exactly the limit? admitted {} and recorded {} used / {} held of {limit}: {} | | | |",
            f.admitted,
            f.recorded.0,
            f.recorded.1,
            if exact { "yes" } else { "NO" }
        );
        assert!(exact, "{name}: the burst did not admit exactly the limit");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let size = |p: &str| std::fs::metadata(root.join(p)).map(|m| m.len() as f64 / 1_048_576.0);
    match (size("dist/kraftd-billing.zip"), size("dist/package/handler")) {
        (Ok(zip), Ok(handler)) => println!(
            "| deploy package (dist/, from scripts/package): zip / static musl handler | {zip:.1} MiB / {handler:.1} MiB | | |"
        ),
        _ => println!("| deploy package: not built (run scripts/package) | | | |"),
    }
}

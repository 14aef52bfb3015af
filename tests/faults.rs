//! The crash harness: the real `handler` binary killed with SIGKILL in the
//! middle of a burst, started again on the same store, and the invariants
//! checked afterwards. Clients and Stripe retry what got no answer, as they
//! do in production.
//! - Usage (SQLite and the Cosmos DB server): the counter equals what was
//!   admitted, never over the limit, each key counted once; unnamed API
//!   calls admitted from a quota lease never pass the limit, the dead
//!   process's lease lost at most.
//! - Webhooks (SQLite, Stripe's double in this process): every paid checkout
//!   has its plan, its invoice once and its receipt once; an email mid-send
//!   at the crash may go out again with the same Message-ID (the documented
//!   at-least-once window), never as a second message.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kraftd_billing::clock::SystemClock;
use kraftd_billing::stripe_sim::{SimOptions, StripeSim};
use serde_json::{json, Value};

use support::binary::{register_owner, Served};
use support::{GENEROUS_LIMITS, PASSWORD, SECRET, WEBHOOK_SECRET};

/// Requests in flight at once, as several instances of a service send them.
const CLIENTS: usize = 6;

fn settings<'a>(data: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("DATA_DIR", data), ("JWT_SECRET", SECRET)];
    env.extend_from_slice(GENEROUS_LIMITS);
    env.extend_from_slice(extra);
    env
}

/// Registers a user on a paid plan: the checkout to pay.
async fn register_paid(base: &str, email: &str, plan: &str) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/auth/register/with-plan"))
        .json(&json!({"email": email, "password": PASSWORD, "name": "Crash", "plan_id": plan}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "registration of {email}: {}",
        r.status()
    );
    r.json().await.unwrap()
}

async fn login(base: &str, email: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().expect("signed in").to_owned()
}

async fn get(base: &str, token: &str, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Admitted,
    Refused,
    /// No answer: the request was cut off or never reached a live process.
    Lost,
}

async fn report(base: &str, key: &str, account: &str, name: &str) -> (Answer, bool) {
    let sent = reqwest::Client::new()
        .post(format!("{base}/api/accounts/{account}/usage"))
        .bearer_auth(key)
        .header("Idempotency-Key", name)
        .json(&json!({"metric": "documents", "quantity": 1}))
        .send()
        .await;
    let Ok(r) = sent else {
        return (Answer::Lost, false);
    };
    let replayed = r
        .headers()
        .get("Idempotent-Replayed")
        .is_some_and(|v| v == "true");
    let answer = match r.status().as_u16() {
        200 => Answer::Admitted,
        403 => Answer::Refused,
        other => panic!("{name}: unexpected {other}: {}", r.text().await.unwrap()),
    };
    (answer, replayed)
}

/// 150 named reports against a limit of 60, the process killed after the
/// first 40 answers; then every report is sent again.
async fn usage_burst_survives_a_kill(mut served: Served) {
    let (_, account) = register_owner(&served.base, "burst@example.com", "Burst").await;
    let key = served.service_key("usage:write,entitlements:read");
    let names: Vec<String> = (0..150).map(|i| format!("upload-{i}")).collect();

    let base = served.base.clone();
    let mut burst = futures::stream::iter(names.iter())
        .map(|name| {
            let (base, key, account) = (base.clone(), key.clone(), account.clone());
            async move { (name, report(&base, &key, &account, name).await.0) }
        })
        .buffer_unordered(CLIENTS);
    let mut before: HashMap<&String, Answer> = HashMap::new();
    let mut answered = 0;
    while let Some((name, answer)) = burst.next().await {
        if answer != Answer::Lost {
            answered += 1;
            if answered == 40 {
                served.kill();
            }
        }
        before.insert(name, answer);
    }
    drop(burst);
    let lost = before.values().filter(|a| **a == Answer::Lost).count();
    assert!(lost > 0, "the kill cut the burst off");

    served.restart().await;
    let mut after: BTreeMap<&String, Answer> = BTreeMap::new();
    for name in &names {
        let (answer, replayed) = report(&served.base, &key, &account, name).await;
        assert_ne!(
            answer,
            Answer::Lost,
            "{name}: the restarted handler answers"
        );
        if before[name] == Answer::Admitted {
            assert_eq!(answer, Answer::Admitted, "{name} stays admitted");
            assert!(replayed, "{name} is replayed, not counted again");
        }
        after.insert(name, answer);
    }
    let admitted = after.values().filter(|a| **a == Answer::Admitted).count();
    assert_eq!(admitted, 60, "exactly the limit is admitted: {after:?}");

    let documents = get(
        &served.base,
        &key,
        &format!("/api/accounts/{account}/entitlements"),
    )
    .await["usage"]["documents"]
        .clone();
    assert_eq!(
        documents["used"], 60,
        "the counter is what was admitted: {documents}"
    );
    assert_eq!(documents["held"], 0, "{documents}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_burst_killed_mid_way_counts_exactly_what_was_admitted_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let served = Served::start(&settings(&data, &[("FREE_PLAN_DOCS_LIMIT", "60")])).await;
    usage_burst_survives_a_kill(served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_burst_killed_mid_way_counts_exactly_what_was_admitted_on_cosmos() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let database = format!("faults-{}", uuid::Uuid::new_v4().simple());
    let cosmos = support::cosmos_server::settings(&database);
    let key =
        kraftd_billing::domain::secret::ExposeSecret::expose_secret(cosmos.key.as_ref().unwrap())
            .to_owned();
    let env = settings(
        &data,
        &[
            ("FREE_PLAN_DOCS_LIMIT", "60"),
            ("COSMOS__accountEndpoint", &cosmos.endpoint),
            ("COSMOS_KEY", &key),
            ("COSMOS_DATABASE", &database),
        ],
    );
    let init = support::binary::run(&env, &["cosmos", "init"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    usage_burst_survives_a_kill(Served::start(&env).await).await;
}

/// An unnamed API-call count, as a gateway sends one.
async fn call(base: &str, key: &str, account: &str) -> Answer {
    let sent = reqwest::Client::new()
        .post(format!("{base}/api/accounts/{account}/usage/calls"))
        .bearer_auth(key)
        .json(&json!({"quantity": 1}))
        .send()
        .await;
    match sent.map(|r| r.status().as_u16()) {
        Err(_) => Answer::Lost,
        Ok(200) => Answer::Admitted,
        Ok(429) => Answer::Refused,
        Ok(other) => panic!("unexpected {other}"),
    }
}

/// 600 unnamed calls against a daily limit of 300, the process killed
/// with its quota lease after 100 were admitted, then 600 more on the
/// restarted process: the dead lease is lost (its admitted calls may go
/// uncounted) but never lets anyone past the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_api_calls_killed_mid_burst_never_pass_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut served = Served::start(&settings(&data, &[("FREE_PLAN_API_LIMIT", "300")])).await;
    let (_, account) = register_owner(&served.base, "gateway@example.com", "Gateway").await;
    let key = served.service_key("usage:write,entitlements:read");
    let burst = |base: String| {
        let (key, account) = (key.clone(), account.clone());
        futures::stream::iter(0..600)
            .map(move |_| {
                let (base, key, account) = (base.clone(), key.clone(), account.clone());
                async move { call(&base, &key, &account).await }
            })
            .buffer_unordered(CLIENTS)
    };
    let (mut admitted, mut lost) = (0, 0);
    let mut first = burst(served.base.clone());
    while let Some(answer) = first.next().await {
        match answer {
            Answer::Admitted => {
                admitted += 1;
                if admitted == 100 {
                    served.kill();
                }
            }
            Answer::Lost => lost += 1,
            Answer::Refused => {}
        }
    }
    drop(first);
    assert!(lost > 0, "the kill cut the burst off");
    served.restart().await;
    let mut second = burst(served.base.clone());
    while let Some(answer) = second.next().await {
        assert_ne!(answer, Answer::Lost, "the restarted handler answers");
        if answer == Answer::Admitted {
            admitted += 1;
        }
    }
    assert!(admitted <= 300, "{admitted} admitted past the limit of 300");
    let calls = get(
        &served.base,
        &key,
        &format!("/api/accounts/{account}/entitlements"),
    )
    .await["usage"]["api_calls"]
        .clone();
    let (used, held) = (
        calls["used"].as_u64().unwrap(),
        calls["held"].as_u64().unwrap(),
    );
    assert!(
        used <= admitted,
        "{used} recorded, only {admitted} admitted"
    );
    assert!(used + held <= 300, "{calls}");
}

/// The .eml files of the file mailer: per recipient, per subject, the
/// number of copies of each Message-ID.
fn mail(dir: &std::path::Path) -> HashMap<(String, String), HashMap<String, usize>> {
    let mut out: HashMap<(String, String), HashMap<String, usize>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let header = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let subject = header("Subject:");
        let kind = subject.split(':').next().unwrap_or_default().to_owned();
        *out.entry((header("To:"), kind))
            .or_default()
            .entry(header("Message-ID:"))
            .or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_burst_killed_mid_way_loses_no_invoice_and_doubles_no_receipt() {
    let sim = StripeSim::start(SimOptions {
        webhook_secret: WEBHOOK_SECRET.into(),
        clock: Arc::new(SystemClock),
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let api = sim.base_url();
    // A claim lost with the process lapses in ten seconds (the shortest
    // lease), not five minutes.
    let env = settings(
        &data,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_faults"),
            ("STRIPE_API_BASE", &api),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("OUTBOX_LEASE_SECONDS", "10"),
            // Charged at once: every payer has an invoice and a receipt.
            ("PRO_TRIAL_DAYS", "0"),
        ],
    );
    let mut served = Served::start(&env).await;
    let synced = served.cli(&["stripe", "sync-catalog"]);
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    sim.set_webhook_url(Some(served.url("/api/webhooks/stripe")));
    sim.hold_webhooks(true);

    let emails: Vec<String> = (0..10).map(|i| format!("payer{i}@example.com")).collect();
    let mut tokens = Vec::new();
    for email in &emails {
        let paid = register_paid(&served.base, email, "pro").await;
        sim.complete_checkout(paid["session_id"].as_str().unwrap())
            .await
            .unwrap();
        tokens.push(login(&served.base, email).await);
    }
    let events = sim.held_events();
    sim.clear_held();
    sim.hold_webhooks(false);
    assert!(events.len() >= 30, "each checkout made several events");

    let mut burst = futures::stream::iter(events.iter().enumerate())
        .map(|(i, event)| {
            let sim = sim.clone();
            async move { (i, sim.deliver(event).await) }
        })
        .buffer_unordered(CLIENTS);
    let mut acknowledged = vec![false; events.len()];
    let mut answered = 0;
    while let Some((i, status)) = burst.next().await {
        if status == 200 {
            acknowledged[i] = true;
            answered += 1;
            if answered == events.len() / 3 {
                served.kill();
            }
        }
    }
    drop(burst);
    assert!(
        acknowledged.iter().any(|a| !a),
        "the kill cut the burst off"
    );

    // Stripe retries every event it got no 2xx for, and may send any event
    // twice.
    served.restart().await;
    sim.set_webhook_url(Some(served.url("/api/webhooks/stripe")));
    for (event, _) in events.iter().zip(&acknowledged).filter(|(_, a)| !**a) {
        assert_eq!(sim.deliver(event).await, 200, "{event}");
    }
    for event in &events {
        assert_eq!(sim.deliver(event).await, 200, "a redelivery: {event}");
    }

    for token in &tokens {
        let subscription = get(&served.base, token, "/api/billing/subscription").await;
        assert_eq!(subscription["effective_plan"], "pro", "{subscription}");
        assert_eq!(subscription["status"], "active", "{subscription}");
        let invoices = get(&served.base, token, "/api/billing/invoices").await;
        assert_eq!(
            invoices["invoices"].as_array().map(Vec::len),
            Some(1),
            "one invoice per paid checkout: {invoices}"
        );
    }

    // Every payer's verification link, welcome and receipt, sent by the restarted handler if
    // the first one died first.
    let mail_dir = dir.path().join("mail");
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected = |mail: &HashMap<(String, String), HashMap<String, usize>>| {
        emails.iter().all(|e| {
            [
                "Confirm your email address for KRAFTD",
                "Welcome to KRAFTD Professional",
                "Your KRAFTD receipt",
            ]
            .iter()
            .all(|kind| mail.contains_key(&(e.clone(), (*kind).to_owned())))
        })
    };
    while !expected(&mail(&mail_dir)) {
        assert!(
            Instant::now() < deadline,
            "every payer's emails within 60 s: {:?}",
            mail(&mail_dir).keys()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for ((to, kind), messages) in mail(&mail_dir) {
        assert_eq!(messages.len(), 1, "{to}: one {kind} message: {messages:?}");
        let copies = messages.values().next().unwrap();
        assert!(
            *copies <= 2,
            "{to}: {kind} sent {copies} times: at most once again after the crash"
        );
    }
}

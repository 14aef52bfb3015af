//! Events back to KRAFTD: signed Standard Webhooks to one endpoint, here a
//! receiver on loopback that checks every signature with its own HMAC,
//! delivered from the outbox in order per account, and redelivered with
//! the same `webhook-id` after a failure without the account's next event
//! overtaking it.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Duration, TimeZone, Utc};
use hmac::{Hmac, Mac};
use kraftd_billing::domain::account::AccountId;
use kraftd_billing::domain::records::{EventKind, MessageKind};
use kraftd_billing::domain::usage::{Metric, Window};
use serde_json::{json, Value};
use sha2::Sha256;
use support::TestApp;

/// The endpoint's secret: `whsec_` and 32 key bytes, base64.
const SECRET: &str = "whsec_a3JhZnRkLWV2ZW50cy10ZXN0LWtleS0zMi1ieXRlcyE=";

/// One request the receiver took, verified.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    timestamp: i64,
    body: Value,
    /// What the receiver answered.
    status: u16,
}

impl Delivery {
    fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap()
    }

    fn account(&self) -> &str {
        self.body["data"]["account_id"].as_str().unwrap()
    }
}

#[derive(Default)]
struct Inbox {
    deliveries: Vec<Delivery>,
    /// Statuses to answer, in turn; 200 once they run out.
    answers: VecDeque<u16>,
    /// Requests whose signature did not verify (none should).
    forged: Vec<String>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Inbox>>);

impl Receiver {
    fn answer_next(&self, statuses: &[u16]) {
        self.0.lock().unwrap().answers.extend(statuses);
    }

    fn deliveries(&self) -> Vec<Delivery> {
        let inbox = self.0.lock().unwrap();
        assert!(inbox.forged.is_empty(), "unverified: {:?}", inbox.forged);
        inbox.deliveries.clone()
    }

    fn of(&self, account: &str) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.account() == account)
            .collect()
    }
}

/// The Standard Webhooks verification, written from the specification:
/// HMAC-SHA256 over `{id}.{timestamp}.{body}` with the base64-decoded key
/// after `whsec_`, compared with each `v1,` entry of the header.
fn verify(headers: &HeaderMap, body: &[u8]) -> Result<(String, i64), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(format!("no {name}"))
    };
    let id = header("webhook-id")?;
    let timestamp: i64 = header("webhook-timestamp")?
        .parse()
        .map_err(|_| "timestamp is not a number".to_owned())?;
    let key = STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    let signatures = header("webhook-signature")?;
    let matched = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected);
    if !matched {
        return Err(format!("signature {signatures:?} is not v1,{expected}"));
    }
    Ok((id, timestamp))
}

/// Answers with the next planned status: a 307 points back here (a
/// sender that follows it would be seen again), and `HANG` never answers.
async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let status = {
        let mut inbox = r.0.lock().unwrap();
        let (id, timestamp) = match verify(&headers, &body) {
            Ok(v) => v,
            Err(e) => {
                inbox.forged.push(e);
                return StatusCode::UNAUTHORIZED.into_response();
            }
        };
        let status = inbox.answers.pop_front().unwrap_or(200);
        inbox.deliveries.push(Delivery {
            id,
            timestamp,
            body: serde_json::from_slice(&body).expect("the body is JSON"),
            status,
        });
        status
    };
    match status {
        HANG => std::future::pending().await,
        307 => (
            StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, "/kraftd/events")],
        )
            .into_response(),
        s => StatusCode::from_u16(s).unwrap().into_response(),
    }
}

/// A planned answer: none at all.
const HANG: u16 = 0;

/// A receiver on loopback and an app that sends it events.
async fn app_and_receiver() -> (TestApp, Receiver) {
    let receiver = Receiver::default();
    let router = axum::Router::new()
        .route("/kraftd/events", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/kraftd/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let app = TestApp::spawn_with_stripe(&[
        ("EVENTS_WEBHOOK_URL", &url),
        ("EVENTS_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    (app, receiver)
}

/// The account's events as the outbox holds them, in delivery order.
async fn outbox_events(app: &TestApp, account: AccountId) -> Vec<(String, EventKind)> {
    app.store
        .outbox_for_account(account)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| {
            let kind = m.kind.event()?;
            Some((m.webhook_id(), kind))
        })
        .collect()
}

/// The tries the outbox counted for the event sent as `webhook_id`.
async fn attempts_of(app: &TestApp, webhook_id: &str) -> u32 {
    let all = app.store.pending_outbox(
        app.clock_now() + Duration::days(9),
        Duration::minutes(5),
        1000,
    );
    let message = all
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.webhook_id() == webhook_id)
        .expect("the event is unfinished");
    app.store
        .outbox_status(message.account_id, &message.id)
        .await
        .unwrap()
        .unwrap()
        .1
}

fn kinds(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries.iter().map(Delivery::kind).collect()
}

#[tokio::test]
async fn events_are_signed_timestamped_and_arrive_in_each_accounts_order() {
    let (app, receiver) = app_and_receiver().await;
    app.subscribe_to_pro("payer@events.io").await;
    app.free_user("free@events.io").await;
    let payer = app.account("payer@events.io").await;
    let free = app.account("free@events.io").await;

    let log = app.sweep_outbox().await;
    assert!(log.contains("retrying 0, failed 0"), "{log}");
    let now = app.clock_now().timestamp();

    // Every event verified (the receiver refuses any other), is stamped with
    // the time of its try, and has the standard's shape.
    let all = receiver.deliveries();
    assert!(!all.is_empty());
    for d in &all {
        assert!((d.timestamp - now).abs() <= 300, "{d:?} at {now}");
        assert!(d.id.starts_with("msg_"), "{d:?}");
        let at = DateTime::parse_from_rfc3339(d.body["timestamp"].as_str().unwrap()).unwrap();
        assert!((at.timestamp() - now).abs() <= 300, "{d:?}");
    }

    // Each account's events came in the outbox's order, each once.
    for account in [payer.id, free.id] {
        let expected = outbox_events(&app, account).await;
        let got: Vec<(String, String)> = receiver
            .of(&account.to_string())
            .into_iter()
            .map(|d| (d.id.clone(), d.kind().to_owned()))
            .collect();
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(id, k)| (id, k.as_str().to_owned()))
            .collect();
        assert_eq!(got, expected, "account {account}");
    }

    // What they say: the free account was created with its owner; the
    // payer's subscription then moved to Pro, and its entitlements with it.
    let free_events = receiver.of(&free.id.to_string());
    assert_eq!(
        kinds(&free_events),
        [
            "subscription.updated",
            "entitlements.updated",
            "member.added"
        ]
    );
    assert_eq!(free_events[2].body["data"]["role"], "owner");
    let payer_events = receiver.of(&payer.id.to_string());
    let last_subscription = payer_events
        .iter()
        .rev()
        .find(|d| d.kind() == "subscription.updated")
        .unwrap();
    assert_eq!(last_subscription.body["data"]["plan_id"], "pro");
    assert_eq!(last_subscription.body["data"]["status"], "active");
    let last_entitlements = payer_events
        .iter()
        .rev()
        .find(|d| d.kind() == "entitlements.updated")
        .unwrap();
    assert_eq!(last_entitlements.body["data"]["plan_id"], "pro");
    assert!(last_entitlements.body["data"]["limits"].is_object());

    // Sent is final: another sweep sends nothing again.
    let before = receiver.deliveries().len();
    app.sweep_outbox().await;
    assert_eq!(receiver.deliveries().len(), before);
}

#[tokio::test]
async fn a_failed_event_is_redelivered_with_its_id_before_the_accounts_next() {
    let (app, receiver) = app_and_receiver().await;
    // The first event the receiver sees fails with a 500.
    receiver.answer_next(&[500]);
    app.free_user("first@events.io").await;
    app.clock.set(app.clock_now() + Duration::seconds(1));
    app.free_user("second@events.io").await;
    let first = app.account("first@events.io").await.id.to_string();
    let second = app.account("second@events.io").await.id.to_string();

    let log = app.sweep_outbox().await;
    assert!(log.contains("retrying 1"), "{log}");
    let failed = receiver.of(&first);
    assert_eq!(
        failed.len(),
        1,
        "the account's later events wait: {failed:?}"
    );
    assert_eq!(failed[0].status, 500);
    // Another account's events are not held up.
    assert_eq!(receiver.of(&second).len(), 3);

    // Before the retry's time nothing moves; then the failed event comes
    // again, the same message re-signed at its new try, and the rest follow.
    app.sweep_outbox().await;
    assert_eq!(receiver.of(&first).len(), 1);
    app.clock.set(app.clock_now() + Duration::minutes(1));
    app.sweep_outbox().await;
    let all = receiver.of(&first);
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all[1].id, all[0].id, "redelivered with the same webhook-id");
    assert_eq!(all[1].body, all[0].body, "and the same body");
    assert_eq!(all[1].status, 200);
    assert_eq!(all[1].timestamp, all[0].timestamp + 60);
    assert_eq!(
        kinds(&all[1..]),
        [
            "subscription.updated",
            "entitlements.updated",
            "member.added"
        ]
    );
}

#[tokio::test]
async fn a_redirect_an_error_or_no_answer_in_time_is_a_failed_try() {
    let (app, receiver) = app_and_receiver().await;
    app.free_user("flaky@events.io").await;
    let account = app.account("flaky@events.io").await.id.to_string();
    for (answer, expected) in [(307, 307), (410, 410), (HANG, HANG), (200, 200)] {
        receiver.answer_next(&[answer]);
        let started = std::time::Instant::now();
        let log = app.sweep_outbox().await;
        let tries = receiver.of(&account);
        assert_eq!(tries.last().unwrap().status, expected);
        if expected == 200 {
            assert!(log.contains("retrying 0"), "{log}");
            break;
        }
        // One try: the redirect was not followed, the hang cut short.
        assert!(log.contains("retrying 1, failed 0"), "{answer}: {log}");
        if answer == HANG {
            let waited = started.elapsed();
            assert!(waited >= std::time::Duration::from_secs(5), "{waited:?}");
            assert!(waited < std::time::Duration::from_secs(15), "{waited:?}");
        }
        // The same event each time, once its backoff is over.
        assert!(tries.iter().all(|d| d.id == tries[0].id), "{tries:?}");
        let attempts = attempts_of(&app, &tries[0].id).await;
        assert_eq!(attempts as usize, tries.len());
        let backoff = kraftd_billing::domain::outbox::RetryPolicy::EVENT.backoff(attempts);
        app.clock.set(app.clock_now() + backoff);
    }
    let tries = receiver.of(&account);
    assert_eq!(tries.len(), 4 + 2, "four tries of the first, then the rest");
}

#[tokio::test]
async fn the_change_feed_hands_an_event_over_to_its_accounts_next() {
    let (app, receiver) = app_and_receiver().await;
    app.free_user("feed@events.io").await;
    let account = app.account("feed@events.io").await;
    // The change feed delivers the account's documents one write at a
    // time, the last first here: it waits, and the first takes it along.
    let mut events: Vec<_> = app
        .store
        .outbox_for_account(account.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| matches!(m.kind, MessageKind::Event(_)))
        .collect();
    assert_eq!(events.len(), 3);
    let last = events.pop().unwrap();
    for batch in [vec![last], events] {
        let r = app
            .client
            .post(app.url("/SendEmails"))
            .json(&json!({"Data": {"documents": batch}, "Metadata": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let got = receiver.of(&account.id.to_string());
    assert_eq!(
        kinds(&got),
        [
            "subscription.updated",
            "entitlements.updated",
            "member.added"
        ]
    );
}

#[tokio::test]
async fn members_joining_and_leaving_are_events() {
    let (app, receiver) = app_and_receiver().await;
    app.subscribe_to_pro("owner@events.io").await;
    app.verify_email("owner@events.io").await;
    let owner = app.login("owner@events.io").await;
    let r = app
        .post_as(
            &owner,
            "/api/account/invitations",
            json!({"email": "joiner@events.io", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let account = app.account("owner@events.io").await;
    let invitation = app
        .emails(
            account.id,
            Some(kraftd_billing::domain::records::EmailKind::Invitation),
        )
        .await;
    let link = invitation[0].data["invitation_url"]
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let joiner = app.free_user("joiner@events.io").await;
    let r = app
        .post_as(
            &joiner,
            &format!("/api/invitations/{link}/accept"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let joiner_id = app.user_by_email("joiner@events.io").await.id.to_string();
    let r = app
        .client
        .delete(app.url(&format!("/api/account/members/{joiner_id}")))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    app.sweep_outbox().await;
    let members: Vec<Delivery> = receiver
        .of(&account.id.to_string())
        .into_iter()
        .filter(|d| d.kind().starts_with("member."))
        .filter(|d| d.body["data"]["user_id"] == joiner_id.as_str())
        .collect();
    assert_eq!(kinds(&members), ["member.added", "member.removed"]);
    assert_eq!(members[0].body["data"]["role"], "admin");
    assert_eq!(members[1].body["data"]["role"], "admin");
}

#[tokio::test]
async fn a_usage_threshold_is_sent_once_per_window_and_threshold() {
    let (app, receiver) = app_and_receiver().await;
    app.free_user("usage@events.io").await;
    let account = app.account("usage@events.io").await;
    let day = |d: u32| Window {
        start: Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 3, d + 1, 0, 0, 0).unwrap(),
    };
    // Each call a second after the last, as usage comes in.
    let reached = |threshold: u8, window: Window, used: u64| {
        app.clock.set(app.clock_now() + Duration::seconds(1));
        app.billing.usage_threshold_reached(
            account.id,
            Metric::ApiCalls,
            threshold,
            window,
            used,
            1000,
        )
    };
    reached(80, day(5), 800).await.unwrap();
    // Told again (another instance, a retried request): recorded once.
    reached(80, day(5), 812).await.unwrap();
    reached(100, day(5), 1000).await.unwrap();
    // The next day is another window.
    reached(80, day(6), 801).await.unwrap();
    app.sweep_outbox().await;

    let usage: Vec<Delivery> = receiver
        .of(&account.id.to_string())
        .into_iter()
        .filter(|d| d.kind() == "usage.threshold_reached")
        .collect();
    let data: Vec<&Value> = usage.iter().map(|d| &d.body["data"]).collect();
    assert_eq!(data.len(), 3, "{data:?}");
    assert_eq!(
        *data[0],
        json!({
            "account_id": account.id,
            "metric": "api_calls",
            "threshold": 80,
            "window": {"start": "2026-03-05T00:00:00Z", "end": "2026-03-06T00:00:00Z"},
            "used": 800,
            "limit": 1000,
        })
    );
    assert_eq!(
        (data[1]["threshold"].clone(), data[1]["used"].clone()),
        (json!(100), json!(1000))
    );
    assert_eq!(data[2]["window"]["start"], "2026-03-06T00:00:00Z");
}

#[tokio::test]
async fn without_an_endpoint_no_event_is_recorded() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.subscribe_to_pro("quiet@events.io").await;
    let account = app.account("quiet@events.io").await;
    app.billing
        .usage_threshold_reached(
            account.id,
            Metric::Documents,
            100,
            Window {
                start: Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
                end: Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap(),
            },
            50,
            50,
        )
        .await
        .unwrap();
    let outbox = app.store.outbox_for_account(account.id).await.unwrap();
    assert!(!outbox.is_empty(), "the emails are there");
    assert!(
        outbox.iter().all(|m| m.kind.event().is_none()),
        "{outbox:?}"
    );
}

/// Through the service routes: the report, the batch and the commit that
/// cross 80 % and 100 % of a limit send the event when they do, not the
/// next day.
#[tokio::test]
async fn usage_crossing_a_threshold_is_an_event_at_once() {
    let (app, receiver) = app_and_receiver().await;
    let token = app.free_user("thresholds@events.io").await;
    let account = app.own_account_id(&token).await;
    // Free: 50 documents a month. 39, then a commit of 1 → 40 (80 %).
    let docs = |n: i64| json!({"metric": "documents", "quantity": n});
    assert_eq!(app.report(&account, "bulk", docs(39)).await.status(), 200);
    let held: Value = app
        .service(
            reqwest::Method::POST,
            &format!("/api/accounts/{account}/reservations"),
        )
        .header("Idempotency-Key", "one-more")
        .json(&docs(1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = held["id"].as_str().unwrap();
    // Uses arrive a moment apart, as they do.
    app.clock.set(app.clock_now() + Duration::seconds(1));
    let commit = app
        .service(
            reqwest::Method::POST,
            &format!("/api/accounts/{account}/reservations/{id}/commit"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(commit.status(), 200);
    // Free: 1,000 API calls a day; a batch from the gateway reaches them.
    app.clock.set(app.clock_now() + Duration::seconds(1));
    let now = app.clock_now();
    let batch = app
        .service(
            reqwest::Method::POST,
            &format!("/api/accounts/{account}/usage/batch"),
        )
        .json(&json!({"events": [
            {"id": "gw-1", "metric": "api_calls", "quantity": 1000, "occurred_at": now}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    app.sweep_outbox().await;
    let crossed: Vec<(String, u64, u64)> = receiver
        .of(&account)
        .into_iter()
        .filter(|d| d.kind() == "usage.threshold_reached")
        .map(|d| {
            let data = &d.body["data"];
            (
                data["metric"].as_str().unwrap().to_owned(),
                data["threshold"].as_u64().unwrap(),
                data["used"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        crossed,
        [
            ("documents".to_owned(), 80, 40),
            ("api_calls".to_owned(), 80, 1000),
            ("api_calls".to_owned(), 100, 1000),
        ]
    );
}

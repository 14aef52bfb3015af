//! Sign-in throttling over real HTTP: per client address (the peer
//! locally, the front end's headers under the host), per account, and the
//! back-off after failed logins. Time moves on the app's clock, which the
//! limiters read too: no sleeps.

mod support;

use std::net::IpAddr;

use chrono::Duration;
use serde_json::{json, Value};
use support::{error_of, TestApp, PASSWORD};

const LOGIN: &str = "/api/auth/login";
const REGISTER: &str = "/api/auth/register/with-plan";

/// Three sign-in requests a minute per address, in a burst: the fourth waits 20 s.
const THREE_PER_ADDRESS: &[(&str, &str)] = &[
    ("SIGN_IN_PER_ADDRESS_PER_MINUTE", "3"),
    ("SIGN_IN_PER_ADDRESS_BURST", "3"),
];

/// Two attempts a minute per account, in a burst: the third waits 30 s.
const TWO_PER_ACCOUNT: &[(&str, &str)] = &[
    ("SIGN_IN_PER_ACCOUNT_PER_MINUTE", "2"),
    ("SIGN_IN_PER_ACCOUNT_BURST", "2"),
];

/// What the app needs to start as under the Functions host.
const UNDER_HOST: &[(&str, &str)] = &[
    ("FUNCTIONS_CUSTOMHANDLER_PORT", "7999"),
    ("STRIPE_SECRET_KEY", "sk_test_throttle"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_throttle"),
    ("SMTP_URL", "smtp://127.0.0.1:2525"),
];

fn vars(parts: &[&[(&'static str, &'static str)]]) -> Vec<(&'static str, &'static str)> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// A client whose connections come from `ip` (any of 127.0.0.0/8 is loopback).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn bad_login(n: usize) -> Value {
    json!({"email": format!("nobody{n}@example.com"), "password": "not the password 1"})
}

async fn login_with(
    app: &TestApp,
    client: &reqwest::Client,
    headers: &[(&str, &str)],
    n: usize,
) -> reqwest::Response {
    let mut req = client.post(app.url(LOGIN)).json(&bad_login(n));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn limited(r: reqwest::Response) -> (u64, Value) {
    let wait = retry_after(&r);
    (wait, error_of(r, 429, "rate_limited").await)
}

fn advance(app: &TestApp, by: Duration) {
    app.clock.set(app.clock_now() + by);
}

#[tokio::test]
async fn an_address_past_its_limit_waits_and_others_do_not() {
    let app = TestApp::spawn_with(THREE_PER_ADDRESS).await;
    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    // Login, registration and acceptance share the address's budget.
    let r = a
        .post(app.url(REGISTER))
        .json(&json!({"email": "a@example.com", "password": PASSWORD, "name": "A", "plan_id": "free"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(login_with(&app, &a, &[], 1).await.status(), 401);
    let r = a
        .post(app.url("/api/invitations/whatever/accept"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "throttled before the sign-in check, then refused"
    );

    let (wait, error) = limited(login_with(&app, &a, &[], 2).await).await;
    assert_eq!(wait, 20, "one request every 20 s");
    assert!(error["message"].as_str().unwrap().contains("retry"));
    // Another address has its own budget; routes without a throttle have none.
    assert_eq!(login_with(&app, &b, &[], 3).await.status(), 401);
    assert_eq!(
        a.get(app.url("/api/plans")).send().await.unwrap().status(),
        200
    );

    advance(&app, Duration::seconds(19));
    let (wait, _) = limited(login_with(&app, &a, &[], 4).await).await;
    assert_eq!(wait, 1);
    advance(&app, Duration::seconds(1));
    assert_eq!(login_with(&app, &a, &[], 5).await.status(), 401);
}

#[tokio::test]
async fn locally_the_front_end_headers_are_ignored() {
    let app = TestApp::spawn_with(THREE_PER_ADDRESS).await;
    let a = client_from("127.0.0.4");
    for n in 0..3 {
        let ip = format!("203.0.113.{n}");
        let headers = [("client-ip", ip.as_str()), ("x-forwarded-for", ip.as_str())];
        assert_eq!(login_with(&app, &a, &headers, n).await.status(), 401);
    }
    let headers = [("client-ip", "203.0.113.99")];
    limited(login_with(&app, &a, &headers, 9).await).await;
}

#[tokio::test]
async fn under_the_host_the_client_is_the_front_ends_header() {
    let app = TestApp::spawn_with(&vars(&[THREE_PER_ADDRESS, UNDER_HOST])).await;
    let host = &app.client; // every request from 127.0.0.1, as from the host
                            // CLIENT-IP carries a port, and comes before X-Forwarded-For.
    let one = [
        ("client-ip", "203.0.113.1:50123"),
        ("x-forwarded-for", "192.0.2.99:1"),
    ];
    for n in 0..3 {
        assert_eq!(login_with(&app, host, &one, n).await.status(), 401);
    }
    limited(login_with(&app, host, &one, 3).await).await;
    // Another client behind the same host is not affected.
    let two = [("client-ip", "203.0.113.2:50123")];
    assert_eq!(login_with(&app, host, &two, 4).await.status(), 401);
    // X-Client-IP is never read: a client could choose it.
    let three = [
        ("x-client-ip", "198.51.100.1"),
        ("client-ip", "203.0.113.1:4000"),
    ];
    limited(login_with(&app, host, &three, 5).await).await;
    // IPv6 in brackets.
    let four = [("x-forwarded-for", "[2001:db8::1]:443")];
    assert_eq!(login_with(&app, host, &four, 6).await.status(), 401);
}

#[tokio::test]
async fn spoofed_forwarded_for_entries_do_not_make_a_new_client() {
    let app = TestApp::spawn_with(&vars(&[THREE_PER_ADDRESS, UNDER_HOST])).await;
    // The client writes what it likes first; the front end appends its peer.
    for n in 0..3 {
        let chain = format!("198.51.100.{n}, 10.0.0.{n}, 192.0.2.7:61000");
        let headers = [("x-forwarded-for", chain.as_str())];
        assert_eq!(
            login_with(&app, &app.client, &headers, n).await.status(),
            401
        );
    }
    let chain = "198.51.100.200, 192.0.2.7:61001";
    limited(login_with(&app, &app.client, &[("x-forwarded-for", chain)], 9).await).await;
    let other = "192.0.2.7, 192.0.2.8:61000";
    let r = login_with(&app, &app.client, &[("x-forwarded-for", other)], 10).await;
    assert_eq!(r.status(), 401, "the last entry is a new client");
}

async fn attempt(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post(LOGIN, json!({"email": email, "password": password}))
        .await
}

/// The answer a refused attempt gets: status, code, message, wait.
async fn refusal(r: reqwest::Response) -> (u16, Value, u64) {
    let status = r.status().as_u16();
    let wait = retry_after(&r);
    let body: Value = r.json().await.unwrap();
    (status, body, wait)
}

#[tokio::test]
async fn failed_logins_back_off_exponentially_alike_for_known_and_unknown_emails() {
    let app = TestApp::spawn().await;
    app.free_user("ada@example.com").await;
    for (n, email) in ["ada@example.com", " ADA@Example.com", "ada@example.com"]
        .into_iter()
        .chain(["ada@example.com"; 2])
        .enumerate()
    {
        let r = attempt(&app, email, "wrong password 1").await;
        assert_eq!(r.status(), 401, "failure {n} is free");
        let r = attempt(&app, "nobody@example.com", "wrong password 1").await;
        assert_eq!(r.status(), 401, "failure {n} is free");
    }
    // Five failures: even the right password waits now, and an unknown
    // email gets the very same answer.
    let known = refusal(attempt(&app, "ada@example.com", PASSWORD).await).await;
    let unknown = refusal(attempt(&app, "nobody@example.com", PASSWORD).await).await;
    assert_eq!(known, unknown);
    assert_eq!(known.0, 429);
    assert_eq!(known.1["error"]["code"], "rate_limited");
    assert_eq!(known.2, 1);

    // Each further failure doubles the wait.
    advance(&app, Duration::seconds(1));
    for email in ["ada@example.com", "nobody@example.com"] {
        assert_eq!(attempt(&app, email, "wrong password 1").await.status(), 401);
    }
    let known = refusal(attempt(&app, "ada@example.com", PASSWORD).await).await;
    let unknown = refusal(attempt(&app, "nobody@example.com", PASSWORD).await).await;
    assert_eq!(known, unknown);
    assert_eq!(known.2, 2);
    advance(&app, Duration::seconds(2));
    assert_eq!(
        attempt(&app, "ada@example.com", "wrong password 1")
            .await
            .status(),
        401
    );
    let (_, _, wait) = refusal(attempt(&app, "ada@example.com", PASSWORD).await).await;
    assert_eq!(wait, 4);

    // Waiting it out, the right password signs in and the count starts over.
    advance(&app, Duration::seconds(4));
    assert_eq!(
        attempt(&app, "ada@example.com", PASSWORD).await.status(),
        200
    );
    for _ in 0..5 {
        let r = attempt(&app, "ada@example.com", "wrong password 1").await;
        assert_eq!(r.status(), 401);
    }
    let (status, _, wait) = refusal(attempt(&app, "ada@example.com", PASSWORD).await).await;
    assert_eq!((status, wait), (429, 1));
}

#[tokio::test]
async fn logins_for_one_email_are_limited_whoever_sends_them() {
    let app = TestApp::spawn_with(TWO_PER_ACCOUNT).await;
    let (a, b) = (client_from("127.0.0.5"), client_from("127.0.0.6"));
    let body = json!({"email": "target@example.com", "password": "guess number 1"});
    for client in [&a, &b] {
        let r = client
            .post(app.url(LOGIN))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = a.post(app.url(LOGIN)).json(&body).send().await.unwrap();
    let (wait, _) = limited(r).await;
    assert_eq!(wait, 30);
    let other = json!({"email": "other@example.com", "password": "guess number 1"});
    let r = b.post(app.url(LOGIN)).json(&other).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn registration_is_limited_per_email() {
    let app = TestApp::spawn_with(TWO_PER_ACCOUNT).await;
    assert_eq!(
        app.register("grace@example.com", "free").await.status(),
        201
    );
    assert_eq!(
        app.register("Grace@example.com", "free").await.status(),
        409
    );
    let (wait, _) = limited(app.register("grace@example.com ", "free").await).await;
    assert_eq!(wait, 30);
    assert_eq!(
        app.register("linus@example.com", "free").await.status(),
        201
    );
    // Registration and login have budgets of their own.
    assert!(!app.login("grace@example.com").await.is_empty());
}

/// Logins for one email as often as the back-off tests need.
const ROOMY_ACCOUNT: &[(&str, &str)] = &[
    ("SIGN_IN_PER_ACCOUNT_PER_MINUTE", "6000"),
    ("SIGN_IN_PER_ACCOUNT_BURST", "100"),
];

async fn login_from(
    app: &TestApp,
    client: &reqwest::Client,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let body = json!({"email": email, "password": password});
    client
        .post(app.url(LOGIN))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_guesser_backs_off_while_the_owner_signs_in_from_elsewhere() {
    let app = TestApp::spawn_with(ROOMY_ACCOUNT).await;
    app.free_user("victim@example.com").await;
    let (guesser, owner) = (client_from("127.0.0.7"), client_from("127.0.0.8"));
    for _ in 0..5 {
        let r = login_from(&app, &guesser, "victim@example.com", "guess number 1").await;
        assert_eq!(r.status(), 401);
    }
    let r = login_from(&app, &guesser, "victim@example.com", PASSWORD).await;
    limited(r).await;
    let r = login_from(&app, &owner, "victim@example.com", PASSWORD).await;
    assert_eq!(r.status(), 200, "the owner is not locked out");
}

#[tokio::test]
async fn failures_from_many_addresses_back_off_every_address_alike_for_unknown_emails() {
    let app = TestApp::spawn_with(ROOMY_ACCOUNT).await;
    app.free_user("victim@example.com").await;
    // Ten times the per-address free failures, from fifty addresses.
    for email in ["victim@example.com", "nobody@example.com"] {
        for n in 0..50 {
            let client = client_from(&format!("127.0.1.{}", n + 1));
            let r = login_from(&app, &client, email, "guess number 1").await;
            assert_eq!(r.status(), 401, "{email}: failure {n} is free");
        }
    }
    let owner = client_from("127.0.2.1");
    let known = refusal(login_from(&app, &owner, "victim@example.com", PASSWORD).await).await;
    let unknown = refusal(login_from(&app, &owner, "nobody@example.com", PASSWORD).await).await;
    assert_eq!(known, unknown);
    assert_eq!((known.0, known.2), (429, 1));
    advance(&app, Duration::seconds(1));
    let r = login_from(&app, &owner, "victim@example.com", PASSWORD).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn invitation_acceptance_is_limited_per_accepting_user() {
    let app = TestApp::spawn_with(TWO_PER_ACCOUNT).await;
    app.free_user("owner@example.com").await;
    app.free_user("other@example.com").await;
    let guesser = app.free_user("guesser@example.com").await;
    let bystander = app.free_user("bystander@example.com").await;
    let target = app.account("owner@example.com").await.id.0.simple();
    let other = app.account("other@example.com").await.id.0.simple();
    let guess = |account: &dyn std::fmt::Display, n: usize| {
        format!("/api/invitations/{account}-{:A>43}/accept", n)
    };
    for n in 0..2 {
        let r = app.post_as(&guesser, &guess(&target, n), json!({})).await;
        error_of(r, 404, "invitation_not_found").await;
    }
    let r = app.post_as(&guesser, &guess(&other, 2), json!({})).await;
    let (wait, _) = limited(r).await;
    assert_eq!(wait, 30, "the guesser's budget, whichever account");
    // Junk tokens for an account do not block anyone else's acceptance.
    let r = app.post_as(&bystander, &guess(&target, 3), json!({})).await;
    error_of(r, 404, "invitation_not_found").await;
    advance(&app, Duration::seconds(30));
    let r = app.post_as(&guesser, &guess(&target, 4), json!({})).await;
    error_of(r, 404, "invitation_not_found").await;
}

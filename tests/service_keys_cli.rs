//! `handler service-keys` and the service API against the real binary on
//! its embedded store: a key made while the service runs works at once and
//! stops at its revocation, and a hold outlives a process killed between
//! reserve and commit.

#[path = "support/binary.rs"]
#[allow(dead_code)]
mod binary;

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};

use binary::Served;

const SECRET: &str = "cli-test-secret-0123456789abcdef0123456789";

fn cli(data: &Path, args: &[&str]) -> Output {
    let data = data.display().to_string();
    binary::run(&settings(&data), args)
}

fn settings(data: &str) -> [(&str, &str); 3] {
    [
        ("DATA_DIR", data),
        ("JWT_SECRET", SECRET),
        ("FREE_PLAN_DOCS_LIMIT", "5"),
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn serve(data: &Path) -> Served {
    Served::start(&settings(&data.display().to_string())).await
}

/// Registers a Free user; the id of the account they own.
async fn account_of_new_user(base: &str, email: &str) -> String {
    binary::register_owner(base, email, "Cli").await.1
}

fn create_key(data: &Path) -> (String, String) {
    let out = cli(
        data,
        &[
            "service-keys",
            "create",
            "--name",
            "document-service",
            "--scopes",
            "usage:write,entitlements:read",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let key = stdout.lines().last().unwrap().to_owned();
    assert!(
        key.starts_with("kbsk_") && !key.contains(' '),
        "the key alone on the last line: {stdout}"
    );
    let id = stdout.split_whitespace().nth(2).unwrap().to_owned();
    (id, key)
}

async fn post(
    base: &str,
    key: &str,
    path: &str,
    idempotency: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = idempotency {
        r = r.header("Idempotency-Key", k);
    }
    r.send().await.unwrap()
}

async fn documents(base: &str, key: &str, account: &str) -> Value {
    let r: Value = reqwest::Client::new()
        .get(format!("{base}/api/accounts/{account}/entitlements"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["usage"]["documents"].clone()
}

#[tokio::test]
async fn a_key_made_while_the_service_runs_works_at_once_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path()).await;
    let account = account_of_new_user(&served.base, "cli@example.com").await;
    let (id, key) = create_key(dir.path());
    let usage = format!("/api/accounts/{account}/usage");
    let r = post(
        &served.base,
        &key,
        &usage,
        Some("d1"),
        json!({"metric": "documents", "quantity": 1}),
    )
    .await;
    assert_eq!(r.status(), 200);

    let list = cli(dir.path(), &["service-keys", "list", "--json"]);
    assert!(list.status.success());
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["name"], "document-service");
    assert_eq!(
        listed[0]["scopes"],
        json!(["usage:write", "entitlements:read"])
    );
    assert!(
        !text(&list.stdout).contains(&key),
        "the key itself is never shown again"
    );
    let stored = std::fs::read(dir.path().join("billing.sqlite3.service-keys")).unwrap();
    let secret_part = key.rsplit('-').next().unwrap();
    assert!(
        !String::from_utf8_lossy(&stored).contains(secret_part),
        "only a hash of the key is stored"
    );

    let revoked = cli(dir.path(), &["service-keys", "revoke", &id]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    // A verified key is trusted for CREDENTIAL_TTL without a read: the
    // revocation binds within it (the slack is for a slow machine).
    let deadline = std::time::Instant::now()
        + (kraftd_billing::app::hot_path::CREDENTIAL_TTL + chrono::Duration::seconds(10))
            .to_std()
            .unwrap();
    for i in 0.. {
        let r = post(
            &served.base,
            &key,
            &usage,
            Some(&format!("d2-{i}")),
            json!({"metric": "api_calls", "quantity": 1}),
        )
        .await;
        if r.status() == 401 {
            break;
        }
        assert_eq!(r.status(), 200);
        assert!(
            std::time::Instant::now() < deadline,
            "a revoked key still accepted past the cache's bound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let bad = cli(
        dir.path(),
        &["service-keys", "create", "--name", "x", "--scopes", "root"],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("usage:write"),
        "{}",
        text(&bad.stderr)
    );
    let unknown = cli(
        dir.path(),
        &["service-keys", "revoke", &uuid::Uuid::new_v4().to_string()],
    );
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn a_hold_outlives_a_process_killed_between_reserve_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = create_key(dir.path());
    let mut first = serve(dir.path()).await;
    let account = account_of_new_user(&first.base, "crash@example.com").await;
    let reservations = format!("/api/accounts/{account}/reservations");
    let r = post(
        &first.base,
        &key,
        &reservations,
        Some("doc-7"),
        json!({"metric": "documents", "quantity": 4}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let held: Value = r.json().await.unwrap();
    // SIGKILL: no shutdown, no flush beyond what each write committed.
    first.kill();

    let second = serve(dir.path()).await;
    let level = documents(&second.base, &key, &account).await;
    assert_eq!(
        (level["used"].as_u64(), level["held"].as_u64()),
        (Some(0), Some(4)),
        "the hold survived"
    );
    let other = post(
        &second.base,
        &key,
        &reservations,
        Some("doc-8"),
        json!({"metric": "documents", "quantity": 2}),
    )
    .await;
    assert_eq!(
        other.status(),
        403,
        "held quota still counts against the limit of 5"
    );
    let retried = post(
        &second.base,
        &key,
        &reservations,
        Some("doc-7"),
        json!({"metric": "documents", "quantity": 4}),
    )
    .await;
    assert_eq!(retried.status(), 201);
    assert_eq!(
        retried.json::<Value>().await.unwrap()["id"],
        held["id"],
        "the retry finds the hold the dead process made"
    );
    let id = held["id"].as_str().unwrap();
    let commit = post(
        &second.base,
        &key,
        &format!("{reservations}/{id}/commit"),
        None,
        json!({"quantity": 3}),
    )
    .await;
    assert_eq!(commit.status(), 200);
    let level = documents(&second.base, &key, &account).await;
    assert_eq!(
        (level["used"].as_u64(), level["held"].as_u64()),
        (Some(3), Some(0))
    );
}

//! `handler admin …` against the real binary serving on its embedded
//! defaults: the admin API from a terminal, with the key from
//! `KRAFTD_ADMIN_KEY` and the service's own checks.

#[path = "support/binary.rs"]
#[allow(dead_code)]
mod binary;

use std::process::Output;

use serde_json::Value;

use binary::Served;

const SECRET: &str = "admin-cli-secret-0123456789abcdef0123456789";

fn admin(served: &Served, key: Option<&str>, args: &[&str]) -> Output {
    let mut env = vec![("KRAFTD_BILLING_URL", served.base.as_str())];
    env.extend(key.map(|k| ("KRAFTD_ADMIN_KEY", k)));
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    binary::run(&env, &all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_speak_to_the_running_service_with_an_admin_key() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let served = Served::start(&[("DATA_DIR", &data_dir), ("JWT_SECRET", SECRET)]).await;
    let key = served.service_key("admin");

    let out = admin(&served, Some(&key), &["health"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["webhooks_failing"]["count"], 0);

    // The service's refusal is the command's: a key without `admin`.
    let metering = served.service_key("usage:write");
    let out = admin(&served, Some(&metering), &["health"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing_scope"),
        "{}",
        text(&out.stderr)
    );

    // No key: nothing is sent, and the message says where one comes from.
    let out = admin(&served, None, &["health"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("KRAFTD_ADMIN_KEY"));
}

fn answer(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_finds_an_account_overrides_a_limit_and_credits_usage_from_the_terminal() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let served = Served::start(&[
        ("DATA_DIR", &data_dir),
        ("JWT_SECRET", SECRET),
        ("FREE_PLAN_DOCS_LIMIT", "5"),
    ])
    .await;
    let key = served.service_key("admin");
    let metering = served.service_key("usage:write");
    let (_, account) = binary::register_owner(&served.base, "cli-owner@acme.io", "Acme").await;
    let acting = |args: &[&str]| {
        let mut all = vec!["--as", "support@kraftd.io"];
        all.extend_from_slice(args);
        admin(&served, Some(&key), &all)
    };

    let found = answer(&acting(&["find", "--email", "cli-owner@acme.io"]));
    assert_eq!(found["accounts"][0]["id"], account.as_str());

    // The Free month's 5 documents are used up; the failed batch is given back.
    let client = reqwest::Client::new();
    let report = |key_name: &'static str| {
        client
            .post(served.url(&format!("/api/accounts/{account}/usage")))
            .bearer_auth(&metering)
            .header("Idempotency-Key", key_name)
            .json(&serde_json::json!({"metric": "documents", "quantity": 5}))
            .send()
    };
    assert_eq!(report("batch-1").await.unwrap().status(), 200);
    let args = [
        "credit",
        &account,
        "--metric",
        "documents",
        "--quantity",
        "2",
        "--reason",
        "a failed batch",
        "--key",
        "credit-batch-1",
    ];
    answer(&acting(&args));
    answer(&acting(&args)); // run again: credits nothing more
    let shown = answer(&acting(&["show", &account]));
    let documents = shown["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["metric"] == "documents")
        .unwrap()
        .clone();
    assert_eq!(documents["used"], 3, "{shown}");

    let set = answer(&acting(&[
        "override",
        &account,
        "--limit",
        "documents",
        "--value",
        "500",
        "--reason",
        "pilot of the batch importer",
    ]));
    let id = set["id"].as_str().unwrap().to_owned();
    assert_eq!(
        report("batch-2").await.unwrap().status(),
        200,
        "over 5, under 500"
    );
    let log = answer(&acting(&["audit", &account]));
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["override_set", "usage_credited"]);
    assert_eq!(log["entries"][0]["actor"]["person"], "support@kraftd.io");
    assert_eq!(log["entries"][0]["actor"]["service"], "test-service");

    // A trial extension is well formed, and refused: this account has no trial.
    let out = acting(&[
        "override",
        &account,
        "--trial-extension-days",
        "7",
        "--reason",
        "more time to evaluate",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not_trialing"),
        "{}",
        text(&out.stderr)
    );

    answer(&acting(&["remove-override", &account, &id]));
    let out = acting(&["remove-override", &account, &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("override_not_found"),
        "{}",
        text(&out.stderr)
    );
}

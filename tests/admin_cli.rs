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

//! The served OpenAPI document against the service it describes:
//! Schemathesis (pinned in tests/requirements.txt) generates requests from
//! `/api/openapi.json`, valid and invalid, and runs every check it has: a
//! schema-valid request is never refused with 400 or 422, an invalid one is
//! never accepted, every answer's status, headers and body are declared, a
//! signed-in route refuses a missing or wrong token. A user's routes are
//! called as a signed-in owner, the service routes with a service key on
//! that user's account; tests/schemathesis/schemathesis.toml says what is
//! left out and why.

use std::process::Command;

#[path = "support/binary.rs"]
#[allow(dead_code)]
mod binary;

use binary::Served;

const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/schemathesis/schemathesis.toml"
);
/// What a schema cannot state, filtered from the generated requests.
const HOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis/hooks.py");
const SECRET: &str = "schemathesis-test-secret-0123456789abcdef";

fn settings(data: &str) -> [(&str, &str); 6] {
    [
        ("DATA_DIR", data),
        ("JWT_SECRET", SECRET),
        // Generated registrations and logins come by the hundred from one
        // address: the sign-in throttle would answer most of them 429.
        ("SIGN_IN_PER_ADDRESS_PER_MINUTE", "1000000"),
        ("SIGN_IN_PER_ADDRESS_BURST", "1000000"),
        ("SIGN_IN_PER_ACCOUNT_PER_MINUTE", "1000000"),
        ("SIGN_IN_PER_ACCOUNT_BURST", "1000000"),
    ]
}

#[tokio::test]
async fn the_served_document_keeps_every_promise_schemathesis_checks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let served = Served::start(&settings(&data)).await;
    let (token, account) = binary::register_owner(&served.base, "owner@example.com", "Owner").await;
    let key = served.service_key("usage:write,entitlements:read");

    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--config-file", CONFIG, "run"])
        .arg(format!("{}/api/openapi.json", served.base))
        .args(["--checks", "all", "--no-color"])
        .env("KRAFTD_USER_TOKEN", &token)
        .env("KRAFTD_SERVICE_KEY", &key)
        .env("KRAFTD_ACCOUNT_ID", &account)
        .env("SCHEMATHESIS_HOOKS", HOOKS)
        // Its reports (and any stored cases) stay out of the work tree.
        .current_dir(dir.path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named schemathesis"),
        "schemathesis is missing: python3 -m pip install -r tests/requirements.txt\n{stderr}"
    );
    assert!(
        out.status.success(),
        "schemathesis found answers the document does not promise:\n{stdout}\n{stderr}"
    );
}

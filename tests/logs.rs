//! What the service logs: structured lines carrying the Functions host's
//! invocation id, and never a password, token or key. Alone in its own test
//! binary because tracing caches per-callsite interest process-wide: other
//! tests running without a subscriber would switch these callsites off.

mod support;

#[path = "support/key_vault.rs"]
mod key_vault;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use kraftd_billing::clock::SystemClock;
use kraftd_billing::payments::webhook::StripeWebhookVerifier;
use kraftd_billing::payments::PaymentsNotConfigured;
use kraftd_billing::secrets::{config_with_vault, FETCH_TIMEOUT};
use kraftd_billing::server::{self, Adapters};
use kraftd_billing::store::SqliteStore;
use serde_json::{json, Value};
use support::PASSWORD;
use tower::ServiceExt;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let r = router.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(path: &str, body: Value, invocation: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-azure-functions-invocationid", invocation)
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Local adapters on `store`: no payments, mail to files.
fn adapters(store: Arc<dyn kraftd_billing::domain::ports::Store>) -> Adapters {
    Adapters {
        store,
        payments: Arc::new(PaymentsNotConfigured),
        webhooks: Arc::new(StripeWebhookVerifier::new(vec![])),
        mailer: Arc::new(
            kraftd_billing::mail::FileMailer::new(
                tempfile::tempdir().unwrap().keep(),
                "KRAFTD <billing@kraftd.io>".parse().unwrap(),
            )
            .unwrap(),
        ),
        clock: Arc::new(SystemClock),
    }
}

#[tokio::test]
async fn logs_carry_the_invocation_id_and_never_a_password_token_or_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Start-up reads the secrets from Key Vault under the same subscriber,
    // so the SDK's own logs are checked too.
    let vault_values = [
        ("stripe-secret-key", "sk_test_vault_key_never_logged"),
        ("stripe-webhook-secret", "whsec_vault_never_logged"),
        ("jwt-secret", "jwt-vault-secret-never-logged-0123456789"),
        (
            "smtp-url",
            "smtps://billing:smtp-password-never-logged@smtp.example.com",
        ),
    ];
    let vault = key_vault::KeyVaultStandIn::start(&vault_values).await;
    let config = config_with_vault(|_| None, &vault.secrets(), FETCH_TIMEOUT)
        .await
        .unwrap();
    let router = server::app(
        &config,
        adapters(Arc::new(SqliteStore::in_memory().unwrap())),
    )
    .unwrap();
    let reg = json!({"email": "secret@example.com", "password": PASSWORD, "name": "S", "plan_id": "free"});
    let (status, body) = call(
        &router,
        post("/api/auth/register/with-plan", reg, "inv-register-42"),
    )
    .await;
    assert_eq!(status, 201);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &router,
        post(
            "/api/auth/login",
            json!({"email": "secret@example.com", "password": "wrong password 7"}),
            "inv-login-43",
        ),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &router,
        Request::get("/api/usage?access_token=leaky")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &router,
        Request::get("/api/usage")
            .header(header::AUTHORIZATION, "Bearer forged.token.value")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // An invitation's token is a credential even in a path: a made-up one,
    // shaped like ours, must not reach the log either.
    let invitation_token = format!("{}-{}", "ab".repeat(16), "Zz".repeat(21));
    let (status, _) = call(
        &router,
        Request::post(format!("/api/invitations/{invitation_token}/accept"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);

    // A failure on our side: the answer names the request id, the log line
    // under it has the cause (here SQLite's own words), the answer not.
    let broken_dir = tempfile::tempdir().unwrap();
    let broken = server::app(
        &config,
        // A directory where the database file should be.
        adapters(Arc::new({
            let occupied = broken_dir.path().join("occupied");
            std::fs::create_dir(&occupied).unwrap();
            SqliteStore::open_in_background(&occupied).unwrap()
        })),
    )
    .unwrap();
    let reg =
        json!({"email": "down@example.com", "password": PASSWORD, "name": "D", "plan_id": "free"});
    let (status, body) = call(
        &broken,
        post("/api/auth/register/with-plan", reg, "inv-broken-44"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("(request id inv-broken-44)"), "{message}");
    assert!(!message.contains("database"), "{message}");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let failure = logs
        .lines()
        .find(|l| l.contains("request failed") && l.contains("inv-broken-44"))
        .unwrap_or_else(|| panic!("no failure line for the request id:\n{logs}"));
    assert!(
        failure.contains("unable to open database file"),
        "{failure}"
    );
    assert!(
        logs.contains("inv-register-42") && logs.contains("inv-login-43"),
        "{logs}"
    );
    assert!(logs.contains("user registered"));
    assert!(
        logs.contains("/secrets/stripe-secret-key"),
        "the SDK's vault requests are in the log"
    );
    assert!(logs.contains("/api/invitations/{token}/accept"), "{logs}");
    for secret in [
        invitation_token.as_str(),
        PASSWORD,
        "wrong password 7",
        token.as_str(),
        "forged.token.value",
        "leaky",
        "$argon2",
        key_vault::TOKEN,
    ]
    .into_iter()
    .chain(vault_values.map(|(_, v)| v))
    .chain(["smtp-password-never-logged"])
    {
        assert!(
            !logs.contains(secret),
            "the log contains {secret:?}:\n{logs}"
        );
    }
    for line in logs.lines() {
        serde_json::from_str::<Value>(line).expect("every log line is JSON");
    }
}

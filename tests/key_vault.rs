//! Secrets from Key Vault: the adapter on the Azure SDK against an HTTPS
//! stand-in speaking Key Vault's REST shape and challenge, read the way
//! start-up reads it. The `handler` binary cannot be given the static
//! credential, so its end-to-end check (an unreachable vault stops start-up)
//! is in `custom_handler.rs`.

#[path = "support/key_vault.rs"]
mod key_vault;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use key_vault::{KeyVaultStandIn, StaticToken, TOKEN, VAULT_HOST};
use kraftd_billing::config::{Config, ConfigError, RunMode};
use kraftd_billing::domain::secret::ExposeSecret;
use kraftd_billing::secrets::{self, config_with_vault, KeyVaultSecrets, FETCH_TIMEOUT};

const STRIPE_KEY: &str = "sk_test_from_the_vault_51HxYz";
const WEBHOOK_SECRET: &str = "whsec_from_the_vault_0123";
const JWT_SECRET: &str = "jwt-from-the-vault-0123456789abcdef0123";
const SMTP_URL: &str = "smtps://billing:vault-smtp-password@smtp.example.com:465";

const ALL: &[(&str, &str)] = &[
    ("stripe-secret-key", STRIPE_KEY),
    ("stripe-webhook-secret", WEBHOOK_SECRET),
    ("jwt-secret", JWT_SECRET),
    ("smtp-url", SMTP_URL),
];

/// The environment of an app under the Functions host, with secrets of its
/// own that the vault's must beat.
fn host_env(name: &str) -> Option<String> {
    let env: HashMap<&str, &str> = HashMap::from([
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "4321"),
        ("STRIPE_SECRET_KEY", "sk_test_from_the_environment"),
        ("JWT_SECRET", "jwt-from-the-environment-0123456789abcdef"),
        ("EMAIL_FROM", "KRAFTD <billing@kraftd.io>"),
    ]);
    env.get(name).map(|v| v.to_string())
}

async fn start_up(vault: &KeyVaultSecrets) -> Result<Config, ConfigError> {
    config_with_vault(host_env, vault, FETCH_TIMEOUT).await
}

fn assert_clear(e: &ConfigError, names: &[&str]) {
    let line = e.to_string();
    assert!(!line.contains('\n'), "one line: {line:?}");
    for name in names {
        assert!(line.contains(name), "{line:?} does not name {name}");
    }
    for (_, value) in ALL {
        assert!(!line.contains(value), "{line:?} shows a secret");
    }
}

#[tokio::test]
async fn the_secrets_come_from_the_vault_and_win_over_the_environment() {
    let vault = KeyVaultStandIn::start(ALL).await;
    let config = start_up(&vault.secrets()).await.unwrap();

    assert_eq!(config.mode, RunMode::FunctionsHost { port: 4321 });
    let stripe = config.stripe.as_ref().unwrap();
    assert_eq!(stripe.secret_key.expose_secret(), STRIPE_KEY);
    assert_eq!(config.tokens.hs256_secret.expose_secret(), JWT_SECRET);
    let hooks: Vec<&str> = config
        .webhook_secrets
        .iter()
        .map(|s| s.expose_secret())
        .collect();
    assert_eq!(hooks, [WEBHOOK_SECRET]);
    assert_eq!(config.smtp_url.as_ref().unwrap().expose_secret(), SMTP_URL);
    // Everything else still comes from the environment.
    assert_eq!(config.email_from, "KRAFTD <billing@kraftd.io>");

    // As Key Vault sees it: each secret asked for once without a token or
    // with the static token, always with an api-version; the token was
    // asked for Key Vault's scope, which the challenge named.
    let seen = vault.seen();
    for (name, _) in ALL {
        let asks: Vec<_> = seen.iter().filter(|s| s.secret == *name).collect();
        assert!(
            asks.iter()
                .any(|s| s.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
            "{name}: {seen:?}"
        );
        assert!(asks.iter().all(|s| s.api_version.is_some()), "{seen:?}");
    }
    assert!(
        seen.iter().any(|s| s.authorization.is_none()),
        "challenged first"
    );
    let scopes = vault.credential.scopes.lock().unwrap().clone();
    assert!(!scopes.is_empty());
    assert!(
        scopes
            .iter()
            .all(|s| s == "https://vault.azure.net/.default"),
        "{scopes:?}"
    );
}

#[tokio::test]
async fn a_missing_secret_stops_start_up_naming_it_and_the_vault() {
    let vault = KeyVaultStandIn::start(
        &ALL.iter()
            .copied()
            .filter(|(name, _)| *name != "stripe-webhook-secret")
            .collect::<Vec<_>>(),
    )
    .await;
    let e = start_up(&vault.secrets()).await.err().unwrap();
    assert_eq!(e.setting, "STRIPE_WEBHOOK_SECRET");
    assert_clear(&e, &["stripe-webhook-secret", VAULT_HOST]);
    assert!(e.to_string().contains("is not in"), "{e}");
}

#[tokio::test]
async fn an_empty_secret_stops_start_up_naming_it() {
    let secrets: Vec<(&str, &str)> = ALL
        .iter()
        .map(|&(name, value)| (name, if name == "jwt-secret" { " " } else { value }))
        .collect();
    let vault = KeyVaultStandIn::start(&secrets).await;
    let e = start_up(&vault.secrets()).await.err().unwrap();
    assert_eq!(e.setting, "JWT_SECRET");
    assert_clear(&e, &["jwt-secret", "is empty"]);
}

#[tokio::test]
async fn an_unreachable_vault_stops_start_up_with_the_cause() {
    let vault = KeyVaultStandIn::start(ALL).await;
    // A port nothing listens on any more, under the vault's name.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = KeyVaultSecrets::new(
        &format!("https://{VAULT_HOST}:{}", closed.port()),
        vault.credential.clone(),
        Some(key_vault::http_to(vault.ca(), closed)),
    )
    .unwrap();
    let e = start_up(&client).await.err().unwrap();
    assert_eq!(e.setting, "KEY_VAULT_URL");
    assert_clear(&e, &[VAULT_HOST, "cannot connect"]);
}

#[tokio::test]
async fn a_vault_that_never_answers_stops_start_up_at_the_timeout() {
    let vault = KeyVaultStandIn::start(ALL).await;
    // Accepts connections and says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            open.push(tcp);
        }
    });
    let client = KeyVaultSecrets::new(
        &format!("https://{VAULT_HOST}:{}", addr.port()),
        vault.credential.clone(),
        Some(key_vault::http_to(vault.ca(), addr)),
    )
    .unwrap();
    let e = config_with_vault(host_env, &client, Duration::from_millis(500))
        .await
        .err()
        .unwrap();
    hold.abort();
    assert_eq!(e.setting, "KEY_VAULT_URL");
    assert_clear(&e, &[VAULT_HOST, "did not answer within 0.5 s"]);
}

#[tokio::test]
async fn a_vault_certificate_the_client_does_not_trust_stops_start_up() {
    let vault = KeyVaultStandIn::start_untrusted(ALL).await;
    let e = start_up(&vault.secrets()).await.err().unwrap();
    assert_eq!(e.setting, "KEY_VAULT_URL");
    assert_clear(&e, &[VAULT_HOST, "certificate"]);
    assert!(
        vault.seen().is_empty(),
        "nothing was sent to an untrusted vault"
    );
}

#[tokio::test]
async fn a_token_the_vault_refuses_stops_start_up_with_the_vaults_reason() {
    let vault = KeyVaultStandIn::start(ALL).await;
    let client = KeyVaultSecrets::new(
        &vault.url,
        Arc::new(StaticToken::new("a-token-for-another-tenant")),
        Some(vault.http()),
    )
    .unwrap();
    let e = start_up(&client).await.err().unwrap();
    assert_eq!(e.setting, "KEY_VAULT_URL");
    assert_clear(&e, &[VAULT_HOST, "HTTP 401 (Unauthorized)", "AKV10032"]);
}

#[tokio::test]
async fn a_vault_url_must_be_https() {
    for url in [
        "http://kraftd.vault.azure.net",
        "kraftd.vault.azure.net",
        "https://",
    ] {
        let get = |name: &str| (name == "KEY_VAULT_URL").then(|| url.to_owned());
        let e = secrets::config_from_lookup(get).await.err().unwrap();
        assert_eq!(e.setting, "KEY_VAULT_URL", "{url}");
    }
}

#[test]
fn each_vault_secret_stands_for_a_setting() {
    for (setting, _) in secrets::VAULT_SECRETS {
        assert!(
            kraftd_billing::config::SETTINGS
                .iter()
                .any(|(s, _)| s == setting),
            "{setting} is a setting"
        );
    }
}

#[tokio::test]
async fn the_events_secret_comes_from_the_vault_when_it_holds_one() {
    const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    // The vault need not hold it: events are optional.
    let vault = KeyVaultStandIn::start(ALL).await;
    let config = start_up(&vault.secrets()).await.unwrap();
    assert!(config.events.is_none());

    let mut held = ALL.to_vec();
    held.push(("events-webhook-secret", EVENTS_SECRET));
    let vault = KeyVaultStandIn::start(&held).await;
    let env = |name: &str| match name {
        "EVENTS_WEBHOOK_URL" => Some("https://kraftd.io/hooks/billing".to_owned()),
        "EVENTS_WEBHOOK_SECRET" => Some("whsec_from_the_environment".to_owned()),
        _ => host_env(name),
    };
    let config = config_with_vault(env, &vault.secrets(), FETCH_TIMEOUT)
        .await
        .unwrap();
    let events = config.events.expect("events are on");
    assert_eq!(events.url, "https://kraftd.io/hooks/billing");
    assert_eq!(events.secret.expose_secret(), EVENTS_SECRET);
}

//! Where the service's secrets come from. Without `KEY_VAULT_URL`, the
//! environment (which is also where Azure's Key Vault references land as
//! app settings). With it, the secrets in [`VAULT_SECRETS`] are read from
//! that vault once, at start-up, concurrently and within [`FETCH_TIMEOUT`],
//! and win over the environment, as do those of [`OPTIONAL_VAULT_SECRETS`]
//! the vault holds. A missing secret or an unreachable vault
//! stops start-up with one line naming the secret and the vault, never a
//! value.

mod keyvault;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

pub use keyvault::{credential, KeyVaultSecrets};

use crate::config::{Config, ConfigError};
use crate::domain::ports::Secrets;

/// Setting → Key Vault secret name: what the vault holds, in one place
/// (the deployment's template is checked against it).
pub const VAULT_SECRETS: &[(&str, &str)] = &[
    ("STRIPE_SECRET_KEY", "stripe-secret-key"),
    ("STRIPE_WEBHOOK_SECRET", "stripe-webhook-secret"),
    ("JWT_SECRET", "jwt-secret"),
    // The SMTP password lives inside the URL.
    ("SMTP_URL", "smtp-url"),
];

/// Secrets of optional features: read from the vault when it holds them;
/// absent, their setting stays as the environment has it (usually unset).
pub const OPTIONAL_VAULT_SECRETS: &[(&str, &str)] = &[
    // Signs the events sent to KRAFTD (EVENTS_WEBHOOK_URL).
    ("EVENTS_WEBHOOK_SECRET", "events-webhook-secret"),
];

/// The whole vault read, token included, must finish within this: start-up
/// fails clearly rather than hanging on an unreachable vault.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The configuration from the process environment (and its vault).
pub async fn config_from_env() -> Result<Config, ConfigError> {
    config_from_lookup(|name| std::env::var(name).ok()).await
}

/// The configuration from `get`, with the vault's secrets in place of their
/// settings when `KEY_VAULT_URL` is set.
pub async fn config_from_lookup(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let set = |name: &str| {
        get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    match set("KEY_VAULT_URL") {
        None => Config::from_lookup(get),
        Some(url) => {
            let vault = KeyVaultSecrets::new(&url, credential(set)?, None)?;
            config_with_vault(get, &vault, FETCH_TIMEOUT).await
        }
    }
}

/// The configuration from `get`, with every secret in [`VAULT_SECRETS`]
/// read from `vault` within `timeout`.
pub async fn config_with_vault<V: Secrets + fmt::Display>(
    get: impl Fn(&str) -> Option<String>,
    vault: &V,
    timeout: Duration,
) -> Result<Config, ConfigError> {
    let values = read_all(vault, timeout).await?;
    Config::from_lookup(|name| values.get(name).cloned().or_else(|| get(name)))
}

/// Every secret in [`VAULT_SECRETS`], and those of
/// [`OPTIONAL_VAULT_SECRETS`] the vault holds, by setting name.
async fn read_all<V: Secrets + fmt::Display>(
    vault: &V,
    timeout: Duration,
) -> Result<HashMap<&'static str, String>, ConfigError> {
    let required = VAULT_SECRETS.iter().map(|&(s, n)| (s, n, true));
    let optional = OPTIONAL_VAULT_SECRETS.iter().map(|&(s, n)| (s, n, false));
    let reads = required
        .chain(optional)
        .map(|(setting, name, required)| async move {
            match vault.secret(name).await {
                Ok(Some(value)) if !value.trim().is_empty() => Ok(Some((setting, value))),
                Ok(Some(_)) => Err(ConfigError {
                    setting,
                    problem: format!("secret {name} in {vault} is empty"),
                }),
                Ok(None) if !required => Ok(None),
                Ok(None) => Err(ConfigError {
                    setting,
                    problem: format!("secret {name} is not in {vault}"),
                }),
                Err(e) => Err(ConfigError {
                    setting: "KEY_VAULT_URL",
                    problem: format!("cannot read secret {name} from {vault}: {}", e.reason),
                }),
            }
        });
    match tokio::time::timeout(timeout, futures::future::try_join_all(reads)).await {
        Ok(values) => Ok(values?.into_iter().flatten().collect()),
        Err(_) => Err(ConfigError {
            setting: "KEY_VAULT_URL",
            problem: format!("{vault} did not answer within {} s", timeout.as_secs_f32()),
        }),
    }
}

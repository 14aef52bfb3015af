//! The Key Vault adapter of the `Secrets` port, on the Azure SDK's
//! `SecretClient` (which speaks Key Vault's challenge-based auth: the first
//! request goes without a token, the vault's 401 names the token's resource).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{
    ClientOptions, ExponentialRetryOptions, HttpClient, RetryOptions, StatusCode, Transport, Url,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};

use crate::config::ConfigError;
use crate::domain::ports::{SecretError, Secrets};

/// Secrets read from one Key Vault. Displays as `Key Vault <host>`, the way
/// start-up errors name it.
pub struct KeyVaultSecrets {
    client: SecretClient,
    /// `host[:port]` of the vault, for messages.
    host: String,
}

impl KeyVaultSecrets {
    /// A client of the vault at `url` (`https://<name>.vault.azure.net`).
    /// `http` replaces the SDK's HTTP client (tests: one that trusts a test
    /// CA); `None` is the SDK's own.
    pub fn new(
        url: &str,
        credential: Arc<dyn TokenCredential>,
        http: Option<Arc<dyn HttpClient>>,
    ) -> Result<Self, ConfigError> {
        let not_a_vault = || ConfigError {
            setting: "KEY_VAULT_URL",
            problem: "is not an https:// URL like https://<name>.vault.azure.net".into(),
        };
        let parsed = Url::parse(url).map_err(|_| not_a_vault())?;
        // Bearer tokens only ever travel over TLS.
        if parsed.scheme() != "https" {
            return Err(not_a_vault());
        }
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(not_a_vault()),
        };
        let mut client_options = client_options();
        client_options.transport = http.map(Transport::new);
        let client = SecretClient::new(
            url,
            credential,
            Some(SecretClientOptions {
                client_options,
                ..Default::default()
            }),
        )
        .map_err(|_| not_a_vault())?;
        Ok(Self { client, host })
    }
}

impl fmt::Display for KeyVaultSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key Vault {}", self.host)
    }
}

/// The identity the service reads the vault as (`identity::service_identity`,
/// with `AZURE_CLIENT_ID`).
pub fn credential(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn TokenCredential>, ConfigError> {
    crate::identity::service_identity(
        get("AZURE_CLIENT_ID"),
        get("FUNCTIONS_CUSTOMHANDLER_PORT").is_some(),
        client_options(),
    )
    .map_err(|e| ConfigError {
        setting: "AZURE_CLIENT_ID",
        problem: format!("no identity to read Key Vault with: {e}"),
    })
}

/// A few quick retries that fit inside the start-up budget
/// (`FETCH_TIMEOUT`), so a vault that refuses connections is reported as
/// such instead of as a timeout. The SDK's default retries for a minute.
fn client_options() -> ClientOptions {
    ClientOptions {
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: 3,
            max_total_elapsed: azure_core::time::Duration::seconds(5),
            max_delay: azure_core::time::Duration::seconds(2),
        }),
        ..Default::default()
    }
}

#[async_trait]
impl Secrets for KeyVaultSecrets {
    async fn secret(&self, name: &str) -> Result<Option<String>, SecretError> {
        let failed = |reason: String| SecretError {
            name: name.to_owned(),
            reason,
        };
        let response = match self.client.get_secret(name, None).await {
            Ok(r) => r,
            Err(e) => match e.kind() {
                ErrorKind::HttpResponse {
                    status: StatusCode::NotFound,
                    ..
                } => return Ok(None),
                _ => return Err(failed(reason(&e))),
            },
        };
        // Not the decoder's message: it may quote the body, which holds the value.
        let secret = response
            .into_model()
            .map_err(|_| failed("the vault's answer is not a secret".into()))?;
        Ok(secret.value)
    }
}

/// Why a request failed, in words that never quote a secret: only failed
/// requests get here, and their bodies are the vault's error messages.
fn reason(e: &azure_core::Error) -> String {
    match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = error_code.as_deref().unwrap_or("no error code");
            format!("HTTP {} ({code}): {}", u16::from(*status), innermost(e))
        }
        ErrorKind::Credential => format!("no access token: {}", innermost(e)),
        ErrorKind::Connection | ErrorKind::Io => {
            format!("cannot connect: {}", innermost(e))
        }
        ErrorKind::DataConversion => "the vault's answer could not be read".into(),
        _ => innermost(e),
    }
}

/// The root cause: the SDK wraps it in several layers of context.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

//! The event adapter: KRAFTD's one webhook endpoint, reached over HTTP(S)
//! with each event signed in the Standard Webhooks format
//! (<https://www.standardwebhooks.com>): headers `webhook-id`,
//! `webhook-timestamp` (unix seconds of this try) and `webhook-signature`
//! (`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed with the
//! base64-decoded part of a `whsec_` secret). A try is bounded by
//! `TIMEOUT`, follows no redirect, and succeeds only with a 2xx answer, of
//! which at most `MAX_ANSWER_BYTES` are read (for the log of a failure).

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest_rustls as reqwest;
use secrecy::SecretSlice;
use sha2::Sha256;

use crate::domain::ports::{EventError, EventSender};
use crate::domain::secret::{ExposeSecret, Secret};

/// One try's bound, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Of a failed try's answer, this much is kept for the log.
pub const MAX_ANSWER_BYTES: usize = 1024;

/// The signing key's length, decoded, as the standard allows.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventsConfigError {
    /// Never the secret itself.
    #[error("is not a whsec_ secret (whsec_ and 24 to 64 base64-encoded bytes)")]
    Secret,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The key of a `whsec_` secret: the decoded bytes after the prefix.
pub fn signing_key(secret: &Secret) -> Result<SecretSlice<u8>, EventsConfigError> {
    let encoded = secret
        .expose_secret()
        .strip_prefix("whsec_")
        .ok_or(EventsConfigError::Secret)?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| EventsConfigError::Secret)?;
    if !KEY_BYTES.contains(&key.len()) {
        return Err(EventsConfigError::Secret);
    }
    Ok(SecretSlice::from(key))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn signature(key: &SecretSlice<u8>, id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret())
        .expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

pub struct WebhookSender {
    http: reqwest::Client,
    url: String,
    key: SecretSlice<u8>,
}

impl WebhookSender {
    pub fn new(url: &str, secret: &Secret) -> Result<Self, EventsConfigError> {
        let key = signing_key(secret)?;
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(|e| EventsConfigError::Client(e.to_string()))?;
        Ok(Self {
            http,
            url: url.to_owned(),
            key,
        })
    }
}

#[async_trait]
impl EventSender for WebhookSender {
    async fn send(
        &self,
        webhook_id: &str,
        timestamp: DateTime<Utc>,
        body: &str,
    ) -> Result<(), EventError> {
        let ts = timestamp.timestamp();
        let mut response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                signature(&self.key, webhook_id, ts, body),
            )
            .body(body.to_owned())
            .send()
            .await
            // Without the URL: it may carry a token of the endpoint's.
            .map_err(|e| EventError(format!("no answer: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut answer = Vec::new();
        while answer.len() < MAX_ANSWER_BYTES {
            match tokio::time::timeout(TIMEOUT, response.chunk()).await {
                Ok(Ok(Some(chunk))) => answer.extend_from_slice(&chunk),
                _ => break,
            }
        }
        answer.truncate(MAX_ANSWER_BYTES);
        Err(EventError(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&answer).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standards_reference_vector() {
        // From standard-webhooks' libraries (their test of `sign`).
        let secret = Secret::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let key = signing_key(&secret).unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_secret_must_be_whsec_and_a_key_of_24_to_64_bytes() {
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!", "whsec_AAAA"] {
            assert_eq!(
                signing_key(&Secret::from(bad)).err(),
                Some(EventsConfigError::Secret),
                "{bad}"
            );
        }
    }
}

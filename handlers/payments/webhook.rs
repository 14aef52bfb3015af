//! Stripe webhook verification: the signature over the raw bytes, checked
//! by async-stripe against each configured secret (so a secret can be
//! rotated without downtime), with a 300 s tolerance against replays.
//!
//! The event is then read only for what says what to re-read (id, type,
//! object): its embedded object is never trusted as state, so an event
//! written for another API version still works.

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use stripe_webhook::{Webhook, WebhookError as StripeWebhookError};

use crate::domain::ports::{ProviderEvent, WebhookError, WebhookVerifier};
use crate::domain::secret::{ExposeSecret, Secret};

pub struct StripeWebhookVerifier {
    secrets: Vec<Secret>,
}

impl StripeWebhookVerifier {
    pub fn new(secrets: Vec<Secret>) -> Self {
        Self { secrets }
    }
}

#[derive(Deserialize)]
struct EventEnvelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    #[serde(default)]
    data: EventData,
}

/// Only the envelope is required: an event of a type the service ignores
/// may carry an object of any shape (`balance.available`'s has no id), and
/// is still acknowledged.
#[derive(Deserialize, Default)]
struct EventData {
    #[serde(default)]
    object: EventObject,
}

#[derive(Deserialize, Default)]
struct EventObject {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    customer: Option<Customer>,
}

/// `customer` is an id, or the expanded object.
#[derive(Deserialize)]
#[serde(untagged)]
enum Customer {
    Id(String),
    Object {
        id: String,
    },
    /// Anything else (an event type the service ignores): no customer.
    Other(serde::de::IgnoredAny),
}

impl WebhookVerifier for StripeWebhookVerifier {
    fn verify(
        &self,
        payload: &[u8],
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ProviderEvent, WebhookError> {
        let signature = signature
            .filter(|s| !s.is_empty())
            .ok_or(WebhookError::MissingSignature)?;
        let text = std::str::from_utf8(payload)
            .map_err(|_| WebhookError::Malformed("not UTF-8".into()))?;
        let mut verified = false;
        for secret in &self.secrets {
            match Webhook::construct_event_with_timestamp(
                text,
                signature,
                secret.expose_secret(),
                now.timestamp(),
            ) {
                // The signature held; a body the typed decoder cannot read is
                // still authentic, and only its envelope is used below.
                Ok(_) | Err(StripeWebhookError::BadParse(_)) => {
                    verified = true;
                    break;
                }
                Err(StripeWebhookError::BadTimestamp(_)) => return Err(WebhookError::Stale),
                Err(StripeWebhookError::BadHeader(_)) => {
                    return Err(WebhookError::MissingSignature)
                }
                Err(StripeWebhookError::BadSignature | StripeWebhookError::BadKey) => {}
            }
        }
        if !verified {
            return Err(WebhookError::BadSignature);
        }
        let envelope: EventEnvelope =
            serde_json::from_str(text).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        Ok(ProviderEvent {
            id: envelope.id,
            kind: envelope.kind,
            created: Utc
                .timestamp_opt(envelope.created, 0)
                .single()
                .ok_or_else(|| WebhookError::Malformed("created is not a timestamp".into()))?,
            object: envelope.data.object.object.unwrap_or_default(),
            object_id: envelope.data.object.id.unwrap_or_default(),
            customer: envelope.data.object.customer.and_then(|c| match c {
                Customer::Id(id) | Customer::Object { id } => Some(id),
                Customer::Other(_) => None,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1790000000,"data":{"object":{"id":"in_1","object":"invoice"}}}"#;

    fn verifier() -> StripeWebhookVerifier {
        StripeWebhookVerifier::new(vec![Secret::from("whsec_old"), Secret::from("whsec_new")])
    }

    #[test]
    fn any_configured_secret_verifies() {
        let now = Utc::now();
        for secret in ["whsec_old", "whsec_new"] {
            let sig = Webhook::generate_test_header(EVENT, secret, Some(now.timestamp()));
            let e = verifier()
                .verify(EVENT.as_bytes(), Some(&sig), now)
                .unwrap();
            assert_eq!(
                (e.id.as_str(), e.kind.as_str(), e.object_id.as_str()),
                ("evt_1", "invoice.paid", "in_1")
            );
        }
    }

    #[test]
    fn forged_stale_and_missing_signatures_are_refused() {
        let now = Utc::now();
        let v = verifier();
        let wrong = Webhook::generate_test_header(EVENT, "whsec_other", Some(now.timestamp()));
        assert_eq!(
            v.verify(EVENT.as_bytes(), Some(&wrong), now),
            Err(WebhookError::BadSignature)
        );
        let old = Webhook::generate_test_header(EVENT, "whsec_new", Some(now.timestamp() - 301));
        assert_eq!(
            v.verify(EVENT.as_bytes(), Some(&old), now),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            v.verify(EVENT.as_bytes(), None, now),
            Err(WebhookError::MissingSignature)
        );
        let tampered = EVENT.replace("in_1", "in_2");
        let sig = Webhook::generate_test_header(EVENT, "whsec_new", Some(now.timestamp()));
        assert_eq!(
            v.verify(tampered.as_bytes(), Some(&sig), now),
            Err(WebhookError::BadSignature)
        );
    }
}

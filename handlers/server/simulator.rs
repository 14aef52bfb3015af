//! Stripe for a local run without a key: the offline simulator
//! (`crates/stripe-sim`). Only builds with the `simulator` feature (the
//! default) have it; the deployment package does not.

use std::sync::Arc;

use super::{catalog, stripe_settings, Adapters, StartError};
use crate::config::{Config, ConfigError, StripeConfig};
use crate::domain::secret::{ExposeSecret, Secret};
use crate::payments::stripe::StripePayments;
use crate::payments::webhook::StripeWebhookVerifier;
use crate::stripe_sim::{SimOptions, StripeSim};

/// The offline Stripe simulator in place of Stripe, for local runs without a
/// key: the whole paid flow works on a fresh machine, and no money moves.
pub async fn start(config: &Config, adapters: &mut Adapters) -> Result<StripeSim, StartError> {
    let secret = config.webhook_secrets.first().cloned().unwrap_or_else(|| {
        let mut bytes = [0u8; 24];
        rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
        Secret::from(format!("whsec_sim_{}", hex::encode(bytes)))
    });
    let sim = StripeSim::start(SimOptions {
        webhook_secret: secret.expose_secret().to_owned(),
        clock: adapters.clock.clone(),
    })
    .await
    .map_err(|source| StartError::Bind {
        addr: "127.0.0.1:0 (Stripe simulator)".into(),
        source,
    })?;
    let stripe = StripeConfig {
        secret_key: Secret::from("sk_test_offline_simulator"),
        api_base: Some(sim.base_url()),
    };
    let payments = Arc::new(
        StripePayments::new(stripe_settings(config, &stripe), catalog(config)).map_err(|e| {
            ConfigError {
                setting: "STRIPE_API_BASE",
                problem: e.to_string(),
            }
        })?,
    );
    let sync = payments.clone();
    tokio::spawn(async move {
        if let Err(e) = sync.sync_catalog().await {
            tracing::error!(error = %e, "the simulator's catalog could not be set up");
        }
    });
    adapters.payments = payments;
    adapters.webhooks = Arc::new(StripeWebhookVerifier::new(vec![secret]));
    tracing::warn!(
        simulator = %sim.base_url(),
        "STRIPE_SECRET_KEY is not set: paid plans go to the offline Stripe simulator; no money moves"
    );
    Ok(sim)
}

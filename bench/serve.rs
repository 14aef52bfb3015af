//! One billing instance for the Cosmos benchmarks: the whole service on a
//! store, its payments on the Stripe simulator, listening on loopback.

use std::sync::Arc;
use std::time::Duration;

use kraftd_billing::app::Billing;
use kraftd_billing::config::Config;
use kraftd_billing::domain::clock::Clock;
use kraftd_billing::domain::ports::Store;
use kraftd_billing::domain::secret::Secret;
use kraftd_billing::http;
use kraftd_billing::payments::stripe::{StripePayments, StripeSettings};
use kraftd_billing::payments::webhook::StripeWebhookVerifier;
use kraftd_billing::server::{self, Adapters};
use kraftd_billing::stripe_sim::StripeSim;

pub const WEBHOOK_SECRET: &str = "whsec_bench_0123456789";

/// The configuration these settings make, and no other.
pub fn config(vars: &[(&str, &str)]) -> Config {
    Config::from_lookup(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

/// The instance's use-cases and its address (`http://127.0.0.1:<port>`).
pub async fn instance(
    config: &Config,
    store: Arc<dyn Store>,
    sim: &StripeSim,
    clock: Arc<dyn Clock>,
) -> (Arc<Billing>, std::net::SocketAddr) {
    let payments = StripePayments::new(
        StripeSettings {
            secret_key: Secret::from("sk_test_bench"),
            api_base: Some(sim.base_url()),
            checkout_success_url: config.checkout_success_url.clone(),
            checkout_cancel_url: config.checkout_cancel_url.clone(),
            timeout: Duration::from_secs(5),
            backoff: Duration::from_millis(20),
        },
        server::catalog(config),
    )
    .unwrap();
    payments.sync_catalog().await.unwrap();
    let state = server::state(
        config,
        Adapters {
            store,
            payments: Arc::new(payments),
            webhooks: Arc::new(StripeWebhookVerifier::new(vec![Secret::from(
                WEBHOOK_SECRET,
            )])),
            mailer: server::mailer(config).unwrap(),
            clock,
        },
    )
    .unwrap();
    let billing = state.billing.clone();
    let router = http::router(state, &[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (billing, addr)
}

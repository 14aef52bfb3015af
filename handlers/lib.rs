//! KRAFTD billing: plans, accounts, usage quotas and payments, served as
//! Azure Functions through one custom-handler binary.
//!
//! Dependencies point one way: `http` and `functions` → `app` (use-cases)
//! → `domain` (pure rules and the ports); `store`, `payments`, `auth`,
//! `mail` and `events` are adapters the domain's traits describe.

pub mod admin_client;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod events;
pub mod functions;
pub mod http;
pub mod identity;
pub mod mail;
pub mod payments;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tls;

/// The pure rules and the ports, from their own crate (`crates/domain`).
pub use kraftd_domain as domain;
/// The offline Stripe simulator (`crates/stripe-sim`), for local runs and tests.
#[cfg(feature = "simulator")]
pub use kraftd_stripe_sim as stripe_sim;

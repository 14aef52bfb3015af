//! KRAFTD billing: plans, accounts, usage quotas and payments, served as
//! Azure Functions through one custom-handler binary.
//!
//! Dependencies point one way: `http` and `functions` → `app` (use-cases)
//! → `domain` (pure rules and the ports); `store`, `payments` and `auth`
//! are adapters the domain's traits describe.

pub mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod functions;
pub mod http;
pub mod identity;
pub mod mail;
pub mod payments;
pub mod secrets;
pub mod server;
pub mod store;
pub mod stripe_sim;
pub mod tls;

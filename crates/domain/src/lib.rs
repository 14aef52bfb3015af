//! Pure billing logic: plans, limits, quota windows, the subscription state
//! machine and the ports adapters implement. Nothing here performs I/O or
//! knows about HTTP, SQLite, Stripe or Azure. With the `openapi` feature (the
//! service turns it on) the types the API shows also derive
//! `utoipa::ToSchema`: a compile-time description of their JSON, which the
//! HTTP layer assembles into the OpenAPI document.

pub mod account;
pub mod audit;
pub mod clock;
pub mod health;
pub mod lease;
pub mod money;
pub mod offer;
pub mod outbox;
pub mod overrides;
pub mod plan;
pub mod ports;
pub mod quota;
pub mod records;
pub mod secret;
pub mod service;
pub mod subscription;
pub mod throttle;
pub mod usage;
pub mod user;

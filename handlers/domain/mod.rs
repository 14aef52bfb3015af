//! Pure billing logic: plans, limits, quota windows, the subscription state
//! machine and the ports adapters implement. Nothing here performs I/O or
//! knows about HTTP, SQLite, Stripe or Azure.

pub mod clock;
pub mod money;
pub mod plan;
pub mod ports;
pub mod records;
pub mod subscription;
pub mod usage;
pub mod user;

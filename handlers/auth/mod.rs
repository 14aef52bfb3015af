//! Credentials: password hashing, this service's access tokens and those of
//! the trusted outside issuers, and the throttle that keeps sign-ins from
//! being a way to take the service down.

pub mod oidc;
pub mod password;
pub mod throttle;
pub mod token;

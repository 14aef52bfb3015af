//! Credentials: password hashing and access tokens, and the throttle that
//! keeps sign-ins from being a way to take the service down.

pub mod password;
pub mod throttle;
pub mod token;

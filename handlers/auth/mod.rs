//! Credentials: password hashing, this service's access tokens and those of
//! the trusted outside issuers.

pub mod oidc;
pub mod password;
pub mod token;

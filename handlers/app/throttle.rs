//! Sign-in throttling as the HTTP layer asks for it. The per-account
//! checks are in the use-cases that know the account (`login`, `register`,
//! `accept_invitation`); the state is `auth::throttle`'s.

use std::net::IpAddr;

use super::{AppError, Billing};

impl Billing {
    /// One sign-in class request from a client address (see
    /// `http::client_address` for which address that is).
    pub fn admit_client(&self, address: IpAddr) -> Result<(), AppError> {
        Ok(self.throttle.admit_address(address)?)
    }

    /// Forgets idle throttle keys and returns their memory: run every minute.
    pub fn sweep_throttles(&self) {
        self.throttle.sweep();
        let (addresses, accounts, failures) = self.throttle.sizes();
        tracing::debug!(addresses, accounts, failures, "throttle keys after sweep");
    }
}

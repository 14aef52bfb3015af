//! One TLS crypto provider for the whole process: aws-lc-rs, which the
//! Azure crates require, and which Stripe's client and SMTP are built with
//! too (ring is not in the deployed binary). Every adapter that opens TLS
//! calls this first, so no client has to guess.

use std::sync::Once;

pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err only means another provider was installed first: fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

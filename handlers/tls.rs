//! One TLS crypto provider for the whole process. The Azure crates bring
//! rustls with aws-lc while Stripe and SMTP bring it with ring; with both
//! compiled in, rustls refuses to guess, so every adapter that opens TLS
//! calls this first.

use std::sync::Once;

pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err only means another provider was installed first: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

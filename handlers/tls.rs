//! The process-wide rustls crypto provider.

/// Two providers are compiled in (ring for async-stripe and lettre,
/// aws-lc-rs for the Azure SDK's reqwest), so rustls cannot pick one by
/// itself and the first TLS client would panic. Every adapter that opens TLS
/// calls this before building its client; ring, as chosen for Stripe.
/// Calling it again is harmless.
pub fn install_crypto_provider() {
    // Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

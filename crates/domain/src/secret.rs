//! Secrets (API keys, signing secrets, connection strings) as `secrecy`
//! holds them: `{:?}` prints `[REDACTED]`, the memory is zeroed on drop, and
//! reading one takes a visible `expose_secret()`.

pub use secrecy::{ExposeSecret, SecretString as Secret};

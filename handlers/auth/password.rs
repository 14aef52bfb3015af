//! argon2id password hashing, run off the async workers because it is
//! deliberately slow.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A hash of a password nobody knows, checked when the email is unknown so
/// that "no such user" costs the same time as "wrong password".
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_blocking("decoy password that matches nothing"))
}

fn hash_blocking(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

pub async fn hash(password: String) -> String {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .expect("hashing task does not panic")
}

/// Verifies against `phc`, or against the decoy when there is no user, so
/// both paths do the same work. Returns false for the decoy.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_blocking(&password, &phc),
        None => {
            verify_blocking(&password, decoy_hash());
            false
        }
    })
    .await
    .expect("verification task does not panic")
}

/// Computes the decoy in the background so the first unknown-email login is
/// not slower than the rest. Delayed a little: on a cold start the CPU is
/// better spent answering the first request.
pub fn warm_up_soon() {
    tokio::spawn(async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        tokio::task::spawn_blocking(decoy_hash);
    });
}

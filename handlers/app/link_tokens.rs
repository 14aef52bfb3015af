//! Tokens for emailed links (invitations, email verification): the id of
//! what the link is for, then 256 random bits. Only a token's SHA-256 is
//! stored, so a database reader holds no usable link.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// A new token for a link about `subject`.
pub(super) fn new_token(subject: Uuid) -> String {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    // No `.` in it: a link's last segment with a dot looks like a file to
    // the web app's server.
    format!("{}-{secret}", subject.simple())
}

pub(super) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether two stored hashes are equal, in time that does not depend on
/// where they differ.
pub(super) fn same_hash(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// What a token is about, if it is shaped like one of ours.
pub(super) fn token_subject(token: &str) -> Option<Uuid> {
    // The subject is hex, so the first `-` ends it.
    let (subject, secret) = token.split_once('-')?;
    if secret.len() != 43
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    Uuid::try_parse(subject).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_subject_and_hash_stably() {
        let subject = Uuid::from_u128(7);
        let token = new_token(subject);
        assert_eq!(token_subject(&token), Some(subject));
        assert_eq!(token_hash(&token), token_hash(&token));
        assert!(same_hash(&token_hash(&token), &token_hash(&token)));
        assert_ne!(token, new_token(subject));
        assert!(!same_hash(
            &token_hash(&token),
            &token_hash(&new_token(subject))
        ));
        assert_eq!(token_hash(&token).len(), 64);
        for bad in [
            "",
            "x.y",
            "not-a-uuid.AAAA",
            &format!("{}.short", subject.simple()),
        ] {
            assert_eq!(token_subject(bad), None, "{bad}");
        }
    }
}

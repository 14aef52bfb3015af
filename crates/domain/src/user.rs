use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A syntactically valid, normalised (trimmed, lower-case) email address.
/// Two spellings of one address are one `Email`, so uniqueness holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// A bare addr-spec (`local@domain`, RFC 5322 dot-atoms): display
    /// names, comments, quoted local parts and trailing text are refused,
    /// so what is stored is exactly the address mail goes to.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err("is required");
        }
        if s.len() > 254 {
            return Err("is longer than 254 characters");
        }
        let (local, domain) = s.split_once('@').ok_or("must contain @")?;
        let valid = local.len() <= 64
            && dot_atom(local, |c| {
                c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
            })
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err("is not a valid email address");
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Non-empty runs of `atext` joined by single dots.
fn dot_atom(s: &str, atext: impl Fn(char) -> bool) -> bool {
    s.split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(&atext))
}

/// A person's display name: non-empty after trimming, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("is required");
        }
        if s.chars().count() > 100 {
            return Err("is longer than 100 characters");
        }
        if s.chars().any(char::is_control) {
            return Err("contains control characters");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Password rules, checked before hashing. Returns what is wrong.
pub fn check_password_strength(password: &str, email: &Email) -> Result<(), &'static str> {
    let chars = password.chars().count();
    if chars < 10 {
        return Err("must be at least 10 characters");
    }
    if chars > 128 {
        return Err("must be at most 128 characters");
    }
    let has_letter = password.chars().any(char::is_alphabetic);
    let has_other = password.chars().any(|c| !c.is_alphabetic());
    if !(has_letter && has_other) {
        return Err("must mix letters with digits or symbols");
    }
    if password
        .to_lowercase()
        .contains(email.as_str().split('@').next().unwrap_or(""))
    {
        return Err("must not contain the email address");
    }
    Ok(())
}

/// A user of KRAFTD's identity provider, named by the immutable pair the
/// provider's tokens carry. Never an email: emails change and can be
/// claimed by anyone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExternalIdentity {
    pub issuer: String,
    pub subject: String,
}

impl UserId {
    /// The id of the user an outside identity is: a name-based UUID of the
    /// pair, so provisioning twice, or an import and a first sign-in, land
    /// on one user and a lookup is a point read.
    pub fn of_identity(identity: &ExternalIdentity) -> Self {
        // A namespace of our own (a fixed v4 UUID) keeps these ids apart
        // from every other name-based UUID.
        const NAMESPACE: Uuid = Uuid::from_u128(0x6b7c_1f3a_9d2e_4c51_8a47_2f0e_91b3_d5c8);
        // Length-prefixed, so no two pairs spell one name.
        let name = format!(
            "{}:{}{}",
            identity.issuer.len(),
            identity.issuer,
            identity.subject
        );
        Self(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

/// How long an email verification link stays good.
pub const EMAIL_VERIFICATION_VALIDITY: chrono::Duration = chrono::Duration::hours(48);

/// A verification link sent and not used yet: only the token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailVerification {
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// How long after one link another may be sent: asking cannot flood a
/// mailbox, whoever asks.
pub const EMAIL_VERIFICATION_RESEND_AFTER: chrono::Duration = chrono::Duration::minutes(5);

impl EmailVerification {
    /// Whether the link is still good at `now` (half-open: good before
    /// `expires_at`).
    pub fn pending_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }

    /// When another link may be sent instead of this one.
    pub fn next_link_at(&self) -> DateTime<Utc> {
        self.expires_at - EMAIL_VERIFICATION_VALIDITY + EMAIL_VERIFICATION_RESEND_AFTER
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: PersonName,
    /// PHC string (argon2id). Never leaves the service. `None` for a user
    /// of the identity provider, who has no password here.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// The outside identity this user is; fixed at provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ExternalIdentity>,
    /// Whether the user proved they receive mail at `email`.
    #[serde(default)]
    pub email_verified: bool,
    /// The verification link outstanding, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<EmailVerification>,
    pub created_at: DateTime<Utc>,
}

impl User {
    /// A user who signs in here with `email` and a password.
    pub fn with_password(
        id: UserId,
        email: Email,
        name: PersonName,
        password_hash: String,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            email,
            name,
            password_hash: Some(password_hash),
            identity: None,
            email_verified: false,
            verification: None,
            created_at,
        }
    }

    /// A user of the identity provider; the id follows from the identity.
    pub fn of_identity(
        identity: ExternalIdentity,
        email: Email,
        email_verified: bool,
        name: PersonName,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: UserId::of_identity(&identity),
            email,
            name,
            password_hash: None,
            identity: Some(identity),
            email_verified,
            verification: None,
            created_at,
        }
    }

    /// Whether the user signs in here by email and password: only such a
    /// user holds their email as a sign-in name.
    pub fn signs_in_with_password(&self) -> bool {
        self.identity.is_none()
    }

    /// The user with their email proven: any outstanding link is spent.
    pub fn verified(mut self) -> Self {
        self.email_verified = true;
        self.verification = None;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.io",
            "a@b",
            "a@b..c",
            "a b@c.io",
            "a@b@c.io",
            "Ada <ada@example.com>",
            "ada@example.com>",
            "ada@example.com (Ada)",
            "ada@example.com, eve@example.com",
            "\"ada\"@example.com",
            ".ada@example.com",
            "ada.@example.com",
            "a..da@example.com",
            "ada@-example.com",
            "ada@example-.com",
            "ada@exa_mple.com",
            "ada@[127.0.0.1]",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn plain_addresses_pass() {
        for good in [
            "ada@example.com",
            "ada.lovelace+billing@mail.example.co.uk",
            "o'neil@x-y.io",
        ] {
            assert_eq!(Email::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn an_identity_names_one_user_forever() {
        let ada = ExternalIdentity {
            issuer: "https://id.kraftd.io".into(),
            subject: "42".into(),
        };
        assert_eq!(UserId::of_identity(&ada), UserId::of_identity(&ada.clone()));
        let other_issuer = ExternalIdentity {
            issuer: "https://other.example".into(),
            ..ada.clone()
        };
        assert_ne!(
            UserId::of_identity(&ada),
            UserId::of_identity(&other_issuer)
        );
        // No two pairs spell one name.
        let a = ExternalIdentity {
            issuer: "a".into(),
            subject: "bc".into(),
        };
        let b = ExternalIdentity {
            issuer: "ab".into(),
            subject: "c".into(),
        };
        assert_ne!(UserId::of_identity(&a), UserId::of_identity(&b));
    }

    #[test]
    fn weak_passwords_are_refused() {
        let e = Email::parse("ada@example.com").unwrap();
        assert!(check_password_strength("short1", &e).is_err());
        assert!(check_password_strength("onlyletters", &e).is_err());
        assert!(check_password_strength("ada-123456789", &e).is_err());
        assert!(check_password_strength("correct horse 9", &e).is_ok());
    }
}

//! Access tokens (JWT). The service issues its own as HS256 with the
//! configured secret (`iss` = `JWT_ISSUER`, `sub` = a user id) and verifies
//! them with that secret; tokens of the trusted outside issuers are
//! verified with their published keys (`oidc`): users' (`AUTH_ISSUERS`,
//! `JWT_AUDIENCE`) and KRAFTD's services' Entra ID app tokens
//! (`SERVICE_TOKEN_ISSUERS`, `SERVICE_TOKEN_AUDIENCE`). Which checks a token
//! gets comes from its unverified `iss` and `aud`; any other issuer, and
//! every other algorithm, `none` included, is refused. Times are checked
//! against the service's own clock.

use chrono::{DateTime, Utc};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::oidc::{Audience, Issuers};
pub use super::oidc::{ExternalClaims, ServiceClaims, TrustedIssuer};
use crate::domain::secret::{ExposeSecret, Secret};
use crate::domain::user::{User, UserId};

/// Clock skew tolerated between issuer and verifier.
pub(crate) const LEEWAY_SECONDS: i64 = 30;

/// Longer tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct TokenSettings {
    pub hs256_secret: Secret,
    pub issuer: String,
    pub audience: String,
    pub ttl_seconds: u64,
    /// Outside issuers whose tokens are accepted.
    pub issuers: Vec<TrustedIssuer>,
    /// An outside token issued (`iat`) longer ago than this is refused.
    pub max_token_age_seconds: u64,
    /// Issuers whose app tokens KRAFTD's services present
    /// (`SERVICE_TOKEN_ISSUERS`); may overlap `issuers`.
    pub service_issuers: Vec<TrustedIssuer>,
    /// The `aud` of a service's token: this API's application ID URI or
    /// client id (`SERVICE_TOKEN_AUDIENCE`), never `audience`.
    pub service_audiences: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// A user id.
    sub: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One of this service's tokens: a user it knows.
    Local(UserId),
    /// A trusted outside issuer's token: its user is (issuer, subject).
    External(ExternalClaims),
    /// A trusted service issuer's token for this API
    /// (`SERVICE_TOKEN_AUDIENCE`): an application's, or a person's, which
    /// is neither a service nor, here, a user.
    Service(ServiceClaims),
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the access token is malformed or its signature is invalid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was issued too long ago")]
    TooOld,
    #[error("the access token's issuer is not trusted")]
    UnknownIssuer,
    #[error("the access token is signed with a key its issuer does not publish")]
    UnknownKey,
}

pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
}

pub struct Tokens {
    encoding: EncodingKey,
    hs256: (DecodingKey, Validation),
    issuers: Issuers,
    issuer: String,
    audience: String,
    ttl_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// What picks the checks a token gets, read before any is made.
#[derive(Deserialize)]
struct Unverified {
    iss: String,
    #[serde(default)]
    aud: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Tokens {
    pub fn new(s: &TokenSettings) -> Result<Self, KeyError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&s.issuer]);
        validation.set_audience(&[&s.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked below against the service clock, the one
        // clock every other rule uses.
        validation.validate_exp = false;
        let secret = s.hs256_secret.expose_secret().as_bytes();
        let issuers = Issuers::new(
            &s.issuers,
            &s.audience,
            &s.service_issuers,
            &s.service_audiences,
            s.max_token_age_seconds,
        )
        .map_err(|e| KeyError(e.to_string()))?;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            hs256: (DecodingKey::from_secret(secret), validation),
            issuers,
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
            ttl_seconds: s.ttl_seconds,
        })
    }

    pub fn issue(&self, user: &User, now: DateTime<Utc>) -> IssuedToken {
        let iat = now.timestamp();
        let claims = Claims {
            sub: user.id.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat,
            exp: iat + self.ttl_seconds as i64,
        };
        let access_token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        IssuedToken {
            access_token,
            expires_in: self.ttl_seconds,
        }
    }

    /// Who `token` speaks for, at the service's `now`. An outside token may
    /// fetch its issuer's keys (bounded: see `oidc`).
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Subject, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
        // Unverified: they only choose which keys and checks verify it.
        let Unverified { iss, aud } = jsonwebtoken::dangerous::insecure_decode::<Unverified>(token)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if iss == self.issuer {
            return self.verify_own(token, now).map(Subject::Local);
        }
        let aud = match aud {
            None => Vec::new(),
            Some(OneOrMany::One(a)) => vec![a],
            Some(OneOrMany::Many(a)) => a,
        };
        match self.issuers.audience_for(&iss, &aud) {
            None => Err(TokenError::UnknownIssuer),
            Some(Audience::Users) => self
                .issuers
                .verify(token, &header, &iss, now)
                .await
                .map(Subject::External),
            Some(Audience::Services) => self
                .issuers
                .verify_service(token, &header, &iss, now)
                .await
                .map(Subject::Service),
        }
    }

    /// One of this service's own HS256 tokens: its `sub` must be a user id.
    fn verify_own(&self, token: &str, now: DateTime<Utc>) -> Result<UserId, TokenError> {
        let (key, validation) = &self.hs256;
        let claims = decode::<Claims>(token, key, validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.exp + LEEWAY_SECONDS <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        Uuid::parse_str(&claims.sub)
            .map(UserId)
            .map_err(|_| TokenError::Invalid)
    }
}

//! Access tokens (JWT). Issued as HS256 with the configured secret; verified
//! as HS256 with that secret and, when configured, RS256 with the public key
//! of KRAFTD's existing auth service. Every other algorithm, `none` included,
//! is refused. Expiry is checked against the service's own clock.

use chrono::{DateTime, Utc};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::secret::{ExposeSecret, Secret};
use crate::domain::user::{Email, User, UserId};

/// Clock skew tolerated between issuer and verifier.
const LEEWAY_SECONDS: i64 = 30;

#[derive(Clone)]
pub struct TokenSettings {
    pub hs256_secret: Secret,
    pub rs256_public_key_pem: Option<String>,
    pub issuer: String,
    pub audience: String,
    pub ttl_seconds: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// A user id, or (tokens of KRAFTD's existing auth) an email.
    sub: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// What a token of KRAFTD's identity provider says about its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalClaims {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Id(UserId),
    Email(Email),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the access token is malformed or its signature is invalid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
}

pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
}

pub struct Tokens {
    encoding: EncodingKey,
    hs256: (DecodingKey, Validation),
    rs256: Option<(DecodingKey, Validation)>,
    issuer: String,
    audience: String,
    ttl_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl Tokens {
    pub fn new(s: &TokenSettings) -> Result<Self, KeyError> {
        let validation = |alg| {
            let mut v = Validation::new(alg);
            v.set_issuer(&[&s.issuer]);
            v.set_audience(&[&s.audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            // Expiry is checked below against the service clock, the one
            // clock every other rule uses.
            v.validate_exp = false;
            v
        };
        let secret = s.hs256_secret.expose_secret().as_bytes();
        let rs256 = s
            .rs256_public_key_pem
            .as_deref()
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map(|k| (k, validation(Algorithm::RS256)))
                    .map_err(|e| KeyError(format!("not an RSA public key in PEM form ({e})")))
            })
            .transpose()?;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            hs256: (
                DecodingKey::from_secret(secret),
                validation(Algorithm::HS256),
            ),
            rs256,
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

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Subject, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
        let (key, validation) = match header.alg {
            Algorithm::HS256 => &self.hs256,
            Algorithm::RS256 => self.rs256.as_ref().ok_or(TokenError::Invalid)?,
            _ => return Err(TokenError::Invalid),
        };
        let claims = decode::<Claims>(token, key, validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.exp + LEEWAY_SECONDS <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        match Uuid::parse_str(&claims.sub) {
            Ok(id) => Ok(Subject::Id(UserId(id))),
            Err(_) => Email::parse(&claims.sub)
                .map(Subject::Email)
                .map_err(|_| TokenError::Invalid),
        }
    }
}

//! Access tokens of outside OpenID Connect issuers: users' tokens of
//! KRAFTD's identity provider and any other issuer the operator trusts
//! (`AUTH_ISSUERS`, audience `JWT_AUDIENCE`), and the Entra ID app tokens
//! KRAFTD's services get with the client-credentials flow
//! (`SERVICE_TOKEN_ISSUERS`, audience `SERVICE_TOKEN_AUDIENCE`). An issuer
//! in both lists is one issuer here, with one key cache.
//!
//! A token's `iss`, read before its signature is checked, only picks one of
//! the configured issuers: an unknown issuer is refused without a fetch.
//! Algorithms are pinned to RS256 and ES256 and must agree with the key the
//! token's `kid` names; the key's type, algorithm and use are checked too.
//! `exp`, `nbf`, `iat`, `aud` and a non-empty `sub` are required, and the
//! times are checked against the service's clock.
//!
//! Keys come from the issuer's JWKS, found through its discovery document
//! (`ISSUER/.well-known/openid-configuration`) or configured. They are
//! fetched on first use (start-up never waits for an identity provider),
//! refreshed after 12 hours, and at once for an unknown `kid` but at most
//! once a minute per issuer, one fetch at a time (others wait for it). A
//! failed fetch keeps the keys already known. Token contents are never
//! logged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration as StdDuration;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::jwk::PublicKeyUse;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Header, Validation};
use reqwest_rustls as reqwest;
use serde::Deserialize;

use super::token::{TokenError, LEEWAY_SECONDS};

/// Keys older than this are fetched again.
const REFRESH_AFTER: Duration = Duration::hours(12);
/// At most one fetch per issuer in this long, whatever the tokens' `kid`s.
const MIN_FETCH_INTERVAL: Duration = Duration::seconds(60);
/// A discovery document or key set must arrive within this long…
const FETCH_TIMEOUT: StdDuration = StdDuration::from_secs(5);
/// …and be no larger than this.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// RSA keys shorter than this are not trusted.
const MIN_RSA_BYTES: usize = 2048 / 8;

/// An outside issuer the service trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// The `iss` its tokens carry, compared exactly.
    pub issuer: String,
    /// Its key set; `None`: the `jwks_uri` of its discovery document.
    pub jwks_url: Option<String>,
}

/// What a valid outside token says about its subject. The service keys the
/// user on (`issuer`, `subject`), never on the email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalClaims {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// What a valid token of a service issuer, addressed to this API
/// (`SERVICE_TOKEN_AUDIENCE`), says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceClaims {
    /// An app-only token (client credentials): the calling application's
    /// client id (`azp`, v1 `appid`) and its app roles (`roles`), as sent.
    App {
        issuer: String,
        client_id: String,
        roles: Vec<String>,
    },
    /// A token on behalf of a person (`scp`, `idtyp` other than `app`, or a
    /// `sub` that is not the caller's `oid`): never a service principal.
    Delegated,
}

/// Which checks a token of a known issuer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// A user's token: `aud` is `JWT_AUDIENCE`.
    Users,
    /// A service's token: `aud` is one of `SERVICE_TOKEN_AUDIENCE`.
    Services,
}

/// Checks a URL the service fetches keys from: `https://`, or `http://` on
/// loopback only (tests and local identity providers).
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "is not a URL".to_owned())?;
    let host = parsed.host_str().unwrap_or_default();
    match parsed.scheme() {
        _ if host.is_empty() => Err("has no host".into()),
        "https" => Ok(parsed),
        "http" if matches!(host, "127.0.0.1" | "[::1]" | "localhost") => Ok(parsed),
        "http" => Err("must be https:// (http:// only on loopback)".into()),
        _ => Err("must be an https:// URL".into()),
    }
}

/// Checks an issuer identifier: a URL as `check_url` wants, without query
/// or fragment (OpenID Connect Discovery 1.0, section 2).
pub fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = check_url(issuer)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query or fragment".into());
    }
    Ok(())
}

type Key = (Algorithm, Arc<DecodingKey>);

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Key>,
    /// The last fetch that succeeded.
    fetched_at: Option<DateTime<Utc>>,
    /// The last fetch begun, whatever came of it.
    attempted_at: Option<DateTime<Utc>>,
    /// Fetches begun so far: a caller that saw this before waiting for the
    /// fetch lock knows whether one ran while it waited.
    generation: u64,
}

enum Decision {
    Use(Option<Key>),
    Fetch,
}

impl KeySet {
    fn decide(&self, kid: &str, now: DateTime<Utc>) -> Decision {
        let key = self.keys.get(kid).cloned();
        let stale = self.fetched_at.is_none_or(|t| now - t >= REFRESH_AFTER);
        if key.is_some() && !stale {
            return Decision::Use(key);
        }
        // Timestamps never move back: a clock set back holds the next
        // fetch off until it is past the last attempt's interval again.
        let may_fetch = self
            .attempted_at
            .is_none_or(|t| now - t >= MIN_FETCH_INTERVAL);
        if may_fetch {
            Decision::Fetch
        } else {
            Decision::Use(key)
        }
    }
}

struct Issuer {
    trusted: TrustedIssuer,
    /// Listed in `AUTH_ISSUERS`: its tokens for `JWT_AUDIENCE` are users'.
    users: bool,
    /// Listed in `SERVICE_TOKEN_ISSUERS`: its app tokens for
    /// `SERVICE_TOKEN_AUDIENCE` are services'.
    services: bool,
    keys: RwLock<KeySet>,
    /// Held by the one fetch in flight.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

impl Issuer {
    fn decide(&self, kid: &str, now: DateTime<Utc>) -> Decision {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .decide(kid, now)
    }

    fn key(&self, kid: &str) -> Option<Key> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.keys.get(kid).cloned()
    }

    fn generation(&self) -> u64 {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }
}

/// The trusted outside issuers and their keys.
pub struct Issuers {
    by_iss: HashMap<String, Arc<Issuer>>,
    audience: String,
    service_audiences: Vec<String>,
    max_age: Duration,
    /// Built only when there is an issuer to ask.
    http: Option<reqwest::Client>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for the issuers' keys: {0}")]
pub struct ClientError(String);

impl Issuers {
    /// `users`' tokens are checked for `audience`, `services`' for one of
    /// `service_audiences`; an issuer in both lists has one key cache (the
    /// first list's JWKS URL, if both name one).
    pub fn new(
        users: &[TrustedIssuer],
        audience: &str,
        services: &[TrustedIssuer],
        service_audiences: &[String],
        max_token_age_seconds: u64,
    ) -> Result<Self, ClientError> {
        let http = if users.is_empty() && services.is_empty() {
            None
        } else {
            crate::tls::install_crypto_provider();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(FETCH_TIMEOUT)
                .connect_timeout(FETCH_TIMEOUT)
                .build()
                .map_err(|e| ClientError(e.to_string()))?;
            Some(client)
        };
        let mut by_iss: HashMap<String, Issuer> = HashMap::new();
        for (list, is_service) in [(users, false), (services, true)] {
            for t in list {
                let issuer = by_iss.entry(t.issuer.clone()).or_insert_with(|| Issuer {
                    trusted: t.clone(),
                    users: false,
                    services: false,
                    keys: RwLock::default(),
                    fetching: Arc::default(),
                });
                if is_service {
                    issuer.services = true;
                } else {
                    issuer.users = true;
                }
            }
        }
        Ok(Self {
            by_iss: by_iss
                .into_iter()
                .map(|(iss, issuer)| (iss, Arc::new(issuer)))
                .collect(),
            audience: audience.to_owned(),
            service_audiences: service_audiences.to_vec(),
            max_age: Duration::seconds(i64::try_from(max_token_age_seconds).unwrap_or(i64::MAX)),
            http,
        })
    }

    /// Which checks a token gets, from its unverified `iss` and `aud`: a
    /// service issuer's token addressed to this API (or any of its tokens,
    /// if it is not a users' issuer too) is a service's; `None`: the issuer
    /// is not trusted, and nothing is fetched.
    pub fn audience_for(&self, iss: &str, aud: &[String]) -> Option<Audience> {
        let issuer = self.by_iss.get(iss)?;
        let for_services = aud.iter().any(|a| self.service_audiences.contains(a));
        Some(if issuer.services && (for_services || !issuer.users) {
            Audience::Services
        } else {
            Audience::Users
        })
    }

    /// Verifies a user's token whose unverified `iss` is `iss` and whose
    /// header is `header`, at the service's `now`.
    pub async fn verify(
        &self,
        token: &str,
        header: &Header,
        iss: &str,
        now: DateTime<Utc>,
    ) -> Result<ExternalClaims, TokenError> {
        let issuer = self
            .by_iss
            .get(iss)
            .filter(|i| i.users)
            .ok_or(TokenError::UnknownIssuer)?;
        let audience = [self.audience.clone()];
        let claims: OutsideClaims = self.decode(token, header, issuer, &audience, now).await?;
        self.check_times(claims.exp, claims.nbf, claims.iat, now)?;
        if claims.sub.trim().is_empty() {
            return Err(TokenError::Invalid);
        }
        Ok(claims.into_external(&issuer.trusted.issuer))
    }

    /// Verifies a service's token (an Entra ID access token of the
    /// client-credentials flow) as `verify` does a user's, for
    /// `SERVICE_TOKEN_AUDIENCE`, and says whether it is app-only.
    pub async fn verify_service(
        &self,
        token: &str,
        header: &Header,
        iss: &str,
        now: DateTime<Utc>,
    ) -> Result<ServiceClaims, TokenError> {
        let issuer = self
            .by_iss
            .get(iss)
            .filter(|i| i.services)
            .ok_or(TokenError::UnknownIssuer)?;
        let claims: AppTokenClaims = self
            .decode(token, header, issuer, &self.service_audiences, now)
            .await?;
        self.check_times(claims.exp, claims.nbf, claims.iat, now)?;
        claims.into_service(&issuer.trusted.issuer)
    }

    /// `token`'s claims once its signature, algorithm, `iss` and `aud`
    /// check out; the times are the caller's to check.
    async fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        header: &Header,
        issuer: &Arc<Issuer>,
        audiences: &[String],
        now: DateTime<Utc>,
    ) -> Result<C, TokenError> {
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(TokenError::Invalid);
        }
        if audiences.is_empty() {
            return Err(TokenError::Invalid);
        }
        let kid = header
            .kid
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or(TokenError::Invalid)?;
        let (alg, key) = self.key(issuer, kid, now).await?;
        if alg != header.alg {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&issuer.trusted.issuer]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Times are checked by the caller against the service clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        decode::<C>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }

    fn check_times(
        &self,
        exp: i64,
        nbf: i64,
        iat: i64,
        now: DateTime<Utc>,
    ) -> Result<(), TokenError> {
        let now = now.timestamp();
        if exp.saturating_add(LEEWAY_SECONDS) <= now {
            return Err(TokenError::Expired);
        }
        if nbf.saturating_sub(LEEWAY_SECONDS) > now || iat.saturating_sub(LEEWAY_SECONDS) > now {
            return Err(TokenError::NotYetValid);
        }
        let max_age = self.max_age.num_seconds();
        if iat.saturating_add(max_age).saturating_add(LEEWAY_SECONDS) < now {
            return Err(TokenError::TooOld);
        }
        Ok(())
    }

    /// The key `kid` of `issuer`, fetching the issuer's keys if they are
    /// stale or lack it and a fetch is allowed now.
    async fn key(
        &self,
        issuer: &Arc<Issuer>,
        kid: &str,
        now: DateTime<Utc>,
    ) -> Result<Key, TokenError> {
        let known = |found: Option<Key>| found.ok_or(TokenError::UnknownKey);
        if let Decision::Use(found) = issuer.decide(kid, now) {
            if found.is_some() {
                return known(found);
            }
            // A fetch in flight (the first, or one for a rotated key) may
            // bring it: wait for that fetch, not for a new one.
            drop(issuer.fetching.lock().await);
            return known(issuer.key(kid));
        }
        let Some(http) = self.http.clone() else {
            return Err(TokenError::UnknownKey);
        };
        let seen = issuer.generation();
        let held = issuer.fetching.clone().lock_owned().await;
        // Another request may have fetched while this one waited: that
        // fetch is as fresh as this one would be, whatever `now` says.
        if issuer.generation() != seen {
            return known(issuer.key(kid));
        }
        if let Decision::Use(found) = issuer.decide(kid, now) {
            return known(found);
        }
        {
            let mut set = issuer.keys.write().unwrap_or_else(|e| e.into_inner());
            set.attempted_at = set.attempted_at.max(Some(now));
            set.generation += 1;
        }
        // On a task of its own: a caller that goes away mid-fetch does not
        // waste the fetch the others are waiting for.
        let fetch = tokio::spawn({
            let issuer = issuer.clone();
            async move {
                let _held = held;
                match fetch_keys(&http, &issuer.trusted).await {
                    Ok(keys) => {
                        let mut set = issuer.keys.write().unwrap_or_else(|e| e.into_inner());
                        set.keys = keys;
                        set.fetched_at = set.fetched_at.max(Some(now));
                    }
                    Err(e) => tracing::warn!(
                        issuer = %issuer.trusted.issuer,
                        error = %e,
                        "could not fetch a trusted issuer's keys; keeping the ones known"
                    ),
                }
            }
        });
        let _ = fetch.await;
        known(issuer.key(kid))
    }
}

/// The claims of an outside token this service reads.
#[derive(Deserialize)]
struct OutsideClaims {
    sub: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<BoolOrString>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
}

/// The claims of a service's token this service reads (Entra ID access
/// tokens, v1 and v2).
#[derive(Deserialize)]
struct AppTokenClaims {
    sub: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    /// The caller's object id: for an app-only token, its service principal,
    /// which is also the `sub`.
    #[serde(default)]
    oid: Option<String>,
    /// `app` or `user`, when the API's registration adds this optional claim.
    #[serde(default)]
    idtyp: Option<String>,
    /// Delegated permissions: present only in a token on behalf of a person.
    #[serde(default)]
    scp: Option<serde_json::Value>,
    /// The calling application's client id (v2)…
    #[serde(default)]
    azp: Option<String>,
    /// …and in v1 tokens.
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

impl AppTokenClaims {
    /// App-only (client credentials), never on behalf of a person: no
    /// `scp`; `idtyp`, when present, is `app`; and the subject is the
    /// caller's own object id (`sub` == `oid`), which a person's token never
    /// has (its `oid` is the person's, its `sub` pairwise). So a token holds
    /// up without the optional `idtyp` claim, in v1 and v2 alike.
    fn app_only(&self) -> bool {
        self.scp.is_none()
            && self.idtyp.as_deref().is_none_or(|t| t == "app")
            && self
                .oid
                .as_deref()
                .is_some_and(|oid| !oid.trim().is_empty() && oid == self.sub)
    }

    fn into_service(self, issuer: &str) -> Result<ServiceClaims, TokenError> {
        if !self.app_only() {
            return Ok(ServiceClaims::Delegated);
        }
        let present = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let client_id = match (present(self.azp), present(self.appid)) {
            (Some(a), Some(b)) if a != b => return Err(TokenError::Invalid),
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => return Err(TokenError::Invalid),
        };
        Ok(ServiceClaims::App {
            issuer: issuer.to_owned(),
            client_id,
            roles: self.roles,
        })
    }
}

/// Some providers send `email_verified` as the string "true".
#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrString {
    Bool(bool),
    String(String),
}

impl OutsideClaims {
    fn into_external(self, issuer: &str) -> ExternalClaims {
        let present = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let name = present(self.name).or_else(|| {
            let parts: Vec<String> = [self.given_name, self.family_name]
                .into_iter()
                .filter_map(present)
                .collect();
            present(Some(parts.join(" ")))
        });
        ExternalClaims {
            issuer: issuer.to_owned(),
            subject: self.sub,
            email: present(self.email),
            email_verified: match self.email_verified {
                Some(BoolOrString::Bool(b)) => b,
                Some(BoolOrString::String(s)) => s.eq_ignore_ascii_case("true"),
                None => false,
            },
            name,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FetchError(String);

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The usable signing keys of `trusted`, by `kid`.
async fn fetch_keys(
    http: &reqwest::Client,
    trusted: &TrustedIssuer,
) -> Result<HashMap<String, Key>, FetchError> {
    let jwks_url = match &trusted.jwks_url {
        Some(url) => url.clone(),
        None => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                trusted.issuer.trim_end_matches('/')
            );
            let discovery: Discovery = serde_json::from_slice(&get(http, &url).await?)
                .map_err(|e| FetchError(format!("{url}: not a discovery document ({e})")))?;
            if discovery.issuer != trusted.issuer {
                return Err(FetchError(format!(
                    "{url} names another issuer, {:?}",
                    discovery.issuer
                )));
            }
            check_url(&discovery.jwks_uri)
                .map_err(|e| FetchError(format!("{url}: jwks_uri {e}")))?;
            discovery.jwks_uri
        }
    };
    let body = get(http, &jwks_url).await?;
    parse_key_set(&body).map_err(|e| FetchError(format!("{jwks_url}: not a key set ({e})")))
}

/// GETs `url`'s body, refusing redirects, errors and large bodies.
async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, FetchError> {
    let failed = |e: reqwest::Error| FetchError(format!("{url}: {e}"));
    let mut response = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(failed)?;
    if !response.status().is_success() {
        return Err(FetchError(format!("{url} answered {}", response.status())));
    }
    let too_large = || FetchError(format!("{url}: body over {MAX_BODY_BYTES} bytes"));
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The keys of a JWKS this service may verify with; the others (encryption
/// keys, other algorithms, short RSA keys, keys without a `kid`) are passed
/// over.
fn parse_key_set(body: &[u8]) -> Result<HashMap<String, Key>, serde_json::Error> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_slice(body)?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| usable(&jwk))
        .collect())
}

fn usable(jwk: &Jwk) -> Option<(String, Key)> {
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(rsa), None | Some(KeyAlgorithm::RS256)) => {
            let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&rsa.n)
                .ok()?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            (significant >= MIN_RSA_BYTES).then_some(Algorithm::RS256)?
        }
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, (alg, Arc::new(key))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_set_back_does_not_allow_another_fetch() {
        let t = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let set = KeySet {
            attempted_at: Some(t),
            ..KeySet::default()
        };
        let fetches = |now| matches!(set.decide("kid", now), Decision::Fetch);
        assert!(!fetches(t - Duration::hours(1)));
        assert!(!fetches(t + Duration::seconds(59)));
        assert!(fetches(t + MIN_FETCH_INTERVAL));
    }

    #[test]
    fn key_urls_are_https_or_loopback_http() {
        for ok in [
            "https://login.kraftd.io",
            "https://idp.example/tenant/v2.0",
            "http://127.0.0.1:8080",
            "http://localhost:9000/realms/kraftd",
            "http://[::1]:5556",
        ] {
            assert!(check_issuer(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://login.kraftd.io",
            "http://127.0.0.2",
            "ftp://127.0.0.1",
            "login.kraftd.io",
            "https://idp.example/?tenant=1",
            "https://idp.example/#x",
            "",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
        assert!(check_url("https://idp.example/keys?v=2").is_ok());
    }

    #[test]
    fn only_signing_keys_of_the_pinned_algorithms_are_kept() {
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 256]);
        let short = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
        let xy = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        let set = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-alg", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-enc", "use": "enc", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-ps", "alg": "PS256", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-short", "n": short, "e": "AQAB"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": xy, "y": xy},
            {"kty": "EC", "kid": "ec-384", "crv": "P-384", "x": xy, "y": xy},
            {"kty": "EC", "kid": "ec-claims-rs", "alg": "RS256", "crv": "P-256", "x": xy, "y": xy},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": xy},
            {"kty": "weird", "kid": "weird"},
        ]});
        let keys = parse_key_set(set.to_string().as_bytes()).unwrap();
        let mut kept: Vec<(&str, Algorithm)> =
            keys.iter().map(|(k, (a, _))| (k.as_str(), *a)).collect();
        kept.sort_by_key(|(k, _)| *k);
        assert_eq!(
            kept,
            [
                ("ec", Algorithm::ES256),
                ("rsa", Algorithm::RS256),
                ("rsa-alg", Algorithm::RS256)
            ]
        );
        assert!(parse_key_set(b"{\"keys\": 5}").is_err());
    }

    #[test]
    fn only_app_only_tokens_name_an_application() {
        let service = |v: serde_json::Value| {
            serde_json::from_value::<AppTokenClaims>(v)
                .unwrap()
                .into_service("https://login.microsoftonline.com/t/v2.0")
        };
        let app = |client_id: &str| ServiceClaims::App {
            issuer: "https://login.microsoftonline.com/t/v2.0".into(),
            client_id: client_id.into(),
            roles: vec!["Usage.Write".into()],
        };
        // v2 with the optional idtyp claim, v2 without it, v1 (appid).
        let v2 = serde_json::json!({"sub": "sp", "oid": "sp", "exp": 2, "nbf": 1, "iat": 1,
            "azp": "client", "idtyp": "app", "roles": ["Usage.Write"]});
        assert_eq!(service(v2.clone()), Ok(app("client")));
        let mut no_idtyp = v2.clone();
        no_idtyp.as_object_mut().unwrap().remove("idtyp");
        assert_eq!(service(no_idtyp), Ok(app("client")));
        let v1 = serde_json::json!({"sub": "sp", "oid": "sp", "exp": 2, "nbf": 1, "iat": 1,
            "appid": "client", "roles": ["Usage.Write"]});
        assert_eq!(service(v1), Ok(app("client")));

        // A person's: scp (even empty, even with roles), idtyp user, a
        // sub that is not the oid, no oid.
        for (claim, value) in [
            ("scp", serde_json::json!("Usage.Write")),
            ("scp", serde_json::json!("")),
            ("idtyp", serde_json::json!("user")),
            ("sub", serde_json::json!("pairwise-sub")),
            ("oid", serde_json::Value::Null),
        ] {
            let mut v = v2.clone();
            v[claim] = value;
            assert_eq!(service(v), Ok(ServiceClaims::Delegated), "{claim}");
        }
        // App-only without a client id, or with two that disagree.
        let mut v = v2.clone();
        v.as_object_mut().unwrap().remove("azp");
        assert_eq!(service(v), Err(TokenError::Invalid));
        let mut v = v2.clone();
        v["appid"] = "other".into();
        assert_eq!(service(v), Err(TokenError::Invalid));
    }

    #[test]
    fn names_fall_back_to_given_and_family_and_email_verified_may_be_a_string() {
        let claims = |v: serde_json::Value| {
            serde_json::from_value::<OutsideClaims>(v)
                .unwrap()
                .into_external("https://idp.example")
        };
        let base = serde_json::json!({"sub": "abc", "exp": 2, "nbf": 1, "iat": 1});
        let mut v = base.clone();
        v["given_name"] = "Ada".into();
        v["family_name"] = "Lovelace".into();
        v["email"] = "ada@example.com".into();
        v["email_verified"] = "true".into();
        let c = claims(v);
        assert_eq!(c.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(c.email.as_deref(), Some("ada@example.com"));
        assert!(c.email_verified);
        let mut v = base.clone();
        v["name"] = "  ".into();
        v["family_name"] = "Hopper".into();
        v["email_verified"] = "false".into();
        let c = claims(v);
        assert_eq!(c.name.as_deref(), Some("Hopper"));
        assert!(!c.email_verified);
        let c = claims(base);
        assert_eq!((c.name, c.email, c.email_verified), (None, None, false));
    }
}

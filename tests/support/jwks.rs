//! A stand-in for KRAFTD's identity provider: a real HTTP server on
//! 127.0.0.1:0 serving an OpenID Connect discovery document (its issuer is
//! its own `http://127.0.0.1:PORT`) and a JWKS the test can change, counting
//! each fetch. It signs tokens with the fixture keys in tests/fixtures; their
//! JWKs are derived from the same PEMs, so a token it signs verifies against
//! what it publishes. Besides users' tokens it mints what Entra ID gives
//! KRAFTD's services in the client-credentials flow: app-only access tokens
//! with `roles`, `azp` (v1: `appid`) and `idtyp`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// An RSA key (RS256), published at start.
pub const RSA: &str = "rsa-1";
/// An EC P-256 key (ES256), published at start.
pub const EC: &str = "ec-1";
/// A second RSA key, published once the test rotates to it.
pub const RSA_NEXT: &str = "rsa-2";
/// An RSA key never published unless the test does.
pub const UNPUBLISHED: &str = "rsa-unpublished";

/// The audience the billing service expects by default.
pub const AUDIENCE: &str = "kraftd-billing";

/// The audience of services' tokens in the tests (`SERVICE_TOKEN_AUDIENCE`):
/// billing's application ID URI.
pub const SERVICE_AUDIENCE: &str = "api://kraftd-billing";

struct Key {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
}

fn keys() -> Vec<Key> {
    let rsa = |pem: &str| EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    vec![
        Key {
            kid: RSA,
            alg: Algorithm::RS256,
            encoding: rsa(include_str!("../fixtures/rs256-private.pem")),
        },
        Key {
            kid: EC,
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(include_bytes!("../fixtures/es256-private.pem"))
                .unwrap(),
        },
        Key {
            kid: RSA_NEXT,
            alg: Algorithm::RS256,
            encoding: rsa(include_str!("../fixtures/rs256-second-private.pem")),
        },
        Key {
            kid: UNPUBLISHED,
            alg: Algorithm::RS256,
            encoding: rsa(include_str!("../fixtures/rs256-other-private.pem")),
        },
    ]
}

/// The public JWK of `key`, as an identity provider publishes it.
fn jwk(key: &Key) -> Value {
    let mut jwk = Jwk::from_encoding_key(&key.encoding, key.alg).unwrap();
    jwk.common.key_id = Some(key.kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(jwk).unwrap()
}

struct Published {
    issuer: String,
    keys: Vec<Key>,
    kids: Mutex<BTreeSet<&'static str>>,
    /// Extra JWKs published as they are (e.g. a key under another kid).
    extra: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    failing: AtomicBool,
}

pub struct IdentityProvider {
    published: Arc<Published>,
    base: String,
}

impl IdentityProvider {
    /// Starts a provider publishing `RSA` and `EC`.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let published = Arc::new(Published {
            issuer: base.clone(),
            keys: keys(),
            kids: Mutex::new(BTreeSet::from([RSA, EC])),
            extra: Mutex::default(),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(published.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { published, base }
    }

    /// The issuer identifier: `http://127.0.0.1:PORT`, no trailing slash.
    pub fn issuer(&self) -> String {
        self.published.issuer.clone()
    }

    /// Where the key set is, for `AUTH_ISSUERS=ISSUER|JWKS_URL`.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    /// Claims the billing service accepts at `now`: this issuer, the default
    /// audience, `sub`, issued at `now` and valid for ten minutes.
    pub fn claims(&self, sub: &str, now: DateTime<Utc>) -> Value {
        let t = now.timestamp();
        json!({
            "iss": self.issuer(), "aud": AUDIENCE, "sub": sub,
            "iat": t, "nbf": t, "exp": t + 600,
        })
    }

    /// The claims of an Entra ID v2 app-only access token (client
    /// credentials) of the application `client_id` with the app roles
    /// `roles`, for billing's API, valid at `now` for an hour: `azp` the
    /// client id, `sub` and `oid` its service principal, `idtyp` `app`.
    pub fn app_claims(&self, client_id: &str, roles: &[&str], now: DateTime<Utc>) -> Value {
        let t = now.timestamp();
        let service_principal = format!("sp-{client_id}");
        json!({
            "iss": self.issuer(), "aud": SERVICE_AUDIENCE, "ver": "2.0",
            "sub": service_principal, "oid": service_principal, "tid": "tenant-1",
            "azp": client_id, "azpacr": "1", "idtyp": "app", "roles": roles,
            "iat": t, "nbf": t, "exp": t + 3600,
        })
    }

    /// The same application's token in the v1 shape: `appid` for `azp`, and
    /// no `idtyp` (the optional claim not configured).
    pub fn app_claims_v1(&self, client_id: &str, roles: &[&str], now: DateTime<Utc>) -> Value {
        let mut claims = self.app_claims(client_id, roles, now);
        let map = claims.as_object_mut().unwrap();
        map.remove("azp");
        map.remove("azpacr");
        map.remove("idtyp");
        map.insert("appid".into(), json!(client_id));
        map.insert("appidacr".into(), json!("1"));
        map.insert("ver".into(), json!("1.0"));
        claims
    }

    /// A person's delegated access token for `aud`, got through the client
    /// app `client_id`: `scp`, `idtyp` `user`, their `oid` apart from the
    /// pairwise `sub`, an email; and `roles` if the person holds app roles.
    pub fn delegated_claims(
        &self,
        sub: &str,
        aud: &str,
        client_id: &str,
        roles: &[&str],
        now: DateTime<Utc>,
    ) -> Value {
        let mut claims = self.claims(sub, now);
        let map = claims.as_object_mut().unwrap();
        map.insert("aud".into(), json!(aud));
        map.insert("oid".into(), json!(format!("oid-{sub}")));
        map.insert("azp".into(), json!(client_id));
        map.insert("idtyp".into(), json!("user"));
        map.insert("scp".into(), json!("Usage.Write access_as_user"));
        map.insert("email".into(), json!(format!("{sub}@corp.example")));
        map.insert("email_verified".into(), json!(true));
        map.insert("name".into(), json!("Pat Person"));
        if !roles.is_empty() {
            map.insert("roles".into(), json!(roles));
        }
        claims
    }

    /// `claims` signed with the key `kid`, its algorithm and `kid` in the header.
    pub fn token(&self, kid: &str, claims: &Value) -> String {
        let key = self.key(kid);
        let mut header = Header::new(key.alg);
        header.kid = Some(kid.to_owned());
        encode(&header, claims, &key.encoding).unwrap()
    }

    /// `claims` signed with the key `kid` under a header of the test's making.
    pub fn token_with_header(&self, header: &Header, kid: &str, claims: &Value) -> String {
        encode(header, claims, &self.key(kid).encoding).unwrap()
    }

    /// Publishes only `kid` from now on.
    pub fn rotate_to(&self, kid: &'static str) {
        self.key(kid);
        *self.published.kids.lock().unwrap() = BTreeSet::from([kid]);
    }

    /// Publishes `kid` next to the keys already published.
    pub fn publish(&self, kid: &'static str) {
        self.key(kid);
        self.published.kids.lock().unwrap().insert(kid);
    }

    /// Stops publishing `kid`.
    pub fn withdraw(&self, kid: &str) {
        self.published.kids.lock().unwrap().remove(kid);
    }

    /// Publishes the public key of `kid` under the id `as_kid`, with `edit`
    /// applied to its JWK (e.g. another `alg` or `use`).
    pub fn publish_as(&self, kid: &str, as_kid: &str, edit: impl FnOnce(&mut Value)) {
        let mut value = jwk(self.key(kid));
        value["kid"] = json!(as_kid);
        edit(&mut value);
        self.published.extra.lock().unwrap().push(value);
    }

    /// While set, the discovery document and the JWKS answer 500.
    pub fn set_failing(&self, failing: bool) {
        self.published.failing.store(failing, Ordering::SeqCst);
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.published.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was fetched.
    pub fn discovery_fetches(&self) -> usize {
        self.published.discovery_fetches.load(Ordering::SeqCst)
    }

    fn key(&self, kid: &str) -> &Key {
        self.published
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .unwrap_or_else(|| panic!("no fixture key {kid}"))
    }
}

async fn discovery(State(p): State<Arc<Published>>) -> Response {
    p.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if p.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Json(json!({
        "issuer": p.issuer,
        "jwks_uri": format!("{}/jwks", p.issuer),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
    .into_response()
}

async fn jwks(State(p): State<Arc<Published>>) -> Response {
    p.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if p.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let kids = p.kids.lock().unwrap().clone();
    let mut keys: Vec<Value> = p
        .keys
        .iter()
        .filter(|k| kids.contains(k.kid))
        .map(jwk)
        .collect();
    keys.extend(p.extra.lock().unwrap().iter().cloned());
    Json(json!({ "keys": keys })).into_response()
}

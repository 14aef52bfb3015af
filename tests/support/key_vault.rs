//! A Key Vault stand-in: HTTPS on 127.0.0.1:0 with a certificate from a
//! test CA made at test time, answering `GET /secrets/{name}` the way Key
//! Vault does: a bearer challenge for requests without a token, the secret
//! bundle, or its `SecretNotFound` error. The client is the SDK's own HTTP
//! client type, trusting only the test CA and sending the vault's name to
//! 127.0.0.1, so the SDK's challenge check runs unchanged.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::HttpClient;
use kraftd_billing::secrets::KeyVaultSecrets;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::ring, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A name under Key Vault's domain, so the SDK's check that the challenge's
/// resource (`https://vault.azure.net`) matches the vault's host holds.
pub const VAULT_HOST: &str = "kraftd-test.vault.azure.net";
/// What the static credential hands out and the stand-in requires.
pub const TOKEN: &str = "static-test-access-token";
/// Key Vault's challenge, as it sends it.
const CHALLENGE: &str = "Bearer authorization=\"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000\", resource=\"https://vault.azure.net\"";

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub secret: String,
    pub api_version: Option<String>,
    pub authorization: Option<String>,
}

pub struct KeyVaultStandIn {
    /// The vault URL a client uses: `https://VAULT_HOST:port`.
    pub url: String,
    pub addr: SocketAddr,
    /// The credential `secrets()` reads with.
    pub credential: Arc<StaticToken>,
    ca: CertificateDer<'static>,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for KeyVaultStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct Vault {
    secrets: Arc<HashMap<String, String>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl KeyVaultStandIn {
    /// A vault holding `secrets` (name, value), with a certificate the
    /// client trusts.
    pub async fn start(secrets: &[(&str, &str)]) -> Self {
        Self::start_with(secrets, true).await
    }

    /// The same vault, but its certificate is self-signed: not from the CA
    /// the client trusts.
    pub async fn start_untrusted(secrets: &[(&str, &str)]) -> Self {
        Self::start_with(secrets, false).await
    }

    async fn start_with(secrets: &[(&str, &str)], trusted: bool) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "KRAFTD test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![VAULT_HOST.to_owned()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, VAULT_HOST);
        let cert = if trusted {
            params.signed_by(&key, &issuer).unwrap()
        } else {
            params.self_signed(&key).unwrap()
        };
        // Explicit provider: the build has both of rustls's, so no default.
        let tls = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();

        let seen = Arc::new(Mutex::new(Vec::new()));
        let vault = Vault {
            secrets: Arc::new(
                secrets
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            seen: seen.clone(),
        };
        let router = Router::new()
            .route("/secrets/{name}", get(get_secret))
            .route("/secrets/{name}/", get(get_secret))
            .with_state(vault);
        let listener = TlsListener {
            tcp: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            acceptor: TlsAcceptor::from(Arc::new(tls)),
        };
        let addr = listener.tcp.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url: format!("https://{VAULT_HOST}:{}", addr.port()),
            addr,
            credential: Arc::new(StaticToken::default()),
            ca: ca.der().clone(),
            seen,
            server,
        }
    }

    /// The SDK's HTTP client, trusting only this vault's CA and resolving
    /// the vault's name to the stand-in.
    pub fn http(&self) -> Arc<dyn HttpClient> {
        http_to(&self.ca, self.addr)
    }

    /// The adapter under test, on this vault with the static credential.
    pub fn secrets(&self) -> KeyVaultSecrets {
        KeyVaultSecrets::new(&self.url, self.credential.clone(), Some(self.http())).unwrap()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }
}

/// The SDK's HTTP client type (reqwest, as azure_core uses) trusting only
/// `ca` and sending `VAULT_HOST` to `addr`.
pub fn http_to(ca: &CertificateDer<'static>, addr: SocketAddr) -> Arc<dyn HttpClient> {
    let client = reqwest_rustls::Client::builder()
        .tls_certs_only([reqwest_rustls::Certificate::from_der(ca).unwrap()])
        .resolve(VAULT_HOST, addr)
        .build()
        .unwrap();
    Arc::new(client)
}

async fn get_secret(
    State(vault): State<Vault>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    vault.seen.lock().unwrap().push(Seen {
        secret: name.clone(),
        api_version: query.get("api-version").cloned(),
        authorization: authorization.clone(),
    });
    let error = |status: StatusCode, code: &str, message: String| {
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
    };
    if !query.contains_key("api-version") {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid api-version parameter.".into(),
        )
        .into_response();
    }
    // Key Vault challenges every request it refuses, with or without a token.
    let refused = match authorization.as_deref() {
        Some(a) if a == format!("Bearer {TOKEN}") => None,
        None => Some("AKV10000: Request is missing a Bearer or PoP token."),
        Some(_) => Some("AKV10032: Invalid issuer."),
    };
    if let Some(message) = refused {
        return (
            [(header::WWW_AUTHENTICATE, CHALLENGE)],
            error(StatusCode::UNAUTHORIZED, "Unauthorized", message.into()),
        )
            .into_response();
    }
    match vault.secrets.get(&name) {
        Some(value) => Json(json!({
            "value": value,
            "id": format!("https://{VAULT_HOST}/secrets/{name}/4387e9f3d6e14c459867679a90fd0f79"),
            "attributes": {
                "enabled": true,
                "created": 1_700_000_000,
                "updated": 1_700_000_000,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90
            },
            "tags": {}
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            format!("A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
        )
        .into_response(),
    }
}

/// TLS over a TCP listener, for `axum::serve`.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses the certificate ends the handshake: next.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A credential that always hands out the same token (`TOKEN` by
/// default), and records the scopes it was asked for.
#[derive(Debug)]
pub struct StaticToken {
    token: String,
    pub scopes: Mutex<Vec<String>>,
}

impl StaticToken {
    pub fn new(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            scopes: Mutex::default(),
        }
    }
}

impl Default for StaticToken {
    fn default() -> Self {
        Self::new(TOKEN)
    }
}

#[async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.scopes
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        Ok(AccessToken::new(
            self.token.clone(),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

//! Connecting to a Cosmos DB account: with managed identity in Azure (no
//! key anywhere), or with an emulator's well-known key on loopback.

use azure_data_cosmos::options::{
    BinaryEncodingOptions, ConnectionPoolOptionsBuilder, Region, ServerCertificateValidation,
};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosRuntimeBuilder, RoutingStrategy,
};

use crate::domain::ports::StoreError;
use crate::domain::secret::{ExposeSecret, Secret};

#[derive(Clone, Debug)]
pub struct CosmosSettings {
    /// `COSMOS__accountEndpoint`, the Functions host's identity-based name.
    pub endpoint: String,
    /// Only for emulators: in Azure the identity is the credential.
    pub key: Option<Secret>,
    /// The user-assigned identity's client id (`COSMOS__clientId`).
    pub client_id: Option<String>,
    pub database: String,
    /// The region to prefer (`COSMOS_REGION`; Bicep sets the deployment's).
    pub region: String,
    /// Under the Functions host, no client id means the system-assigned identity.
    pub under_host: bool,
}

impl CosmosSettings {
    /// Loopback endpoints are emulators: self-signed TLS, HTTP/1.1, plain JSON.
    pub fn is_emulator(&self) -> bool {
        url_host(&self.endpoint)
            .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]" || h == "::1")
    }
}

fn url_host(url: &str) -> Option<String> {
    azure_core::http::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
}

fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(format!("cosmos: {what}: {e}"))
}

pub async fn connect(settings: &CosmosSettings) -> Result<CosmosClient, StoreError> {
    crate::tls::install_crypto_provider();
    let endpoint: AccountEndpoint = settings
        .endpoint
        .parse()
        .map_err(|e| failed("COSMOS__accountEndpoint", e))?;
    let account = match &settings.key {
        Some(key) => AccountReference::with_authentication_key(
            endpoint,
            azure_core::credentials::Secret::from(key.expose_secret().to_owned()),
        ),
        None => AccountReference::with_credential(
            endpoint,
            crate::identity::service_identity(
                settings.client_id.clone(),
                settings.under_host,
                Default::default(),
            )
            .map_err(|e| failed("identity", e))?,
        ),
    };
    let mut builder = CosmosClient::builder();
    if settings.is_emulator() {
        let pool = ConnectionPoolOptionsBuilder::new()
            .with_is_http2_allowed(false)
            .with_server_certificate_validation(ServerCertificateValidation::RequiredUnlessEmulator)
            .build()
            .map_err(|e| failed("connection options", e))?;
        let runtime = CosmosRuntimeBuilder::new()
            .with_connection_pool(pool)
            .build()
            .await
            .map_err(|e| failed("runtime", e))?;
        builder = builder
            .with_runtime(runtime)
            .with_binary_encoding_options(BinaryEncodingOptions::new().with_enabled(false));
    }
    builder
        .build(
            account,
            RoutingStrategy::ProximityTo(Region::from(settings.region.clone())),
        )
        .await
        .map_err(|e| failed(&format!("connecting to {}", settings.endpoint), e))
}

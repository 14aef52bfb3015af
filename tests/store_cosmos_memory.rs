//! The store contract on Cosmos DB, through the SDK's in-process emulator:
//! the real client, request pipeline and Cosmos semantics (etags, batches,
//! patch, queries), with no network.

mod support;

use std::sync::Arc;

use azure_data_cosmos::options::Region;
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosClientBuilder, CosmosRuntimeBuilder,
    RoutingStrategy,
};
use azure_data_cosmos_driver::in_memory_emulator::{
    ConsistencyLevel, InMemoryEmulatorHttpClient, VirtualAccountConfig, VirtualRegion,
};
use kraftd_billing::domain::ports::Store;
use kraftd_billing::store::cosmos::{self, CosmosStore};

const GATEWAY: &str = "https://eastus.emulator.local";

async fn emulator_client() -> CosmosClient {
    let config = VirtualAccountConfig::new(vec![VirtualRegion::new(
        "East US",
        azure_core::http::Url::parse(GATEWAY).unwrap(),
    )])
    .unwrap()
    .with_consistency(ConsistencyLevel::Session);
    let emulator = Arc::new(InMemoryEmulatorHttpClient::new(config));
    let account = AccountReference::with_authentication_key(
        GATEWAY.parse::<AccountEndpoint>().unwrap(),
        azure_core::credentials::Secret::new("dGVzdGtleQ=="),
    );
    CosmosClientBuilder::new()
        .with_runtime(
            CosmosRuntimeBuilder::from(emulator.runtime_builder())
                .build()
                .await
                .unwrap(),
        )
        .build(account, RoutingStrategy::ProximityTo(Region::EAST_US))
        .await
        .unwrap()
}

async fn cosmos_store() -> Arc<dyn Store> {
    let client = emulator_client().await;
    cosmos::init(&client, "billing").await.unwrap();
    Arc::new(CosmosStore::open(&client, "billing").await.unwrap())
}

store_contract_tests!(cosmos_store);

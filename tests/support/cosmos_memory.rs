//! Cosmos DB through the SDK's in-process emulator: the real client and
//! request pipeline, Cosmos semantics (etags, batches, patch, queries, RU
//! charges from its cost model) and fault injection, with no network.

use std::sync::Arc;

use azure_data_cosmos::fault_injection::FaultInjectionRule;
use azure_data_cosmos::options::Region;
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosClientBuilder, CosmosRuntimeBuilder,
    RoutingStrategy,
};
use azure_data_cosmos_driver::in_memory_emulator::{
    ConsistencyLevel, InMemoryEmulatorHttpClient, VirtualAccountConfig, VirtualRegion,
};
use kraftd_billing::store::cosmos::{self, CosmosStore};

const GATEWAY: &str = "https://eastus.emulator.local";
pub const DATABASE: &str = "billing";

/// A client of a fresh, empty emulated account, injecting `faults`.
pub async fn client(faults: Vec<Arc<FaultInjectionRule>>) -> CosmosClient {
    let config = VirtualAccountConfig::new(vec![VirtualRegion::new(
        "East US",
        azure_core::http::Url::parse(GATEWAY).unwrap(),
    )])
    .unwrap()
    .with_consistency(ConsistencyLevel::Session);
    let emulator = Arc::new(InMemoryEmulatorHttpClient::new(config));
    let account = AccountReference::with_authentication_key(
        GATEWAY.parse::<AccountEndpoint>().unwrap(),
        azure_core::credentials::Secret::from("dGVzdGtleQ=="),
    );
    CosmosClientBuilder::new()
        .with_runtime(
            CosmosRuntimeBuilder::from(emulator.runtime_builder())
                .build()
                .await
                .unwrap(),
        )
        .with_fault_injection_rules(faults)
        .unwrap()
        .build(account, RoutingStrategy::ProximityTo(Region::EAST_US))
        .await
        .unwrap()
}

/// The store on a fresh account whose database `handler cosmos init` made.
pub async fn store_with(faults: Vec<Arc<FaultInjectionRule>>) -> (CosmosStore, CosmosClient) {
    let client = client(faults).await;
    cosmos::init(&client, DATABASE).await.unwrap();
    let store = CosmosStore::open(&client, DATABASE).await.unwrap();
    (store, client)
}

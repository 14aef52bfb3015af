//! The store contract on Cosmos DB over the wire: a Cosmos REST server
//! (@vercel/cosmosdb-server, tests/cosmos-server) on loopback HTTPS, reached
//! through `store::cosmos::client::connect` exactly as `STORE=cosmos` does:
//! real HTTP, TLS, key authentication and the emulator settings.

mod support;

use std::sync::Arc;

use kraftd_billing::domain::ports::Store;
use kraftd_billing::store::cosmos::{self, CosmosStore};

async fn cosmos_server_store() -> Arc<dyn Store> {
    let settings = support::cosmos_server::settings(&format!("contract-{}", uuid::Uuid::new_v4()));
    let client = cosmos::client::connect(&settings).await.unwrap();
    cosmos::init(&client, &settings.database).await.unwrap();
    Arc::new(
        CosmosStore::open(&client, &settings.database)
            .await
            .unwrap(),
    )
}

store_contract_tests!(cosmos_server_store);

//! The store contract on Cosmos DB, through the SDK's in-process emulator.

mod support;

use std::sync::Arc;

use kraftd_billing::domain::ports::Store;

async fn cosmos_store() -> Arc<dyn Store> {
    Arc::new(support::cosmos_memory::store_with(Vec::new()).await.0)
}

store_contract_tests!(cosmos_store);

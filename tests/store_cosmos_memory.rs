//! The store contract on Cosmos DB, through the SDK's in-process emulator.

mod support;

use std::sync::Arc;

use kraftd_billing::domain::ports::Store;

async fn cosmos_store() -> Arc<dyn Store> {
    Arc::new(support::cosmos_memory::store_with(Vec::new()).await.0)
}

store_contract_tests!(cosmos_store);

/// Each call opens a new store (no state of the last one) on one account.
async fn cosmos_opener() -> support::quota_contract::Opener {
    let (_, client) = support::cosmos_memory::store_with(Vec::new()).await;
    Box::new(move || {
        let client = client.clone();
        Box::pin(async move {
            Arc::new(
                kraftd_billing::store::cosmos::CosmosStore::open(
                    &client,
                    support::cosmos_memory::DATABASE,
                )
                .await
                .unwrap(),
            ) as Arc<dyn Store>
        })
    })
}

quota_contract_tests!(cosmos_store, cosmos_opener);

//! Service keys: one partition of the accounts container
//! (`layout::SERVICE_KEYS_PARTITION`), so a key is a point read and the
//! list a single-partition query.

use async_trait::async_trait;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::layout::SERVICE_KEYS_PARTITION;
use super::{unavailable, CosmosStore};
use crate::domain::ports::{ServiceKeyStore, StoreError, Uniqueness};
use crate::domain::service::ServiceKey;

const KIND: &str = "service_key";

#[derive(Serialize, Deserialize)]
struct ServiceKeyDoc {
    id: String,
    account_id: String,
    /// Named `type` as every document of `accounts` is: the change feed
    /// passes on only `outbox` documents.
    #[serde(rename = "type")]
    kind: String,
    key: ServiceKey,
}

impl ServiceKeyDoc {
    fn new(key: &ServiceKey) -> Self {
        Self {
            id: key.id.to_string(),
            account_id: SERVICE_KEYS_PARTITION.into(),
            kind: KIND.into(),
            key: key.clone(),
        }
    }
}

#[async_trait]
impl ServiceKeyStore for CosmosStore {
    async fn add_service_key(&self, key: &ServiceKey) -> Result<(), StoreError> {
        let doc = ServiceKeyDoc::new(key);
        let created = self
            .call(|| {
                self.accounts
                    .create_item(SERVICE_KEYS_PARTITION.to_owned(), &doc.id, &doc, None)
            })
            .await;
        match created {
            Ok(_) => Ok(()),
            // Ours, if a retry of a create whose answer was lost; else a
            // clash of random ids.
            Err(e) if e.status().is_conflict() => match self.service_key(key.id).await? {
                Some(stored) if stored == *key => Ok(()),
                _ => Err(StoreError::Conflict(Uniqueness::Id)),
            },
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn service_key(&self, id: uuid::Uuid) -> Result<Option<ServiceKey>, StoreError> {
        Ok(self
            .read_doc::<ServiceKeyDoc>(&self.accounts, SERVICE_KEYS_PARTITION, &id.to_string())
            .await?
            .map(|(d, _)| d.key))
    }

    async fn service_keys(&self) -> Result<Vec<ServiceKey>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.type = @kind")
            .with_parameter("@kind", KIND)
            .map_err(StoreError::corrupt)?;
        let docs: Vec<ServiceKeyDoc> = self
            .query(
                &self.accounts,
                query,
                FeedScope::partition(SERVICE_KEYS_PARTITION.to_owned()),
            )
            .await?;
        let mut keys: Vec<ServiceKey> = docs.into_iter().map(|d| d.key).collect();
        keys.sort_by_key(|a| (a.created_at, a.id));
        Ok(keys)
    }

    async fn revoke_service_key(
        &self,
        id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        loop {
            let Some((mut doc, etag)) = self
                .read_doc::<ServiceKeyDoc>(&self.accounts, SERVICE_KEYS_PARTITION, &id.to_string())
                .await?
            else {
                return Ok(false);
            };
            if doc.key.revoked_at.is_some() {
                return Ok(true);
            }
            doc.key.revoked_at = Some(at);
            let replaced = self
                .call(|| {
                    self.accounts.replace_item(
                        SERVICE_KEYS_PARTITION.to_owned(),
                        &doc.id,
                        &doc,
                        Some(
                            ItemWriteOptions::default()
                                .with_precondition(Precondition::if_match(etag.0.clone())),
                        ),
                    )
                })
                .await;
            match replaced {
                Ok(_) => return Ok(true),
                Err(e) if e.status().is_precondition_failed() => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
    }
}

//! The audit log on Cosmos DB: each entry a document (`type` `audit`, id
//! `audit:<id>`) in its account's partition of `accounts`, so an entry
//! recording a change of the account's document goes in the same
//! transactional batch as the change. Each carries a `ttl` of
//! `AUDIT_RETENTION_DAYS`.

use std::collections::HashSet;

use async_trait::async_trait;
use azure_data_cosmos::{FeedScope, Query, TransactionalBatch};
use serde::{Deserialize, Serialize};

use super::docs;
use super::{unavailable, CosmosStore};
use crate::domain::account::AccountId;
use crate::domain::audit::{AuditEntry, AuditId};
use crate::domain::ports::{AuditLog, StoreError};
use crate::domain::records::AUDIT_RETENTION_DAYS;

pub const AUDIT: &str = "audit";
const TTL_SECONDS: i64 = AUDIT_RETENTION_DAYS * 86_400;

pub fn audit_id(id: AuditId) -> String {
    format!("audit:{id}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuditDoc {
    id: String,
    account_id: String,
    #[serde(rename = "type")]
    kind: String,
    /// `AuditEntry::sort_key`: what the log is ordered by.
    sort: String,
    ttl: i64,
    entry: AuditEntry,
}

impl AuditDoc {
    fn new(e: &AuditEntry) -> Self {
        Self {
            id: audit_id(e.id),
            account_id: docs::pk(e.account_id),
            kind: AUDIT.into(),
            sort: e.sort_key(),
            ttl: TTL_SECONDS,
            entry: e.clone(),
        }
    }
}

impl CosmosStore {
    /// The ids among `entries` already written.
    pub(super) async fn existing_audit_ids(
        &self,
        account: AccountId,
        entries: &[AuditEntry],
    ) -> Result<HashSet<String>, StoreError> {
        let ids = entries.iter().map(|e| audit_id(e.id)).collect();
        self.existing_ids(account, AUDIT, ids).await
    }
}

/// Adds the creation of each entry not in `existing` to the batch.
pub(super) fn audit_in(
    mut batch: TransactionalBatch,
    account: AccountId,
    entries: &[AuditEntry],
    existing: &HashSet<String>,
) -> Result<TransactionalBatch, StoreError> {
    for e in entries {
        if e.account_id != account {
            return Err(StoreError::corrupt("an audit entry for another account"));
        }
        let doc = AuditDoc::new(e);
        if !existing.contains(&doc.id) {
            batch = batch.create_item(doc).map_err(StoreError::corrupt)?;
        }
    }
    Ok(batch)
}

#[async_trait]
impl AuditLog for CosmosStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        for e in entries {
            let doc = AuditDoc::new(e);
            let pk = doc.account_id.clone();
            let created = self
                .call(|| self.accounts.create_item(pk.clone(), &doc.id, &doc, None))
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.status().is_conflict() => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    async fn audit_log(
        &self,
        account_id: AccountId,
        starting_after: Option<AuditId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let pk = docs::pk(account_id);
        // "\u{10FFFF}" sorts after every key: no cursor, no bound.
        let before = match starting_after {
            None => "\u{10FFFF}".to_owned(),
            Some(id) => {
                let found: Option<(AuditDoc, _)> =
                    self.read_doc(&self.accounts, &pk, &audit_id(id)).await?;
                match found {
                    Some((d, _)) if d.kind == AUDIT => d.sort,
                    _ => return Err(StoreError::NotFound),
                }
            }
        };
        let query = Query::from(format!(
            "SELECT TOP {} * FROM c WHERE c.account_id = @a AND c.type = @t AND c.sort < @before ORDER BY c.sort DESC",
            limit
        ))
        .with_parameter("@a", pk.clone())
        .and_then(|q| q.with_parameter("@t", AUDIT))
        .and_then(|q| q.with_parameter("@before", before))
        .map_err(StoreError::corrupt)?;
        let docs: Vec<AuditDoc> = self
            .query(&self.accounts, query, FeedScope::partition(pk))
            .await?;
        Ok(docs.into_iter().map(|d| d.entry).collect())
    }
}

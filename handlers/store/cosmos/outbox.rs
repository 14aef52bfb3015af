//! The email outbox: messages live in their account's partition of
//! `accounts`, so an account's change (a subscription, a member joining or
//! leaving) and the emails reporting it are one transactional batch. The
//! `SendEmails` change feed reads them from there.

use std::collections::HashSet;

use async_trait::async_trait;
use azure_data_cosmos::options::{BatchReplaceOptions, ItemWriteOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query, TransactionalBatch};
use chrono::{DateTime, Duration, Utc};

use super::audit::audit_in;
use super::docs::{self, AccountDoc, OutboxDoc};
use super::{unavailable, CosmosStore};
use crate::domain::account::{Account, AccountId};
use crate::domain::audit::AuditEntry;
use crate::domain::outbox::{self, OutboxState};
use crate::domain::ports::{Etag, Outbox, SendResult, Standing, StoreError};
use crate::domain::records::OutboxMessage;

impl CosmosStore {
    /// Replaces the account (if still at `if_match`) and creates the
    /// messages not already there, in one batch.
    pub(super) async fn replace_account_and_enqueue_docs(
        &self,
        account: &Account,
        if_match: &Etag,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<Etag, StoreError> {
        if messages.iter().any(|m| m.account_id != account.id) {
            return Err(StoreError::corrupt("an outbox message for another account"));
        }
        self.claim_account_facts(account).await?;
        let pk = docs::pk(account.id);
        let doc = AccountDoc::new(account);
        if messages.is_empty() && audit.is_empty() {
            let replaced = self
                .call(|| {
                    self.accounts.replace_item(
                        pk.clone(),
                        &pk,
                        &doc,
                        Some(
                            ItemWriteOptions::default()
                                .with_precondition(Precondition::if_match(if_match.0.clone())),
                        ),
                    )
                })
                .await;
            return match replaced {
                Ok(r) => super::etag_of(&r),
                Err(e) if e.status().is_not_found() => Err(StoreError::NotFound),
                Err(e) => Err(unavailable(e)),
            };
        }
        let existing = self.existing_outbox_ids(account.id, messages).await?;
        let mut batch = TransactionalBatch::new(pk.clone())
            .replace_item(
                pk.clone(),
                &doc,
                Some(
                    BatchReplaceOptions::default()
                        .with_precondition(Precondition::if_match(if_match.0.clone())),
                ),
            )
            .map_err(StoreError::corrupt)?;
        batch = enqueue_in(batch, messages, &existing)?;
        let written = self.existing_audit_ids(account.id, audit).await?;
        batch = audit_in(batch, account.id, audit, &written)?;
        match self.batch(&self.accounts, batch).await? {
            Ok(etags) => etags
                .into_iter()
                .next()
                .flatten()
                .map(Etag)
                .ok_or_else(|| StoreError::corrupt("batch answered without an etag")),
            Err(412) => Err(StoreError::VersionConflict),
            Err(404) => Err(StoreError::NotFound),
            // A message created in between by `enqueue` (or an entry by
            // `append_audit`): the account's
            // etag is still ours, so the caller retries and skips it.
            Err(409) => Err(StoreError::VersionConflict),
            Err(s) => Err(StoreError::unavailable(format!("batch refused: {s}"))),
        }
    }

    pub(super) async fn existing_outbox_ids(
        &self,
        account: AccountId,
        messages: &[OutboxMessage],
    ) -> Result<HashSet<String>, StoreError> {
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        self.existing_ids(account, docs::OUTBOX, ids).await
    }

    /// Which of `ids` name documents of type `kind` in the account's partition.
    pub(super) async fn existing_ids(
        &self,
        account: AccountId,
        kind: &str,
        ids: Vec<String>,
    ) -> Result<HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let query = Query::from(
            "SELECT VALUE c.id FROM c WHERE c.account_id = @a AND c.type = @t AND ARRAY_CONTAINS(@ids, c.id)",
        )
        .with_parameter("@a", docs::pk(account))
        .and_then(|q| q.with_parameter("@t", kind))
        .and_then(|q| q.with_parameter("@ids", ids))
        .map_err(StoreError::corrupt)?;
        let found: Vec<String> = self
            .query(
                &self.accounts,
                query,
                FeedScope::partition(docs::pk(account)),
            )
            .await?;
        Ok(found.into_iter().collect())
    }

    async fn outbox_doc(
        &self,
        account: AccountId,
        id: &str,
    ) -> Result<Option<(OutboxDoc, Etag)>, StoreError> {
        // The partition holds other documents too (the account's own,
        // memberships, invitations, seats): an id naming one is no message.
        let Some((doc, etag)) = self
            .read_doc::<serde_json::Value>(&self.accounts, &docs::pk(account), id)
            .await?
        else {
            return Ok(None);
        };
        if doc["type"] != docs::OUTBOX {
            return Ok(None);
        }
        let doc = serde_json::from_value(doc).map_err(StoreError::corrupt)?;
        Ok(Some((doc, etag)))
    }

    /// Rewrites a message if it is still at `etag`; `false` if it changed.
    async fn update_outbox(&self, doc: &OutboxDoc, etag: &Etag) -> Result<bool, StoreError> {
        let pk = docs::pk(doc.message.account_id);
        let replaced = self
            .call(|| {
                self.accounts.replace_item(
                    pk.clone(),
                    &doc.message.id,
                    doc,
                    Some(
                        ItemWriteOptions::default()
                            .with_precondition(Precondition::if_match(etag.0.clone())),
                    ),
                )
            })
            .await;
        match replaced {
            Ok(_) => Ok(true),
            Err(e) if e.status().is_precondition_failed() || e.status().is_not_found() => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// A message may not take the id of one of its account's own documents:
/// its creation would fail as if it were already enqueued.
fn check_id(m: &OutboxMessage) -> Result<(), StoreError> {
    if docs::reserved_id(m.account_id, &m.id) {
        return Err(StoreError::corrupt(format!(
            "outbox id {} is reserved for the account's own documents",
            m.id
        )));
    }
    Ok(())
}

/// Adds the creation of each message not in `existing` to the batch.
pub(super) fn enqueue_in(
    mut batch: TransactionalBatch,
    messages: &[OutboxMessage],
    existing: &HashSet<String>,
) -> Result<TransactionalBatch, StoreError> {
    for m in messages.iter().filter(|m| !existing.contains(&m.id)) {
        check_id(m)?;
        batch = batch
            .create_item(OutboxDoc::pending(m))
            .map_err(StoreError::corrupt)?;
    }
    Ok(batch)
}

/// A document's state as the domain's claim rule reads it.
fn standing(doc: &OutboxDoc) -> Standing {
    Standing {
        state: doc.status,
        claimed_at: doc.claimed_at.and_then(DateTime::from_timestamp_millis),
        not_before: doc.not_before.and_then(DateTime::from_timestamp_millis),
    }
}

impl CosmosStore {
    /// Every unfinished message (of one account, or all), in delivery
    /// order: what `outbox::due` chooses from.
    async fn unfinished(
        &self,
        account: Option<AccountId>,
    ) -> Result<Vec<(Standing, OutboxMessage)>, StoreError> {
        self.unsettled(account, None).await
    }

    /// As `unfinished`, with the messages given up on that were written at
    /// or after `failed_since` when it is given.
    async fn unsettled(
        &self,
        account: Option<AccountId>,
        failed_since: Option<DateTime<Utc>>,
    ) -> Result<Vec<(Standing, OutboxMessage)>, StoreError> {
        let unfinished = match failed_since {
            None => "c.type = @t AND (c.status = @pending OR c.status = @sending)",
            Some(_) => {
                "c.type = @t AND (c.status = @pending OR c.status = @sending \
                 OR (c.status = @failed AND c.created_ms >= @since))"
            }
        };
        let (sql, scope) = match account {
            Some(a) => (
                format!("SELECT * FROM c WHERE c.account_id = @a AND {unfinished}"),
                FeedScope::partition(docs::pk(a)),
            ),
            None => (
                format!("SELECT * FROM c WHERE {unfinished}"),
                FeedScope::full_container(),
            ),
        };
        let mut query = Query::from(sql)
            .with_parameter("@t", docs::OUTBOX)
            .and_then(|q| q.with_parameter("@pending", OutboxState::Pending.as_str()))
            .and_then(|q| q.with_parameter("@sending", OutboxState::Sending.as_str()))
            .map_err(StoreError::corrupt)?;
        if let Some(a) = account {
            query = query
                .with_parameter("@a", docs::pk(a))
                .map_err(StoreError::corrupt)?;
        }
        if let Some(since) = failed_since {
            query = query
                .with_parameter("@failed", OutboxState::Failed.as_str())
                .and_then(|q| q.with_parameter("@since", since.timestamp_millis()))
                .map_err(StoreError::corrupt)?;
        }
        let mut found: Vec<OutboxDoc> = self.query(&self.accounts, query, scope).await?;
        found.sort_by(|a, b| (a.created_ms, &a.message.id).cmp(&(b.created_ms, &b.message.id)));
        Ok(found
            .into_iter()
            .map(|d| (standing(&d), d.message))
            .collect())
    }
}

#[async_trait]
impl Outbox for CosmosStore {
    async fn replace_account_and_enqueue(
        &self,
        account: &Account,
        if_match: &Etag,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<Etag, StoreError> {
        self.replace_account_and_enqueue_docs(account, if_match, messages, audit)
            .await
    }

    async fn enqueue(&self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        for m in messages {
            check_id(m)?;
            let doc = OutboxDoc::pending(m);
            let pk = docs::pk(m.account_id);
            let created = self
                .call(|| self.accounts.create_item(pk.clone(), &m.id, &doc, None))
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.status().is_conflict() => {} // Already enqueued.
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    async fn outbox_for_account(
        &self,
        account_id: AccountId,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.account_id = @a AND c.type = @t")
            .with_parameter("@a", docs::pk(account_id))
            .and_then(|q| q.with_parameter("@t", docs::OUTBOX))
            .map_err(StoreError::corrupt)?;
        let mut found: Vec<OutboxDoc> = self
            .query(
                &self.accounts,
                query,
                FeedScope::partition(docs::pk(account_id)),
            )
            .await?;
        found.sort_by(|a, b| (a.created_ms, &a.message.id).cmp(&(b.created_ms, &b.message.id)));
        Ok(found.into_iter().map(|d| d.message).collect())
    }

    async fn claim_outbox(
        &self,
        account_id: AccountId,
        id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        loop {
            let Some((mut doc, etag)) = self.outbox_doc(account_id, id).await? else {
                return Ok(None);
            };
            if !standing(&doc).claimable(now, lease) {
                return Ok(None);
            }
            // An event waits for its account's earlier events (the sweep's
            // rule); finished is final, so what this read saw finished stays so.
            if doc.message.kind.in_order()
                && !outbox::due(self.unfinished(Some(account_id)).await?, now, lease)
                    .iter()
                    .any(|m| m.id == id)
            {
                return Ok(None);
            }
            doc.status = OutboxState::Sending;
            doc.claimed_at = Some(docs::ms(now));
            doc.attempts += 1;
            // If-Match makes the claim exclusive: of two racers, one write
            // lands and the other re-reads a message already taken.
            if self.update_outbox(&doc, &etag).await? {
                return Ok(Some(doc.message));
            }
        }
    }

    async fn finish_outbox(
        &self,
        account_id: AccountId,
        id: &str,
        result: &SendResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        loop {
            let Some((mut doc, etag)) = self.outbox_doc(account_id, id).await? else {
                return Ok(());
            };
            let Some(next) = doc.status.after(result) else {
                return Ok(());
            };
            doc.status = next;
            if matches!(result, SendResult::Sent) {
                doc.sent_at = Some(docs::ms(now));
            }
            if let Some(error) = result.error() {
                doc.last_error = Some(error.to_owned());
            }
            doc.not_before = result.retry_at().map(docs::ms);
            if self.update_outbox(&doc, &etag).await? {
                return Ok(());
            }
        }
    }

    async fn pending_outbox(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        // The sweep's query; the change feed delivers new messages. Which
        // are due (a retry's time has come, an event's turn) is the
        // domain's rule, applied here.
        let mut due = outbox::due(self.unfinished(None).await?, now, lease);
        due.truncate(limit);
        Ok(due)
    }

    async fn due_outbox_for_account(
        &self,
        account_id: AccountId,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        Ok(outbox::due(
            self.unfinished(Some(account_id)).await?,
            now,
            lease,
        ))
    }

    async fn unsettled_outbox(
        &self,
        failed_since: DateTime<Utc>,
    ) -> Result<Vec<(Standing, OutboxMessage)>, StoreError> {
        self.unsettled(None, Some(failed_since)).await
    }

    async fn outbox_status(
        &self,
        account_id: AccountId,
        id: &str,
    ) -> Result<Option<(OutboxState, u32)>, StoreError> {
        Ok(self
            .outbox_doc(account_id, id)
            .await?
            .map(|(d, _)| (d.status, d.attempts)))
    }
}

//! The email outbox: messages live in their user's partition of `users`,
//! so a user's change and the emails reporting it are one transactional
//! batch. The `SendEmails` change feed reads them from there.

use std::collections::HashSet;

use async_trait::async_trait;
use azure_data_cosmos::options::{BatchReplaceOptions, ItemWriteOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query, TransactionalBatch};
use chrono::{DateTime, Duration, Utc};

use super::docs::{self, OutboxDoc, UserDoc};
use super::{unavailable, CosmosStore};
use crate::domain::outbox::OutboxState;
use crate::domain::ports::{Etag, Outbox, SendResult, StoreError};
use crate::domain::records::OutboxMessage;
use crate::domain::user::{User, UserId};

impl CosmosStore {
    /// Replaces the user (if still at `if_match`) and creates the messages
    /// not already there, in one batch.
    pub(super) async fn replace_user_and_enqueue_docs(
        &self,
        user: &User,
        if_match: &Etag,
        messages: &[OutboxMessage],
    ) -> Result<Etag, StoreError> {
        if messages.iter().any(|m| m.user_id != user.id) {
            return Err(StoreError::corrupt("an outbox message for another user"));
        }
        self.claim_user_facts(user).await?;
        let pk = docs::pk(user.id);
        let doc = UserDoc::new(user);
        if messages.is_empty() {
            let replaced = self
                .call(|| {
                    self.users.replace_item(
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
        let existing = self.existing_outbox_ids(user.id, messages).await?;
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
        for m in messages.iter().filter(|m| !existing.contains(&m.id)) {
            batch = batch
                .create_item(OutboxDoc::pending(m))
                .map_err(StoreError::corrupt)?;
        }
        let result = self.users.execute_transactional_batch(batch, None).await;
        let response = match result {
            Ok(r) => {
                self.meter.record(r.headers().request_charge());
                r
            }
            Err(e) => {
                self.meter.record(None);
                return Err(match e.status() {
                    s if s.is_not_found() => StoreError::NotFound,
                    _ => unavailable(e),
                });
            }
        };
        let results = response.into_model().map_err(StoreError::corrupt)?;
        let ops = results.results();
        if let Some(failed) = ops
            .iter()
            .find(|op| !op.is_success() && op.status_code() != 424)
        {
            return Err(match failed.status_code() {
                412 => StoreError::VersionConflict,
                404 => StoreError::NotFound,
                // A message created in between by `enqueue`: the user's
                // etag is still ours, so the caller retries and skips it.
                409 => StoreError::VersionConflict,
                s => StoreError::unavailable(format!("batch refused: {s}")),
            });
        }
        ops.first()
            .and_then(|op| op.etag())
            .map(|e| Etag(e.to_owned()))
            .ok_or_else(|| StoreError::corrupt("batch answered without an etag"))
    }

    async fn existing_outbox_ids(
        &self,
        user: UserId,
        messages: &[OutboxMessage],
    ) -> Result<HashSet<String>, StoreError> {
        let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
        let query = Query::from(
            "SELECT VALUE c.id FROM c WHERE c.user_id = @u AND c.type = @t AND ARRAY_CONTAINS(@ids, c.id)",
        )
        .with_parameter("@u", docs::pk(user))
        .and_then(|q| q.with_parameter("@t", docs::OUTBOX))
        .and_then(|q| q.with_parameter("@ids", ids))
        .map_err(StoreError::corrupt)?;
        let found: Vec<String> = self
            .query(&self.users, query, FeedScope::partition(docs::pk(user)))
            .await?;
        Ok(found.into_iter().collect())
    }

    async fn outbox_doc(
        &self,
        user: UserId,
        id: &str,
    ) -> Result<Option<(OutboxDoc, Etag)>, StoreError> {
        if id == docs::pk(user) {
            return Ok(None); // That id is the user's own document.
        }
        self.read_doc(&self.users, &docs::pk(user), id).await
    }

    /// Rewrites a message if it is still at `etag`; `false` if it changed.
    async fn update_outbox(&self, doc: &OutboxDoc, etag: &Etag) -> Result<bool, StoreError> {
        let pk = docs::pk(doc.message.user_id);
        let replaced = self
            .call(|| {
                self.users.replace_item(
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

fn claimable(doc: &OutboxDoc, now: DateTime<Utc>, lease: Duration) -> bool {
    let claimed_at = doc.claimed_at.and_then(DateTime::from_timestamp_millis);
    let not_before = doc.not_before.and_then(DateTime::from_timestamp_millis);
    doc.status.claimable(claimed_at, not_before, now, lease)
}

#[async_trait]
impl Outbox for CosmosStore {
    async fn replace_user_and_enqueue(
        &self,
        user: &User,
        if_match: &Etag,
        messages: &[OutboxMessage],
    ) -> Result<Etag, StoreError> {
        self.replace_user_and_enqueue_docs(user, if_match, messages)
            .await
    }

    async fn enqueue(&self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        for m in messages {
            let doc = OutboxDoc::pending(m);
            let pk = docs::pk(m.user_id);
            let created = self
                .call(|| self.users.create_item(pk.clone(), &m.id, &doc, None))
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.status().is_conflict() => {} // Already enqueued.
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    async fn outbox_for_user(&self, user_id: UserId) -> Result<Vec<OutboxMessage>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.user_id = @u AND c.type = @t")
            .with_parameter("@u", docs::pk(user_id))
            .and_then(|q| q.with_parameter("@t", docs::OUTBOX))
            .map_err(StoreError::corrupt)?;
        let mut found: Vec<OutboxDoc> = self
            .query(&self.users, query, FeedScope::partition(docs::pk(user_id)))
            .await?;
        found.sort_by(|a, b| (a.created_ms, &a.message.id).cmp(&(b.created_ms, &b.message.id)));
        Ok(found.into_iter().map(|d| d.message).collect())
    }

    async fn claim_outbox(
        &self,
        user_id: UserId,
        id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        loop {
            let Some((mut doc, etag)) = self.outbox_doc(user_id, id).await? else {
                return Ok(None);
            };
            if !claimable(&doc, now, lease) {
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
        user_id: UserId,
        id: &str,
        result: &SendResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        loop {
            let Some((mut doc, etag)) = self.outbox_doc(user_id, id).await? else {
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
        // The retry poller's query; the change feed delivers new messages.
        let query = Query::from(
            "SELECT * FROM c WHERE c.type = @t AND (c.status = @pending OR (c.status = @sending AND c.claimed_at <= @expired))",
        )
        .with_parameter("@t", docs::OUTBOX)
        .and_then(|q| q.with_parameter("@pending", OutboxState::Pending.as_str()))
        .and_then(|q| q.with_parameter("@sending", OutboxState::Sending.as_str()))
        .and_then(|q| q.with_parameter("@expired", docs::ms(OutboxState::lease_cutoff(now, lease))))
        .map_err(StoreError::corrupt)?;
        let mut found: Vec<OutboxDoc> = self
            .query(&self.users, query, FeedScope::full_container())
            .await?;
        // Whether a retry is due is the domain's rule, applied here.
        found.retain(|d| claimable(d, now, lease));
        found.sort_by(|a, b| (a.created_ms, &a.message.id).cmp(&(b.created_ms, &b.message.id)));
        Ok(found.into_iter().take(limit).map(|d| d.message).collect())
    }

    async fn outbox_status(
        &self,
        user_id: UserId,
        id: &str,
    ) -> Result<Option<(OutboxState, u32)>, StoreError> {
        Ok(self
            .outbox_doc(user_id, id)
            .await?
            .map(|(d, _)| (d.status, d.attempts)))
    }
}

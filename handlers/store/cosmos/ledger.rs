//! Payments, invoices, processed webhook events and retention.

use async_trait::async_trait;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;

use super::docs::{self, EventDoc, InvoiceDoc, PaymentDoc};
use super::users::Claim;
use super::{unavailable, CosmosStore};
use crate::domain::account::AccountId;
use crate::domain::ports::{LedgerStore, Retention, StoreError, WebhookLog};
use crate::domain::records::{Invoice, Payment, WEBHOOK_EVENT_RETENTION_DAYS};

impl CosmosStore {
    /// The account's documents in `container` still within retention at `now`.
    async fn unexpired<T: DeserializeOwned + Send + 'static>(
        &self,
        container: &ContainerClient,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<T>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.account_id = @a AND c.expires_at > @now")
            .with_parameter("@a", docs::pk(account))
            .and_then(|q| q.with_parameter("@now", docs::ms(now)))
            .map_err(StoreError::corrupt)?;
        self.query(container, query, FeedScope::partition(docs::pk(account)))
            .await
    }
}

#[async_trait]
impl LedgerStore for CosmosStore {
    async fn record_payment(&self, payment: &Payment) -> Result<(), StoreError> {
        let doc = PaymentDoc::new(payment);
        let created = self
            .call(|| {
                self.payments
                    .create_item(doc.account_id.clone(), &doc.id, &doc, None)
            })
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.status().is_conflict() => Ok(()), // Recorded before.
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn payments(
        &self,
        account_id: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Payment>, StoreError> {
        let mut docs: Vec<PaymentDoc> = self.unexpired(&self.payments, account_id, now).await?;
        docs.sort_by(|a, b| (b.created_ms, &a.id).cmp(&(a.created_ms, &b.id)));
        Ok(docs.into_iter().map(|d| d.payment).collect())
    }

    async fn upsert_invoice(&self, invoice: &Invoice) -> Result<(), StoreError> {
        // An invoice belongs to the first account it was recorded for,
        // whatever a later caller sends.
        self.claim(Claim::Invoice(&invoice.id), &docs::pk(invoice.account_id))
            .await?;
        let doc = InvoiceDoc::new(invoice);
        self.call(|| {
            self.invoices
                .upsert_item(doc.account_id.clone(), &doc.id, &doc, None)
        })
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn invoices(
        &self,
        account_id: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invoice>, StoreError> {
        let mut docs: Vec<InvoiceDoc> = self.unexpired(&self.invoices, account_id, now).await?;
        docs.sort_by(|a, b| (b.created_ms, &a.id).cmp(&(a.created_ms, &b.id)));
        Ok(docs.into_iter().map(|d| d.invoice).collect())
    }
}

#[async_trait]
impl WebhookLog for CosmosStore {
    async fn claim_event(&self, event_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let expires = now + Duration::days(WEBHOOK_EVENT_RETENTION_DAYS);
        let doc = EventDoc {
            id: event_id.to_owned(),
            processed_at: docs::ms(now),
            expires_at: docs::ms(expires),
            ttl: docs::ttl_between(now, expires),
        };
        let created = self
            .call(|| self.events.create_item(doc.id.clone(), &doc.id, &doc, None))
            .await;
        match created {
            Ok(_) => Ok(true),
            Err(e) if e.status().is_conflict() => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn event_seen(&self, event_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .read_doc::<EventDoc>(&self.events, event_id, event_id)
            .await?
            .is_some())
    }
}

#[async_trait]
impl Retention for CosmosStore {
    /// In Azure each record's `ttl` expires it; this sweep deletes what a
    /// backend without TTL (the emulators) or TTL's lag still holds, so
    /// reads never depend on when the sweeper last ran.
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        #[derive(serde::Deserialize)]
        struct Row {
            id: String,
            account_id: Option<String>,
        }
        let mut purged = 0;
        for (container, by_id, only) in [
            (&self.payments, false, None),
            (&self.invoices, false, None),
            (&self.usage, false, None),
            (&self.events, true, None),
            // Only invitations expire there; an expired one holds no seat.
            (&self.accounts, false, Some(docs::INVITATION)),
        ] {
            let mut sql = String::from(
                "SELECT c.id, c.account_id FROM c WHERE IS_NUMBER(c.expires_at) AND c.expires_at <= @now",
            );
            if only.is_some() {
                sql.push_str(" AND c.type = @type");
            }
            let mut query = Query::from(sql)
                .with_parameter("@now", docs::ms(now))
                .map_err(StoreError::corrupt)?;
            if let Some(kind) = only {
                query = query
                    .with_parameter("@type", kind)
                    .map_err(StoreError::corrupt)?;
            }
            let rows: Vec<Row> = self
                .query(container, query, FeedScope::full_container())
                .await?;
            for row in rows {
                let pk = if by_id {
                    row.id.clone()
                } else {
                    row.account_id.clone().unwrap_or_default()
                };
                let deleted = self
                    .call(|| container.delete_item(pk.clone(), &row.id, None))
                    .await;
                match deleted {
                    Ok(_) => purged += 1,
                    Err(e) if e.status().is_not_found() => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
        }
        Ok(purged)
    }
}

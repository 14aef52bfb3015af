//! Payments, invoices, processed webhook events and retention.

use async_trait::async_trait;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;

use super::docs::{self, EventDoc, InvoiceDoc, PaymentDoc};
use super::users::Claim;
use super::{unavailable, CosmosStore};
use crate::domain::ports::{LedgerStore, Retention, StoreError, WebhookLog};
use crate::domain::records::{Invoice, Payment, WEBHOOK_EVENT_RETENTION_DAYS};
use crate::domain::user::UserId;

impl CosmosStore {
    /// The user's documents in `container` still within retention at `now`.
    async fn unexpired<T: DeserializeOwned + Send + 'static>(
        &self,
        container: &ContainerClient,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<T>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.user_id = @u AND c.expires_at > @now")
            .with_parameter("@u", docs::pk(user))
            .and_then(|q| q.with_parameter("@now", docs::ms(now)))
            .map_err(StoreError::corrupt)?;
        self.query(container, query, FeedScope::partition(docs::pk(user)))
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
                    .create_item(doc.user_id.clone(), &doc.id, &doc, None)
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
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Payment>, StoreError> {
        let mut docs: Vec<PaymentDoc> = self.unexpired(&self.payments, user_id, now).await?;
        docs.sort_by(|a, b| (b.created_ms, &a.id).cmp(&(a.created_ms, &b.id)));
        Ok(docs.into_iter().map(|d| d.payment).collect())
    }

    async fn upsert_invoice(&self, invoice: &Invoice) -> Result<(), StoreError> {
        // An invoice belongs to the first user it was recorded for, whatever
        // a later caller sends.
        self.claim(Claim::Invoice(&invoice.id), invoice.user_id)
            .await?;
        let doc = InvoiceDoc::new(invoice);
        self.call(|| {
            self.invoices
                .upsert_item(doc.user_id.clone(), &doc.id, &doc, None)
        })
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn invoices(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invoice>, StoreError> {
        let mut docs: Vec<InvoiceDoc> = self.unexpired(&self.invoices, user_id, now).await?;
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
            user_id: Option<String>,
        }
        let mut purged = 0;
        for (container, by_id) in [
            (&self.payments, false),
            (&self.invoices, false),
            (&self.usage, false),
            (&self.events, true),
        ] {
            let query = Query::from(
                "SELECT c.id, c.user_id FROM c WHERE IS_NUMBER(c.expires_at) AND c.expires_at <= @now",
            )
            .with_parameter("@now", docs::ms(now))
            .map_err(StoreError::corrupt)?;
            let rows: Vec<Row> = self
                .query(container, query, FeedScope::full_container())
                .await?;
            for row in rows {
                let pk = if by_id {
                    row.id.clone()
                } else {
                    row.user_id.clone().unwrap_or_default()
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

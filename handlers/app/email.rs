//! Delivering the outbox. Delivery is at least once (the change feed can
//! hand over a message twice), so each message is claimed before it is sent:
//! a second delivery finds it claimed or sent and does nothing. A sender that
//! dies between sending and marking leaves a claim that expires after
//! `LEASE`; the message is then sent again, with the same Message-ID. A
//! failed send waits its backoff (minutes, growing) before the next try;
//! the `SweepOutbox` timer takes up lapsed claims and due retries, which the
//! change feed, firing only on writes, would never bring back.

use chrono::Duration;

use crate::domain::ports::SendResult;
use crate::domain::records::OutboxMessage;

use super::email_templates::render;
use super::{AppError, Billing};

/// Messages one sweep sends at most; the next sweep takes the rest.
const SWEEP_BATCH: usize = 200;

/// How long a claim holds before another sender may take the message.
pub const LEASE: Duration = Duration::minutes(5);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: usize,
    /// Already sent or being sent by someone else.
    pub skipped: usize,
    /// Failed this time; will be tried again.
    pub retrying: usize,
    /// Failed for good.
    pub failed: usize,
}

impl Billing {
    /// Delivers each message it can claim. A store failure on one message
    /// does not stop the others; the first is returned at the end, so the
    /// host redelivers the batch (claims make that safe).
    pub async fn deliver_outbox(
        &self,
        messages: &[OutboxMessage],
    ) -> Result<DeliveryReport, AppError> {
        let mut report = DeliveryReport::default();
        let mut first_failure = None;
        for candidate in messages {
            if let Err(e) = self.deliver_one(candidate, &mut report).await {
                tracing::error!(message_id = %candidate.id, error = %e, "email delivery failed in the store");
                first_failure.get_or_insert(e);
            }
        }
        match first_failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    async fn deliver_one(
        &self,
        candidate: &OutboxMessage,
        report: &mut DeliveryReport,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let Some(message) = self
            .store
            .claim_outbox(candidate.account_id, &candidate.id, now, LEASE)
            .await?
        else {
            report.skipped += 1;
            return Ok(());
        };
        let Some(account) = self.store.account_by_id(message.account_id).await? else {
            let gone = SendResult::GaveUp {
                error: "the account no longer exists".into(),
            };
            self.store
                .finish_outbox(message.account_id, &message.id, &gone, now)
                .await?;
            report.failed += 1;
            return Ok(());
        };
        let email = render(&message, &account.value, &self.settings.links);
        match self.mailer.send(&email).await {
            Ok(()) => {
                self.store
                    .finish_outbox(
                        message.account_id,
                        &message.id,
                        &SendResult::Sent,
                        self.clock.now(),
                    )
                    .await?;
                report.sent += 1;
            }
            Err(e) => {
                let attempts = self
                    .store
                    .outbox_status(message.account_id, &message.id)
                    .await?
                    .map_or(0, |(_, n)| n);
                let now = self.clock.now();
                let result = SendResult::failed(e.to_string(), attempts, now);
                match result.retry_at() {
                    Some(retry_at) => {
                        tracing::warn!(message_id = %message.id, attempts, error = %e, %retry_at, "email failed; will retry");
                        report.retrying += 1;
                    }
                    None => {
                        tracing::error!(message_id = %message.id, attempts, error = %e, "email failed for good");
                        report.failed += 1;
                    }
                }
                self.store
                    .finish_outbox(message.account_id, &message.id, &result, now)
                    .await?;
            }
        }
        Ok(())
    }

    /// Sends what is due and not sent: messages whose sender died with the
    /// claim, and failed sends whose backoff has run out.
    pub async fn sweep_outbox(&self) -> Result<DeliveryReport, AppError> {
        let due = self.pending_outbox(SWEEP_BATCH).await?;
        self.deliver_outbox(&due).await
    }

    /// Messages waiting to be sent: what the local change-feed poller reads.
    pub async fn pending_outbox(&self, limit: usize) -> Result<Vec<OutboxMessage>, AppError> {
        Ok(self
            .store
            .pending_outbox(self.clock.now(), LEASE, limit)
            .await?)
    }
}

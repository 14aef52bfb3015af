//! Delivering the outbox: emails through the mailer, events for KRAFTD
//! through the event sender (`events.rs`). Delivery is at least once (the change feed can
//! hand over a message twice), so each message is claimed before it is sent:
//! a second delivery finds it claimed or sent and does nothing. A sender that
//! dies between sending and marking leaves a claim that expires after
//! its lease (`OUTBOX_LEASE_SECONDS`); the message is then sent again, with the same Message-ID. A
//! failed send waits its backoff (minutes, growing) before the next try;
//! the `SweepOutbox` timer takes up lapsed claims and due retries, which the
//! change feed, firing only on writes, would never bring back. An event is
//! claimed only in its turn (`outbox::due`), and one sent hands over to
//! the next of its account at once.

use crate::domain::account::AccountId;
use crate::domain::outbox::RetryPolicy;
use crate::domain::ports::SendResult;
use crate::domain::records::{EmailKind, MessageKind, OutboxMessage};

use super::email_templates::render;
use super::{AppError, Billing};

/// Messages one sweep sends at most; the next sweep takes the rest.
const SWEEP_BATCH: usize = 200;

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
        let mut next = Some(candidate.clone());
        while let Some(candidate) = next.take() {
            let sent = self.try_one(&candidate, report).await?;
            if sent && candidate.kind.in_order() {
                // Its account's next event was held for it: send it now,
                // not at the next sweep.
                next = self.next_event(candidate.account_id).await?;
            }
        }
        Ok(())
    }

    /// The account's next event that may be sent now, if any.
    async fn next_event(&self, account: AccountId) -> Result<Option<OutboxMessage>, AppError> {
        let due = self
            .store
            .due_outbox_for_account(account, self.clock.now(), self.settings.outbox_lease)
            .await?;
        Ok(due.into_iter().find(|m| m.kind.in_order()))
    }

    /// Claims and sends one message; `true` when it was sent now.
    async fn try_one(
        &self,
        candidate: &OutboxMessage,
        report: &mut DeliveryReport,
    ) -> Result<bool, AppError> {
        let now = self.clock.now();
        let Some(message) = self
            .store
            .claim_outbox(
                candidate.account_id,
                &candidate.id,
                now,
                self.settings.outbox_lease,
            )
            .await?
        else {
            report.skipped += 1;
            return Ok(false);
        };
        let sent = match message.kind {
            MessageKind::Email(kind) => self.send_email(&message, kind).await?,
            MessageKind::Event(_) => self.send_event(&message).await?,
        };
        let Some(outcome) = sent else {
            // Nowhere to send it: finished as failed.
            report.failed += 1;
            return Ok(false);
        };
        match outcome {
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
                Ok(true)
            }
            Err(e) => {
                let attempts = self
                    .store
                    .outbox_status(message.account_id, &message.id)
                    .await?
                    .map_or(0, |(_, n)| n);
                let now = self.clock.now();
                let policy = RetryPolicy::of(message.kind);
                let result = SendResult::failed_under(policy, e.clone(), attempts, now);
                let kind = message.kind;
                match result.retry_at() {
                    Some(retry_at) => {
                        tracing::warn!(message_id = %message.id, ?kind, attempts, error = %e, %retry_at, "delivery failed; will retry");
                        report.retrying += 1;
                    }
                    None => {
                        tracing::error!(message_id = %message.id, ?kind, attempts, error = %e, "delivery failed for good");
                        report.failed += 1;
                    }
                }
                self.store
                    .finish_outbox(message.account_id, &message.id, &result, now)
                    .await?;
                Ok(false)
            }
        }
    }

    /// Sends a claimed email: `None` when there is nothing to send it to
    /// any more (the account is gone; the message is finished as failed).
    async fn send_email(
        &self,
        message: &OutboxMessage,
        kind: EmailKind,
    ) -> Result<Option<Result<(), String>>, AppError> {
        let Some(account) = self.store.account_by_id(message.account_id).await? else {
            let gone = SendResult::GaveUp {
                error: "the account no longer exists".into(),
            };
            self.store
                .finish_outbox(message.account_id, &message.id, &gone, self.clock.now())
                .await?;
            return Ok(None);
        };
        let email = render(message, kind, &account.value, &self.settings.links);
        Ok(Some(
            self.mailer.send(&email).await.map_err(|e| e.to_string()),
        ))
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
            .pending_outbox(self.clock.now(), self.settings.outbox_lease, limit)
            .await?)
    }
}

//! Delivering the outbox. Delivery is at least once (the change feed can
//! hand over a message twice), so each message is claimed before it is sent:
//! a second delivery finds it claimed or sent and does nothing. A sender that
//! dies between sending and marking leaves a claim that expires after
//! `LEASE`; the message is then sent again, with the same Message-ID.

use chrono::Duration;

use crate::domain::ports::SendResult;
use crate::domain::records::OutboxMessage;

use super::email_templates::render;
use super::{AppError, Billing};

/// How long a claim holds before another sender may take the message.
pub const LEASE: Duration = Duration::minutes(5);
/// Attempts before a message is marked failed (and logged) for good.
pub const MAX_ATTEMPTS: u32 = 5;

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
    pub async fn deliver_outbox(
        &self,
        messages: &[OutboxMessage],
    ) -> Result<DeliveryReport, AppError> {
        let mut report = DeliveryReport::default();
        for candidate in messages {
            let now = self.clock.now();
            let Some(message) = self
                .store
                .claim_outbox(candidate.user_id, &candidate.id, now, LEASE)
                .await?
            else {
                report.skipped += 1;
                continue;
            };
            let Some(user) = self.store.user_by_id(message.user_id).await? else {
                let gone = SendResult::Failed {
                    error: "the user no longer exists".into(),
                    give_up: true,
                };
                self.store
                    .finish_outbox(message.user_id, &message.id, &gone, now)
                    .await?;
                report.failed += 1;
                continue;
            };
            let email = render(&message, &user.value, &self.settings.links);
            match self.mailer.send(&email).await {
                Ok(()) => {
                    self.store
                        .finish_outbox(
                            message.user_id,
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
                        .outbox_status(message.user_id, &message.id)
                        .await?
                        .map_or(0, |(_, n)| n);
                    let give_up = attempts >= MAX_ATTEMPTS;
                    if give_up {
                        tracing::error!(message_id = %message.id, attempts, error = %e, "email failed for good");
                        report.failed += 1;
                    } else {
                        tracing::warn!(message_id = %message.id, attempts, error = %e, "email failed; will retry");
                        report.retrying += 1;
                    }
                    let result = SendResult::Failed {
                        error: e.to_string(),
                        give_up,
                    };
                    self.store
                        .finish_outbox(message.user_id, &message.id, &result, self.clock.now())
                        .await?;
                }
            }
        }
        Ok(report)
    }

    /// Messages waiting to be sent: what the local change-feed poller reads.
    pub async fn pending_outbox(&self, limit: usize) -> Result<Vec<OutboxMessage>, AppError> {
        Ok(self
            .store
            .pending_outbox(self.clock.now(), LEASE, limit)
            .await?)
    }
}

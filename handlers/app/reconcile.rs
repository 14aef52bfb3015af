//! The safety net for lost webhooks: subscriptions that look stale are
//! re-read from Stripe and repaired, so a missed event cannot leave a user
//! on the wrong plan for longer than one run of the timer.

use super::{AppError, Billing};

/// Users looked at per run; the most overdue come first and the next run
/// takes the rest.
const BATCH: usize = 500;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: usize,
    pub repaired: usize,
    pub failed: usize,
}

impl Billing {
    pub async fn reconcile(&self) -> Result<ReconcileReport, AppError> {
        let now = self.clock.now();
        let stale = self.store.stale_subscriptions(now, BATCH).await?;
        let mut report = ReconcileReport::default();
        let cause = format!("reconcile:{}", now.timestamp());
        for user_id in stale {
            report.checked += 1;
            let Some(user) = self.store.user_by_id(user_id).await? else {
                continue;
            };
            let before = user.value.subscription.clone();
            let sub = &user.value.subscription;
            let subscription_id = match (&sub.stripe_subscription_id, &sub.checkout_session_id) {
                (Some(id), _) => Some(id.clone()),
                // An unpaid checkout: did it complete without telling us?
                (None, Some(session)) => match self.payments.checkout(session).await {
                    Ok(s) => s.subscription_id,
                    Err(e) => {
                        tracing::warn!(user_id = %user_id, error = %e, "reconcile: checkout unreadable");
                        report.failed += 1;
                        continue;
                    }
                },
                (None, None) => None,
            };
            let Some(subscription_id) = subscription_id else {
                continue;
            };
            match self
                .sync_subscription(user_id, &subscription_id, None, &cause)
                .await
            {
                Ok(after) if after.subscription != before => report.repaired += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(user_id = %user_id, error = %e, "reconcile: repair failed");
                    report.failed += 1;
                }
            }
        }
        tracing::info!(
            checked = report.checked,
            repaired = report.repaired,
            failed = report.failed,
            "reconciliation done"
        );
        Ok(report)
    }
}

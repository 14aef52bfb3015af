//! The safety net for lost webhooks: subscriptions that look stale are
//! re-read from Stripe and repaired, so a missed event cannot leave an account
//! on the wrong plan for longer than one run of the timer.

use crate::domain::account::AccountId;
use crate::domain::audit::Actor;
use crate::domain::ports::CheckoutStatus;

use super::{health, AppError, Billing};
use crate::domain::health::BillingHealth;

/// Accounts looked at per run; the most overdue come first and the next run
/// takes the rest.
const BATCH: usize = 500;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: usize,
    pub repaired: usize,
    pub failed: usize,
    /// Billing's health after the run (`health::log_line`); `None` if the
    /// store could not be read for it.
    pub health: Option<BillingHealth>,
}

impl Billing {
    pub async fn reconcile(&self) -> Result<ReconcileReport, AppError> {
        let now = self.clock.now();
        let stale = self.store.stale_subscriptions(now, BATCH).await?;
        let mut report = ReconcileReport::default();
        let cause = format!("reconcile:{}", now.timestamp());
        for account_id in stale {
            report.checked += 1;
            match self
                .reconcile_account(account_id, &cause, &Actor::Reconciliation)
                .await
            {
                Ok(true) => report.repaired += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(account_id = %account_id, error = %e, "reconcile: repair failed");
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
        report.health = match self.billing_health().await {
            Ok(h) => {
                tracing::info!(target: "billing_health", "{}", health::log_line(&h));
                Some(h)
            }
            Err(e) => {
                tracing::warn!(error = %e, "billing health unreadable");
                None
            }
        };
        Ok(report)
    }

    /// Re-reads one account's checkout and subscription from Stripe. `true`
    /// when that changed the account; otherwise the account is marked as looked
    /// at, so it is not re-read every run.
    pub(super) async fn reconcile_account(
        &self,
        account_id: AccountId,
        cause: &str,
        actor: &Actor,
    ) -> Result<bool, AppError> {
        let Some(account) = self.store.account_by_id(account_id).await? else {
            return Ok(false);
        };
        let before = account.value.subscription.clone();
        let mut subscription_id = before.stripe_subscription_id.clone();
        if let Some(session) = &before.checkout_session_id {
            let checkout = self
                .payments
                .checkout(session)
                .await
                .map_err(AppError::Payments)?;
            match (checkout.status, checkout.subscription_id) {
                // Paid, and its webhook never came: take its subscription
                // unless the account already has one.
                (CheckoutStatus::Complete, Some(paid)) if subscription_id.is_none() => {
                    subscription_id = Some(paid)
                }
                (CheckoutStatus::Expired, _) => {
                    let expired = session.clone();
                    self.update_account(account_id, move |u| {
                        if u.subscription.checkout_session_id.as_ref() == Some(&expired) {
                            u.subscription.checkout_session_id = None;
                            u.subscription.checkout_started_at = None;
                        }
                    })
                    .await?;
                    return Ok(true);
                }
                _ => {}
            }
        }
        if let Some(id) = subscription_id {
            let after = self
                .sync_subscription(account_id, &id, cause, actor)
                .await?;
            if after.subscription != before {
                return Ok(true);
            }
        }
        let now = self.clock.now();
        self.update_account(account_id, move |u| {
            u.subscription.reconciled_at = Some(now)
        })
        .await?;
        Ok(false)
    }
}

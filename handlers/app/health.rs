//! The health of billing for whoever is on call (`GET
//! /api/admin/health/billing`, and a line per run of the reconcile timer
//! that the alert rules in `infra/modules/alerts.bicep` read). What counts
//! as unhealthy is `domain::health`'s rule; this gathers what it reads.

use chrono::Duration;

use crate::domain::health::{self, BillingHealth, Signal, LOOK_BACK_HOURS, STALE_COUNT_CAP};

use super::{handled_event_types, AppError, Billing};

impl Billing {
    /// Asks Stripe for undelivered events and the store for stale
    /// subscriptions and unsettled messages, at once. Stripe being
    /// unreachable is reported in the answer, not as an error: the rest
    /// still tells the on-call engineer something.
    pub async fn billing_health(&self) -> Result<BillingHealth, AppError> {
        let now = self.clock.now();
        let since = now - Duration::hours(LOOK_BACK_HOURS);
        let types: Vec<&str> = handled_event_types().collect();
        let (undelivered, stale, outbox) = tokio::join!(
            self.payments.undelivered_events(&types, since),
            self.store.stale_subscriptions(now, STALE_COUNT_CAP),
            self.store.unsettled_outbox(since),
        );
        let undelivered = undelivered
            .inspect_err(
                |e| tracing::warn!(error = %e, "billing health: Stripe's events unreadable"),
            )
            .ok();
        Ok(health::assess(
            now,
            undelivered.as_deref(),
            stale?.len(),
            &outbox?,
        ))
    }
}

/// The reconcile timer's line, in a form the alert rules parse: one
/// `name=count` per signal, `webhooks_failing=unknown` when Stripe could
/// not be asked.
pub fn log_line(h: &BillingHealth) -> String {
    let count = |s: &Signal| s.count.to_string();
    format!(
        "billing health: status={} webhooks_failing={} subscriptions_stale={} emails_stuck={} emails_failed={} events_undelivered={}",
        match h.status {
            health::Status::Ok => "ok",
            health::Status::Degraded => "degraded",
        },
        h.webhooks_failing
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), count),
        h.subscriptions_stale,
        count(&h.emails_stuck),
        count(&h.emails_failed),
        count(&h.events_undelivered),
    )
}

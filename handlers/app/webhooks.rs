//! Stripe webhooks as triggers: an event only says what changed; the state
//! written is what Stripe says when asked, so duplicates, reordering and
//! late deliveries all end in Stripe's state.

use std::collections::BTreeMap;
use std::str::FromStr;

use uuid::Uuid;

use crate::domain::account::{Account, AccountId};
use crate::domain::audit::Actor;
use crate::domain::ports::{PaymentsError, ProviderEvent, RemoteInvoice};
use crate::domain::records::{EmailKind, Invoice, OutboxMessage, Payment};

use super::{AppError, Billing};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    Applied,
    /// Seen before: acknowledged, nothing done.
    Duplicate,
    /// A type this service does not act on, or about nobody it knows.
    Ignored,
}

const CHECKOUT_COMPLETED: &str = "checkout.session.completed";

const SUBSCRIPTION_EVENTS: [&str; 6] = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
];

const INVOICE_EVENTS: [&str; 5] = [
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.finalized",
];

/// Every event type this service acts on: the events to enable on the
/// Stripe webhook endpoint (README "Deploy" lists them; tests/infra compares).
pub fn handled_event_types() -> impl Iterator<Item = &'static str> {
    std::iter::once(CHECKOUT_COMPLETED)
        .chain(SUBSCRIPTION_EVENTS)
        .chain(INVOICE_EVENTS)
}

impl Billing {
    /// Verifies and applies one delivery. Answers `Ok` only once the effect
    /// is stored; the event id is recorded last, so a delivery that failed
    /// half-way is redone in full when Stripe retries it.
    pub async fn handle_webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
    ) -> Result<WebhookOutcome, AppError> {
        let now = self.clock.now();
        let event = self
            .webhooks
            .verify(payload, signature, now)
            .map_err(AppError::Webhook)?;
        if self.store.event_seen(&event.id).await? {
            return Ok(WebhookOutcome::Duplicate);
        }
        let outcome = self.apply_event(&event).await?;
        self.store.claim_event(&event.id, now).await?;
        tracing::info!(event_id = %event.id, kind = %event.kind, outcome = ?outcome, "webhook handled");
        Ok(outcome)
    }

    /// A Stripe answer that says "not ours" or "no such thing" will not
    /// change on a retry: acknowledge it (and log) rather than have Stripe
    /// retry for three days. Unavailability still fails, so Stripe retries.
    async fn apply_event(&self, event: &ProviderEvent) -> Result<WebhookOutcome, AppError> {
        match self.apply_event_to_account(event).await {
            Err(AppError::Payments(
                e @ (PaymentsError::Rejected { .. } | PaymentsError::NotFound { .. }),
            )) => {
                tracing::warn!(event_id = %event.id, kind = %event.kind, error = %e, "webhook left unapplied");
                Ok(WebhookOutcome::Ignored)
            }
            other => other,
        }
    }

    async fn apply_event_to_account(
        &self,
        event: &ProviderEvent,
    ) -> Result<WebhookOutcome, AppError> {
        let kind = event.kind.as_str();
        if event.object_id.is_empty() {
            if handled_event_types().any(|t| t == kind) {
                tracing::warn!(event_id = %event.id, kind, "webhook names no object to re-read");
            }
            return Ok(WebhookOutcome::Ignored);
        }
        if kind == CHECKOUT_COMPLETED {
            // Whose it is, from the event alone; only then ask Stripe.
            let Some(account) = self.account_of_customer(event.customer.as_deref()).await? else {
                return Ok(WebhookOutcome::Ignored);
            };
            let session = self
                .payments
                .checkout(&event.object_id)
                .await
                .map_err(AppError::Payments)?;
            let by_metadata = session
                .account_id
                .as_deref()
                .and_then(|u| Uuid::from_str(u).ok())
                .map(AccountId);
            if by_metadata.is_some_and(|id| id != account.id) {
                tracing::error!(event_id = %event.id, "checkout metadata names another account than its customer");
                return Ok(WebhookOutcome::Ignored);
            }
            let Some(sub) = session.subscription_id else {
                return Ok(WebhookOutcome::Ignored);
            };
            self.sync_subscription(account.id, &sub, &event.id, &webhook_actor(event))
                .await?;
            return Ok(WebhookOutcome::Applied);
        }
        if SUBSCRIPTION_EVENTS.contains(&kind) {
            let Some(account) = self.account_of_customer(event.customer.as_deref()).await? else {
                return Ok(WebhookOutcome::Ignored);
            };
            let account = self
                .sync_subscription(
                    account.id,
                    &event.object_id,
                    &event.id,
                    &webhook_actor(event),
                )
                .await?;
            if kind == "customer.subscription.trial_will_end" {
                self.store
                    .enqueue(&[self.trial_ending_email(&account, &event.id)])
                    .await?;
            }
            return Ok(WebhookOutcome::Applied);
        }
        if INVOICE_EVENTS.contains(&kind) {
            let Some(account) = self.account_of_customer(event.customer.as_deref()).await? else {
                return Ok(WebhookOutcome::Ignored);
            };
            let invoice = self
                .payments
                .invoice(&event.object_id)
                .await
                .map_err(AppError::Payments)?;
            if invoice.customer_id
                != account
                    .subscription
                    .stripe_customer_id
                    .clone()
                    .unwrap_or_default()
            {
                return Ok(WebhookOutcome::Ignored);
            }
            self.record_invoice(&account, &invoice, kind).await?;
            if let Some(sub) = &invoice.subscription_id {
                self.sync_subscription(account.id, sub, &event.id, &webhook_actor(event))
                    .await?;
            }
            return Ok(WebhookOutcome::Applied);
        }
        tracing::debug!(event_id = %event.id, kind, "webhook type not handled");
        Ok(WebhookOutcome::Ignored)
    }

    fn trial_ending_email(&self, account: &Account, event_id: &str) -> OutboxMessage {
        let mut data = BTreeMap::from([(
            "plan".to_owned(),
            self.catalog
                .plan(account.subscription.plan_id)
                .name
                .to_owned(),
        )]);
        if let Some(end) = account.subscription.trial_end {
            data.insert("trial_end".into(), end.to_rfc3339());
        }
        OutboxMessage {
            id: format!("{}:{event_id}:trial_ending", account.id),
            account_id: account.id,
            to: None,
            kind: EmailKind::TrialEnding.into(),
            data,
            body: None,
            created_at: self.clock.now(),
        }
    }

    async fn account_of_customer(
        &self,
        customer: Option<&str>,
    ) -> Result<Option<Account>, AppError> {
        let Some(customer) = customer else {
            return Ok(None);
        };
        let account = self
            .store
            .account_by_stripe_customer(customer)
            .await?
            .map(|u| u.value);
        if account.is_none() {
            tracing::warn!(customer, "webhook about a customer no account has");
        }
        Ok(account)
    }

    /// The invoice as Stripe has it now, the payment when it is paid, and
    /// the receipt or payment-failed email, each idempotent by invoice id.
    async fn record_invoice(
        &self,
        account: &Account,
        remote: &RemoteInvoice,
        kind: &str,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let invoice = Invoice {
            id: remote.id.clone(),
            account_id: account.id,
            number: remote.number.clone(),
            amount_due: remote.amount_due,
            amount_paid: remote.amount_paid,
            status: remote.status.clone(),
            period_start: remote.period_start,
            period_end: remote.period_end,
            hosted_invoice_url: remote.hosted_invoice_url.clone(),
            pdf_url: remote.pdf_url.clone(),
            created_at: remote.created_at,
        };
        self.store.upsert_invoice(&invoice).await?;
        let mut data = BTreeMap::from([
            // The amount as Stripe counts it; the email formats it by its
            // currency when it is rendered.
            (
                "amount_minor".to_owned(),
                remote.amount_due.amount.to_string(),
            ),
            (
                "currency".to_owned(),
                remote.amount_due.currency.code().to_owned(),
            ),
            (
                "plan".to_owned(),
                self.catalog
                    .plan(account.subscription.plan_id)
                    .name
                    .to_owned(),
            ),
        ]);
        if let Some(url) = &remote.hosted_invoice_url {
            data.insert("invoice_url".into(), url.clone());
        }
        let email = |kind: EmailKind, tag: &str| OutboxMessage {
            id: format!("{}:{}:{tag}", account.id, remote.id),
            account_id: account.id,
            to: None,
            kind: kind.into(),
            data: data.clone(),
            body: None,
            created_at: now,
        };
        if remote.status == "paid" {
            self.store
                .record_payment(&Payment {
                    id: remote.id.clone(),
                    account_id: account.id,
                    amount: remote.amount_paid,
                    status: "succeeded".into(),
                    description: format!(
                        "Invoice {}",
                        remote.number.as_deref().unwrap_or(&remote.id)
                    ),
                    stripe_invoice_id: Some(remote.id.clone()),
                    receipt_url: remote.hosted_invoice_url.clone(),
                    created_at: now,
                })
                .await?;
            if remote.amount_paid.amount > 0 {
                self.store
                    .enqueue(&[email(EmailKind::PaymentReceipt, "receipt")])
                    .await?;
            }
        } else if matches!(
            kind,
            "invoice.payment_failed" | "invoice.payment_action_required"
        ) {
            self.store
                .enqueue(&[email(EmailKind::PaymentFailed, "payment_failed")])
                .await?;
        }
        Ok(())
    }
}

fn webhook_actor(event: &ProviderEvent) -> Actor {
    Actor::StripeWebhook {
        event_id: event.id.clone(),
    }
}

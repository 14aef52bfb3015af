//! Money records kept for accounting, with the retention each one carries.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::money::Money;
use crate::user::Email;

/// Payments are kept seven years for accounting.
pub const PAYMENT_RETENTION_DAYS: i64 = 7 * 365 + 2;
/// Webhook event ids are remembered long enough to outlive Stripe's 3-day retries.
pub const WEBHOOK_EVENT_RETENTION_DAYS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Stable and unique (e.g. the Stripe payment intent id), so recording
    /// one payment twice stores it once.
    pub id: String,
    pub account_id: AccountId,
    pub amount: Money,
    pub status: String,
    pub description: String,
    pub stripe_invoice_id: Option<String>,
    pub receipt_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Payment {
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.created_at + Duration::days(PAYMENT_RETENTION_DAYS)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// The Stripe invoice id: an invoice is upserted as Stripe updates it.
    pub id: String,
    pub account_id: AccountId,
    pub number: Option<String>,
    pub amount_due: Money,
    pub amount_paid: Money,
    pub status: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub hosted_invoice_url: Option<String>,
    pub pdf_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Invoice {
    /// Invoices are accounting records too.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.created_at + Duration::days(PAYMENT_RETENTION_DAYS)
    }
}

/// The emails the service sends. Each is written to the outbox in the same
/// atomic write as the state change it reports, and delivered later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    SubscriptionConfirmed,
    PaymentReceipt,
    PaymentFailed,
    CancellationScheduled,
    CancellationWithdrawn,
    SubscriptionEnded,
    PlanChanged,
    QuotaWarning,
    TrialEnding,
    Invitation,
    MemberAdded,
    MemberRemoved,
    SeatLimitReached,
    VerifyEmail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Deterministic (what caused it + the kind), so a cause processed twice
    /// enqueues one message.
    pub id: String,
    pub account_id: AccountId,
    /// Who it goes to; the account's billing email when `None`.
    #[serde(default)]
    pub to: Option<Email>,
    pub kind: EmailKind,
    /// What the template needs: plan, amounts, dates, links.
    pub data: std::collections::BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

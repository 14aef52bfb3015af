//! Money records kept for accounting, with the retention each one carries.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::money::Money;
use crate::user::Email;

/// Payments are kept seven years for accounting.
pub const PAYMENT_RETENTION_DAYS: i64 = 7 * 365 + 2;
/// Audit entries are kept as long as the payment records they explain.
pub const AUDIT_RETENTION_DAYS: i64 = PAYMENT_RETENTION_DAYS;
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

/// The events sent to KRAFTD's webhook endpoint (Standard Webhooks), by
/// their `type`. Like the emails, each is written to the outbox in the same
/// atomic write as the change it reports; unlike them, an account's events
/// are delivered in order (`outbox::due`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "subscription.updated")]
    SubscriptionUpdated,
    #[serde(rename = "entitlements.updated")]
    EntitlementsUpdated,
    #[serde(rename = "member.added")]
    MemberAdded,
    #[serde(rename = "member.removed")]
    MemberRemoved,
    #[serde(rename = "usage.threshold_reached")]
    UsageThresholdReached,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::SubscriptionUpdated,
        EventKind::EntitlementsUpdated,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::UsageThresholdReached,
    ];

    /// The event's `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::SubscriptionUpdated => "subscription.updated",
            EventKind::EntitlementsUpdated => "entitlements.updated",
            EventKind::MemberAdded => "member.added",
            EventKind::MemberRemoved => "member.removed",
            EventKind::UsageThresholdReached => "usage.threshold_reached",
        }
    }
}

/// What an outbox message is: an email, or an event for KRAFTD. Stored as
/// the bare name (`"payment_receipt"`, `"member.added"`), so messages
/// written before events existed read back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageKind {
    Email(EmailKind),
    Event(EventKind),
}

impl MessageKind {
    pub fn email(self) -> Option<EmailKind> {
        match self {
            MessageKind::Email(k) => Some(k),
            MessageKind::Event(_) => None,
        }
    }

    pub fn event(self) -> Option<EventKind> {
        match self {
            MessageKind::Event(k) => Some(k),
            MessageKind::Email(_) => None,
        }
    }

    /// Whether an account's messages of this kind are delivered in order.
    pub fn in_order(self) -> bool {
        matches!(self, MessageKind::Event(_))
    }
}

impl From<EmailKind> for MessageKind {
    fn from(k: EmailKind) -> Self {
        MessageKind::Email(k)
    }
}

impl From<EventKind> for MessageKind {
    fn from(k: EventKind) -> Self {
        MessageKind::Event(k)
    }
}

impl PartialEq<EmailKind> for MessageKind {
    fn eq(&self, other: &EmailKind) -> bool {
        *self == MessageKind::Email(*other)
    }
}

impl PartialEq<EventKind> for MessageKind {
    fn eq(&self, other: &EventKind) -> bool {
        *self == MessageKind::Event(*other)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Deterministic (what caused it + the kind), so a cause processed twice
    /// enqueues one message.
    pub id: String,
    pub account_id: AccountId,
    /// Who it goes to; the account's billing email when `None`. Events go
    /// to the one configured endpoint.
    #[serde(default)]
    pub to: Option<Email>,
    pub kind: MessageKind,
    /// What an email's template needs: plan, amounts, dates, links.
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, String>,
    /// An event's JSON body, exactly as it is sent and signed: fixed when
    /// the event is enqueued, so every try sends the same bytes. `None` for
    /// emails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl OutboxMessage {
    /// The `webhook-id` of an event: the same on every try, and a plain
    /// token whatever characters the outbox id holds.
    pub fn webhook_id(&self) -> String {
        let id = uuid::Uuid::new_v5(&WEBHOOK_ID_NAMESPACE, self.id.as_bytes());
        format!("msg_{}", id.simple())
    }
}

/// The namespace of `OutboxMessage::webhook_id`'s name-based UUIDs.
const WEBHOOK_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b72_6166_7464_2d65_7665_6e74_732d_6964);

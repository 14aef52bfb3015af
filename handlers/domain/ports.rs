//! The seams adapters plug into: storage (embedded SQLite, Cosmos DB),
//! payments (Stripe), mail and secrets. The domain owns these traits; the
//! adapters depend on the domain, never the other way round.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::plan::{BillingInterval, PlanId};
use super::records::{Invoice, Payment};
use super::usage::{UsageIncrement, UsageKey, UsageOutcome};
use super::user::{Email, User, UserId};

/// An opaque concurrency token (SQLite row version, Cosmos `_etag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etag(pub String);

#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: Etag,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was hit (the string names which: "email", ...).
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// Optimistic concurrency: someone else wrote first. Re-read and retry.
    #[error("the record changed since it was read")]
    VersionConflict,
    /// The backend is unreachable or throttling; a retry may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data that does not decode: a bug or a migration gone wrong.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a new user; `Conflict("email")` if the email is taken.
    async fn create_user(&self, user: &User) -> Result<Etag, StoreError>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<Versioned<User>>, StoreError>;
    async fn user_by_email(&self, email: &Email) -> Result<Option<Versioned<User>>, StoreError>;
    async fn user_by_stripe_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<Versioned<User>>, StoreError>;
    /// Replaces the user only if it is still at `if_match`; else `VersionConflict`.
    async fn replace_user(&self, user: &User, if_match: &Etag) -> Result<Etag, StoreError>;
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Checks the limit and records the amount as one atomic step: under any
    /// concurrency, a limit of L admits at most L in total.
    async fn increment_usage(&self, inc: &UsageIncrement) -> Result<UsageOutcome, StoreError>;
    /// Current totals for the given keys (0 where nothing was recorded), in order.
    async fn usage(&self, user_id: UserId, keys: &[UsageKey]) -> Result<Vec<u64>, StoreError>;
}

#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Idempotent by payment id: recording a payment twice keeps one.
    async fn record_payment(&self, payment: &Payment) -> Result<(), StoreError>;
    /// The user's unexpired payments, newest first.
    async fn payments(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Payment>, StoreError>;
    /// Inserts or replaces by invoice id.
    async fn upsert_invoice(&self, invoice: &Invoice) -> Result<(), StoreError>;
    /// The user's unexpired invoices, newest first.
    async fn invoices(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invoice>, StoreError>;
}

#[async_trait]
pub trait WebhookLog: Send + Sync {
    /// Records the event id if it is new. `true` the first time only, even
    /// when two deliveries race.
    async fn claim_event(&self, event_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait Retention: Send + Sync {
    /// Deletes every record whose retention ended before `now`; returns how many.
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Everything the service keeps.
pub trait Store: UserStore + UsageStore + LedgerStore + WebhookLog + Retention {}
impl<T: UserStore + UsageStore + LedgerStore + WebhookLog + Retention> Store for T {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub user_id: UserId,
    pub email: Email,
    pub plan_id: PlanId,
    pub interval: BillingInterval,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    #[error("payments are not configured on this deployment")]
    NotConfigured,
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the payment provider refused the request: {0}")]
    Rejected(String),
}

#[async_trait]
pub trait Payments: Send + Sync {
    /// Whether paid plans can be sold here; checked before any user is
    /// created, so a refused paid registration leaves nothing behind.
    fn is_configured(&self) -> bool;
    async fn start_checkout(&self, req: &CheckoutRequest)
        -> Result<CheckoutSession, PaymentsError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub to: Email,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("mail delivery failed: {0}")]
pub struct MailError(pub String);

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, message: &EmailMessage) -> Result<(), MailError>;
}

#[derive(Debug, thiserror::Error)]
#[error("secret {name} is unavailable: {reason}")]
pub struct SecretError {
    pub name: String,
    pub reason: String,
}

/// Named secrets (`stripe-secret-key`, `jwt-signing-key`, ...): the
/// environment locally, Key Vault in Azure.
#[async_trait]
pub trait Secrets: Send + Sync {
    async fn secret(&self, name: &str) -> Result<Option<String>, SecretError>;
}

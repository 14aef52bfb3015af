//! The seams adapters plug into: storage (embedded SQLite, Cosmos DB),
//! payments (Stripe), mail and secrets. The domain owns these traits; the
//! adapters depend on the domain, never the other way round.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::account::{
    AcceptOutcome, Account, AccountId, Invitation, InvitationId, InvitationOutcome, Membership,
    Role, Seats,
};
use crate::audit::{AuditEntry, AuditId};
use crate::health::UndeliveredEvent;
use crate::lease::{LeaseOutcome, LeaseRequest, LeaseReturn};
use crate::money::Money;
pub use crate::outbox::{OutboxState, SendResult, Standing};
use crate::plan::{BillingInterval, Limit, PlanId, Trial};
use crate::quota::{
    CloseOutcome, Closing, GaugeObservation, GaugeOutcome, Level, OperationId, OperationOutcome,
    Reservation, ReserveOutcome, ReserveRequest, UsageOperation,
};
use crate::records::{Invoice, OutboxMessage, Payment};
use crate::service::ServiceKey;
use crate::subscription::RemoteSubscription;
use crate::usage::{MonthlySummary, UsageIncrement, UsageKey, UsageOutcome, Window};
use crate::user::{Email, User, UserId};

/// An opaque concurrency token (SQLite row version, Cosmos `_etag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etag(pub String);

#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: Etag,
}

/// An adapter's own error (SQLite's, the Cosmos SDK's, serde's), kept as
/// the source of the store error it caused.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The uniqueness rules the stores enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Uniqueness {
    /// One user per email address.
    Email,
    /// One account per Stripe customer.
    StripeCustomer,
    /// One owner per Stripe invoice.
    Invoice,
    /// Ids are random; a clash means a bug.
    Id,
}

impl Uniqueness {
    /// What the API's `conflict` field names.
    pub const fn as_str(self) -> &'static str {
        match self {
            Uniqueness::Email => "email",
            Uniqueness::StripeCustomer => "stripe customer",
            Uniqueness::Invoice => "invoice",
            Uniqueness::Id => "id",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was hit.
    #[error("{} already exists", .0.as_str())]
    Conflict(Uniqueness),
    #[error("not found")]
    NotFound,
    /// Optimistic concurrency: someone else wrote first. Re-read and retry.
    #[error("the record changed since it was read")]
    VersionConflict,
    /// The backend is unreachable or throttling; a retry may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// Stored data that does not decode: a bug or a migration gone wrong.
    #[error("corrupt record: {0}")]
    Corrupt(#[source] BoxError),
}

impl StoreError {
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable(source.into())
    }

    pub fn corrupt(source: impl Into<BoxError>) -> Self {
        StoreError::Corrupt(source.into())
    }
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user with their own account, of which they are the owner,
    /// and the account's first `messages`, all or nothing.
    /// `Conflict(Uniqueness::Email)` if the user signs in with a password
    /// and another such user holds the email; `Conflict(Uniqueness::Id)` if
    /// the user id is taken (an outside identity provisioned twice).
    /// Returns the account's etag.
    async fn register(
        &self,
        user: &User,
        account: &Account,
        owner: &Membership,
        messages: &[OutboxMessage],
    ) -> Result<Etag, StoreError>;
    /// Creates a user who belongs to no account yet (an imported member of
    /// an organization's account), insert-if-absent: `false`, and nothing
    /// written, if the id exists. `Conflict(Uniqueness::Email)` as `register`.
    async fn add_user(&self, user: &User) -> Result<bool, StoreError>;
    async fn user_by_id(&self, id: UserId) -> Result<Option<Versioned<User>>, StoreError>;
    /// The user who signs in with this email and a password. Users of the
    /// identity provider are never found by email.
    async fn user_by_email(&self, email: &Email) -> Result<Option<Versioned<User>>, StoreError>;
    /// Replaces the user if unchanged since read (`VersionConflict` if not).
    /// The identity and password never change here, nor the email of a
    /// user who signs in with it; an outside identity's email follows what
    /// their provider says.
    async fn replace_user(&self, user: &Versioned<User>) -> Result<Etag, StoreError>;
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn account_by_id(&self, id: AccountId) -> Result<Option<Versioned<Account>>, StoreError>;
    async fn account_by_stripe_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<Versioned<Account>>, StoreError>;
    /// The account whose subscription (current, or replaced and not yet
    /// cancelled) is this Stripe subscription. For operators: it may scan.
    async fn account_by_stripe_subscription(
        &self,
        subscription_id: &str,
    ) -> Result<Option<Versioned<Account>>, StoreError>;
    /// Accounts whose subscription looks stale at `now` (see
    /// `Subscription::stale_after`), most overdue first.
    async fn stale_subscriptions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<AccountId>, StoreError>;
    /// Creates an account with its owner (an existing user), all or
    /// nothing, insert-if-absent: `false`, and nothing written, if the
    /// account id exists. `Conflict(Uniqueness::StripeCustomer)` if another
    /// account holds its Stripe customer.
    async fn create_account(
        &self,
        account: &Account,
        owner: &Membership,
    ) -> Result<bool, StoreError>;
    /// Replaces the account only if it is still at `if_match`; else `VersionConflict`.
    async fn replace_account(&self, account: &Account, if_match: &Etag)
        -> Result<Etag, StoreError>;
}

/// Who belongs to which account, and the invitations that hold seats.
#[async_trait]
pub trait MemberStore: Send + Sync {
    async fn membership(
        &self,
        account: AccountId,
        user: UserId,
    ) -> Result<Option<Membership>, StoreError>;
    /// The accounts a user belongs to, oldest membership first.
    async fn memberships_of(&self, user: UserId) -> Result<Vec<Membership>, StoreError>;
    /// An account's members, oldest first.
    async fn members(&self, account: AccountId) -> Result<Vec<Membership>, StoreError>;
    /// An account's invitations still pending at `now`, oldest first.
    async fn invitations(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>, StoreError>;
    /// Members and invitations pending at `now`.
    async fn seats(&self, account: AccountId, now: DateTime<Utc>) -> Result<Seats, StoreError>;
    /// Creates the invitation and enqueues its email only if a seat is free
    /// under `limit` (`Seats::admits_one_more`), as one atomic step: under
    /// any concurrency, a limit of L never holds more than L seats. Every
    /// step below that changes who is in the account, or as what, writes
    /// its `audit` entries in the same atomic step, and only if it made the
    /// change: a refused or idle step writes none.
    async fn invite(
        &self,
        invitation: &Invitation,
        limit: Limit,
        now: DateTime<Utc>,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<InvitationOutcome, StoreError>;
    /// Uses the pending invitation up and makes `user` a member with its
    /// role, enqueueing the messages and writing the audit entries, all or
    /// nothing, if the account's seats are within `limit` (`Seats::within`)
    /// in the same atomic step. A second accept of the same invitation is
    /// `Gone`; one by a member already (`AlreadyMember`) writes neither.
    #[allow(clippy::too_many_arguments)]
    async fn accept_invitation(
        &self,
        account: AccountId,
        token_hash: &str,
        user: UserId,
        limit: Limit,
        now: DateTime<Utc>,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<AcceptOutcome, StoreError>;
    /// Makes a user a member of an existing account with the membership's
    /// role, whatever its seats (an import of existing customers): `true`
    /// if added, `false` if they already are a member (left as they are).
    /// It counts as a seat change, so a concurrent `invite` or
    /// `accept_invitation` sees it. `NotFound` if the account does not
    /// exist; an owner is made with the account only (`Corrupt`).
    async fn add_member(
        &self,
        membership: &Membership,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError>;
    /// Deletes a pending invitation; `false` if there was none.
    async fn withdraw_invitation(
        &self,
        account: AccountId,
        id: InvitationId,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError>;
    /// Removes a member who is not the owner, with the invitations they
    /// sent (so a removed admin cannot come back through one), enqueueing
    /// the messages; `false` if there is no such (non-owner) member.
    async fn remove_member(
        &self,
        account: AccountId,
        user: UserId,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError>;
    /// Sets a non-owner member's role to an assignable one; made a member,
    /// the invitations they sent are withdrawn. `false` if there is no such
    /// member; `true`, writing nothing, if it is their role already.
    async fn set_role(
        &self,
        account: AccountId,
        user: UserId,
        role: Role,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError>;
    /// Makes `to` (a member) the owner and `from` (the owner) an admin, in
    /// one step; `false` if either is not what it should be.
    async fn transfer_ownership(
        &self,
        account: AccountId,
        from: UserId,
        to: UserId,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Checks the limit and records the amount as one atomic step: under any
    /// concurrency, a limit of L admits at most L in total.
    async fn increment_usage(&self, inc: &UsageIncrement) -> Result<UsageOutcome, StoreError>;
    /// Current totals for the given keys (0 where nothing was recorded), in order.
    async fn usage(&self, account_id: AccountId, keys: &[UsageKey])
        -> Result<Vec<u64>, StoreError>;
    /// Records a named increase once: checks `used + held + amount` against
    /// the limit and, if it fits, adds it and records the operation in one
    /// atomic step. The same id again answers `Replayed` (same fingerprint)
    /// or `KeyReused`, and counts nothing.
    async fn record_operation(&self, op: &UsageOperation) -> Result<OperationOutcome, StoreError>;
    /// Holds quota for a reservation if `used + held + quantity` fits the
    /// limit, in one atomic step with writing the reservation; idempotent by
    /// the reservation's id as `record_operation` is.
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome, StoreError>;
    /// The account's reservation by id.
    async fn reservation(
        &self,
        account_id: AccountId,
        id: OperationId,
    ) -> Result<Option<Reservation>, StoreError>;
    /// Ends a reservation as `Reservation::close` decides, recording what a
    /// commit uses in the same atomic step.
    async fn close_reservation(
        &self,
        account_id: AccountId,
        id: OperationId,
        closing: Closing,
        now: DateTime<Utc>,
    ) -> Result<CloseOutcome, StoreError>;
    /// Sets a gauge to an observed level unless a newer observation stands.
    async fn set_gauge(&self, obs: &GaugeObservation) -> Result<GaugeOutcome, StoreError>;
    /// Settles `req.returning` (if given; `lease::settle`) and takes a new
    /// lease of `lease::grant` of what is left, as a hold on the counter,
    /// in one atomic step: under any concurrency, the live leases and what
    /// was used never pass the limit.
    async fn take_lease(&self, req: &LeaseRequest) -> Result<LeaseOutcome, StoreError>;
    /// Gives a lease back: records what was admitted from it if its hold
    /// is still live (`lease::settle`) and frees the rest, in one atomic
    /// step. `false` if the hold was not live (lapsed or given back
    /// already): nothing recorded, so a repeat never counts twice.
    async fn return_lease(
        &self,
        account_id: AccountId,
        key: &UsageKey,
        ret: &LeaseReturn,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Used and live-held quota for the given keys at `now`, in order.
    async fn levels(
        &self,
        account_id: AccountId,
        keys: &[UsageKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<Level>, StoreError>;
}

/// Service keys. Kept apart from the rest of the store on SQLite, so
/// `handler service-keys` works while the service runs.
#[async_trait]
pub trait ServiceKeyStore: Send + Sync {
    async fn add_service_key(&self, key: &ServiceKey) -> Result<(), StoreError>;
    async fn service_key(&self, id: uuid::Uuid) -> Result<Option<ServiceKey>, StoreError>;
    /// Every key, revoked ones included, oldest first.
    async fn service_keys(&self) -> Result<Vec<ServiceKey>, StoreError>;
    /// Marks the key revoked; `false` if there is no such key. Revoking a
    /// revoked key keeps its first revocation time.
    async fn revoke_service_key(
        &self,
        id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Idempotent by payment id: recording a payment twice keeps one.
    async fn record_payment(&self, payment: &Payment) -> Result<(), StoreError>;
    /// The account's unexpired payments, newest first.
    async fn payments(
        &self,
        account_id: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Payment>, StoreError>;
    /// Inserts or replaces by invoice id.
    async fn upsert_invoice(&self, invoice: &Invoice) -> Result<(), StoreError>;
    /// The account's unexpired invoices, newest first.
    async fn invoices(
        &self,
        account_id: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invoice>, StoreError>;
}

#[async_trait]
pub trait WebhookLog: Send + Sync {
    /// Records the event id if it is new. `true` the first time only, even
    /// when two deliveries race.
    async fn claim_event(&self, event_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Whether the event id was recorded (and not yet expired).
    async fn event_seen(&self, event_id: &str) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Replaces the account (only if still at `if_match`) and enqueues the
    /// messages, all or nothing. Messages already enqueued (same id) are kept once.
    /// The audit entries recording the change are written in the same
    /// atomic step, insert-if-absent by id.
    async fn replace_account_and_enqueue(
        &self,
        account: &Account,
        if_match: &Etag,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<Etag, StoreError>;
    /// Enqueues messages that report no account change (receipts); insert-if-absent by id.
    async fn enqueue(&self, messages: &[OutboxMessage]) -> Result<(), StoreError>;
    /// The account's messages, oldest first.
    async fn outbox_for_account(
        &self,
        account_id: AccountId,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Takes a message for sending: `Some` only if it is pending, or its
    /// previous sender's claim is older than `lease` (it crashed), and, for
    /// an event, no earlier event of its account is unfinished
    /// (`outbox::due`). Counts the attempt. Two deliveries of one message
    /// never both get it.
    async fn claim_outbox(
        &self,
        account_id: AccountId,
        id: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<OutboxMessage>, StoreError>;
    /// Records how a claimed send ended.
    async fn finish_outbox(
        &self,
        account_id: AccountId,
        id: &str,
        result: &SendResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Messages waiting to be sent (pending, or claimed longer than `lease`
    /// ago) that may be claimed now (`outbox::due`: an account's event waits
    /// for its earlier events), oldest first.
    async fn pending_outbox(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// One account's messages that may be claimed now (`outbox::due`),
    /// oldest first: what follows an event just sent.
    async fn due_outbox_for_account(
        &self,
        account_id: AccountId,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// What the billing health reads: every unfinished message, and those
    /// given up on that were written at or after `failed_since`, oldest first.
    async fn unsettled_outbox(
        &self,
        failed_since: DateTime<Utc>,
    ) -> Result<Vec<(Standing, OutboxMessage)>, StoreError>;
    /// Where a message stands, and its attempts.
    async fn outbox_status(
        &self,
        account_id: AccountId,
        id: &str,
    ) -> Result<Option<(OutboxState, u32)>, StoreError>;
}

/// The append-only audit log, per account.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends entries that go with no account write (a usage credit),
    /// insert-if-absent by id: a retried act that names
    /// its entry (`AuditId::of_name`) keeps one.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Up to `limit` of the account's entries, newest first
    /// (`AuditEntry::sort_key`), after the entry `starting_after` if given
    /// (`NotFound` if the account has no such entry).
    async fn audit_log(
        &self,
        account_id: AccountId,
        starting_after: Option<AuditId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}

#[async_trait]
pub trait Rollups: Send + Sync {
    /// The last UTC day fully rolled up, if any.
    async fn rollup_cursor(&self) -> Result<Option<NaiveDate>, StoreError>;
    async fn set_rollup_cursor(&self, day: NaiveDate) -> Result<(), StoreError>;
    /// Recomputes the monthly summaries of up to `limit` accounts that have
    /// usage on `day`, in account-id order after `after`, and returns them. Recomputing
    /// (not adding) makes a second run change nothing.
    async fn roll_up_day(
        &self,
        day: Window,
        month: Window,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<Vec<MonthlySummary>, StoreError>;
    async fn monthly_summary(
        &self,
        account_id: AccountId,
        month: Window,
    ) -> Result<Option<MonthlySummary>, StoreError>;
}

#[async_trait]
pub trait Retention: Send + Sync {
    /// Deletes every record whose retention ended before `now`; returns how many.
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Everything the service keeps.
pub trait Store:
    UserStore
    + AccountStore
    + MemberStore
    + UsageStore
    + ServiceKeyStore
    + LedgerStore
    + WebhookLog
    + Outbox
    + AuditLog
    + Rollups
    + Retention
{
}
impl<T> Store for T where
    T: UserStore
        + AccountStore
        + MemberStore
        + UsageStore
        + ServiceKeyStore
        + LedgerStore
        + WebhookLog
        + Outbox
        + AuditLog
        + Rollups
        + Retention
{
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub account_id: AccountId,
    pub customer_id: String,
    pub plan_id: PlanId,
    pub interval: BillingInterval,
    /// What makes this checkout distinct; with the account id it forms the
    /// idempotency key, so a double click returns the same session.
    pub attempt: String,
    /// An Enterprise offer's own price, sold instead of the plan's catalog price.
    pub offer: Option<OfferCheckout>,
    /// The plan's trial, when the account has not had one.
    pub trial: Option<Trial>,
}

/// The offer a checkout takes up, and the price it bills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferCheckout {
    pub offer_id: String,
    pub price_id: String,
}

/// The price an Enterprise offer is made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferPrice {
    /// A price that exists at the provider (sales made it in the dashboard).
    Existing(String),
    /// A new recurring price of the Enterprise plan's product.
    New {
        money: Money,
        interval: BillingInterval,
    },
}

/// A provider's price, as what it sells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoldPrice {
    pub id: String,
    pub plan_id: PlanId,
    /// `None`: not billed monthly or yearly (one-time, daily, weekly).
    pub interval: Option<BillingInterval>,
    pub money: Money,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutStatus {
    Open,
    Complete,
    Expired,
}

/// A checkout session as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCheckout {
    pub id: String,
    pub status: CheckoutStatus,
    pub url: Option<String>,
    /// What it sells, from the metadata this service wrote.
    pub plan_id: Option<PlanId>,
    pub interval: Option<BillingInterval>,
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    pub account_id: Option<String>,
    /// The Enterprise offer it takes up, from the metadata this service wrote.
    pub offer_id: Option<String>,
}

/// An invoice as the provider reports it, before it is tied to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInvoice {
    pub id: String,
    pub customer_id: String,
    pub subscription_id: Option<String>,
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

#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    #[error("payments are not configured on this deployment")]
    NotConfigured,
    /// Transient (network, 429, 5xx) and still failing after retries.
    #[error("the payment provider is unavailable: {what}")]
    Unavailable {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("the payment provider refused the request: {what}")]
    Rejected {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("the payment provider has no {what}")]
    NotFound {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl PaymentsError {
    pub fn unavailable(what: impl Into<String>) -> Self {
        PaymentsError::Unavailable {
            what: what.into(),
            source: None,
        }
    }

    pub fn rejected(what: impl Into<String>) -> Self {
        PaymentsError::Rejected {
            what: what.into(),
            source: None,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        PaymentsError::NotFound {
            what: what.into(),
            source: None,
        }
    }

    /// The provider's own error behind this one, kept for the log.
    pub fn caused_by(mut self, cause: impl Into<BoxError>) -> Self {
        match &mut self {
            PaymentsError::NotConfigured => {}
            PaymentsError::Unavailable { source, .. }
            | PaymentsError::Rejected { source, .. }
            | PaymentsError::NotFound { source, .. } => *source = Some(cause.into()),
        }
        self
    }
}

/// Money movement: the Stripe adapter in production, its offline simulator
/// locally. Every call that creates or changes something is idempotent:
/// retried or repeated, it acts once.
#[async_trait]
pub trait Payments: Send + Sync {
    /// Whether paid plans can be sold here; checked before any account is
    /// created, so a refused paid registration leaves nothing behind.
    fn is_configured(&self) -> bool;
    /// One customer per account, whatever the number of calls.
    async fn create_customer(
        &self,
        account_id: AccountId,
        email: &Email,
        name: &str,
    ) -> Result<String, PaymentsError>;
    async fn start_checkout(&self, req: &CheckoutRequest)
        -> Result<CheckoutSession, PaymentsError>;
    async fn checkout(&self, session_id: &str) -> Result<RemoteCheckout, PaymentsError>;
    /// Closes an open checkout so it can no longer be paid.
    async fn expire_checkout(&self, session_id: &str) -> Result<(), PaymentsError>;
    async fn subscription(&self, id: &str) -> Result<RemoteSubscription, PaymentsError>;
    /// Moves the subscription's one item to the plan's price, prorating
    /// as of `proration_date` (a preview's; now when `None`) and billing
    /// the difference now.
    async fn change_plan(
        &self,
        account_id: AccountId,
        current: &RemoteSubscription,
        plan_id: PlanId,
        interval: BillingInterval,
        attempt: &str,
        proration_date: Option<DateTime<Utc>>,
    ) -> Result<RemoteSubscription, PaymentsError>;
    /// What `change_plan` with the same `proration_date` would bill now.
    async fn preview_change(
        &self,
        current: &RemoteSubscription,
        plan_id: PlanId,
        interval: BillingInterval,
        proration_date: DateTime<Utc>,
    ) -> Result<Money, PaymentsError>;
    async fn set_cancel_at_period_end(
        &self,
        account_id: AccountId,
        subscription_id: &str,
        cancel: bool,
        attempt: &str,
    ) -> Result<RemoteSubscription, PaymentsError>;
    /// Moves a trialing subscription's trial to end at `trial_end`, billing
    /// nothing now: its first paid invoice moves with it. Once per `attempt`.
    async fn extend_trial(
        &self,
        account_id: AccountId,
        subscription_id: &str,
        trial_end: DateTime<Utc>,
        attempt: &str,
    ) -> Result<RemoteSubscription, PaymentsError>;
    /// Moves the subscription to the plan's price when the current paid
    /// period ends (a subscription schedule), billing nothing now.
    async fn schedule_change(
        &self,
        account_id: AccountId,
        current: &RemoteSubscription,
        plan_id: PlanId,
        interval: BillingInterval,
        attempt: &str,
    ) -> Result<RemoteSubscription, PaymentsError>;
    /// Drops a pending schedule; the subscription goes on as it is.
    async fn release_schedule(&self, schedule_id: &str) -> Result<(), PaymentsError>;
    /// Ends a subscription now (a duplicate, or a plan replaced by a higher
    /// one), with `credit` the unused part of its period credited to the
    /// customer at once (`RemoteSubscription::credits_unused_time`). Asked
    /// again about the same subscription, it cancels nothing more.
    async fn cancel_replaced(
        &self,
        account_id: AccountId,
        subscription_id: &str,
        credit: bool,
    ) -> Result<(), PaymentsError>;
    async fn portal_url(
        &self,
        customer_id: &str,
        return_url: &str,
    ) -> Result<String, PaymentsError>;
    async fn invoice(&self, id: &str) -> Result<RemoteInvoice, PaymentsError>;
    /// Events of these types created since `since` that Stripe has not
    /// delivered to this service (failed, or still retrying): Stripe's own
    /// record, so a wrong signing secret or an unreachable endpoint shows
    /// too. One page, newest first, at most 100.
    async fn undelivered_events(
        &self,
        types: &[&str],
        since: DateTime<Utc>,
    ) -> Result<Vec<UndeliveredEvent>, PaymentsError>;
    /// The price an offer sells: an existing one as the provider has it,
    /// or a new recurring price on the Enterprise plan's product, made
    /// once per `offer_id` however often asked.
    async fn offer_price(
        &self,
        offer_id: &str,
        price: &OfferPrice,
    ) -> Result<SoldPrice, PaymentsError>;
    /// Moves the subscription's one item to `price_id` now, the difference
    /// for the rest of the period prorated onto the next invoice.
    async fn attach_price(
        &self,
        account_id: AccountId,
        current: &RemoteSubscription,
        price_id: &str,
        attempt: &str,
    ) -> Result<RemoteSubscription, PaymentsError>;
}

/// A provider event, verified: only what is needed to know what to re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub id: String,
    pub kind: String,
    pub created: DateTime<Utc>,
    /// The `object` type of the event's object ("subscription", "invoice", ...).
    pub object: String,
    pub object_id: String,
    /// The customer the object belongs to, when it names one: who to look
    /// up before asking Stripe anything.
    pub customer: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing or malformed Stripe-Signature header")]
    MissingSignature,
    #[error("the signature matches none of the configured secrets")]
    BadSignature,
    #[error("the signature's timestamp is outside the tolerance (a replay?)")]
    Stale,
    #[error("the payload is not an event: {0}")]
    Malformed(String),
}

pub trait WebhookVerifier: Send + Sync {
    fn verify(
        &self,
        payload: &[u8],
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ProviderEvent, WebhookError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    /// The outbox id: also the Message-ID's local part, so a resend is
    /// recognisably the same message.
    pub id: String,
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
#[error("event delivery failed: {0}")]
pub struct EventError(pub String);

/// KRAFTD's one webhook endpoint for events (`EVENTS_WEBHOOK_URL`).
#[async_trait]
pub trait EventSender: Send + Sync {
    /// POSTs one event's JSON `body`, signed in the Standard Webhooks
    /// format with `webhook_id` and `timestamp` (the try's). `Ok` only for a
    /// 2xx answer within the per-try timeout; a redirect is not followed.
    async fn send(
        &self,
        webhook_id: &str,
        timestamp: DateTime<Utc>,
        body: &str,
    ) -> Result<(), EventError>;
}

#[derive(Debug, thiserror::Error)]
#[error("secret {name} is unavailable: {reason}")]
pub struct SecretError {
    pub name: String,
    pub reason: String,
}

/// Named secrets (`stripe-secret-key`, `jwt-secret`, ...), as Key Vault
/// holds them. `Ok(None)`: there is no such secret.
#[async_trait]
pub trait Secrets: Send + Sync {
    async fn secret(&self, name: &str) -> Result<Option<String>, SecretError>;
}

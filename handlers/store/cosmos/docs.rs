//! The documents as stored. Each carries `type`, so containers that hold
//! more than one kind (an account's document, memberships, invitations,
//! seats and outbox; counters, operation records, reservations, the day
//! index and summaries) stay queryable,
//! and its partition key value in `user_id` (users) or `account_id`
//! (everything else). Queries scoped to a partition also filter on it:
//! free on Cosmos DB, and it keeps them scoped on a backend that ignores
//! the partition header.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::account::{Account, AccountId, Invitation, Membership, Role};
use crate::domain::outbox::OutboxState;
use crate::domain::ports::StoreError;
use crate::domain::quota::{Hold, OperationId, Reservation};
use crate::domain::records::{Invoice, OutboxMessage, Payment};
use crate::domain::user::{User, UserId};

pub const USER: &str = "user";
pub const ACCOUNT: &str = "account";
pub const MEMBER: &str = "member";
pub const INVITATION: &str = "invitation";
pub const SEATS: &str = "seats";
pub const OUTBOX: &str = "outbox";
pub const USAGE: &str = "usage";
pub const ACTIVE: &str = "active";
pub const SUMMARY: &str = "summary";
/// A named usage operation's record, in the account's partition of `usage_records`.
pub const OPERATION: &str = "operation";
/// A reservation, in the account's partition of `usage_records`.
pub const RESERVATION: &str = "reservation";

/// Milliseconds since the epoch: what queries compare and sort on.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Seconds a record written at `written` must live to reach `expires`; Cosmos
/// counts an item's `ttl` from its last write.
pub fn ttl_between(written: DateTime<Utc>, expires: DateTime<Utc>) -> i64 {
    (expires - written).num_seconds().max(1)
}

/// A user's identity, alone in its partition of `users`.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserDoc {
    pub id: String,
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub user: User,
}

impl UserDoc {
    pub fn new(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            user_id: user.id.to_string(),
            kind: USER.into(),
            user: user.clone(),
        }
    }
}

/// The account's own document: its id is the account id.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountDoc {
    pub id: String,
    pub account_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// When reconciliation should look at this subscription (ms), if ever.
    pub watch_at: Option<i64>,
    pub account: Account,
}

impl AccountDoc {
    pub fn new(account: &Account) -> Self {
        Self {
            id: account.id.to_string(),
            account_id: account.id.to_string(),
            kind: ACCOUNT.into(),
            watch_at: account.subscription.stale_after().map(ms),
            account: account.clone(),
        }
    }
}

pub fn member_id(user: UserId) -> String {
    format!("member:{user}")
}

/// A user's membership, in the account's partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberDoc {
    pub id: String,
    pub account_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

impl MemberDoc {
    pub fn new(m: &Membership) -> Self {
        Self {
            id: member_id(m.user_id),
            account_id: m.account_id.to_string(),
            kind: MEMBER.into(),
            user_id: m.user_id.to_string(),
            role: m.role,
            joined_at: m.joined_at,
        }
    }

    pub fn membership(&self) -> Result<Membership, StoreError> {
        Ok(Membership {
            account_id: parse_account_id(&self.account_id)?,
            user_id: parse_user_id(&self.user_id)?,
            role: self.role,
            joined_at: self.joined_at,
        })
    }
}

pub fn invitation_id(id: crate::domain::account::InvitationId) -> String {
    format!("invitation:{id}")
}

/// An expired invitation lingers this long (for support's questions), then
/// its `ttl` removes it. It holds no seat and cannot be accepted meanwhile.
pub const INVITATION_AFTERLIFE_SECONDS: i64 = 7 * 86_400;

/// A pending invitation, in the account's partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitationDoc {
    pub id: String,
    pub account_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The invitee's address, to find an invitation already sent to it.
    pub email: String,
    pub token_hash: String,
    pub created_ms: i64,
    pub expires_at: i64,
    pub ttl: i64,
    pub invitation: Invitation,
}

impl InvitationDoc {
    pub fn new(i: &Invitation) -> Self {
        Self {
            id: invitation_id(i.id),
            account_id: i.account_id.to_string(),
            kind: INVITATION.into(),
            email: i.email.as_str().to_owned(),
            token_hash: i.token_hash.clone(),
            created_ms: ms(i.created_at),
            expires_at: ms(i.expires_at),
            ttl: ttl_between(i.created_at, i.expires_at) + INVITATION_AFTERLIFE_SECONDS,
            invitation: i.clone(),
        }
    }
}

pub const SEATS_ID: &str = "seats";

/// Whether `id` names one of the account's own documents in its partition
/// (itself, the seat lock, a membership, an invitation, an audit entry), which an outbox
/// message must not take.
pub fn reserved_id(account: AccountId, id: &str) -> bool {
    id == pk(account)
        || id == SEATS_ID
        || id.starts_with("member:")
        || id.starts_with("invitation:")
        || id.starts_with("audit:")
}

/// The account's seat lock: every write that changes who holds a seat
/// (invite, accept, remove) replaces it If-Match in its batch, so two such
/// writes never both succeed on the same count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeatsDoc {
    pub id: String,
    pub account_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Bumped by every write, so each one changes the document.
    pub version: u64,
}

impl SeatsDoc {
    pub fn new(account: AccountId) -> Self {
        Self {
            id: SEATS_ID.into(),
            account_id: account.to_string(),
            kind: SEATS.into(),
            version: 0,
        }
    }
}

/// An email waiting in the account's partition of `accounts`. The message's own fields sit at
/// the top level, so the change feed delivers something that decodes as an
/// `OutboxMessage` directly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxDoc {
    #[serde(rename = "type")]
    pub kind_tag: String,
    pub status: OutboxState,
    pub attempts: u32,
    pub claimed_at: Option<i64>,
    /// A failed send's next try is not before this (ms).
    #[serde(default)]
    pub not_before: Option<i64>,
    pub sent_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub ttl: i64,
    #[serde(flatten)]
    pub message: OutboxMessage,
}

/// Sent or failed messages are kept this long, then expire.
pub const OUTBOX_TTL_SECONDS: i64 = crate::domain::outbox::FINISHED_RETENTION_DAYS * 86_400;

impl OutboxDoc {
    pub fn pending(message: &OutboxMessage) -> Self {
        Self {
            kind_tag: OUTBOX.into(),
            status: OutboxState::Pending,
            attempts: 0,
            claimed_at: None,
            not_before: None,
            sent_at: None,
            last_error: None,
            created_ms: ms(message.created_at),
            ttl: OUTBOX_TTL_SECONDS,
            message: message.clone(),
        }
    }
}

/// A claim on a unique fact: `email:…` names a user id, `customer:…` and
/// `invoice:…` an account id.
#[derive(Debug, Serialize, Deserialize)]
pub struct LookupDoc {
    pub id: String,
    /// Claims of the one-user era named a user in `user_id`; a migrated
    /// account has its user's id, so they still name the right holder.
    #[serde(alias = "user_id")]
    pub owner: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CursorDoc {
    pub id: String,
    pub day: NaiveDate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CounterDoc {
    pub id: String,
    pub account_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub metric: String,
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
    pub quantity: i64,
    pub expires_at: Option<i64>,
    /// -1: never expires (gauges are a current level).
    pub ttl: i64,
    /// The live reservations' holds on this counter (expired ones are
    /// pruned by the next write).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<HoldDoc>,
    /// Gauges: when the level stored was observed (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<i64>,
    /// The last UTC day (its start, ms) this counter's account was put in
    /// the rollup's day index for: a write on another day indexes it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_day: Option<i64>,
}

/// A reservation's hold as its counter carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldDoc {
    pub id: String,
    pub quantity: i64,
    /// ms
    pub expires_at: i64,
}

impl HoldDoc {
    pub fn new(h: &Hold) -> Self {
        Self {
            id: h.id.to_string(),
            quantity: h.quantity,
            expires_at: ms(h.expires_at),
        }
    }

    pub fn hold(&self) -> Result<Hold, StoreError> {
        Ok(Hold {
            id: OperationId(
                uuid::Uuid::parse_str(&self.id)
                    .map_err(|e| StoreError::corrupt(format!("hold {}: {e}", self.id)))?,
            ),
            quantity: self.quantity,
            expires_at: from_ms(self.expires_at)?,
        })
    }
}

pub fn from_ms(t: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(t)
        .ok_or_else(|| StoreError::corrupt(format!("{t} ms is no time")))
}

/// An operation's id within its account's partition: usage operations and
/// reservations share one namespace, as on SQLite, and `type` tells them apart.
pub fn operation_id(id: OperationId) -> String {
    format!("op:{id}")
}

/// A named operation's record (`type` `operation`: a usage write, with the
/// total it reported) or a reservation (`type` `reservation`, the domain's
/// `Reservation` as it stands, and once committed the counter's total right
/// after the commit), written in the same batch as its counter.
/// `expires_at` (ms) is the record's keep-until, which `ttl` enforces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationDoc {
    pub id: String,
    pub account_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `OperationKind::as_str`.
    pub operation: String,
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<Reservation>,
    /// A random id of the attempt that wrote it: an attempt whose answer
    /// was lost finds its own write and answers as the write did.
    pub writer: String,
    pub expires_at: i64,
    pub ttl: i64,
}

/// "This account had usage on this day": the rollup's index, one partition
/// a day (`account_id` is `day:<date>`, `id` the account id).
#[derive(Debug, Serialize, Deserialize)]
pub struct ActiveDoc {
    pub id: String,
    pub account_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub expires_at: i64,
    pub ttl: i64,
}

pub fn day_partition(day: NaiveDate) -> String {
    format!("day:{day}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryDoc {
    pub id: String,
    pub account_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub month_start: i64,
    pub month_end: i64,
    pub api_calls: u64,
    pub documents: u64,
    pub exports: u64,
    pub updated_at: i64,
    pub ttl: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentDoc {
    pub id: String,
    pub account_id: String,
    pub created_ms: i64,
    pub expires_at: i64,
    pub ttl: i64,
    pub payment: Payment,
}

impl PaymentDoc {
    pub fn new(p: &Payment) -> Self {
        Self {
            id: p.id.clone(),
            account_id: p.account_id.to_string(),
            created_ms: ms(p.created_at),
            expires_at: ms(p.expires_at()),
            ttl: ttl_between(p.created_at, p.expires_at()),
            payment: p.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InvoiceDoc {
    pub id: String,
    pub account_id: String,
    pub created_ms: i64,
    pub expires_at: i64,
    pub ttl: i64,
    pub invoice: Invoice,
}

impl InvoiceDoc {
    pub fn new(i: &Invoice) -> Self {
        Self {
            id: i.id.clone(),
            account_id: i.account_id.to_string(),
            created_ms: ms(i.created_at),
            expires_at: ms(i.expires_at()),
            ttl: ttl_between(i.created_at, i.expires_at()),
            invoice: i.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EventDoc {
    pub id: String,
    pub processed_at: i64,
    pub expires_at: i64,
    pub ttl: i64,
}

/// A partition key value for a user (`users`).
pub fn user_pk(user: UserId) -> String {
    user.to_string()
}

/// A partition key value for an account (every other container).
pub fn pk(account: AccountId) -> String {
    account.to_string()
}

pub fn parse_user_id(s: &str) -> Result<UserId, StoreError> {
    uuid::Uuid::parse_str(s)
        .map(UserId)
        .map_err(|e| StoreError::corrupt(format!("user id {s}: {e}")))
}

pub fn parse_account_id(s: &str) -> Result<AccountId, StoreError> {
    uuid::Uuid::parse_str(s)
        .map(AccountId)
        .map_err(|e| StoreError::corrupt(format!("account id {s}: {e}")))
}

//! The documents as stored. Each carries `type`, so containers that hold
//! more than one kind (users + outbox, counters + day index + summaries)
//! stay queryable, and its partition key value in `user_id`. Queries scoped
//! to a partition also filter on `user_id`: free on Cosmos DB, and it keeps
//! them scoped on a backend that ignores the partition header.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::outbox::OutboxState;
use crate::domain::records::{Invoice, OutboxMessage, Payment};
use crate::domain::user::{User, UserId};

pub const USER: &str = "user";
pub const OUTBOX: &str = "outbox";
pub const USAGE: &str = "usage";
pub const ACTIVE: &str = "active";
pub const SUMMARY: &str = "summary";

/// Milliseconds since the epoch: what queries compare and sort on.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Seconds a record written at `written` must live to reach `expires`; Cosmos
/// counts an item's `ttl` from its last write.
pub fn ttl_between(written: DateTime<Utc>, expires: DateTime<Utc>) -> i64 {
    (expires - written).num_seconds().max(1)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserDoc {
    pub id: String,
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// When reconciliation should look at this subscription (ms), if ever.
    pub watch_at: Option<i64>,
    pub user: User,
}

impl UserDoc {
    pub fn new(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            user_id: user.id.to_string(),
            kind: USER.into(),
            watch_at: user.subscription.stale_after().map(ms),
            user: user.clone(),
        }
    }
}

/// An email waiting in the user's partition. The message's own fields sit at
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
pub const OUTBOX_TTL_SECONDS: i64 = 90 * 86_400;

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

/// A claim on a unique fact (`email:…`, `customer:…`, `invoice:…`).
#[derive(Debug, Serialize, Deserialize)]
pub struct LookupDoc {
    pub id: String,
    pub user_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CursorDoc {
    pub id: String,
    pub day: NaiveDate,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CounterDoc {
    pub id: String,
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub metric: String,
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
    pub quantity: i64,
    pub expires_at: Option<i64>,
    /// -1: never expires (gauges are a current level).
    pub ttl: i64,
}

/// "This user had usage on this day": the rollup's index, one partition a day.
#[derive(Debug, Serialize, Deserialize)]
pub struct ActiveDoc {
    pub id: String,
    pub user_id: String,
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
    pub user_id: String,
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
    pub user_id: String,
    pub created_ms: i64,
    pub expires_at: i64,
    pub ttl: i64,
    pub payment: Payment,
}

impl PaymentDoc {
    pub fn new(p: &Payment) -> Self {
        Self {
            id: p.id.clone(),
            user_id: p.user_id.to_string(),
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
    pub user_id: String,
    pub created_ms: i64,
    pub expires_at: i64,
    pub ttl: i64,
    pub invoice: Invoice,
}

impl InvoiceDoc {
    pub fn new(i: &Invoice) -> Self {
        Self {
            id: i.id.clone(),
            user_id: i.user_id.to_string(),
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

/// A partition key value for a user.
pub fn pk(user: UserId) -> String {
    user.to_string()
}

pub fn parse_user_id(s: &str) -> Result<UserId, crate::domain::ports::StoreError> {
    uuid::Uuid::parse_str(s)
        .map(UserId)
        .map_err(|e| crate::domain::ports::StoreError::corrupt(format!("user id {s}: {e}")))
}

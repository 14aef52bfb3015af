//! The Cosmos DB database layout: every container, its partition key and
//! its default TTL. Defined once here; `handler cosmos init`, the Bicep
//! templates (checked by `tests/infra`) and the change-feed function
//! manifests all agree with this table.

use crate::domain::records::{PAYMENT_RETENTION_DAYS, WEBHOOK_EVENT_RETENTION_DAYS};
use crate::domain::usage::USAGE_RETENTION_DAYS;

const DAY: i64 = 86_400;

/// How long items live when they carry no `ttl` of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultTtl {
    /// TTL off: items never expire, and an item's own `ttl` is ignored.
    Off,
    /// TTL on (`-1`): items live until their own `ttl` says otherwise.
    PerItem,
    /// Items expire this many seconds after their last write.
    Seconds(i64),
}

impl DefaultTtl {
    /// The `defaultTtl` value Cosmos DB (and Bicep) uses; `None` is "off".
    pub fn as_cosmos(self) -> Option<i64> {
        match self {
            DefaultTtl::Off => None,
            DefaultTtl::PerItem => Some(-1),
            DefaultTtl::Seconds(s) => Some(s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: &'static str,
    pub partition_key: &'static str,
    pub default_ttl: DefaultTtl,
}

/// Users: each user's identity document (email, name, password hash), and
/// nothing else. What a user may do is decided by their memberships, which
/// live with the accounts. Documents of the one-user era may still carry a
/// `subscription`; it is ignored when read.
pub const USERS: ContainerSpec = ContainerSpec {
    name: "users",
    partition_key: "/user_id",
    default_ttl: DefaultTtl::PerItem,
};

/// Accounts, one partition each: the account document (its subscription),
/// its memberships, its pending invitations (which carry their own `ttl`),
/// the `seats` document whose etag serialises everything that changes who
/// holds a seat, the outbox messages about the account, and its audit log
/// (`type` `audit`, each entry with a `ttl` of `AUDIT_RETENTION_DAYS`, as
/// long as the payment records). A state change, the emails reporting it
/// and its audit entries are one transactional batch. The `SendEmails`
/// change feed reads it.
pub const ACCOUNTS: ContainerSpec = ContainerSpec {
    name: "accounts",
    partition_key: "/account_id",
    default_ttl: DefaultTtl::PerItem,
};

/// The partition of `ACCOUNTS` that holds the service keys (no account
/// has this id: accounts' ids are UUIDs).
pub const SERVICE_KEYS_PARTITION: &str = "service-keys";

/// Claims on facts that must be unique across partitions (one user per
/// email, one account per Stripe customer, one account per invoice),
/// created insert-if-absent, and the rollup cursor.
pub const LOOKUPS: ContainerSpec = ContainerSpec {
    name: "lookups",
    partition_key: "/id",
    default_ttl: DefaultTtl::Off,
};

pub const PAYMENTS: ContainerSpec = ContainerSpec {
    name: "payments",
    partition_key: "/account_id",
    default_ttl: DefaultTtl::Seconds(PAYMENT_RETENTION_DAYS * DAY),
};

pub const INVOICES: ContainerSpec = ContainerSpec {
    name: "invoices",
    partition_key: "/account_id",
    default_ttl: DefaultTtl::Seconds(PAYMENT_RETENTION_DAYS * DAY),
};

/// Usage counters of each account (with their reservations' holds), the
/// records of its named usage operations and its reservations (`op:<id>`,
/// each with the `ttl` of its keep-until), the per-day index of active
/// accounts the rollup reads (partition `day:<date>`), and monthly
/// summaries (which carry their own longer `ttl`).
pub const USAGE_RECORDS: ContainerSpec = ContainerSpec {
    name: "usage_records",
    partition_key: "/account_id",
    default_ttl: DefaultTtl::Seconds(USAGE_RETENTION_DAYS * DAY),
};

pub const WEBHOOK_EVENTS: ContainerSpec = ContainerSpec {
    name: "webhook_events",
    partition_key: "/id",
    default_ttl: DefaultTtl::Seconds(WEBHOOK_EVENT_RETENTION_DAYS * DAY),
};

/// Change-feed leases, owned by the Functions host; `/id` is what it requires.
pub const LEASES: ContainerSpec = ContainerSpec {
    name: "leases",
    partition_key: "/id",
    default_ttl: DefaultTtl::Off,
};

pub const CONTAINERS: &[ContainerSpec] = &[
    USERS,
    ACCOUNTS,
    LOOKUPS,
    PAYMENTS,
    INVOICES,
    USAGE_RECORDS,
    WEBHOOK_EVENTS,
    LEASES,
];

/// The database's default name (setting `COSMOS_DATABASE`).
pub const DEFAULT_DATABASE: &str = "billing";

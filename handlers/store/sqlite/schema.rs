//! The SQLite schema and its migrations. A database is brought to
//! `VERSION` when it is opened; each step runs in the transaction that
//! records the new version, so a failed step leaves the old version whole.

use rusqlite::{params, Connection, Transaction};

use super::{from_json, is_unique_violation, ms, to_json, unavailable};
use crate::domain::account::{own_account, Account, Membership};
use crate::domain::ports::{StoreError, Uniqueness};
use crate::domain::subscription::Subscription;
use crate::domain::user::{Email, PersonName, User, UserId};

pub const VERSION: i64 = 9;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    -- The email of a user who signs in with a password: one such user per
    -- email. Users of the identity provider hold no sign-in email.
    sign_in_email TEXT UNIQUE,
    version       INTEGER NOT NULL,
    doc           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS users_by_email ON users (email);
CREATE TABLE IF NOT EXISTS accounts (
    id                 TEXT PRIMARY KEY,
    stripe_customer_id TEXT UNIQUE,
    version            INTEGER NOT NULL,
    doc                TEXT NOT NULL,
    watch_at           INTEGER
);
CREATE INDEX IF NOT EXISTS accounts_by_watch ON accounts (watch_at) WHERE watch_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS memberships (
    account_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL,
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships (user_id, joined_at);
CREATE UNIQUE INDEX IF NOT EXISTS one_owner_per_account ON memberships (account_id) WHERE role = 'owner';
CREATE TABLE IF NOT EXISTS invitations (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    email      TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invitations_by_account ON invitations (account_id, created_at);
CREATE TABLE IF NOT EXISTS usage_records (
    account_id   TEXT NOT NULL,
    metric       TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER,
    quantity     INTEGER NOT NULL CHECK (quantity >= 0),
    expires_at   INTEGER,
    updated_at   INTEGER NOT NULL,
    -- Gauges: when the level stored was observed; only a newer one replaces it.
    observed_at  INTEGER,
    PRIMARY KEY (account_id, metric, window_start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_by_day ON usage_records (metric, window_start, account_id);
-- The rollup's question: whose counters were written on a day.
CREATE INDEX IF NOT EXISTS usage_by_update ON usage_records (updated_at);
-- Every named usage write (an Idempotency-Key, a batch event id) and every
-- reservation, kept until expires_at so a retry finds it.
CREATE TABLE IF NOT EXISTS usage_operations (
    account_id   TEXT NOT NULL,
    id           TEXT NOT NULL,
    kind         TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    metric       TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    quantity     INTEGER NOT NULL,
    -- A usage write: the total its admission reported.
    total        INTEGER,
    -- A reservation: 'held' while it holds quota (until hold_until), else NULL.
    state        TEXT,
    hold_until   INTEGER,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    doc          TEXT,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_holds ON usage_operations (account_id, metric, window_start, hold_until)
    WHERE state = 'held';
CREATE TABLE IF NOT EXISTS payments (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_by_account ON payments (account_id, created_at);
CREATE TABLE IF NOT EXISTS invoices (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invoices_by_account ON invoices (account_id, created_at);
CREATE TABLE IF NOT EXISTS outbox (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending',
    created_at INTEGER NOT NULL,
    doc        TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    claimed_at INTEGER,
    sent_at    INTEGER,
    last_error TEXT,
    not_before INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_by_account ON outbox (account_id, created_at);
CREATE TABLE IF NOT EXISTS usage_summaries (
    account_id  TEXT NOT NULL,
    month_start INTEGER NOT NULL,
    month_end   INTEGER NOT NULL,
    api_calls   INTEGER NOT NULL,
    documents   INTEGER NOT NULL,
    exports     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, month_start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    rolled_day  TEXT NOT NULL
);
-- v9: the audit log, append-only; `sort_key` is `AuditEntry::sort_key`.
CREATE TABLE IF NOT EXISTS audit_log (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    sort_key   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_account ON audit_log (account_id, sort_key);
CREATE TABLE IF NOT EXISTS processed_webhook_events (
    event_id     TEXT PRIMARY KEY,
    processed_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
";

/// Brings the database to `VERSION`: creates it when new, else runs each
/// missing step in one transaction with the version bump.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(unavailable)?;
    if version > VERSION {
        return Err(StoreError::corrupt(format!(
            "database schema version {version} is newer than this build ({VERSION})"
        )));
    }
    let tx = conn.transaction().map_err(unavailable)?;
    if version == 1 {
        // v2 lifted the reconciliation watch time out of the document.
        tx.execute_batch("ALTER TABLE users ADD COLUMN watch_at INTEGER;")
            .map_err(unavailable)?;
    }
    if (1..3).contains(&version) {
        // v3: delivery state of outbox messages.
        tx.execute_batch(
            "ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE outbox ADD COLUMN claimed_at INTEGER;
             ALTER TABLE outbox ADD COLUMN sent_at INTEGER;
             ALTER TABLE outbox ADD COLUMN last_error TEXT;",
        )
        .map_err(unavailable)?;
    }
    if (1..5).contains(&version) {
        // v5: a failed send waits its backoff.
        tx.execute_batch("ALTER TABLE outbox ADD COLUMN not_before INTEGER;")
            .map_err(unavailable)?;
    }
    if (1..6).contains(&version) {
        accounts_from_users(&tx)?;
    }
    if version == 6 {
        // v7: users of the identity provider share no sign-in email.
        tx.execute_batch("ALTER TABLE users RENAME TO users_v6;")
            .map_err(unavailable)?;
        tx.execute_batch(TABLES).map_err(unavailable)?;
        tx.execute_batch(
            "INSERT INTO users (id, email, sign_in_email, version, doc)
                 SELECT id, email, email, version, doc FROM users_v6;
             DROP TABLE users_v6;",
        )
        .map_err(unavailable)?;
    }
    if (1..8).contains(&version) {
        // v8: gauges remember when their level was observed.
        tx.execute_batch("ALTER TABLE usage_records ADD COLUMN observed_at INTEGER;")
            .map_err(unavailable)?;
    }
    tx.execute_batch(TABLES).map_err(unavailable)?;
    tx.pragma_update(None, "user_version", VERSION)
        .map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

/// v6: the account pays. Each user of the one-user era becomes the owner of
/// an account with their id (`AccountId::own_account_of`), which takes their
/// subscription and Stripe customer; every record keyed by the user is
/// then keyed by that account, unchanged.
fn accounts_from_users(tx: &Transaction<'_>) -> Result<(), StoreError> {
    // A file from before v4 has no summaries yet: make the v5 table so
    // the rename below finds it.
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS usage_summaries (
            user_id     TEXT NOT NULL,
            month_start INTEGER NOT NULL,
            month_end   INTEGER NOT NULL,
            api_calls   INTEGER NOT NULL,
            documents   INTEGER NOT NULL,
            exports     INTEGER NOT NULL,
            updated_at  INTEGER NOT NULL,
            PRIMARY KEY (user_id, month_start)
        ) WITHOUT ROWID;",
    )
    .map_err(unavailable)?;
    tx.execute_batch(
        "ALTER TABLE users RENAME TO users_v5;
         DROP INDEX IF EXISTS users_by_watch;
         ALTER TABLE usage_records RENAME COLUMN user_id TO account_id;
         ALTER TABLE payments RENAME COLUMN user_id TO account_id;
         ALTER TABLE invoices RENAME COLUMN user_id TO account_id;
         ALTER TABLE outbox RENAME COLUMN user_id TO account_id;
         ALTER TABLE usage_summaries RENAME COLUMN user_id TO account_id;
         DROP INDEX IF EXISTS payments_by_user;
         DROP INDEX IF EXISTS invoices_by_user;
         DROP INDEX IF EXISTS outbox_by_user;
         UPDATE payments SET doc = json_set(json_remove(doc, '$.user_id'), '$.account_id', json_extract(doc, '$.user_id'));
         UPDATE invoices SET doc = json_set(json_remove(doc, '$.user_id'), '$.account_id', json_extract(doc, '$.user_id'));
         UPDATE outbox SET doc = json_set(json_remove(doc, '$.user_id'), '$.account_id', json_extract(doc, '$.user_id'));",
    )
    .map_err(unavailable)?;
    tx.execute_batch(TABLES).map_err(unavailable)?;

    /// A user document as the one-user era wrote it.
    #[derive(serde::Deserialize)]
    struct OldUser {
        id: UserId,
        email: Email,
        name: PersonName,
        password_hash: String,
        created_at: chrono::DateTime<chrono::Utc>,
        subscription: Subscription,
    }
    let old: Vec<(String, i64)> = tx
        .prepare("SELECT doc, version FROM users_v5 ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(unavailable)?;
    for (doc, version) in old {
        let old: OldUser = from_json(&doc)?;
        let user = User::with_password(
            old.id,
            old.email,
            old.name,
            old.password_hash,
            old.created_at,
        );
        let (account, owner) = own_account(&user, old.subscription);
        insert_user(tx, &user)?;
        insert_account(tx, &account)?;
        // The account goes on from the user's version: etags feed Stripe
        // idempotency keys, which must not repeat an earlier request's.
        tx.execute(
            "UPDATE accounts SET version = ?2 WHERE id = ?1",
            params![account.id.to_string(), version],
        )
        .map_err(unavailable)?;
        insert_membership(tx, &owner)?;
    }
    tx.execute_batch("DROP TABLE users_v5;")
        .map_err(unavailable)
}

pub(super) fn insert_user(c: &Connection, user: &User) -> Result<(), StoreError> {
    let sign_in_email = user.signs_in_with_password().then(|| user.email.as_str());
    c.prepare_cached(
        "INSERT INTO users (id, email, sign_in_email, version, doc) VALUES (?1, ?2, ?3, 1, ?4)",
    )
    .map_err(unavailable)?
    .execute(params![
        user.id.to_string(),
        user.email.as_str(),
        sign_in_email,
        to_json(user)?
    ])
    .map_err(|e| conflict(e, "users.sign_in_email", Uniqueness::Email))?;
    Ok(())
}

pub(super) fn insert_account(c: &Connection, account: &Account) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO accounts (id, stripe_customer_id, version, doc, watch_at) VALUES (?1, ?2, 1, ?3, ?4)",
    )
    .map_err(unavailable)?
    .execute(params![
        account.id.to_string(),
        account.subscription.stripe_customer_id,
        to_json(account)?,
        account.subscription.stale_after().map(ms)
    ])
    .map_err(|e| conflict(e, "accounts.stripe_customer_id", Uniqueness::StripeCustomer))?;
    Ok(())
}

pub(super) fn insert_membership(c: &Connection, m: &Membership) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO memberships (account_id, user_id, role, joined_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(unavailable)?
    .execute(params![
        m.account_id.to_string(),
        m.user_id.to_string(),
        m.role.as_str(),
        ms(m.joined_at)
    ])
    .map_err(|e| conflict(e, "memberships.account_id", Uniqueness::Id))?;
    Ok(())
}

/// A unique violation on `column` is `Conflict(rule)`; on any other unique
/// column (a primary key: ids are random) it is `Conflict(Id)`.
pub(super) fn conflict(e: rusqlite::Error, column: &str, rule: Uniqueness) -> StoreError {
    match e {
        e if is_unique_violation(&e) && e.to_string().contains(column) => {
            StoreError::Conflict(rule)
        }
        e if is_unique_violation(&e) => StoreError::Conflict(Uniqueness::Id),
        e => unavailable(e),
    }
}

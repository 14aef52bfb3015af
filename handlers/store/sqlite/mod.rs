//! The embedded store: one SQLite file whose tables mirror the Cosmos DB
//! containers (users, accounts with their members and invitations,
//! usage_records, payments, invoices, processed_webhook_events). Whole
//! records are kept as JSON documents, with the fields that queries and
//! uniqueness need lifted into columns.

mod accounts;
mod quota;
mod schema;
mod service_keys;

pub use service_keys::ServiceKeyFile;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde::de::DeserializeOwned;

use crate::domain::account::{Account, AccountId};
use crate::domain::audit::{AuditEntry, AuditId};
use crate::domain::lease::{LeaseOutcome, LeaseRequest, LeaseReturn};
use crate::domain::outbox::{self, OutboxState};
use crate::domain::ports::{
    AuditLog, Etag, LedgerStore, Outbox, Retention, Rollups, SendResult, ServiceKeyStore, Standing,
    StoreError, Uniqueness, UsageStore, WebhookLog,
};
use crate::domain::quota::{
    CloseOutcome, Closing, GaugeObservation, GaugeOutcome, Level, OperationId, OperationOutcome,
    Reservation, ReserveOutcome, ReserveRequest, UsageOperation,
};
use crate::domain::records::{Invoice, OutboxMessage, Payment, WEBHOOK_EVENT_RETENTION_DAYS};
use crate::domain::service::ServiceKey;
use crate::domain::usage::{MonthlySummary, UsageIncrement, UsageKey, UsageOutcome, Window};

/// Gauges have no window; their single row sits at this window start.
const GAUGE_WINDOW: i64 = 0;

/// One connection behind a mutex: SQLite serialises writers anyway, and a
/// single connection keeps every check-and-record trivially atomic.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<OnceLock<Result<Mutex<Connection>, String>>>,
    path: Option<PathBuf>,
    keys: Arc<ServiceKeyFile>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up
    /// to date, failing now if it cannot.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_file(path)?;
        let keys = ServiceKeyFile::open(path)?;
        Ok(Self::ready(conn, Some(path.to_owned()), keys))
    }

    /// Returns at once and opens the file on a blocking thread, so start-up
    /// does not wait for it: the first request that needs the store waits
    /// instead (usually for nothing, the open having finished meanwhile).
    /// Needs a tokio runtime. An open that fails makes every call
    /// `Unavailable` with the reason.
    pub fn open_in_background(path: &Path) -> Result<Self, StoreError> {
        let store = Self {
            conn: Arc::new(OnceLock::new()),
            path: Some(path.to_owned()),
            // A small file of its own: opened now.
            keys: Arc::new(ServiceKeyFile::open(path)?),
        };
        let warm = store.clone();
        tokio::task::spawn_blocking(move || warm.connection().map(drop));
        Ok(store)
    }

    /// A private database that lives as long as the store (tests, benchmarks).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = init(Connection::open_in_memory().map_err(unavailable)?)?;
        Ok(Self::ready(conn, None, ServiceKeyFile::in_memory()?))
    }

    fn ready(conn: Connection, path: Option<PathBuf>, keys: ServiceKeyFile) -> Self {
        Self {
            conn: Arc::new(OnceLock::from(Ok(Mutex::new(conn)))),
            path,
            keys: Arc::new(keys),
        }
    }

    /// The connection, opening it on first use. Blocks: call it off the async workers.
    fn connection(&self) -> Result<&Mutex<Connection>, StoreError> {
        self.conn
            .get_or_init(|| {
                let path = self
                    .path
                    .as_deref()
                    .ok_or("in-memory store lost its connection")?;
                open_file(path).map(Mutex::new).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| StoreError::unavailable(e.clone()))
    }

    /// Runs `f` on the connection, inline. Statements on a warm WAL database
    /// take microseconds, less than a hand-off to the blocking pool costs
    /// (measured with scripts/bench), so they run on the calling worker like
    /// any short critical section.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let mut guard = self
            .connection()?
            .lock()
            .map_err(|_| StoreError::unavailable("store lock poisoned"))?;
        f(&mut guard)
    }
}

fn open_file(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(unavailable)?;
    // This process is the file's only user: holding its lock for good saves
    // the fcntl lock/unlock pair every transaction would otherwise pay
    // (the largest kernel cost under load, per perf). A second process
    // opening the file gets SQLITE_BUSY until the handler stops.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(unavailable)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(unavailable)?;
    init(conn)
}

fn init(mut conn: Connection) -> Result<Connection, StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(unavailable)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Runs an `... RETURNING x` statement to its end and returns the one value.
/// Stepping past the first row lets SQLite finish the write right there; a
/// statement left half-way until its next reset kept every checkpoint from
/// completing, and the WAL grew by a page per write (80 MiB per 20k
/// increments, measured with a loop of increments).
fn returning<T: rusqlite::types::FromSql>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Option<T>> {
    let mut rows = stmt.query(params)?;
    let first = match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    };
    while rows.next()?.is_some() {}
    Ok(first)
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable(e)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::corrupt(format!("time {ms} is out of range")))
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(StoreError::corrupt)
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(StoreError::corrupt)
}

fn insert_outbox(c: &Connection, messages: &[OutboxMessage]) -> Result<(), StoreError> {
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO outbox (id, account_id, created_at, doc) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
        )
        .map_err(unavailable)?;
    for m in messages {
        stmt.execute(params![
            m.id,
            m.account_id.to_string(),
            ms(m.created_at),
            to_json(m)?
        ])
        .map_err(unavailable)?;
    }
    Ok(())
}

fn insert_audit(c: &Connection, entries: &[AuditEntry]) -> Result<(), StoreError> {
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO audit_log (id, account_id, sort_key, expires_at, doc) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
        )
        .map_err(unavailable)?;
    for e in entries {
        stmt.execute(params![
            e.id.to_string(),
            e.account_id.to_string(),
            e.sort_key(),
            ms(e.expires_at()),
            to_json(e)?
        ])
        .map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let entries = entries.to_vec();
        self.with_conn(move |c| insert_audit(c, &entries)).await
    }

    async fn audit_log(
        &self,
        account_id: AccountId,
        starting_after: Option<AuditId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.with_conn(move |c| {
            let account = account_id.to_string();
            let before = match starting_after {
                None => None,
                Some(id) => Some(
                    c.prepare_cached(
                        "SELECT sort_key FROM audit_log WHERE id = ?1 AND account_id = ?2",
                    )
                    .map_err(unavailable)?
                    .query_row(params![id.to_string(), account], |r| r.get::<_, String>(0))
                    .optional()
                    .map_err(unavailable)?
                    .ok_or(StoreError::NotFound)?,
                ),
            };
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc FROM audit_log WHERE account_id = ?1 AND (?2 IS NULL OR sort_key < ?2) ORDER BY sort_key DESC LIMIT ?3",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![account, before, limit as i64], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(unavailable)?;
            rows.map(|doc| from_json(&doc.map_err(unavailable)?))
                .collect()
        })
        .await
    }
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn replace_account_and_enqueue(
        &self,
        account: &Account,
        if_match: &Etag,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<Etag, StoreError> {
        let (account, if_match, messages, audit) = (
            account.clone(),
            if_match.clone(),
            messages.to_vec(),
            audit.to_vec(),
        );
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let etag = accounts::replace_account_row(&tx, &account, &if_match)?;
            insert_outbox(&tx, &messages)?;
            insert_audit(&tx, &audit)?;
            tx.commit().map_err(unavailable)?;
            Ok(etag)
        })
        .await
    }

    async fn enqueue(&self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        let messages = messages.to_vec();
        self.with_conn(move |c| insert_outbox(c, &messages)).await
    }

    async fn outbox_for_account(
        &self,
        account_id: AccountId,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT doc FROM outbox WHERE account_id = ?1 ORDER BY created_at, id",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([account_id.to_string()], |r| r.get::<_, String>(0))
                .map_err(unavailable)?;
            rows.map(|doc| from_json(&doc.map_err(unavailable)?))
                .collect()
        })
        .await
    }

    async fn claim_outbox(
        &self,
        account_id: AccountId,
        id: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<OutboxMessage>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |c| {
            // One connection behind a lock: the read and the write below
            // cannot interleave with another claim.
            let account = account_id.to_string();
            type Row = (String, Option<i64>, Option<i64>, String);
            let found: Option<Row> = c
                .prepare_cached(
                    "SELECT status, claimed_at, not_before, doc FROM outbox WHERE id = ?1 AND account_id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![id, account], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                })
                .map_err(unavailable)?;
            let Some((status, claimed_at, not_before, doc)) = found else {
                return Ok(None);
            };
            let message: OutboxMessage = from_json(&doc)?;
            if !standing(&status, claimed_at, not_before)?.claimable(now, lease) {
                return Ok(None);
            }
            // An event waits for its account's earlier events: the same
            // rule as the sweep's, over the account's unfinished messages.
            if message.kind.in_order()
                && !outbox::due(unfinished(c, Some(&account))?, now, lease)
                    .iter()
                    .any(|m| m.id == id)
            {
                return Ok(None);
            }
            let doc: Option<String> = c
                .prepare_cached(
                    "UPDATE outbox SET status = ?3, claimed_at = ?4, attempts = attempts + 1
                     WHERE id = ?1 AND account_id = ?2
                     RETURNING doc",
                )
                .and_then(|mut stmt| {
                    returning(
                        &mut stmt,
                        params![id, account, OutboxState::Sending.as_str(), ms(now)],
                    )
                })
                .map_err(unavailable)?;
            doc.map(|d| from_json(&d)).transpose()
        })
        .await
    }

    async fn finish_outbox(
        &self,
        account_id: AccountId,
        id: &str,
        result: &SendResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        let result = result.clone();
        self.with_conn(move |c| {
            let account = account_id.to_string();
            let status: Option<String> = c
                .prepare_cached("SELECT status FROM outbox WHERE id = ?1 AND account_id = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![id, account], |r| r.get(0))
                        .optional()
                })
                .map_err(unavailable)?;
            let Some(next) = status
                .map(|s| outbox_state(&s))
                .transpose()?
                .and_then(|s| s.after(&result))
            else {
                return Ok(());
            };
            let sent_at = matches!(result, SendResult::Sent).then(|| ms(now));
            let error = result.error();
            let not_before = result.retry_at().map(ms);
            c.prepare_cached(
                "UPDATE outbox SET status = ?3, last_error = COALESCE(?4, last_error),
                    sent_at = COALESCE(?5, sent_at), not_before = ?6
                 WHERE id = ?1 AND account_id = ?2",
            )
            .map_err(unavailable)?
            .execute(params![
                id,
                account,
                next.as_str(),
                error,
                sent_at,
                not_before
            ])
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn pending_outbox(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.with_conn(move |c| {
            // Which of the unfinished messages are due is the domain's rule.
            let mut due = outbox::due(unfinished(c, None)?, now, lease);
            due.truncate(limit);
            Ok(due)
        })
        .await
    }

    async fn due_outbox_for_account(
        &self,
        account_id: AccountId,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.with_conn(move |c| {
            let account = account_id.to_string();
            Ok(outbox::due(unfinished(c, Some(&account))?, now, lease))
        })
        .await
    }

    async fn unsettled_outbox(
        &self,
        failed_since: DateTime<Utc>,
    ) -> Result<Vec<(Standing, OutboxMessage)>, StoreError> {
        self.with_conn(move |c| unsettled(c, failed_since)).await
    }

    async fn outbox_status(
        &self,
        account_id: AccountId,
        id: &str,
    ) -> Result<Option<(OutboxState, u32)>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |c| {
            let found: Option<(String, i64)> = c
                .prepare_cached(
                    "SELECT status, attempts FROM outbox WHERE id = ?1 AND account_id = ?2",
                )
                .map_err(unavailable)?
                .query_row([id, account_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(unavailable)?;
            found
                .map(|(status, attempts)| Ok((outbox_state(&status)?, attempts as u32)))
                .transpose()
        })
        .await
    }
}

/// A row's stored columns as the domain's claim rule reads them.
fn standing(
    status: &str,
    claimed_at: Option<i64>,
    not_before: Option<i64>,
) -> Result<Standing, StoreError> {
    let at = |ms: Option<i64>| ms.and_then(DateTime::from_timestamp_millis);
    Ok(Standing {
        state: outbox_state(status)?,
        claimed_at: at(claimed_at),
        not_before: at(not_before),
    })
}

/// Every unfinished message (of one account, or all), in delivery order:
/// what `outbox::due` chooses from.
fn unfinished(
    c: &Connection,
    account: Option<&str>,
) -> Result<Vec<(Standing, OutboxMessage)>, StoreError> {
    // Two statements, so one account's read uses `outbox_by_account`.
    let mut stmt = c
        .prepare_cached(match account {
            Some(_) => {
                "SELECT status, claimed_at, not_before, doc FROM outbox
                 WHERE account_id = ?3 AND status IN (?1, ?2) ORDER BY created_at, id"
            }
            None => {
                "SELECT status, claimed_at, not_before, doc FROM outbox
                 WHERE status IN (?1, ?2) AND ?3 IS NULL ORDER BY created_at, id"
            }
        })
        .map_err(unavailable)?;
    let pending = OutboxState::Pending.as_str();
    let sending = OutboxState::Sending.as_str();
    standing_rows(&mut stmt, params![pending, sending, account])
}

/// Unfinished messages, and those given up on written at or after
/// `failed_since`, oldest first: what the billing health reads.
fn unsettled(
    c: &Connection,
    failed_since: DateTime<Utc>,
) -> Result<Vec<(Standing, OutboxMessage)>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT status, claimed_at, not_before, doc FROM outbox
             WHERE status IN (?1, ?2) OR (status = ?3 AND created_at >= ?4)
             ORDER BY created_at, id",
        )
        .map_err(unavailable)?;
    let pending = OutboxState::Pending.as_str();
    let sending = OutboxState::Sending.as_str();
    let failed = OutboxState::Failed.as_str();
    standing_rows(
        &mut stmt,
        params![pending, sending, failed, ms(failed_since)],
    )
}

/// Rows of (status, claimed_at, not_before, doc) as the domain reads them.
fn standing_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<(Standing, OutboxMessage)>, StoreError> {
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(unavailable)?;
    rows.map(|row| {
        let (status, claimed_at, not_before, doc) = row.map_err(unavailable)?;
        Ok((standing(&status, claimed_at, not_before)?, from_json(&doc)?))
    })
    .collect()
}

fn outbox_state(status: &str) -> Result<OutboxState, StoreError> {
    status.parse().map_err(|e| StoreError::corrupt(Box::new(e)))
}

fn window_start(key: &UsageKey) -> i64 {
    key.window.map_or(GAUGE_WINDOW, |w| ms(w.start))
}

fn read_usage(c: &Connection, account_id: &str, key: &UsageKey) -> Result<u64, StoreError> {
    let q: Option<i64> = c
        .prepare_cached(
            "SELECT quantity FROM usage_records WHERE account_id = ?1 AND metric = ?2 AND window_start = ?3",
        )
        .map_err(unavailable)?
        .query_row(params![account_id, key.metric.as_str(), window_start(key)], |r| r.get(0))
        .optional()
        .map_err(unavailable)?;
    Ok(q.unwrap_or(0).max(0) as u64)
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn increment_usage(&self, inc: &UsageIncrement) -> Result<UsageOutcome, StoreError> {
        let inc = inc.clone();
        self.with_conn(move |c| {
            let account = inc.account_id.to_string();
            let key = inc.key;
            let denied = |c: &Connection| Ok(UsageOutcome::Denied { total: read_usage(c, &account, &key)? });
            if inc.exceeds_limit_alone() {
                return denied(c);
            }
            // Reads and writes in one transaction on the one connection:
            // nothing interleaves, and live holds count as quota.
            let total: Option<i64> = if inc.amount >= 0 {
                quota::increment(c, &inc)?
            } else {
                c.prepare_cached(
                    "UPDATE usage_records SET quantity = quantity + ?4, updated_at = ?5
                     WHERE account_id = ?1 AND metric = ?2 AND window_start = ?3 AND quantity + ?4 >= 0
                     RETURNING quantity",
                )
                .and_then(|mut stmt| {
                    returning(
                        &mut stmt,
                        params![account, key.metric.as_str(), window_start(&key), inc.amount, ms(inc.at)],
                    )
                })
                .map_err(unavailable)?
            };
            match total {
                Some(t) => Ok(UsageOutcome::Admitted { total: t as u64 }),
                None => denied(c),
            }
        })
        .await
    }

    async fn usage(
        &self,
        account_id: AccountId,
        keys: &[UsageKey],
    ) -> Result<Vec<u64>, StoreError> {
        let keys = keys.to_vec();
        self.with_conn(move |c| {
            let account = account_id.to_string();
            keys.iter().map(|k| read_usage(c, &account, k)).collect()
        })
        .await
    }

    async fn record_operation(&self, op: &UsageOperation) -> Result<OperationOutcome, StoreError> {
        let op = op.clone();
        self.with_conn(move |c| quota::record_operation(c, &op))
            .await
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome, StoreError> {
        let req = req.clone();
        self.with_conn(move |c| quota::reserve(c, &req)).await
    }

    async fn reservation(
        &self,
        account_id: AccountId,
        id: OperationId,
    ) -> Result<Option<Reservation>, StoreError> {
        self.with_conn(move |c| quota::reservation(c, account_id, id))
            .await
    }

    async fn close_reservation(
        &self,
        account_id: AccountId,
        id: OperationId,
        closing: Closing,
        now: DateTime<Utc>,
    ) -> Result<CloseOutcome, StoreError> {
        self.with_conn(move |c| quota::close_reservation(c, account_id, id, closing, now))
            .await
    }

    async fn set_gauge(&self, obs: &GaugeObservation) -> Result<GaugeOutcome, StoreError> {
        let obs = *obs;
        self.with_conn(move |c| quota::set_gauge(c, &obs)).await
    }

    async fn take_lease(&self, req: &LeaseRequest) -> Result<LeaseOutcome, StoreError> {
        let req = req.clone();
        self.with_conn(move |c| quota::take_lease(c, &req)).await
    }

    async fn return_lease(
        &self,
        account_id: AccountId,
        key: &UsageKey,
        ret: &LeaseReturn,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (key, ret) = (*key, *ret);
        self.with_conn(move |c| quota::return_lease(c, account_id, &key, &ret, now))
            .await
    }

    async fn levels(
        &self,
        account_id: AccountId,
        keys: &[UsageKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<Level>, StoreError> {
        let keys = keys.to_vec();
        self.with_conn(move |c| quota::levels(c, account_id, &keys, now))
            .await
    }
}

fn docs_for_account<T: DeserializeOwned>(
    c: &Connection,
    table: &'static str,
    account_id: AccountId,
    now: DateTime<Utc>,
) -> Result<Vec<T>, StoreError> {
    let sql = format!(
        "SELECT doc FROM {table} WHERE account_id = ?1 AND expires_at > ?2 ORDER BY created_at DESC, id"
    );
    let mut stmt = c.prepare_cached(&sql).map_err(unavailable)?;
    let rows = stmt
        .query_map(params![account_id.to_string(), ms(now)], |r| {
            r.get::<_, String>(0)
        })
        .map_err(unavailable)?;
    rows.map(|doc| from_json(&doc.map_err(unavailable)?))
        .collect()
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn record_payment(&self, payment: &Payment) -> Result<(), StoreError> {
        let doc = to_json(payment)?;
        let p = payment.clone();
        self.with_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO payments (id, account_id, created_at, expires_at, doc) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO NOTHING",
            )
            .map_err(unavailable)?
            .execute(params![p.id, p.account_id.to_string(), ms(p.created_at), ms(p.expires_at()), doc])
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn payments(
        &self,
        account_id: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Payment>, StoreError> {
        self.with_conn(move |c| docs_for_account(c, "payments", account_id, now))
            .await
    }

    async fn upsert_invoice(&self, invoice: &Invoice) -> Result<(), StoreError> {
        let doc = to_json(invoice)?;
        let i = invoice.clone();
        self.with_conn(move |c| {
            // An invoice never moves to another account, whatever a caller sends.
            let changed = c
                .prepare_cached(
                    "INSERT INTO invoices (id, account_id, created_at, expires_at, doc) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, created_at = excluded.created_at,
                        expires_at = excluded.expires_at
                     WHERE invoices.account_id = excluded.account_id",
                )
                .map_err(unavailable)?
                .execute(params![i.id, i.account_id.to_string(), ms(i.created_at), ms(i.expires_at()), doc])
                .map_err(unavailable)?;
            if changed == 0 {
                return Err(StoreError::Conflict(Uniqueness::Invoice));
            }
            Ok(())
        })
        .await
    }

    async fn invoices(
        &self,
        account_id: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invoice>, StoreError> {
        self.with_conn(move |c| docs_for_account(c, "invoices", account_id, now))
            .await
    }
}

#[async_trait]
impl WebhookLog for SqliteStore {
    async fn claim_event(&self, event_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = event_id.to_owned();
        let expires = now + Duration::days(WEBHOOK_EVENT_RETENTION_DAYS);
        self.with_conn(move |c| {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO processed_webhook_events (event_id, processed_at, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (event_id) DO NOTHING",
                )
                .map_err(unavailable)?
                .execute(params![id, ms(now), ms(expires)])
                .map_err(unavailable)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn event_seen(&self, event_id: &str) -> Result<bool, StoreError> {
        let id = event_id.to_owned();
        self.with_conn(move |c| {
            c.prepare_cached("SELECT 1 FROM processed_webhook_events WHERE event_id = ?1")
                .map_err(unavailable)?
                .query_row([id], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
                .map_err(unavailable)
        })
        .await
    }
}

fn parse_account_id(id: &str) -> Result<AccountId, StoreError> {
    uuid::Uuid::parse_str(id)
        .map(AccountId)
        .map_err(StoreError::corrupt)
}

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, i64, i64, i64, i64)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn summary(row: (String, i64, i64, i64, i64, i64)) -> Result<MonthlySummary, StoreError> {
    let (account, start, end, api_calls, documents, exports) = row;
    let at = |t: i64| {
        Utc.timestamp_millis_opt(t)
            .single()
            .ok_or_else(|| StoreError::corrupt(format!("summary time {t}")))
    };
    Ok(MonthlySummary {
        account_id: parse_account_id(&account)?,
        month: Window {
            start: at(start)?,
            end: at(end)?,
        },
        api_calls: api_calls.max(0) as u64,
        documents: documents.max(0) as u64,
        exports: exports.max(0) as u64,
    })
}

#[async_trait]
impl Rollups for SqliteStore {
    async fn rollup_cursor(&self) -> Result<Option<NaiveDate>, StoreError> {
        self.with_conn(|c| {
            let day: Option<String> = c
                .query_row(
                    "SELECT rolled_day FROM rollup_state WHERE id = 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            day.map(|d| {
                d.parse()
                    .map_err(|e| StoreError::corrupt(format!("rollup day {d}: {e}")))
            })
            .transpose()
        })
        .await
    }

    async fn set_rollup_cursor(&self, day: NaiveDate) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO rollup_state (id, rolled_day) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET rolled_day = excluded.rolled_day",
                [day.to_string()],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn roll_up_day(
        &self,
        day: Window,
        month: Window,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<Vec<MonthlySummary>, StoreError> {
        let after = after.map(|u| u.to_string()).unwrap_or_default();
        self.with_conn(move |c| {
            // The accounts whose counters of the day's month were last
            // written that day. One written again later is rolled up on
            // that later day, from the same counters, so each month's last
            // state is rolled up.
            let accounts: Vec<String> = c
                .prepare_cached(
                    "SELECT DISTINCT account_id FROM usage_records
                     WHERE updated_at >= ?1 AND updated_at < ?2
                       AND window_start >= ?3 AND window_start < ?4 AND account_id > ?5
                     ORDER BY account_id LIMIT ?6",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(
                        params![
                            ms(day.start),
                            ms(day.end),
                            ms(month.start),
                            ms(month.end),
                            after,
                            limit as i64
                        ],
                        |r| r.get(0),
                    )?
                    .collect()
                })
                .map_err(unavailable)?;
            let mut counters = c
                .prepare_cached(
                    "SELECT metric, quantity FROM usage_records
                     WHERE account_id = ?1 AND window_start >= ?2 AND window_start < ?3",
                )
                .map_err(unavailable)?;
            let mut upsert = c
                .prepare_cached(
                    "INSERT INTO usage_summaries (account_id, month_start, month_end, api_calls, documents, exports, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (account_id, month_start) DO UPDATE SET
                        api_calls = excluded.api_calls, documents = excluded.documents,
                        exports = excluded.exports, updated_at = excluded.updated_at",
                )
                .map_err(unavailable)?;
            let mut out = Vec::with_capacity(accounts.len());
            for account in accounts {
                let account_id = parse_account_id(&account)?;
                let rows: Vec<(String, rusqlite::types::Value)> = counters
                    .query_map(params![account, ms(month.start), ms(month.end)], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .and_then(Iterator::collect)
                    .map_err(unavailable)?;
                // One unreadable record (a quantity that is not an integer)
                // is logged and left out; it must not stop everyone's rollup.
                let counters = rows.into_iter().filter_map(|(metric, quantity)| {
                    let rusqlite::types::Value::Integer(quantity) = quantity else {
                        tracing::error!(account_id = %account, metric, ?quantity, "usage record skipped by the rollup: its quantity is not an integer");
                        return None;
                    };
                    Some((metric.parse().ok()?, quantity))
                });
                let summary = MonthlySummary::from_counters(account_id, month, counters);
                let stored = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                upsert
                    .execute(params![
                        account,
                        ms(month.start),
                        ms(month.end),
                        stored(summary.api_calls),
                        stored(summary.documents),
                        stored(summary.exports),
                        ms(Utc::now())
                    ])
                    .map_err(unavailable)?;
                out.push(summary);
            }
            Ok(out)
        })
        .await
    }

    async fn monthly_summary(
        &self,
        account_id: AccountId,
        month: Window,
    ) -> Result<Option<MonthlySummary>, StoreError> {
        self.with_conn(move |c| {
            c.prepare_cached(
                "SELECT account_id, month_start, month_end, api_calls, documents, exports
                 FROM usage_summaries WHERE account_id = ?1 AND month_start = ?2",
            )
            .map_err(unavailable)?
            .query_row(
                params![account_id.to_string(), ms(month.start)],
                summary_row,
            )
            .optional()
            .map_err(unavailable)?
            .map(summary)
            .transpose()
        })
        .await
    }
}

#[async_trait]
impl ServiceKeyStore for SqliteStore {
    async fn add_service_key(&self, key: &ServiceKey) -> Result<(), StoreError> {
        self.keys.add_service_key(key).await
    }

    async fn service_key(&self, id: uuid::Uuid) -> Result<Option<ServiceKey>, StoreError> {
        self.keys.service_key(id).await
    }

    async fn service_keys(&self) -> Result<Vec<ServiceKey>, StoreError> {
        self.keys.service_keys().await
    }

    async fn revoke_service_key(
        &self,
        id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.keys.revoke_service_key(id, at).await
    }
}

#[async_trait]
impl Retention for SqliteStore {
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let mut purged = 0;
            for table in [
                "payments",
                "invoices",
                "invitations",
                "usage_records",
                "usage_operations",
                "processed_webhook_events",
                "audit_log",
            ] {
                purged += tx
                    .execute(
                        &format!(
                            "DELETE FROM {table} WHERE expires_at IS NOT NULL AND expires_at <= ?1"
                        ),
                        [ms(now)],
                    )
                    .map_err(unavailable)? as u64;
            }
            // Finished emails go after their retention, as their TTL does on Cosmos DB.
            let finished_before =
                now - Duration::days(crate::domain::outbox::FINISHED_RETENTION_DAYS);
            purged += tx
                .execute(
                    "DELETE FROM outbox WHERE status IN (?1, ?2) AND created_at <= ?3",
                    params![
                        OutboxState::Sent.as_str(),
                        OutboxState::Failed.as_str(),
                        ms(finished_before)
                    ],
                )
                .map_err(unavailable)? as u64;
            tx.commit().map_err(unavailable)?;
            Ok(purged)
        })
        .await
    }
}

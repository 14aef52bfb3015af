//! Named usage operations, reservations and gauge observations: each is
//! one transaction that reads the counter, its live holds and the
//! operation's record, applies the domain's rule and writes both, so a
//! retry finds the record and counts nothing.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{from_json, ms, read_usage, to_json, unavailable, window_start};
use crate::domain::account::AccountId;
use crate::domain::lease::{grant, settle, LeaseOutcome, LeaseRequest, LeaseReturn};
use crate::domain::ports::StoreError;
use crate::domain::quota::{
    fits, CloseDecision, CloseOutcome, Closing, Fingerprint, GaugeObservation, GaugeOutcome, Level,
    OperationId, OperationKind, OperationOutcome, Reservation, ReservationState, ReserveOutcome,
    ReserveRequest, UsageOperation, MAX_LIVE_HOLDS,
};
use crate::domain::usage::{UsageIncrement, UsageKey, UsageOutcome};

const HELD: &str = "held";

/// The quota live reservations hold on one counter at `now`, and how many.
fn held(
    c: &Connection,
    account: &str,
    key: &UsageKey,
    now: DateTime<Utc>,
) -> Result<(i64, usize), StoreError> {
    c.prepare_cached(
        "SELECT COALESCE(SUM(quantity), 0), COUNT(*) FROM usage_operations
         WHERE account_id = ?1 AND metric = ?2 AND window_start = ?3 AND state = 'held' AND hold_until > ?4",
    )
    .map_err(unavailable)?
    .query_row(params![account, key.metric.as_str(), window_start(key), ms(now)], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as usize))
    })
    .map_err(unavailable)
}

/// An operation recorded before under this id: its kind, fingerprint, the
/// total it reported and (reservations) the reservation itself.
struct Recorded {
    kind: String,
    fingerprint: String,
    total: Option<i64>,
    doc: Option<String>,
}

fn recorded(
    c: &Connection,
    account: &str,
    id: OperationId,
) -> Result<Option<Recorded>, StoreError> {
    c.prepare_cached(
        "SELECT kind, fingerprint, total, doc FROM usage_operations WHERE account_id = ?1 AND id = ?2",
    )
    .map_err(unavailable)?
    .query_row(params![account, id.to_string()], |r| {
        Ok(Recorded {
            kind: r.get(0)?,
            fingerprint: r.get(1)?,
            total: r.get(2)?,
            doc: r.get(3)?,
        })
    })
    .optional()
    .map_err(unavailable)
}

fn same_request(rec: &Recorded, kind: OperationKind, fingerprint: &Fingerprint) -> bool {
    rec.kind == kind.as_str() && rec.fingerprint == fingerprint.0
}

/// Adds `amount` to a counter (creating it), refusing an overflow.
fn add(
    tx: &Transaction<'_>,
    account: &str,
    key: &UsageKey,
    amount: i64,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO usage_records (account_id, metric, window_start, window_end, quantity, expires_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (account_id, metric, window_start) DO UPDATE
            SET quantity = quantity + ?8, updated_at = excluded.updated_at
            WHERE usage_records.quantity <= 9223372036854775807 - ?8
         RETURNING quantity",
    )
    .and_then(|mut stmt| {
        super::returning(
            &mut stmt,
            params![
                account,
                key.metric.as_str(),
                window_start(key),
                key.window.map(|w| ms(w.end)),
                // The new row's CHECK (quantity >= 0) is tested before the
                // conflict turns the insert into an update: a decrease
                // (a credit) inserts zero and subtracts in the update.
                amount.max(0),
                key.expires_at().map(ms),
                ms(at),
                amount
            ],
        )
    })
    .map_err(unavailable)?
    .ok_or_else(|| StoreError::corrupt(format!("{} would pass the largest count", key.metric.as_str())))
}

/// An unnamed increase (the counters' fixtures and benchmarks): admitted
/// if used + held + amount fits, as a named one is. The new total, or
/// `None` if refused.
pub(super) fn increment(
    c: &mut Connection,
    inc: &UsageIncrement,
) -> Result<Option<i64>, StoreError> {
    let account = inc.account_id.to_string();
    let tx = c.transaction().map_err(unavailable)?;
    let used = read_usage(&tx, &account, &inc.key)? as i64;
    let (held, _) = held(&tx, &account, &inc.key, inc.at)?;
    if !fits(used, held, inc.amount, inc.limit) {
        return Ok(None);
    }
    let total = add(&tx, &account, &inc.key, inc.amount, inc.at)?;
    tx.commit().map_err(unavailable)?;
    Ok(Some(total))
}

pub(super) fn record_operation(
    c: &mut Connection,
    op: &UsageOperation,
) -> Result<OperationOutcome, StoreError> {
    let account = op.account_id.to_string();
    let tx = c.transaction().map_err(unavailable)?;
    if let Some(rec) = recorded(&tx, &account, op.id)? {
        return Ok(
            match (
                same_request(&rec, OperationKind::Usage, &op.fingerprint),
                rec.total,
            ) {
                (true, Some(total)) => OperationOutcome::Replayed {
                    total: total.max(0) as u64,
                },
                _ => OperationOutcome::KeyReused,
            },
        );
    }
    let used = read_usage(&tx, &account, &op.key)? as i64;
    let (held, _) = held(&tx, &account, &op.key, op.at)?;
    if !fits(used, held, op.amount, op.limit) {
        return Ok(OperationOutcome::Decided(
            UsageOutcome::Denied {
                total: used.saturating_add(held).max(0) as u64,
            },
            held.max(0) as u64,
        ));
    }
    let total = add(&tx, &account, &op.key, op.amount, op.at)?;
    tx.prepare_cached(
        "INSERT INTO usage_operations (account_id, id, kind, fingerprint, metric, window_start, quantity, total, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut s| {
        s.execute(params![
            account,
            op.id.to_string(),
            OperationKind::Usage.as_str(),
            op.fingerprint.0,
            op.key.metric.as_str(),
            window_start(&op.key),
            op.amount,
            total,
            ms(op.at),
            ms(op.keep_until())
        ])
    })
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)?;
    Ok(OperationOutcome::Decided(
        UsageOutcome::Admitted {
            total: total as u64,
        },
        held.max(0) as u64,
    ))
}

fn write_reservation(
    tx: &Transaction<'_>,
    r: &Reservation,
    insert: bool,
) -> Result<(), StoreError> {
    let state = match r.state {
        ReservationState::Held => Some(HELD),
        _ => None,
    };
    let doc = to_json(r)?;
    let result = if insert {
        tx.prepare_cached(
            "INSERT INTO usage_operations (account_id, id, kind, fingerprint, metric, window_start, quantity, state, hold_until, created_at, expires_at, doc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .and_then(|mut s| {
            s.execute(params![
                r.account_id.to_string(),
                r.id.to_string(),
                OperationKind::Reservation.as_str(),
                r.fingerprint.0,
                r.metric.as_str(),
                window_start(&r.key()),
                r.quantity,
                state,
                ms(r.expires_at),
                ms(r.created_at),
                ms(r.keep_until()),
                doc
            ])
        })
    } else {
        tx.prepare_cached(
            "UPDATE usage_operations SET state = ?3, doc = ?4 WHERE account_id = ?1 AND id = ?2",
        )
        .and_then(|mut s| {
            s.execute(params![
                r.account_id.to_string(),
                r.id.to_string(),
                state,
                doc
            ])
        })
    };
    result.map(drop).map_err(unavailable)
}

pub(super) fn reserve(
    c: &mut Connection,
    req: &ReserveRequest,
) -> Result<ReserveOutcome, StoreError> {
    let r = &req.reservation;
    let account = r.account_id.to_string();
    let key = r.key();
    let tx = c.transaction().map_err(unavailable)?;
    if let Some(rec) = recorded(&tx, &account, r.id)? {
        return Ok(
            match (
                same_request(&rec, OperationKind::Reservation, &r.fingerprint),
                rec.doc,
            ) {
                (true, Some(doc)) => ReserveOutcome::Replayed(from_json(&doc)?),
                _ => ReserveOutcome::KeyReused,
            },
        );
    }
    let used = read_usage(&tx, &account, &key)? as i64;
    let (held, live) = held(&tx, &account, &key, req.at)?;
    let level = |held: i64| (used.max(0) as u64, held.max(0) as u64);
    if live >= MAX_LIVE_HOLDS || !fits(used, held, r.quantity, req.limit) {
        let (used, held) = level(held);
        return Ok(ReserveOutcome::Denied { used, held });
    }
    write_reservation(&tx, r, true)?;
    tx.commit().map_err(unavailable)?;
    let (used, held) = level(held + r.quantity);
    Ok(ReserveOutcome::Held { used, held })
}

fn find_reservation(
    c: &Connection,
    account: &str,
    id: OperationId,
) -> Result<Option<Reservation>, StoreError> {
    match recorded(c, account, id)? {
        Some(Recorded {
            kind,
            doc: Some(doc),
            ..
        }) if kind == OperationKind::Reservation.as_str() => from_json(&doc).map(Some),
        _ => Ok(None),
    }
}

pub(super) fn reservation(
    c: &Connection,
    account_id: AccountId,
    id: OperationId,
) -> Result<Option<Reservation>, StoreError> {
    find_reservation(c, &account_id.to_string(), id)
}

pub(super) fn close_reservation(
    c: &mut Connection,
    account_id: AccountId,
    id: OperationId,
    closing: Closing,
    now: DateTime<Utc>,
) -> Result<CloseOutcome, StoreError> {
    let account = account_id.to_string();
    let tx = c.transaction().map_err(unavailable)?;
    let Some(mut r) = find_reservation(&tx, &account, id)? else {
        return Ok(CloseOutcome::NotFound);
    };
    match r.close(closing, now) {
        Err(refusal) => Ok(CloseOutcome::Refused(refusal)),
        Ok(CloseDecision::Replay) => Ok(CloseOutcome::Closed(r, None)),
        Ok(CloseDecision::Apply { state, records }) => {
            let total = if records > 0 {
                Some(add(&tx, &account, &r.key(), records, now)?.max(0) as u64)
            } else {
                None
            };
            r.state = state;
            write_reservation(&tx, &r, false)?;
            tx.commit().map_err(unavailable)?;
            Ok(CloseOutcome::Closed(r, total))
        }
    }
}

pub(super) fn set_gauge(
    c: &mut Connection,
    obs: &GaugeObservation,
) -> Result<GaugeOutcome, StoreError> {
    let account = obs.account_id.to_string();
    let tx = c.transaction().map_err(unavailable)?;
    let stored: Option<(i64, Option<i64>)> = tx
        .prepare_cached(
            "SELECT quantity, observed_at FROM usage_records WHERE account_id = ?1 AND metric = ?2 AND window_start = ?3",
        )
        .map_err(unavailable)?
        .query_row(params![account, obs.key.metric.as_str(), window_start(&obs.key)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(unavailable)?;
    let stored_at = stored
        .and_then(|(_, at)| at)
        .map(super::from_ms)
        .transpose()?;
    if stored.is_some_and(|(value, _)| obs.repeats(value, stored_at)) {
        return Ok(GaugeOutcome::Set);
    }
    if let (Some((value, _)), false) = (stored, obs.replaces(stored_at)) {
        return Ok(GaugeOutcome::Stale {
            value: value.max(0) as u64,
            observed_at: stored_at.expect("a stale observation has a stored time"),
        });
    }
    tx.prepare_cached(
        "INSERT INTO usage_records (account_id, metric, window_start, window_end, quantity, expires_at, updated_at, observed_at)
         VALUES (?1, ?2, ?3, NULL, ?4, NULL, ?5, ?6)
         ON CONFLICT (account_id, metric, window_start) DO UPDATE
            SET quantity = excluded.quantity, updated_at = excluded.updated_at, observed_at = excluded.observed_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            account,
            obs.key.metric.as_str(),
            window_start(&obs.key),
            obs.value,
            ms(obs.at),
            ms(obs.observed_at)
        ])
    })
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)?;
    Ok(GaugeOutcome::Set)
}

/// Settles a lease still held (`lease::settle`): its row stops holding and
/// what was admitted from it is added. `false` if it was not held.
fn settle_lease(
    tx: &Transaction<'_>,
    account: &str,
    key: &UsageKey,
    ret: &LeaseReturn,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let live = tx
        .prepare_cached(
            "UPDATE usage_operations SET state = NULL, total = ?3
             WHERE account_id = ?1 AND id = ?2 AND kind = 'lease' AND state = 'held' AND hold_until > ?4",
        )
        .and_then(|mut s| s.execute(params![account, ret.id.to_string(), ret.admitted, ms(now)]))
        .map_err(unavailable)?
        == 1;
    let records = settle(live, ret.admitted);
    if records > 0 {
        add(tx, account, key, records, now)?;
    }
    Ok(live)
}

pub(super) fn take_lease(
    c: &mut Connection,
    req: &LeaseRequest,
) -> Result<LeaseOutcome, StoreError> {
    let account = req.account_id.to_string();
    let tx = c.transaction().map_err(unavailable)?;
    if let Some(ret) = &req.returning {
        settle_lease(&tx, &account, &req.key, ret, req.at)?;
    }
    let used = read_usage(&tx, &account, &req.key)? as i64;
    let (held, count) = held(&tx, &account, &req.key, req.at)?;
    let size = match count < MAX_LIVE_HOLDS {
        true => grant(used, held, req.limit, req.wanted, req.target),
        false => 0,
    };
    if size == 0 {
        tx.commit().map_err(unavailable)?;
        return Ok(LeaseOutcome::Denied {
            used: used.max(0) as u64,
            held: held.max(0) as u64,
        });
    }
    let lease = req.lease(size);
    tx.prepare_cached(
        "INSERT INTO usage_operations (account_id, id, kind, fingerprint, metric, window_start, quantity, state, hold_until, created_at, expires_at)
         VALUES (?1, ?2, 'lease', '', ?3, ?4, ?5, 'held', ?6, ?7, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            account,
            lease.id.to_string(),
            req.key.metric.as_str(),
            window_start(&req.key),
            size,
            ms(lease.expires_at),
            ms(req.at)
        ])
    })
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)?;
    Ok(LeaseOutcome::Granted {
        lease,
        used: used.max(0) as u64,
        held: held.saturating_add(size).max(0) as u64,
    })
}

pub(super) fn return_lease(
    c: &mut Connection,
    account_id: AccountId,
    key: &UsageKey,
    ret: &LeaseReturn,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let tx = c.transaction().map_err(unavailable)?;
    let live = settle_lease(&tx, &account_id.to_string(), key, ret, now)?;
    tx.commit().map_err(unavailable)?;
    Ok(live)
}

pub(super) fn levels(
    c: &Connection,
    account_id: AccountId,
    keys: &[UsageKey],
    now: DateTime<Utc>,
) -> Result<Vec<Level>, StoreError> {
    let account = account_id.to_string();
    keys.iter()
        .map(|key| {
            let used = read_usage(c, &account, key)?;
            let (held, _) = held(c, &account, key, now)?;
            Ok(Level {
                used,
                held: held.max(0) as u64,
            })
        })
        .collect()
}

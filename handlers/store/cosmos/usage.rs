//! Usage counters, named operations, reservations and gauges, all in the
//! account's partition of `usage_records`.
//!
//! Named operations (`record_operation`, `reserve`, `close_reservation`)
//! and gauges read the counter (and the operation's record, in parallel)
//! and write it back If-Match its etag (or create it), in ONE
//! transactional batch with the operation's record, so the record and its
//! effect land together or not at all: a retry, a lost answer or a crash
//! finds the record and counts nothing. A batch that lost a race (412 on
//! the counter, 409 on a create) re-reads and decides again. No patch, no
//! compensation: a write counts only with its record. The counter carries its live reservations' holds, so the limit
//! check (`quota::fits` of used + held) sees one document.
//!
//! `increment_usage` (the unnamed increase of fixtures and benchmarks) is
//! a named operation under a fresh id: the same one batch, so it is
//! exactly once too, and nothing here ever patches or compensates.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use azure_data_cosmos::options::{BatchReplaceOptions, Precondition};
use azure_data_cosmos::TransactionalBatch;
use chrono::{DateTime, Utc};

use super::docs::{self, ActiveDoc, CounterDoc, HoldDoc, OperationDoc};
use super::{contended, pause, unavailable, CosmosStore, MAX_ROUNDS};
use crate::domain::account::AccountId;
use crate::domain::lease::{grant, settle, LeaseOutcome, LeaseRequest, LeaseReturn};
use crate::domain::ports::{Etag, StoreError, UsageStore};
use crate::domain::quota::{
    fits, held_at, CloseDecision, CloseOutcome, Closing, Fingerprint, GaugeObservation,
    GaugeOutcome, Hold, Level, OperationId, OperationKind, OperationOutcome, Reservation,
    ReserveOutcome, ReserveRequest, UsageOperation, MAX_LIVE_HOLDS,
};
use crate::domain::usage::{
    Period, UsageIncrement, UsageKey, UsageOutcome, Window, USAGE_RETENTION_DAYS,
};

/// A counter's id within its account's partition: metric and window start.
pub(super) fn counter_id(key: &UsageKey) -> String {
    match key.window {
        Some(w) => format!("{}:{}", key.metric.as_str(), docs::ms(w.start)),
        None => format!("{}:level", key.metric.as_str()),
    }
}

fn new_counter(account: AccountId, key: &UsageKey, quantity: i64, at: DateTime<Utc>) -> CounterDoc {
    CounterDoc {
        id: counter_id(key),
        account_id: docs::pk(account),
        kind: docs::USAGE.into(),
        metric: key.metric.as_str().into(),
        window_start: key.window.map(|w| docs::ms(w.start)),
        window_end: key.window.map(|w| docs::ms(w.end)),
        quantity,
        expires_at: key.expires_at().map(docs::ms),
        ttl: counter_ttl(key, at),
        holds: Vec::new(),
        observed_at: None,
        indexed_day: None,
    }
}

/// Cosmos counts `ttl` from an item's last write: each write sets it anew.
fn counter_ttl(key: &UsageKey, at: DateTime<Utc>) -> i64 {
    key.expires_at().map_or(-1, |e| docs::ttl_between(at, e))
}

/// A counter as read for a conditional write: the document (a new, empty
/// one if there was none) and its etag (`None`: create it).
struct Counter {
    key: UsageKey,
    doc: CounterDoc,
    etag: Option<Etag>,
}

/// The counters and reservation records this store wrote last, as
/// written, with their etags: a write that follows one of its own (a
/// commit after its reserve, the next reservation) goes straight to its
/// conditional batch, and if another writer came between, the If-Match
/// fails and it reads afresh. Only a write checks what is remembered: an
/// answer that writes nothing (a refusal, a replay) is always read afresh.
#[derive(Default)]
pub(super) struct Written {
    counters: Remembered<CounterDoc>,
    records: Remembered<OperationDoc>,
}

/// Documents by partition and id, as written, with their etags.
type Remembered<T> = Mutex<HashMap<(String, String), (T, Etag)>>;

/// The most documents remembered of each kind: past it, all are forgotten.
const MAX_WRITTEN: usize = 10_000;

fn recall<T: Clone>(map: &Remembered<T>, pk: &str, id: &str) -> Option<(T, Etag)> {
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.get(&(pk.to_owned(), id.to_owned())).cloned()
}

fn remember<T>(map: &Remembered<T>, pk: &str, id: String, doc: T, etag: Option<&Option<String>>) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    let key = (pk.to_owned(), id);
    match etag {
        Some(Some(etag)) => {
            if map.len() >= MAX_WRITTEN {
                map.clear();
            }
            map.insert(key, (doc, Etag(etag.clone())));
        }
        _ => {
            map.remove(&key);
        }
    }
}

impl Written {
    /// What a batch of the counter (first) and a record (second) wrote.
    fn wrote(
        &self,
        pk: &str,
        counter: CounterDoc,
        record: Option<OperationDoc>,
        etags: &[Option<String>],
    ) {
        remember(
            &self.counters,
            pk,
            counter.id.clone(),
            counter,
            etags.first(),
        );
        if let Some(record) = record {
            remember(&self.records, pk, record.id.clone(), record, etags.get(1));
        }
    }
}

impl Counter {
    /// The holds still live at `now`, as the domain sees them.
    fn live_holds(&self, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
        live(&self.doc, now)
    }

    /// The document to write at `at`: with these holds (the expired ones
    /// pruned) and its `ttl` counted from now.
    fn with_holds(mut self, holds: &[Hold], at: DateTime<Utc>) -> Self {
        self.doc.holds = holds.iter().map(HoldDoc::new).collect();
        self.doc.ttl = counter_ttl(&self.key, at);
        self
    }
}

fn live(doc: &CounterDoc, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
    let mut out = Vec::with_capacity(doc.holds.len());
    for h in &doc.holds {
        let hold = h.hold()?;
        if hold.live_at(now) {
            out.push(hold);
        }
    }
    Ok(out)
}

fn level_of(doc: Option<&CounterDoc>, now: DateTime<Utc>) -> Result<Level, StoreError> {
    let Some(doc) = doc else {
        return Ok(Level::default());
    };
    Ok(Level {
        used: doc.quantity.max(0) as u64,
        held: held_at(&live(doc, now)?, now).max(0) as u64,
    })
}

/// The record of a usage operation.
fn usage_record(op: &UsageOperation, total: i64, writer: &str) -> OperationDoc {
    OperationDoc {
        id: docs::operation_id(op.id),
        account_id: docs::pk(op.account_id),
        kind: docs::OPERATION.into(),
        operation: OperationKind::Usage.as_str().into(),
        fingerprint: op.fingerprint.0.clone(),
        total: Some(total),
        reservation: None,
        writer: writer.into(),
        expires_at: docs::ms(op.keep_until()),
        ttl: docs::ttl_between(op.at, op.keep_until()),
    }
}

/// The document of a reservation, as written at `at`.
fn reservation_record(r: &Reservation, writer: &str, at: DateTime<Utc>) -> OperationDoc {
    OperationDoc {
        id: docs::operation_id(r.id),
        account_id: docs::pk(r.account_id),
        kind: docs::RESERVATION.into(),
        operation: OperationKind::Reservation.as_str().into(),
        fingerprint: r.fingerprint.0.clone(),
        total: None,
        reservation: Some(r.clone()),
        writer: writer.into(),
        expires_at: docs::ms(r.keep_until()),
        ttl: docs::ttl_between(at, r.keep_until()),
    }
}

fn same_request(rec: &OperationDoc, kind: OperationKind, fingerprint: &Fingerprint) -> bool {
    rec.operation == kind.as_str() && rec.fingerprint == fingerprint.0
}

fn if_match(etag: &Etag) -> Option<BatchReplaceOptions> {
    Some(BatchReplaceOptions::default().with_precondition(Precondition::if_match(etag.0.clone())))
}

/// The counter's write in a batch: replace If-Match what was read, or
/// create it if there was none; either fails if someone wrote it first.
fn write_counter(
    batch: TransactionalBatch,
    counter: Counter,
) -> Result<TransactionalBatch, StoreError> {
    match &counter.etag {
        Some(etag) => batch.replace_item(counter.doc.id.clone(), &counter.doc, if_match(etag)),
        None => batch.create_item(&counter.doc),
    }
    .map_err(StoreError::corrupt)
}

/// Settles a lease given back (`lease::settle`) on a counter's live holds
/// and its count. `false` if its hold is not there: it lapsed, or a write
/// whose answer was lost gave it back already.
fn settle_on(
    holds: &mut Vec<Hold>,
    used: &mut i64,
    ret: &LeaseReturn,
    key: &UsageKey,
) -> Result<bool, StoreError> {
    let live = holds.iter().any(|h| h.id == ret.id);
    holds.retain(|h| h.id != ret.id);
    *used = used
        .checked_add(settle(live, ret.admitted))
        .ok_or_else(|| {
            StoreError::corrupt(format!(
                "{} would pass the largest count",
                key.metric.as_str()
            ))
        })?;
    Ok(live)
}

fn refused(status: u16) -> StoreError {
    StoreError::unavailable(format!("batch refused: {status}"))
}

impl CosmosStore {
    /// Records the account in the rollup's index of the day of `at` before
    /// a counter is written that day (first, so a crash leaves an index
    /// entry with no usage, which rolls up as zeros, never usage the rollup
    /// cannot find). Gauges are not rolled up. The day it indexed, if any.
    async fn index_day(
        &self,
        account: AccountId,
        key: &UsageKey,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        if key.window.is_none() {
            return Ok(None);
        }
        let today = Window::containing(Period::Day, at);
        let day = today.start.date_naive();
        let expires = today.end + chrono::Duration::days(USAGE_RETENTION_DAYS);
        let active = ActiveDoc {
            id: docs::pk(account),
            account_id: docs::day_partition(day),
            kind: docs::ACTIVE.into(),
            expires_at: docs::ms(expires),
            ttl: docs::ttl_between(at, expires),
        };
        let created = self
            .call(|| {
                self.usage
                    .create_item(active.account_id.clone(), &active.id, &active, None)
            })
            .await;
        match created {
            Ok(_) => Ok(Some(docs::ms(today.start))),
            Err(e) if e.status().is_conflict() => Ok(Some(docs::ms(today.start))),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read_counter(
        &self,
        account: AccountId,
        key: &UsageKey,
    ) -> Result<Option<(CounterDoc, Etag)>, StoreError> {
        self.read_doc(&self.usage, &docs::pk(account), &counter_id(key))
            .await
    }

    /// The counter for a conditional write at `at` (a new one if absent).
    async fn counter(
        &self,
        account: AccountId,
        key: &UsageKey,
        at: DateTime<Utc>,
    ) -> Result<Counter, StoreError> {
        Ok(match self.read_counter(account, key).await? {
            Some((doc, etag)) => Counter {
                key: *key,
                doc,
                etag: Some(etag),
            },
            None => Counter {
                key: *key,
                doc: new_counter(account, key, 0, at),
                etag: None,
            },
        })
    }

    /// Adds the counter's write to `batch`; a counter written for the first
    /// time on a day is put in the rollup's day index first (once a day: the
    /// counter remembers the day). Batches start with it:
    /// it is the write that loses races, so a lost race fails on the first
    /// operation (Cosmos DB rolls a batch back whole anyway; the contract's
    /// REST server does not, and stops at the first failure).
    /// The batch, and the counter as it writes it.
    async fn with_counter(
        &self,
        batch: TransactionalBatch,
        account: AccountId,
        mut counter: Counter,
        at: DateTime<Utc>,
    ) -> Result<(TransactionalBatch, CounterDoc), StoreError> {
        let today = docs::ms(Window::containing(Period::Day, at).start);
        if counter.key.window.is_some() && counter.doc.indexed_day != Some(today) {
            counter.doc.indexed_day = self.index_day(account, &counter.key, at).await?;
        }
        let doc = counter.doc.clone();
        Ok((write_counter(batch, counter)?, doc))
    }

    /// The counter as this store last wrote it, else as read.
    async fn counter_remembered(
        &self,
        account: AccountId,
        key: &UsageKey,
        at: DateTime<Utc>,
    ) -> Result<Counter, StoreError> {
        match recall(&self.written.counters, &docs::pk(account), &counter_id(key)) {
            Some((doc, etag)) => Ok(Counter {
                key: *key,
                doc,
                etag: Some(etag),
            }),
            None => self.counter(account, key, at).await,
        }
    }

    /// Writes the counter alone (If-Match what was read): `Err` with the
    /// status of a lost race.
    async fn put_counter(
        &self,
        account: AccountId,
        counter: Counter,
        at: DateTime<Utc>,
    ) -> Result<Result<(), u16>, StoreError> {
        let batch = TransactionalBatch::new(docs::pk(account));
        let (batch, _) = self.with_counter(batch, account, counter, at).await?;
        Ok(match self.batch(&self.usage, batch).await? {
            Ok(_) => Ok(()),
            Err(404 | 409 | 412) => Err(412),
            Err(s) => return Err(refused(s)),
        })
    }

    async fn operation(
        &self,
        account: AccountId,
        id: OperationId,
    ) -> Result<Option<(OperationDoc, Etag)>, StoreError> {
        self.read_doc(&self.usage, &docs::pk(account), &docs::operation_id(id))
            .await
    }

    async fn total(&self, account: AccountId, key: &UsageKey) -> Result<u64, StoreError> {
        Ok(self
            .read_counter(account, key)
            .await?
            .map_or(0, |(d, _)| d.quantity.max(0) as u64))
    }
}

#[async_trait]
impl UsageStore for CosmosStore {
    async fn increment_usage(&self, inc: &UsageIncrement) -> Result<UsageOutcome, StoreError> {
        let op = UsageOperation {
            id: OperationId(uuid::Uuid::new_v4()),
            fingerprint: Fingerprint(format!("unnamed:{}", inc.amount)),
            account_id: inc.account_id,
            key: inc.key,
            amount: inc.amount,
            limit: inc.limit,
            at: inc.at,
        };
        match self.record_operation(&op).await? {
            OperationOutcome::Decided(outcome, _) => Ok(outcome),
            // A fresh id names no earlier write.
            OperationOutcome::Replayed { .. } | OperationOutcome::KeyReused => Err(
                StoreError::corrupt("a fresh operation id was already recorded"),
            ),
        }
    }

    async fn usage(
        &self,
        account_id: AccountId,
        keys: &[UsageKey],
    ) -> Result<Vec<u64>, StoreError> {
        // Point reads in parallel: one round trip of latency for the report.
        futures::future::try_join_all(keys.iter().map(|key| self.total(account_id, key))).await
    }

    async fn record_operation(&self, op: &UsageOperation) -> Result<OperationOutcome, StoreError> {
        // A record found in the way is answered as a replay, unless it is
        // ours (an attempt whose answer was lost): then as it was decided.
        let writer = uuid::Uuid::new_v4().to_string();
        let replay = |rec: &OperationDoc, held: u64| match (
            same_request(rec, OperationKind::Usage, &op.fingerprint),
            rec.total,
        ) {
            (true, Some(total)) if rec.writer == writer => OperationOutcome::Decided(
                UsageOutcome::Admitted {
                    total: total.max(0) as u64,
                },
                held,
            ),
            (true, Some(total)) => OperationOutcome::Replayed {
                total: total.max(0) as u64,
            },
            _ => OperationOutcome::KeyReused,
        };
        let pk = docs::pk(op.account_id);
        for round in 0..MAX_ROUNDS {
            let (counter, recorded) = futures::future::try_join(
                self.counter(op.account_id, &op.key, op.at),
                self.operation(op.account_id, op.id),
            )
            .await?;
            let holds = counter.live_holds(op.at)?;
            let held = held_at(&holds, op.at);
            if let Some((rec, _)) = recorded {
                return Ok(replay(&rec, held.max(0) as u64));
            }
            let used = counter.doc.quantity;
            if !fits(used, held, op.amount, op.limit) {
                return Ok(OperationOutcome::Decided(
                    UsageOutcome::Denied {
                        total: used.saturating_add(held).max(0) as u64,
                    },
                    held.max(0) as u64,
                ));
            }
            // `fits` checked the sum.
            let total = used + op.amount;
            let mut counter = counter.with_holds(&holds, op.at);
            counter.doc.quantity = total;
            let (batch, written) = self
                .with_counter(
                    TransactionalBatch::new(pk.clone()),
                    op.account_id,
                    counter,
                    op.at,
                )
                .await?;
            let batch = batch
                .create_item(usage_record(op, total, &writer))
                .map_err(StoreError::corrupt)?;
            match self.batch(&self.usage, batch).await? {
                Ok(etags) => {
                    self.written.wrote(&pk, written, None, &etags);
                    return Ok(OperationOutcome::Decided(
                        UsageOutcome::Admitted {
                            total: total as u64,
                        },
                        held.max(0) as u64,
                    ));
                }
                // The counter moved, or the record was written in between
                // (by a twin request, or by this one if its answer was lost).
                Err(404 | 409 | 412) => pause(round).await,
                Err(s) => return Err(refused(s)),
            }
        }
        Err(contended("record_operation"))
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome, StoreError> {
        let r = &req.reservation;
        let key = r.key();
        let writer = uuid::Uuid::new_v4().to_string();
        let pk = docs::pk(r.account_id);
        // What a successful write answers.
        let held_now = |used: i64, held: i64| ReserveOutcome::Held {
            used: used.max(0) as u64,
            held: held.max(0) as u64,
        };
        // The first round trusts the counter this store last wrote; a lost
        // race, and a refusal, read it afresh. The record is always looked
        // for first: a batch that found it in its way would be rolled back
        // by Cosmos DB, but not by every server that speaks its protocol.
        let mut fresh = false;
        // Set when a refusal only needs the counter read again: the record
        // was just looked for.
        let mut no_record = false;
        for round in 0..MAX_ROUNDS {
            let counter = async {
                match fresh {
                    true => self.counter(r.account_id, &key, req.at).await,
                    false => Ok(self.counter_remembered(r.account_id, &key, req.at).await?),
                }
            };
            let record = async {
                match std::mem::take(&mut no_record) {
                    true => Ok(None),
                    false => self.operation(r.account_id, r.id).await,
                }
            };
            let (counter, recorded) = futures::future::try_join(counter, record).await?;
            let mut holds = counter.live_holds(req.at)?;
            let used = counter.doc.quantity;
            let held = held_at(&holds, req.at);
            if let Some((rec, _)) = recorded {
                return Ok(match rec.reservation {
                    // Ours, whose answer was lost: the counter holds it now.
                    Some(_) if rec.writer == writer => held_now(used, held),
                    Some(stored)
                        if same_request(&rec, OperationKind::Reservation, &r.fingerprint) =>
                    {
                        ReserveOutcome::Replayed(stored)
                    }
                    _ => ReserveOutcome::KeyReused,
                });
            }
            if holds.len() >= MAX_LIVE_HOLDS || !fits(used, held, r.quantity, req.limit) {
                if !fresh {
                    (fresh, no_record) = (true, true);
                    continue;
                }
                return Ok(ReserveOutcome::Denied {
                    used: used.max(0) as u64,
                    held: held.max(0) as u64,
                });
            }
            holds.push(r.hold());
            let counter = counter.with_holds(&holds, req.at);
            let (batch, written) = self
                .with_counter(
                    TransactionalBatch::new(pk.clone()),
                    r.account_id,
                    counter,
                    req.at,
                )
                .await?;
            let record = reservation_record(r, &writer, req.at);
            let batch = batch.create_item(&record).map_err(StoreError::corrupt)?;
            match self.batch(&self.usage, batch).await? {
                Ok(etags) => {
                    self.written.wrote(&pk, written, Some(record), &etags);
                    return Ok(held_now(used, held + r.quantity));
                }
                Err(404 | 409 | 412) => {
                    fresh = true;
                    pause(round).await
                }
                Err(s) => return Err(refused(s)),
            }
        }
        Err(contended("reserve"))
    }

    async fn reservation(
        &self,
        account_id: AccountId,
        id: OperationId,
    ) -> Result<Option<Reservation>, StoreError> {
        Ok(self
            .operation(account_id, id)
            .await?
            .filter(|(rec, _)| rec.kind == docs::RESERVATION)
            .and_then(|(rec, _)| rec.reservation))
    }

    async fn close_reservation(
        &self,
        account_id: AccountId,
        id: OperationId,
        closing: Closing,
        now: DateTime<Utc>,
    ) -> Result<CloseOutcome, StoreError> {
        let pk = docs::pk(account_id);
        // The close is stamped with this call's writer and the total it
        // recorded: a repeat after a lost answer finds its own close and
        // answers with that total, so the thresholds it crossed are still
        // announced (a caller's retry, another writer, gets none).
        let writer = uuid::Uuid::new_v4().to_string();
        // As in `reserve`: the first round trusts what this store wrote
        // last (the reservation and its counter, right after the reserve),
        // so a commit is one batch; anything else reads afresh.
        let mut fresh = false;
        for round in 0..MAX_ROUNDS {
            let remembered = match fresh {
                false => recall(&self.written.records, &pk, &docs::operation_id(id)),
                true => None,
            };
            let from_memory = remembered.is_some();
            let found = match remembered {
                Some(found) => Some(found),
                None => self.operation(account_id, id).await?,
            };
            // Another account's reservation is in another partition: not found.
            let Some((mut rec, rec_etag)) = found else {
                return Ok(CloseOutcome::NotFound);
            };
            let Some(mut r) = rec
                .reservation
                .take()
                .filter(|_| rec.kind == docs::RESERVATION)
            else {
                return Ok(CloseOutcome::NotFound);
            };
            let decided = r.close(closing, now);
            if from_memory && !matches!(decided, Ok(CloseDecision::Apply { .. })) {
                fresh = true;
                continue;
            }
            let (state, records) = match decided {
                Err(refusal) => return Ok(CloseOutcome::Refused(refusal)),
                Ok(CloseDecision::Replay) if rec.writer == writer => {
                    let total = rec.total.map(|t| t.max(0) as u64);
                    return Ok(CloseOutcome::Closed(r, total));
                }
                Ok(CloseDecision::Replay) => return Ok(CloseOutcome::Closed(r, None)),
                Ok(CloseDecision::Apply { state, records }) => (state, records),
            };
            let key = r.key();
            let counter = match fresh {
                false => self.counter_remembered(account_id, &key, now).await?,
                true => self.counter(account_id, &key, now).await?,
            };
            let mut holds = counter.live_holds(now)?;
            holds.retain(|h| h.id != r.id);
            let mut counter = counter.with_holds(&holds, now);
            counter.doc.quantity = counter.doc.quantity.checked_add(records).ok_or_else(|| {
                StoreError::corrupt(format!(
                    "{} would pass the largest count",
                    key.metric.as_str()
                ))
            })?;
            let total = (records > 0).then_some(counter.doc.quantity.max(0) as u64);
            r.state = state;
            rec.reservation = Some(r.clone());
            rec.writer = writer.clone();
            rec.total = total.map(|t| t as i64);
            rec.ttl = docs::ttl_between(now, r.keep_until());
            let (batch, written) = self
                .with_counter(
                    TransactionalBatch::new(pk.clone()),
                    account_id,
                    counter,
                    now,
                )
                .await?;
            let batch = batch
                .replace_item(rec.id.clone(), &rec, if_match(&rec_etag))
                .map_err(StoreError::corrupt)?;
            match self.batch(&self.usage, batch).await? {
                Ok(etags) => {
                    self.written.wrote(&pk, written, Some(rec), &etags);
                    return Ok(CloseOutcome::Closed(r, total));
                }
                // Closed by someone else, or the counter moved: look again.
                Err(404 | 409 | 412) => {
                    fresh = true;
                    pause(round).await
                }
                Err(s) => return Err(refused(s)),
            }
        }
        Err(contended("close_reservation"))
    }

    async fn set_gauge(&self, obs: &GaugeObservation) -> Result<GaugeOutcome, StoreError> {
        for round in 0..MAX_ROUNDS {
            let counter = self.counter(obs.account_id, &obs.key, obs.at).await?;
            if counter.etag.is_some() {
                let stored = counter.doc.observed_at.map(docs::from_ms).transpose()?;
                if obs.repeats(counter.doc.quantity, stored) {
                    return Ok(GaugeOutcome::Set);
                }
                if let (false, Some(observed_at)) = (obs.replaces(stored), stored) {
                    return Ok(GaugeOutcome::Stale {
                        value: counter.doc.quantity.max(0) as u64,
                        observed_at,
                    });
                }
            }
            let holds = counter.live_holds(obs.at)?;
            let mut counter = counter.with_holds(&holds, obs.at);
            counter.doc.quantity = obs.value;
            counter.doc.observed_at = Some(docs::ms(obs.observed_at));
            match self.put_counter(obs.account_id, counter, obs.at).await? {
                Ok(()) => return Ok(GaugeOutcome::Set),
                Err(_) => pause(round).await,
            }
        }
        Err(contended("set_gauge"))
    }

    async fn take_lease(&self, req: &LeaseRequest) -> Result<LeaseOutcome, StoreError> {
        for round in 0..MAX_ROUNDS {
            let counter = self.counter(req.account_id, &req.key, req.at).await?;
            let mut holds = counter.live_holds(req.at)?;
            let mut used = counter.doc.quantity;
            let settled = match &req.returning {
                Some(ret) => settle_on(&mut holds, &mut used, ret, &req.key)?,
                None => false,
            };
            let held = held_at(&holds, req.at);
            let size = match holds.len() < MAX_LIVE_HOLDS {
                true => grant(used, held, req.limit, req.wanted, req.target),
                false => 0,
            };
            let lease = req.lease(size);
            let outcome = match size {
                0 => LeaseOutcome::Denied {
                    used: used.max(0) as u64,
                    held: held.max(0) as u64,
                },
                _ => LeaseOutcome::Granted {
                    lease,
                    used: used.max(0) as u64,
                    held: (held + size).max(0) as u64,
                },
            };
            if size == 0 && !settled {
                return Ok(outcome);
            }
            if size > 0 {
                holds.push(lease.hold());
            }
            let mut counter = counter.with_holds(&holds, req.at);
            counter.doc.quantity = used;
            match self.put_counter(req.account_id, counter, req.at).await? {
                Ok(()) => return Ok(outcome),
                Err(_) => pause(round).await,
            }
        }
        Err(contended("take_lease"))
    }

    async fn return_lease(
        &self,
        account_id: AccountId,
        key: &UsageKey,
        ret: &LeaseReturn,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        for round in 0..MAX_ROUNDS {
            let counter = self.counter(account_id, key, now).await?;
            let mut holds = counter.live_holds(now)?;
            let mut used = counter.doc.quantity;
            if !settle_on(&mut holds, &mut used, ret, key)? {
                return Ok(false);
            }
            let mut counter = counter.with_holds(&holds, now);
            counter.doc.quantity = used;
            match self.put_counter(account_id, counter, now).await? {
                Ok(()) => return Ok(true),
                Err(_) => pause(round).await,
            }
        }
        Err(contended("return_lease"))
    }

    async fn levels(
        &self,
        account_id: AccountId,
        keys: &[UsageKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<Level>, StoreError> {
        // Point reads in parallel, as `usage` does.
        futures::future::try_join_all(keys.iter().map(|key| async move {
            let found = self.read_counter(account_id, key).await?;
            level_of(found.as_ref().map(|(d, _)| d), now)
        }))
        .await
    }
}

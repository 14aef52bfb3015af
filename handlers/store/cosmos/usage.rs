//! Usage counters. The quota check is increment-then-check: one server-side
//! patch adds the amount and returns the new total; a total past the limit
//! is undone by a compensating decrement and the request denied.
//!
//! Why not read + If-Match patch: under contention (a burst of requests
//! from one account, the case quotas exist for) every writer but one gets a
//! 412 and must retry, so the common case stops being one round trip and
//! the worst case has no bound. The increment always lands first time.
//! Its cost: between an over-limit increment and its compensation, others
//! see a total that is too high and may be denied although they would
//! have fit. It can only deny, never admit: a total is admitted only if it
//! is within the limit including everyone else's increments, so the limit
//! is never passed. Decrements (gauges) use read + If-Match, because a
//! compensated decrement could briefly lower the total and let others in.

use async_trait::async_trait;
use azure_data_cosmos::models::{PatchInstructions, PatchOperation};
use azure_data_cosmos::options::{ItemWriteOptions, PatchItemOptions, PatchStrategy, Precondition};
use chrono::{DateTime, Utc};

use super::docs::{self, ActiveDoc, CounterDoc};
use super::{unavailable, with_content, CosmosStore};
use crate::domain::account::AccountId;
use crate::domain::ports::{StoreError, UsageStore};
use crate::domain::quota::{
    CloseOutcome, Closing, GaugeObservation, GaugeOutcome, Level, OperationId, OperationOutcome,
    Reservation, ReserveOutcome, ReserveRequest, UsageOperation,
};
use crate::domain::usage::{Metric, UsageIncrement, UsageKey, UsageOutcome, USAGE_RETENTION_DAYS};

/// A counter's id within its account's partition: metric and window start.
pub(super) fn counter_id(key: &UsageKey) -> String {
    match key.window {
        Some(w) => format!("{}:{}", key.metric.as_str(), docs::ms(w.start)),
        None => format!("{}:level", key.metric.as_str()),
    }
}

fn new_counter(inc: &UsageIncrement, quantity: i64) -> CounterDoc {
    let key = inc.key;
    CounterDoc {
        id: counter_id(&key),
        account_id: docs::pk(inc.account_id),
        kind: docs::USAGE.into(),
        metric: key.metric.as_str().into(),
        window_start: key.window.map(|w| docs::ms(w.start)),
        window_end: key.window.map(|w| docs::ms(w.end)),
        quantity,
        expires_at: key.expires_at().map(docs::ms),
        ttl: key
            .expires_at()
            .map_or(-1, |e| docs::ttl_between(inc.at, e)),
    }
}

impl CosmosStore {
    /// Adds `amount` server-side and returns the new total, or `None` if the
    /// counter does not exist yet.
    async fn add(&self, inc: &UsageIncrement, amount: i64) -> Result<Option<i64>, StoreError> {
        let pk = docs::pk(inc.account_id);
        let id = counter_id(&inc.key);
        // ServerSide: the SDK's default would turn an increment into a
        // client-side read + replace; it also never retries an increment
        // whose outcome is unknown, so nothing is counted twice.
        let options = || PatchItemOptions::default().with_strategy(PatchStrategy::ServerSide);
        let patched = self
            .call_increment(|| {
                self.usage.patch_item(
                    pk.clone(),
                    &id,
                    PatchInstructions::new()
                        .with_operation(PatchOperation::increment("/quantity", amount)),
                    Some(options()),
                )
            })
            .await;
        match patched {
            Ok(r) => {
                let doc: CounterDoc = r.into_model().map_err(StoreError::corrupt)?;
                Ok(Some(doc.quantity))
            }
            Err(e) if e.status().is_not_found() => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// First use of a counter: record the day in the rollup's index (first,
    /// so a crash leaves an index entry with no usage, which rolls up as
    /// zeros, never usage the rollup cannot find), then create the counter.
    async fn create_counter(&self, inc: &UsageIncrement) -> Result<bool, StoreError> {
        if let (Metric::ApiCalls, Some(w)) = (inc.key.metric, inc.key.window) {
            let day = w.start.date_naive();
            let expires = w.end + chrono::Duration::days(USAGE_RETENTION_DAYS);
            let active = ActiveDoc {
                id: docs::pk(inc.account_id),
                account_id: docs::day_partition(day),
                kind: docs::ACTIVE.into(),
                expires_at: docs::ms(expires),
                ttl: docs::ttl_between(inc.at, expires),
            };
            let created = self
                .call(|| {
                    self.usage
                        .create_item(active.account_id.clone(), &active.id, &active, None)
                })
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.status().is_conflict() => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        let doc = new_counter(inc, inc.amount);
        let created = self
            .call(|| {
                self.usage
                    .create_item(doc.account_id.clone(), &doc.id, &doc, Some(with_content()))
            })
            .await;
        match created {
            Ok(_) => Ok(true),
            Err(e) if e.status().is_conflict() => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read_counter(
        &self,
        account: AccountId,
        key: &UsageKey,
    ) -> Result<Option<(CounterDoc, crate::domain::ports::Etag)>, StoreError> {
        self.read_doc(&self.usage, &docs::pk(account), &counter_id(key))
            .await
    }

    async fn total(&self, account: AccountId, key: &UsageKey) -> Result<u64, StoreError> {
        Ok(self
            .read_counter(account, key)
            .await?
            .map_or(0, |(d, _)| d.quantity.max(0) as u64))
    }

    async fn decrement(&self, inc: &UsageIncrement) -> Result<UsageOutcome, StoreError> {
        loop {
            let Some((mut doc, etag)) = self.read_counter(inc.account_id, &inc.key).await? else {
                return Ok(UsageOutcome::Denied { total: 0 });
            };
            let next = doc.quantity + inc.amount;
            if next < 0 {
                return Ok(UsageOutcome::Denied {
                    total: doc.quantity.max(0) as u64,
                });
            }
            doc.quantity = next;
            let replaced = self
                .call(|| {
                    self.usage.replace_item(
                        doc.account_id.clone(),
                        &doc.id,
                        &doc,
                        Some(
                            ItemWriteOptions::default()
                                .with_precondition(Precondition::if_match(etag.0.clone())),
                        ),
                    )
                })
                .await;
            match replaced {
                Ok(_) => return Ok(UsageOutcome::Admitted { total: next as u64 }),
                Err(e) if e.status().is_precondition_failed() => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// Takes back an increment that went past the limit. Retried hard: until
    /// it lands, the counter overstates usage (denies, never over-admits).
    async fn compensate(&self, inc: &UsageIncrement, at: DateTime<Utc>) {
        for attempt in 0..5u32 {
            match self.add(inc, -inc.amount).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(account_id = %inc.account_id, metric = inc.key.metric.as_str(), attempt, error = %e, "quota compensation failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        tracing::error!(account_id = %inc.account_id, metric = inc.key.metric.as_str(), amount = inc.amount, at = %at, "quota compensation gave up; the counter overstates usage by this amount");
    }
}

#[async_trait]
impl UsageStore for CosmosStore {
    async fn increment_usage(&self, inc: &UsageIncrement) -> Result<UsageOutcome, StoreError> {
        if inc.amount < 0 {
            return self.decrement(inc).await;
        }
        if inc.exceeds_limit_alone() {
            return Ok(UsageOutcome::Denied {
                total: self.total(inc.account_id, &inc.key).await?,
            });
        }
        loop {
            if let Some(total) = self.add(inc, inc.amount).await? {
                return Ok(if inc.admits(total) {
                    UsageOutcome::Admitted {
                        total: total as u64,
                    }
                } else {
                    self.compensate(inc, inc.at).await;
                    UsageOutcome::Denied {
                        total: (total - inc.amount).max(0) as u64,
                    }
                });
            }
            // No counter yet. `amount <= limit` was checked above.
            if self.create_counter(inc).await? {
                return Ok(UsageOutcome::Admitted {
                    total: inc.amount as u64,
                });
            }
            // Created by someone else in between: add to theirs.
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

    async fn record_operation(&self, _op: &UsageOperation) -> Result<OperationOutcome, StoreError> {
        unimplemented!("cosmos ledger in progress")
    }

    async fn reserve(&self, _req: &ReserveRequest) -> Result<ReserveOutcome, StoreError> {
        unimplemented!("cosmos ledger in progress")
    }

    async fn reservation(
        &self,
        _account_id: AccountId,
        _id: OperationId,
    ) -> Result<Option<Reservation>, StoreError> {
        unimplemented!("cosmos ledger in progress")
    }

    async fn close_reservation(
        &self,
        _account_id: AccountId,
        _id: OperationId,
        _closing: Closing,
        _now: DateTime<Utc>,
    ) -> Result<CloseOutcome, StoreError> {
        unimplemented!("cosmos ledger in progress")
    }

    async fn set_gauge(&self, _obs: &GaugeObservation) -> Result<GaugeOutcome, StoreError> {
        unimplemented!("cosmos ledger in progress")
    }

    async fn levels(
        &self,
        _account_id: AccountId,
        _keys: &[UsageKey],
        _now: DateTime<Utc>,
    ) -> Result<Vec<Level>, StoreError> {
        unimplemented!("cosmos ledger in progress")
    }
}

//! What KRAFTD's services do to an account's quota, by service credential:
//! report usage once per Idempotency-Key, hold quota in reservations and
//! commit or release it, set gauges to observed levels, report events after
//! the fact, and read entitlements.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::domain::account::{Account, AccountId};
use crate::domain::plan::{ExportFormat, Feature};
use crate::domain::ports::Versioned;
use crate::domain::quota::{
    CloseOutcome, CloseRefusal, Closing, Fingerprint, GaugeObservation, GaugeOutcome, OperationId,
    OperationKind, OperationOutcome, Reservation, ReservationState, ReserveOutcome, ReserveRequest,
    UsageOperation, DEFAULT_RESERVATION_TTL, MAX_RESERVATION_TTL,
};
use crate::domain::usage::{
    check_gate, thresholds_crossed, ConsumeGate, Metric, MetricKind, QuotaDenial, UsageKey,
    UsageOutcome, MAX_QUANTITY,
};

use super::hot_path::Admission;
use super::usage::{ConsumeInput, MeterReading};
use super::{AppError, Billing, StateConflict};

/// The longest Idempotency-Key or event id accepted.
pub const MAX_KEY_LENGTH: usize = 255;
/// The highest level a gauge is set to: half the counters' range, so a
/// reservation on top of it cannot overflow.
pub const MAX_GAUGE_VALUE: i64 = i64::MAX / 2;
/// The most events one batch carries.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// How far back an event may have happened: the counters it lands in are
/// still open to the rollup, and its id is still remembered.
pub const MAX_EVENT_AGE: Duration = Duration::hours(24);

/// A caller's name for one request, so its retries count once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(field: &'static str, key: &str) -> Result<Self, AppError> {
        if key.is_empty() || key.len() > MAX_KEY_LENGTH {
            return Err(AppError::invalid(
                field,
                format!("must be 1 to {MAX_KEY_LENGTH} characters"),
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AppError::invalid(
                field,
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Holds quota for work that may fail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveInput {
    pub metric: Metric,
    #[serde(deserialize_with = "super::whole::number")]
    pub quantity: i64,
    /// How long the hold lasts unless committed or released: 1 second to
    /// 24 hours; 15 minutes if absent.
    #[serde(default, deserialize_with = "super::whole::optional")]
    pub ttl_seconds: Option<i64>,
    /// The gated feature the work needs, checked against the plan.
    #[serde(default)]
    pub feature: Option<Feature>,
    /// Required for `exports`: the format, checked against the plan.
    #[serde(default)]
    pub format: Option<ExportFormat>,
}

/// One thing that happened, reported after the fact.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    /// Unique per event: a repeated id is counted once (for at least 24
    /// hours). 1 to 255 printable ASCII characters; other ids are rejected
    /// alone.
    pub id: String,
    /// `team_members` and gauges are rejected alone.
    pub metric: Metric,
    /// 1 to 1,000,000; outside, the event is rejected alone.
    #[serde(deserialize_with = "super::whole::number")]
    pub quantity: i64,
    /// When it happened: within the last 24 hours, not in the future.
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventResult {
    Recorded { total: u64, over_limit: bool },
    Duplicate,
    Rejected(String),
}

/// A usage report's answer, and whether it repeats an earlier one.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    pub reading: MeterReading,
    pub replayed: bool,
}

/// A reservation and where its metric stands (`None` on a replay: the
/// level then is not the one the hold met).
#[derive(Debug, Clone)]
pub struct Held {
    pub reservation: Reservation,
    pub reading: Option<MeterReading>,
    pub replayed: bool,
}

/// What the plan grants and where every metric stands.
#[derive(Debug, Clone)]
pub struct EntitlementsView {
    pub account: Account,
    pub readings: Vec<MeterReading>,
}

impl EntitlementsView {
    pub fn over_limit(&self) -> bool {
        self.readings.iter().any(MeterReading::over_limit)
    }
}

pub(super) fn fingerprint(parts: &[&str]) -> Fingerprint {
    let mut hash = Sha256::new();
    for p in parts {
        // Length-prefixed, so no two lists of parts hash alike.
        hash.update((p.len() as u64).to_be_bytes());
        hash.update(p.as_bytes());
    }
    Fingerprint(hex::encode(hash.finalize()))
}

fn check_quantity(quantity: i64) -> Result<(), AppError> {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(AppError::invalid(
            "quantity",
            format!("must be a whole number from 1 to {MAX_QUANTITY}"),
        ));
    }
    Ok(())
}

fn counted(metric: Metric) -> Result<(), AppError> {
    match metric {
        Metric::TeamMembers => Err(AppError::invalid(
            "metric",
            "team_members is counted from the account's members and invitations, not reported",
        )),
        _ => Ok(()),
    }
}

impl Billing {
    /// The plan's yes/no rules for a use: its feature, its export format.
    fn check_gate(
        &self,
        account: &Account,
        metric: Metric,
        feature: Option<Feature>,
        format: Option<ExportFormat>,
    ) -> Result<(), AppError> {
        match (metric, format) {
            (Metric::Exports, None) => {
                return Err(AppError::invalid("format", "is required for exports"))
            }
            (m, Some(_)) if m != Metric::Exports => {
                return Err(AppError::invalid(
                    "format",
                    "applies only to the exports metric",
                ))
            }
            _ => {}
        }
        let plan = self.effective_plan(account);
        check_gate(&plan.limits, ConsumeGate { feature, format }).map_err(|denial| {
            AppError::NotInPlan {
                denial,
                plan: plan.id,
                upgrade_to: plan.id.next_tier(),
            }
        })
    }

    /// Tells KRAFTD when a use crossed 80 % or 100 % of a windowed limit.
    /// The use is recorded already, so a failure here is logged, not
    /// returned: the daily rollup sends a lost event again.
    async fn announce_thresholds(&self, account: &Account, key: UsageKey, before: u64, after: u64) {
        let (Some(window), Some(limit)) = (
            key.window,
            key.metric.limit(&self.effective_plan(account).limits),
        ) else {
            return;
        };
        let now = self.clock.now();
        for (i, percent) in thresholds_crossed(before, after, Some(limit))
            .into_iter()
            .enumerate()
        {
            let at = now + chrono::Duration::milliseconds(i as i64);
            if let Err(e) = self
                .usage_threshold_reached_at(
                    account.id, key.metric, percent, window, after, limit, at,
                )
                .await
            {
                tracing::warn!(account_id = %account.id, metric = key.metric.as_str(), percent, error = %e, "usage threshold event not recorded; the rollup will send it");
            }
        }
    }

    /// The account a service credential acts on, named by the path.
    /// Read again after `hot_path::ACCOUNT_TTL` at most, and at once on
    /// this instance after it wrote the account (`remember_account`).
    pub async fn service_account(&self, id: &str) -> Result<Versioned<Account>, AppError> {
        let id = account_id(id)?;
        if let Some(account) = self.accounts.get(&id, self.clock.now()) {
            return Ok(account);
        }
        self.account_now(id).await
    }

    /// The account as the store has it now, never the cache's: what an
    /// operator reads and changes.
    pub async fn admin_account(&self, id: &str) -> Result<Versioned<Account>, AppError> {
        self.account_now(account_id(id)?).await
    }

    async fn account_now(&self, id: AccountId) -> Result<Versioned<Account>, AppError> {
        // Stamped before the read: a write remembered while it was under
        // way is newer, and stays.
        let asked = self.clock.now();
        let account = self
            .store
            .account_by_id(id)
            .await?
            .ok_or(AppError::NoSuchAccount)?;
        self.accounts.put(id, account.clone(), asked);
        Ok(account)
    }

    /// The account as just read or written, for the service routes that
    /// name it: an override or a plan change binds at once on the instance
    /// that wrote it, and on the others within `hot_path::ACCOUNT_TTL`.
    pub(super) fn remember_account(&self, account: &Versioned<Account>) {
        self.accounts
            .put(account.value.id, account.clone(), self.clock.now());
    }

    fn denial(
        &self,
        account: &Account,
        metric: Metric,
        window: Option<crate::domain::usage::Window>,
        used: u64,
        requested: i64,
    ) -> AppError {
        let now = self.clock.now();
        let plan = self.effective_plan(account);
        AppError::QuotaExceeded(QuotaDenial {
            metric,
            limit: metric.limit(&plan.limits).unwrap_or(u64::MAX),
            used,
            requested,
            plan: plan.id,
            upgrade_to: plan.id.next_tier(),
            window,
            seconds_to_reset: window.map(|w| w.seconds_until_end(now)),
        })
    }

    /// Records a counter's increase once per key: the same key and request
    /// again answers the same and counts nothing; the same key with another
    /// request is refused. Gauges are set with `observe_gauge` instead.
    pub async fn report_usage(
        &self,
        account: &Account,
        key: &IdempotencyKey,
        input: ConsumeInput,
    ) -> Result<Recorded, AppError> {
        counted(input.metric)?;
        if input.metric.kind() == MetricKind::Gauge {
            return Err(AppError::invalid(
                "metric",
                "gauges are set to an observed level with PUT …/gauges/<metric>, or grown through a reservation",
            ));
        }
        check_quantity(input.quantity)?;
        self.check_gate(account, input.metric, input.feature, input.format)?;
        let now = self.clock.now();
        let usage_key = UsageKey::current(input.metric, now);
        let feature = input.feature.map(|f| format!("{f:?}")).unwrap_or_default();
        let format = input.format.map(|f| format!("{f:?}")).unwrap_or_default();
        let op = UsageOperation {
            id: OperationId::of_key(account.id, OperationKind::Usage, key.as_str()),
            fingerprint: fingerprint(&[
                input.metric.as_str(),
                &input.quantity.to_string(),
                &feature,
                &format,
            ]),
            account_id: account.id,
            key: usage_key,
            amount: input.quantity,
            limit: input.metric.limit(&self.effective_plan(account).limits),
            at: now,
        };
        let (used, held, replayed) = match self.store.record_operation(&op).await? {
            OperationOutcome::Decided(UsageOutcome::Admitted { total }, held) => {
                let before = total.saturating_sub(input.quantity as u64);
                self.announce_thresholds(account, usage_key, before, total)
                    .await;
                (total, held, false)
            }
            // The first answer's total; the holds as they stand now.
            OperationOutcome::Replayed { total } => {
                let held = self.store.levels(account.id, &[usage_key], now).await?[0].held;
                (total, held, true)
            }
            OperationOutcome::KeyReused => return Err(AppError::IdempotencyKeyReused),
            OperationOutcome::Decided(UsageOutcome::Denied { total }, _) => {
                return Err(self.denial(
                    account,
                    input.metric,
                    usage_key.window,
                    total,
                    input.quantity,
                ))
            }
        };
        Ok(Recorded {
            reading: self.reading(account, usage_key, used, held),
            replayed,
        })
    }

    /// Counts API calls reported without a name (`POST …/usage/calls`):
    /// admitted from this instance's quota lease, never past the limit,
    /// each request counted once as received (a retry is another call).
    pub async fn report_api_calls(
        &self,
        account: &Account,
        quantity: i64,
    ) -> Result<MeterReading, AppError> {
        let input = ConsumeInput {
            metric: Metric::ApiCalls,
            quantity,
            feature: None,
            format: None,
        };
        check_quantity(input.quantity)?;
        self.check_gate(account, input.metric, input.feature, input.format)?;
        let now = self.clock.now();
        let key = UsageKey::current(input.metric, now);
        let limit = input.metric.limit(&self.effective_plan(account).limits);
        match self
            .leases
            .admit(
                self.store.as_ref(),
                account.id,
                key,
                input.quantity,
                limit,
                now,
            )
            .await?
        {
            Admission::Admitted { used, held } => {
                let before = used.saturating_sub(input.quantity as u64);
                self.announce_thresholds(account, key, before, used).await;
                Ok(self.reading(account, key, used, held))
            }
            Admission::Refused { used, held } => Err(self.denial(
                account,
                input.metric,
                key.window,
                used.saturating_add(held),
                input.quantity,
            )),
        }
    }

    /// Gives back this instance's leases that are about to stop admitting
    /// (all of them when `all`: at shutdown).
    pub async fn give_back_leases(&self, all: bool) {
        self.leases
            .give_back(self.store.as_ref(), self.clock.now(), all)
            .await
    }

    pub(super) fn reading(
        &self,
        account: &Account,
        key: UsageKey,
        used: u64,
        held: u64,
    ) -> MeterReading {
        let plan = self.effective_plan(account);
        MeterReading {
            metric: key.metric,
            plan: plan.id,
            used,
            held,
            limit: key.metric.limit(&plan.limits),
            window: key.window,
        }
    }

    /// Holds quota atomically for work that may fail.
    pub async fn reserve(
        &self,
        account: &Account,
        key: &IdempotencyKey,
        input: ReserveInput,
    ) -> Result<Held, AppError> {
        counted(input.metric)?;
        check_quantity(input.quantity)?;
        self.check_gate(account, input.metric, input.feature, input.format)?;
        let ttl = match input.ttl_seconds {
            None => DEFAULT_RESERVATION_TTL,
            Some(s) if (1..=MAX_RESERVATION_TTL.num_seconds()).contains(&s) => Duration::seconds(s),
            Some(_) => {
                return Err(AppError::invalid(
                    "ttl_seconds",
                    format!("must be from 1 to {}", MAX_RESERVATION_TTL.num_seconds()),
                ))
            }
        };
        let now = self.clock.now();
        let usage_key = UsageKey::current(input.metric, now);
        let plan = self.effective_plan(account);
        let ttl_part = input.ttl_seconds.map(|s| s.to_string()).unwrap_or_default();
        let reservation = Reservation {
            id: OperationId::of_key(account.id, OperationKind::Reservation, key.as_str()),
            fingerprint: fingerprint(&[
                input.metric.as_str(),
                &input.quantity.to_string(),
                &ttl_part,
                &input.feature.map(|f| format!("{f:?}")).unwrap_or_default(),
                &input.format.map(|f| format!("{f:?}")).unwrap_or_default(),
            ]),
            account_id: account.id,
            metric: input.metric,
            window: usage_key.window,
            quantity: input.quantity,
            created_at: now,
            expires_at: now + ttl,
            state: ReservationState::Held,
        };
        let request = ReserveRequest {
            reservation: reservation.clone(),
            limit: input.metric.limit(&plan.limits),
            at: now,
        };
        match self.store.reserve(&request).await? {
            ReserveOutcome::Held { used, held } => Ok(Held {
                reservation,
                reading: Some(self.reading(account, usage_key, used, held)),
                replayed: false,
            }),
            ReserveOutcome::Replayed(reservation) => Ok(Held {
                reservation,
                reading: None,
                replayed: true,
            }),
            ReserveOutcome::KeyReused => Err(AppError::IdempotencyKeyReused),
            ReserveOutcome::Denied { used, held } => Err(self.denial(
                account,
                input.metric,
                usage_key.window,
                used.saturating_add(held),
                input.quantity,
            )),
        }
    }

    fn reservation_id(id: &str) -> Result<OperationId, AppError> {
        uuid::Uuid::parse_str(id)
            .map(OperationId)
            .map_err(|_| AppError::ReservationNotFound)
    }

    /// Commits what was used of a reservation (all of it when `quantity`
    /// is absent), or releases it whole.
    pub async fn close_reservation(
        &self,
        account: &Account,
        id: &str,
        closing: Option<Closing>,
        commit: Option<i64>,
    ) -> Result<Reservation, AppError> {
        let id = Self::reservation_id(id)?;
        let now = self.clock.now();
        let closing = match closing {
            Some(c) => c,
            None => match commit {
                Some(q) if q < 0 => {
                    return Err(AppError::invalid("quantity", "must not be negative"))
                }
                Some(q) => Closing::Commit(q),
                None => Closing::CommitHeld,
            },
        };
        match self
            .store
            .close_reservation(account.id, id, closing, now)
            .await?
        {
            CloseOutcome::Closed(r, total) => {
                if let (ReservationState::Committed { quantity }, Some(total)) = (r.state, total) {
                    let before = total.saturating_sub(quantity.max(0) as u64);
                    self.announce_thresholds(account, r.key(), before, total)
                        .await;
                }
                Ok(r)
            }
            CloseOutcome::NotFound => Err(AppError::ReservationNotFound),
            CloseOutcome::Refused(CloseRefusal::BeyondHold { held }) => {
                Err(AppError::State(StateConflict::BeyondHold(held)))
            }
            CloseOutcome::Refused(CloseRefusal::Expired) => {
                Err(AppError::ReservationClosed("expired"))
            }
            CloseOutcome::Refused(CloseRefusal::AlreadyClosed(status)) => {
                Err(AppError::ReservationClosed(status.as_str()))
            }
        }
    }

    pub async fn reservation(&self, account: &Account, id: &str) -> Result<Reservation, AppError> {
        let id = Self::reservation_id(id)?;
        self.store
            .reservation(account.id, id)
            .await?
            .ok_or(AppError::ReservationNotFound)
    }

    /// Sets a gauge to an observed level; an older observation than the
    /// one stored changes nothing.
    pub async fn observe_gauge(
        &self,
        account: &Account,
        metric: &str,
        value: i64,
        observed_at: DateTime<Utc>,
    ) -> Result<(GaugeOutcome, MeterReading), AppError> {
        let metric: Metric = metric
            .parse()
            .map_err(|_| AppError::invalid("metric", "is not a metric"))?;
        if metric != Metric::StorageMb {
            return Err(AppError::invalid(
                "metric",
                "only storage_mb is a reported gauge",
            ));
        }
        if !(0..=MAX_GAUGE_VALUE).contains(&value) {
            return Err(AppError::invalid(
                "value",
                format!("must be a whole number from 0 to {MAX_GAUGE_VALUE}"),
            ));
        }
        let now = self.clock.now();
        if observed_at > now + Duration::minutes(5) {
            return Err(AppError::invalid("observed_at", "is in the future"));
        }
        let key = UsageKey::current(metric, now);
        let outcome = self
            .store
            .set_gauge(&GaugeObservation {
                account_id: account.id,
                key,
                value,
                observed_at,
                at: now,
            })
            .await?;
        let level = self.store.levels(account.id, &[key], now).await?[0];
        Ok((outcome, self.reading(account, key, level.used, level.held)))
    }

    /// Records events that already happened, each once by its id, whatever
    /// the limit (they happened); each result says whether it passed it.
    pub async fn record_events(
        &self,
        account: &Account,
        events: Vec<UsageEvent>,
    ) -> Result<Vec<EventResult>, AppError> {
        if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
            return Err(AppError::invalid(
                "events",
                format!("must hold 1 to {MAX_BATCH_EVENTS} events"),
            ));
        }
        let now = self.clock.now();
        let plan = self.effective_plan(account);
        let mut results = Vec::with_capacity(events.len());
        for e in events {
            let checked = IdempotencyKey::parse("id", &e.id).and_then(|k| {
                counted(e.metric)?;
                if e.metric.kind() == MetricKind::Gauge {
                    return Err(AppError::invalid("metric", "must be a counter"));
                }
                check_quantity(e.quantity)?;
                if e.occurred_at > now + Duration::minutes(5) || e.occurred_at < now - MAX_EVENT_AGE
                {
                    return Err(AppError::invalid(
                        "occurred_at",
                        "must be within the last 24 hours",
                    ));
                }
                Ok(k)
            });
            let key = match checked {
                Ok(k) => k,
                Err(e) => {
                    results.push(EventResult::Rejected(e.to_string()));
                    continue;
                }
            };
            let usage_key = UsageKey::current(e.metric, e.occurred_at);
            let limit = e.metric.limit(&plan.limits);
            let op = UsageOperation {
                id: OperationId::of_key(account.id, OperationKind::Event, key.as_str()),
                fingerprint: fingerprint(&[
                    e.metric.as_str(),
                    &e.quantity.to_string(),
                    &e.occurred_at.to_rfc3339(),
                ]),
                account_id: account.id,
                key: usage_key,
                amount: e.quantity,
                limit: None,
                at: now,
            };
            results.push(match self.store.record_operation(&op).await? {
                OperationOutcome::Decided(UsageOutcome::Admitted { total }, _) => {
                    let before = total.saturating_sub(e.quantity as u64);
                    self.announce_thresholds(account, usage_key, before, total)
                        .await;
                    EventResult::Recorded {
                        total,
                        over_limit: limit.is_some_and(|l| total > l),
                    }
                }
                OperationOutcome::Replayed { .. } => EventResult::Duplicate,
                // A gateway whose event ids started again after a restart:
                // say so rather than drop its new events as duplicates.
                OperationOutcome::KeyReused => EventResult::Rejected(
                    "this id was reported before with another metric, quantity or time: ids must be unique per event".into(),
                ),
                OperationOutcome::Decided(UsageOutcome::Denied { .. }, _) => {
                    EventResult::Rejected("quantity would pass the largest count".into())
                }
            });
        }
        Ok(results)
    }

    /// The plan, its features, and every metric's reading now.
    pub async fn entitlements_of(&self, account: &Account) -> Result<EntitlementsView, AppError> {
        let now = self.clock.now();
        let keys: Vec<UsageKey> = Metric::ALL
            .iter()
            .map(|m| UsageKey::current(*m, now))
            .collect();
        let levels = self.store.levels(account.id, &keys, now).await?;
        let seats = self.seats(account.id).await?.used();
        let readings = keys
            .iter()
            .zip(levels)
            .map(|(key, level)| {
                let used = if key.metric == Metric::TeamMembers {
                    seats
                } else {
                    level.used
                };
                self.reading(account, *key, used, level.held)
            })
            .collect();
        Ok(EntitlementsView {
            account: account.clone(),
            readings,
        })
    }
}

fn account_id(id: &str) -> Result<AccountId, AppError> {
    uuid::Uuid::parse_str(id)
        .map(AccountId)
        .map_err(|_| AppError::NoSuchAccount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse("k", "doc-42_retry.1").is_ok());
        assert!(IdempotencyKey::parse("k", "").is_err());
        assert!(IdempotencyKey::parse("k", "with space").is_err());
        assert!(IdempotencyKey::parse("k", "é").is_err());
        assert!(IdempotencyKey::parse("k", &"x".repeat(256)).is_err());
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        assert_eq!(
            fingerprint(&["documents", "1"]),
            fingerprint(&["documents", "1"])
        );
        assert_ne!(
            fingerprint(&["documents", "1"]),
            fingerprint(&["documents", "2"])
        );
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}

//! The routes KRAFTD's services call, on the account the path names:
//! usage reports and batches, reservations, gauges, entitlements.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::app::{
    AppError, ConsumeInput, EventResult, IdempotencyKey, MeterReading, ReserveInput, UsageEvent,
};
use crate::domain::account::{Account, Action};
use crate::domain::plan::{Limits, PlanId};
use crate::domain::quota::{Closing, GaugeOutcome, Reservation};
use crate::domain::usage::{Metric, QuotaDenial};

use super::error::{ApiError, ErrorResponse};
use super::json::ApiJson;
use super::metering::Caller;
use super::openapi::JsonBodyErrors;
use super::usage::UsageReading;
use super::AppState;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on an answer that repeats the first answer to its Idempotency-Key.
pub const REPLAYED: &str = "idempotent-replayed";
/// How long a client may reuse an entitlements answer: a short while, as
/// usage moves under it.
const ENTITLEMENTS_CACHE: &str = "private, max-age=30";

/// The account the path names, for the caller: any account for a service
/// credential (its scope was checked), only their own for a member.
async fn account(state: &AppState, caller: Caller, id: &str) -> Result<Account, ApiError> {
    let account = match caller {
        Caller::Service(_) => state.billing.service_account(id).await?,
        Caller::User(user) => {
            let acting = state.billing.acting(user, Some(id)).await?;
            acting.require(Action::Use)?;
            acting.account
        }
    };
    Ok(account.value)
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<IdempotencyKey, ApiError> {
    let value = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| AppError::invalid("Idempotency-Key", "header is required"))?
        .to_str()
        .map_err(|_| AppError::invalid("Idempotency-Key", "must be printable ASCII"))?;
    Ok(IdempotencyKey::parse("Idempotency-Key", value)?)
}

/// Where a metric stands against its limit, for the RateLimit headers.
struct Standing {
    metric: Metric,
    limit: u64,
    remaining: u64,
    window_seconds: Option<i64>,
    reset: Option<u64>,
}

impl Standing {
    fn of(reading: &MeterReading, now: DateTime<Utc>) -> Option<Self> {
        Some(Self {
            metric: reading.metric,
            limit: reading.limit?,
            remaining: reading.remaining()?,
            window_seconds: reading.window.map(|w| (w.end - w.start).num_seconds()),
            reset: reading.seconds_to_reset(now),
        })
    }

    fn of_denial(d: &QuotaDenial) -> Self {
        Self {
            metric: d.metric,
            limit: d.limit,
            remaining: 0,
            window_seconds: d.window.map(|w| (w.end - w.start).num_seconds()),
            reset: d.seconds_to_reset,
        }
    }

    /// The IETF draft's fields and the older three.
    fn write(&self, response: &mut Response) {
        let name = self.metric.as_str();
        let (limit, remaining) = (self.limit, self.remaining);
        let policy = match self.window_seconds {
            Some(w) => format!("\"{name}\";q={limit};w={w}"),
            None => format!("\"{name}\";q={limit}"),
        };
        let current = match self.reset {
            Some(t) => format!("\"{name}\";r={remaining};t={t}"),
            None => format!("\"{name}\";r={remaining}"),
        };
        let headers = response.headers_mut();
        for (header, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header, v);
            }
        }
        headers.insert("ratelimit-limit", HeaderValue::from(limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
        if let Some(t) = self.reset {
            headers.insert("ratelimit-reset", HeaderValue::from(t));
        }
    }
}

fn rate_limit(response: &mut Response, reading: &MeterReading, now: DateTime<Utc>) {
    if let Some(standing) = Standing::of(reading, now) {
        standing.write(response);
    }
}

/// An error's answer; a quota refusal states the limit it met.
fn refusal(e: AppError) -> Response {
    let standing = match &e {
        AppError::QuotaExceeded(d) => Some(Standing::of_denial(d)),
        _ => None,
    };
    let mut response = ApiError::from(e).into_response();
    if let Some(s) = standing {
        s.write(&mut response);
    }
    response
}

/// A usage write's answer: where its metric stands, in the body and the
/// RateLimit fields.
fn reading_answer(reading: &MeterReading, now: DateTime<Utc>, was_replayed: bool) -> Response {
    let mut response = Json(UsageReading::from(reading)).into_response();
    rate_limit(&mut response, reading, now);
    replayed(&mut response, was_replayed);
    response
}

pub(super) fn replayed(response: &mut Response, replayed: bool) {
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
}

/// Report usage once
///
/// Records a counter's increase (`documents`, `api_calls`, `exports`)
/// against the plan's limits, atomically: concurrent reports never admit
/// more than the limit, and live reservations count against it. The same
/// `Idempotency-Key` (kept at least 24 hours) with the same body answers the
/// same, with `Idempotent-Replayed: true`, and counts nothing; with another
/// body it is `409 idempotency_key_reused`. A refusal records nothing, so a
/// retry is decided afresh. API calls counted as they happen, with no
/// key, go to `POST /api/accounts/{account_id}/usage/calls`.
#[utoipa::path(
    post,
    path = "/api/accounts/{account_id}/usage",
    tag = "service",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("Idempotency-Key" = String, Header, description = "Names this report: 1 to 255 printable ASCII characters, no spaces", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
    ),
    request_body = ConsumeInput,
    responses(
        (status = 200, description = "Recorded (or replayed); where the metric stands now", body = UsageReading),
        (status = 403, description = "`quota_exceeded` (a monthly limit), `not_in_plan` (a feature or export format) or `missing_scope`", body = ErrorResponse),
        (status = 429, description = "`quota_exceeded`: the daily API calls are used up; `Retry-After` says when they reset", body = ErrorResponse),
        (status = 409, description = "`idempotency_key_reused`: the key named another report", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn report_usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<ConsumeInput>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let account = account(&state, caller, &account_id).await?;
    let now = state.billing.now();
    let recorded = match state.billing.report_usage(&account, &key, input).await {
        Ok(r) => r,
        Err(e) => return Ok(refusal(e)),
    };
    Ok(reading_answer(&recorded.reading, now, recorded.replayed))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiCalls {
    /// Calls to count: 1 to 1,000,000.
    #[serde(deserialize_with = "crate::app::whole::number")]
    #[schema(minimum = 1, maximum = 1000000)]
    quantity: i64,
}

/// Count API calls
///
/// For a gateway reporting every call as it happens: `api_calls` counted
/// against the daily limit, never past it however many billing instances
/// answer, and without a name: each request counts once as received, so
/// a retry is another call (report with `POST …/usage` and an
/// `Idempotency-Key` where a call must count once under retries). Each
/// instance admits calls from a block of the day's quota it holds, so a
/// call costs no store write of its own; `remaining` counts the blocks
/// other instances hold as `held`, which come back within 20 seconds.
#[utoipa::path(
    post,
    path = "/api/accounts/{account_id}/usage/calls",
    tag = "service",
    params(("account_id" = String, Path, format = Uuid)),
    request_body = ApiCalls,
    responses(
        (status = 200, description = "Counted; where the day's API calls stand", body = UsageReading),
        (status = 429, description = "`quota_exceeded`: the daily API calls are used up; `Retry-After` says when they reset", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn report_api_calls(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    ApiJson(input): ApiJson<ApiCalls>,
) -> Result<Response, ApiError> {
    let account = account(&state, caller, &account_id).await?;
    let now = state.billing.now();
    Ok(
        match state
            .billing
            .report_api_calls(&account, input.quantity)
            .await
        {
            Ok(reading) => reading_answer(&reading, now, false),
            Err(e) => refusal(e),
        },
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    /// 1 to 1000 events.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<UsageEvent>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Recorded,
    /// Its id was reported before (within 24 hours): not counted again.
    Duplicate,
    /// Not counted: `error` says why.
    Rejected,
}

#[derive(Serialize, ToSchema)]
pub struct EventOutcome {
    id: String,
    status: EventStatus,
    /// `recorded`: the metric's total in the event's window.
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    /// `recorded`: the total is past the plan's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    over_limit: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchOutcome {
    /// One per event, in order.
    results: Vec<EventOutcome>,
}

/// Report events after the fact
///
/// For a gateway that counts API calls and reports them in batches: each
/// event is counted once by its `id` (kept at least 24 hours) in the window
/// of its `occurred_at`, whatever the limit (it happened); `over_limit`
/// says when the total passed it. One bad event is rejected alone.
#[utoipa::path(
    post,
    path = "/api/accounts/{account_id}/usage/batch",
    tag = "service",
    params(("account_id" = String, Path, format = Uuid)),
    request_body = UsageBatch,
    responses(
        (status = 200, description = "A result per event", body = BatchOutcome),
        JsonBodyErrors,
    )
)]
pub async fn report_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    ApiJson(batch): ApiJson<UsageBatch>,
) -> Result<Json<BatchOutcome>, ApiError> {
    let account = account(&state, caller, &account_id).await?;
    let ids: Vec<String> = batch.events.iter().map(|e| e.id.clone()).collect();
    let results = state.billing.record_events(&account, batch.events).await?;
    let results = ids
        .into_iter()
        .zip(results)
        .map(|(id, r)| match r {
            EventResult::Recorded { total, over_limit } => EventOutcome {
                id,
                status: EventStatus::Recorded,
                total: Some(total),
                over_limit: Some(over_limit),
                error: None,
            },
            EventResult::Duplicate => EventOutcome {
                id,
                status: EventStatus::Duplicate,
                total: None,
                over_limit: None,
                error: None,
            },
            EventResult::Rejected(error) => EventOutcome {
                id,
                status: EventStatus::Rejected,
                total: None,
                over_limit: None,
                error: Some(error),
            },
        })
        .collect();
    Ok(Json(BatchOutcome { results }))
}

/// A reservation as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct ReservationView {
    /// Commit or release it by this id.
    #[schema(format = Uuid)]
    id: String,
    metric: Metric,
    /// What is held.
    quantity: i64,
    /// `held`, `committed`, `released` or `expired`.
    #[schema(example = "held")]
    status: &'static str,
    /// `committed`: what was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    committed_quantity: Option<i64>,
    created_at: DateTime<Utc>,
    /// When the hold ends by itself unless committed or released.
    expires_at: DateTime<Utc>,
}

fn view(r: &Reservation, now: DateTime<Utc>) -> ReservationView {
    let status = r.status_at(now);
    ReservationView {
        id: r.id.to_string(),
        metric: r.metric,
        quantity: r.quantity,
        status: status.as_str(),
        committed_quantity: match status {
            crate::domain::quota::ReservationStatus::Committed { quantity } => Some(quantity),
            _ => None,
        },
        created_at: r.created_at,
        expires_at: r.expires_at,
    }
}

/// Hold quota for work that may fail
///
/// Holds `quantity` of the metric atomically: it counts against the limit
/// until committed, released or expired (`ttl_seconds`, 15 minutes by
/// default). Idempotent by `Idempotency-Key` as `POST …/usage` is.
#[utoipa::path(
    post,
    path = "/api/accounts/{account_id}/reservations",
    tag = "service",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("Idempotency-Key" = String, Header, description = "Names this reservation: 1 to 255 printable ASCII characters, no spaces", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
    ),
    request_body = ReserveInput,
    responses(
        (status = 201, description = "Held (or replayed)", body = ReservationView),
        (status = 403, description = "`quota_exceeded`: the hold would pass a monthly or gauge limit; `missing_scope`", body = ErrorResponse),
        (status = 429, description = "`quota_exceeded`: the daily API calls are used up", body = ErrorResponse),
        (status = 409, description = "`idempotency_key_reused`: the key named another reservation", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn reserve(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<ReserveInput>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let account = account(&state, caller, &account_id).await?;
    let now = state.billing.now();
    let held = match state.billing.reserve(&account, &key, input).await {
        Ok(h) => h,
        Err(e) => return Ok(refusal(e)),
    };
    let mut response = (StatusCode::CREATED, Json(view(&held.reservation, now))).into_response();
    if let Some(reading) = &held.reading {
        rate_limit(&mut response, reading, now);
    }
    replayed(&mut response, held.replayed);
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitInput {
    /// What was used: 0 up to what was held (all of it when absent); the
    /// rest is released.
    #[serde(default, deserialize_with = "crate::app::whole::optional")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    quantity: Option<i64>,
}

/// Commit what a reservation used
///
/// Records `quantity` (all of the hold when absent) and releases the rest.
/// Committing again with the same quantity answers the same.
#[utoipa::path(
    post,
    path = "/api/accounts/{account_id}/reservations/{reservation_id}/commit",
    tag = "service",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("reservation_id" = String, Path, format = Uuid),
    ),
    request_body(content = CommitInput, description = "Optional: an empty body commits the whole hold"),
    responses(
        (status = 200, description = "Committed", body = ReservationView),
        (status = 409, description = "`reservation_closed`: released, expired, or committed with another quantity; `beyond_hold`: more than the reservation holds", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn commit(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, reservation_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ReservationView>, ApiError> {
    let input: CommitInput = if body.iter().all(u8::is_ascii_whitespace) {
        CommitInput { quantity: None }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::invalid("body", format!("is not a commit: {e}")))?
    };
    let account = account(&state, caller, &account_id).await?;
    let r = state
        .billing
        .close_reservation(&account, &reservation_id, None, input.quantity)
        .await?;
    Ok(Json(view(&r, state.billing.now())))
}

/// Release a reservation
///
/// Gives the whole hold back. Releasing again answers the same.
#[utoipa::path(
    delete,
    path = "/api/accounts/{account_id}/reservations/{reservation_id}",
    tag = "service",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("reservation_id" = String, Path, format = Uuid),
    ),
    responses(
        (status = 200, description = "Released", body = ReservationView),
        (status = 409, description = "`reservation_closed`: committed or expired", body = ErrorResponse),
    )
)]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, reservation_id)): Path<(String, String)>,
) -> Result<Json<ReservationView>, ApiError> {
    let account = account(&state, caller, &account_id).await?;
    let r = state
        .billing
        .close_reservation(&account, &reservation_id, Some(Closing::Release), None)
        .await?;
    Ok(Json(view(&r, state.billing.now())))
}

/// A metric that is a level, set to what was observed. Schema only: the
/// path carries text, so another metric is a 422 naming it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GaugeMetric {
    StorageMb,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GaugeInput {
    /// The level observed, e.g. megabytes stored.
    #[serde(deserialize_with = "crate::app::whole::number")]
    // MAX_GAUGE_VALUE: the attribute takes a literal (the test below
    // checks they agree).
    #[schema(minimum = 0, maximum = 4_611_686_018_427_387_903_i64)]
    value: i64,
    /// When it was observed: an observation older than the stored one
    /// changes nothing.
    observed_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct GaugeReading {
    /// Whether this observation is now the level (false: a newer one stands).
    applied: bool,
    /// When the level that stands was observed.
    observed_at: DateTime<Utc>,
    /// Past the plan's limit (after a downgrade, say): reservations that
    /// would grow it are refused.
    over_limit: bool,
    #[serde(flatten)]
    reading: UsageReading,
}

/// Set a gauge to an observed level
#[utoipa::path(
    put,
    path = "/api/accounts/{account_id}/gauges/{metric}",
    tag = "service",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("metric" = inline(GaugeMetric), Path),
    ),
    request_body = GaugeInput,
    responses(
        (status = 200, description = "The level that stands now", body = GaugeReading),
        JsonBodyErrors,
    )
)]
pub async fn set_gauge(
    State(state): State<AppState>,
    caller: Caller,
    Path((account_id, metric)): Path<(String, String)>,
    ApiJson(input): ApiJson<GaugeInput>,
) -> Result<Response, ApiError> {
    let account = account(&state, caller, &account_id).await?;
    let now = state.billing.now();
    let (outcome, reading) = state
        .billing
        .observe_gauge(&account, &metric, input.value, input.observed_at)
        .await?;
    let (applied, observed_at) = match outcome {
        GaugeOutcome::Set => (true, input.observed_at),
        GaugeOutcome::Stale { observed_at, .. } => (false, observed_at),
    };
    let mut response = Json(GaugeReading {
        applied,
        observed_at,
        over_limit: reading.over_limit(),
        reading: UsageReading::from(&reading),
    })
    .into_response();
    rate_limit(&mut response, &reading, now);
    Ok(response)
}

#[derive(Serialize, ToSchema)]
pub struct AccountEntitlements {
    #[schema(format = Uuid)]
    account_id: String,
    plan: PlanId,
    /// The plan's limits and features.
    limits: Limits,
    /// The next tier up; `null` at the top.
    #[schema(required = true)]
    upgrade_to: Option<PlanId>,
    /// Some metric is past its limit.
    over_limit: bool,
    /// Keyed by metric.
    #[schema(value_type = BTreeMap<Metric, UsageReading>)]
    usage: BTreeMap<&'static str, UsageReading>,
}

/// What an account's plan grants and where it stands
///
/// Cheap and cacheable: an `ETag` (send it back in `If-None-Match` for a
/// `304`) and a short `max-age`.
#[utoipa::path(
    get,
    path = "/api/accounts/{account_id}/entitlements",
    tag = "service",
    params(
        ("account_id" = String, Path, format = Uuid),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "Plan, features and every metric's reading", body = AccountEntitlements,
            headers(
                ("ETag" = String, description = "This answer's version"),
                ("Cache-Control" = String, description = "`private, max-age=30`"),
            )),
        (status = 304, description = "Unchanged since that ETag",
            headers(
                ("ETag" = String, description = "This answer's version"),
                ("Cache-Control" = String, description = "`private, max-age=30`"),
            )),
    )
)]
pub async fn entitlements(
    State(state): State<AppState>,
    caller: Caller,
    Path(account_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let account = account(&state, caller, &account_id).await?;
    let view = state.billing.entitlements_of(&account).await?;
    let plan = state.billing.effective_plan(&account);
    let body = AccountEntitlements {
        account_id: account.id.to_string(),
        plan: plan.id,
        limits: plan.limits.clone(),
        upgrade_to: plan.id.next_tier(),
        over_limit: view.over_limit(),
        usage: view
            .readings
            .iter()
            .map(|r| (r.metric.as_str(), UsageReading::from(r)))
            .collect(),
    };
    let json = serde_json::to_vec(&body).expect("entitlements serialize");
    let etag = HeaderValue::from_str(&format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(&json))[..32]
    ))
    .expect("hex is a valid header");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| super::plans::matches(v, &etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(ENTITLEMENTS_CACHE),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    #[test]
    fn the_gauge_schemas_maximum_is_the_highest_level_set() {
        let schema = serde_json::to_value(super::GaugeInput::schema()).unwrap();
        assert_eq!(
            schema["properties"]["value"]["maximum"],
            crate::app::MAX_GAUGE_VALUE
        );
    }
}

//! The Cosmos DB (NoSQL API) store, used in Azure.
//!
//! Every hot path is a point operation in one partition: a metered request
//! is one server-side increment (`usage`), a named usage operation or
//! reservation is two parallel point reads and one batch in the account's
//! partition, a user, account or membership read is one point read. Everything about one account (its document,
//! members, invitations, seat lock and outbox) shares its partition of
//! `accounts`, so each change to it is one transactional batch. Facts that
//! must be unique across partitions (an email, a Stripe customer, an
//! invoice's owner) are claimed with lookup documents created
//! insert-if-absent (`lookups`), never with cross-partition queries.
//! Cross-partition queries serve only the timers (reconciliation, outbox
//! retries, purge) and the list of a user's accounts.

mod accounts;
mod audit;
pub mod client;
mod docs;
pub mod layout;
mod ledger;
mod members;
mod meter;
pub mod migrate;
mod outbox;
mod rollups;
mod service_keys;
mod usage;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use azure_data_cosmos::clients::{ContainerClient, DatabaseClient};
use azure_data_cosmos::models::{ContainerProperties, ItemResponse, TimeToLive};
use azure_data_cosmos::{CosmosClient, CosmosError, FeedScope, Query, TransactionalBatch};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;

use crate::domain::ports::{Etag, StoreError};
use layout::{ContainerSpec, DefaultTtl, CONTAINERS};
pub use meter::{Meter, MeterReading};

/// The store over one database's containers.
#[derive(Clone)]
pub struct CosmosStore {
    users: ContainerClient,
    accounts: ContainerClient,
    lookups: ContainerClient,
    payments: ContainerClient,
    invoices: ContainerClient,
    usage: ContainerClient,
    events: ContainerClient,
    meter: Meter,
    /// The usage documents this store last wrote, with their etags.
    written: Arc<usage::Written>,
}

impl CosmosStore {
    /// Opens the containers of `database`, which must exist (`handler cosmos init`).
    pub async fn open(client: &CosmosClient, database: &str) -> Result<Self, StoreError> {
        let db = client.database_client(database.to_owned());
        let db = &db;
        let open = |spec: ContainerSpec| async move {
            db.container_client(spec.name, None).await.map_err(|e| {
                StoreError::unavailable(format!(
                    "container {}/{} cannot be opened (run `handler cosmos init`?): {}",
                    database,
                    spec.name,
                    brief(&e)
                ))
            })
        };
        Ok(Self {
            users: open(layout::USERS).await?,
            accounts: open(layout::ACCOUNTS).await?,
            lookups: open(layout::LOOKUPS).await?,
            payments: open(layout::PAYMENTS).await?,
            invoices: open(layout::INVOICES).await?,
            usage: open(layout::USAGE_RECORDS).await?,
            events: open(layout::WEBHOOK_EVENTS).await?,
            meter: Meter::default(),
            written: Arc::default(),
        })
    }

    /// Round trips and request units spent so far (for benchmarks and logs).
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    async fn read_doc<T: DeserializeOwned>(
        &self,
        container: &ContainerClient,
        pk: &str,
        id: &str,
    ) -> Result<Option<(T, Etag)>, StoreError> {
        let found = self
            .call(|| container.read_item(pk.to_owned(), id, None))
            .await;
        match found {
            Ok(r) => {
                let etag = etag_of(&r)?;
                let doc = r.into_model().map_err(StoreError::corrupt)?;
                Ok(Some((doc, etag)))
            }
            Err(e) if e.status().is_not_found() => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Runs one query and collects every page.
    async fn query<T: DeserializeOwned + Send + 'static>(
        &self,
        container: &ContainerClient,
        query: Query,
        scope: FeedScope,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut attempt = 0;
        loop {
            let pages = container
                .query_items::<T>(query.clone(), scope.clone(), None)
                .await;
            let result = match pages {
                Ok(items) => {
                    let mut pages = items.into_pages();
                    let mut items = Vec::new();
                    let mut failed = None;
                    loop {
                        match pages.try_next().await {
                            Ok(Some(page)) => {
                                self.meter.record(page.headers().request_charge());
                                items.extend(page.into_items());
                            }
                            Ok(None) => break,
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    match failed {
                        None => Ok(items),
                        Some(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(items) => {
                    out.extend(items);
                    return Ok(out);
                }
                Err(e) if (retryable(&e) || e.status().is_timeout()) && attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(backoff(&e, attempt)).await;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// One request with bounded retries: of throttling and unavailability,
    /// which Cosmos reports before applying anything (the SDK retries 429s
    /// a few times; this outlasts a longer storm), and of timeouts, whose
    /// outcome is unknown. Every write but an increment is idempotent when
    /// repeated: creates are insert-if-absent (409 means done), replaces
    /// carry If-Match (a repeat gets 412 and the caller re-reads).
    async fn call<F, Fut>(&self, op: F) -> Result<ItemResponse, CosmosError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<ItemResponse, CosmosError>>,
    {
        self.call_retrying(op, |e| retryable(e) || e.status().is_timeout())
            .await
    }

    async fn call_retrying<F, Fut>(
        &self,
        op: F,
        retry: impl Fn(&CosmosError) -> bool,
    ) -> Result<ItemResponse, CosmosError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<ItemResponse, CosmosError>>,
    {
        let mut attempt = 0;
        loop {
            let result = op().await;
            self.meter.count(&result);
            match result {
                Err(e) if retry(&e) && attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(backoff(&e, attempt)).await;
                }
                other => return other,
            }
        }
    }
}

impl CosmosStore {
    /// Runs a transactional batch: `Ok(Ok(etags))`, one per operation, if
    /// it was applied; `Ok(Err(status))`, the first failed operation's
    /// status (412, 409, 404...), if it was not. Refusals and timeouts are
    /// retried like `call`'s: every batch here holds only creates and
    /// If-Match writes, so a repeat of one that landed fails whole.
    async fn batch(
        &self,
        container: &ContainerClient,
        batch: TransactionalBatch,
    ) -> Result<Result<Vec<Option<String>>, u16>, StoreError> {
        let mut attempt = 0;
        loop {
            let result = container
                .execute_transactional_batch(batch.clone(), None)
                .await;
            let response = match result {
                Ok(r) => {
                    self.meter.record(r.headers().request_charge());
                    r
                }
                Err(e) => {
                    self.meter.record(
                        e.response()
                            .and_then(|r| r.headers().request_charge.as_ref()),
                    );
                    let s = e.status();
                    if (retryable(&e) || s.is_timeout()) && attempt < MAX_ATTEMPTS {
                        attempt += 1;
                        tokio::time::sleep(backoff(&e, attempt)).await;
                        continue;
                    }
                    if s.is_precondition_failed() || s.is_conflict() || s.is_not_found() {
                        return Ok(Err(u16::from(s.status_code())));
                    }
                    return Err(StoreError::unavailable(e));
                }
            };
            let results = response.into_model().map_err(StoreError::corrupt)?;
            let ops = results.results();
            if let Some(failed) = ops
                .iter()
                .find(|op| !op.is_success() && op.status_code() != 424)
            {
                return match failed.status_code() {
                    s @ (404 | 409 | 412) => Ok(Err(s)),
                    s => Err(StoreError::unavailable(format!("batch refused: {s}"))),
                };
            }
            return Ok(Ok(ops
                .iter()
                .map(|op| op.etag().map(str::to_owned))
                .collect()));
        }
    }
}

const MAX_ATTEMPTS: u32 = 6;

/// How often a write that lost a race (a 412 on an If-Match, a 409 on a
/// create) re-reads and tries again before the store reports itself
/// unavailable.
const MAX_ROUNDS: u32 = 64;

/// A short, jittered pause after a lost race, so racers spread out.
async fn pause(round: u32) {
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8);
    tokio::time::sleep(Duration::from_millis(u64::from(round.min(8)) + jitter)).await;
}

fn contended(what: &str) -> StoreError {
    StoreError::unavailable(format!("{what}: the account keeps changing"))
}

/// 429 (throttled) and 449 (retry with) are refused before anything is
/// written; a 503 from the gateway means the write was not accepted either.
fn retryable(e: &CosmosError) -> bool {
    let s = e.status();
    s.is_throttled() || s.is_retry_with() || s.is_service_unavailable()
}

fn backoff(e: &CosmosError, attempt: u32) -> Duration {
    let hinted = e
        .response()
        .and_then(|r| r.headers().retry_after_ms)
        .map(Duration::from_millis)
        .unwrap_or_default();
    let exponential = Duration::from_millis(25 << attempt.min(6));
    hinted.max(exponential).min(Duration::from_secs(2))
}

fn etag_of(r: &ItemResponse) -> Result<Etag, StoreError> {
    r.headers()
        .etag()
        .map(|e| Etag(e.to_string()))
        .ok_or_else(|| StoreError::corrupt("a write answered without an etag"))
}

/// The error's status and message, without the request that caused it.
fn brief(e: &CosmosError) -> String {
    let s = e.status();
    format!("{} {}", u16::from(s.status_code()), e)
        .chars()
        .take(300)
        .collect()
}

fn unavailable(e: CosmosError) -> StoreError {
    if e.status().is_precondition_failed() {
        StoreError::VersionConflict
    } else {
        StoreError::unavailable(e)
    }
}

fn time_to_live(ttl: DefaultTtl) -> TimeToLive {
    match ttl {
        DefaultTtl::Off => TimeToLive::Forever,
        DefaultTtl::PerItem => TimeToLive::NoDefault,
        DefaultTtl::Seconds(s) => TimeToLive::Seconds(s as u32),
    }
}

/// Creates the database and every container with its partition key and
/// default TTL, leaving existing ones as they are. Idempotent. An existing
/// container partitioned otherwise than the layout says (`payments`,
/// `invoices` and `usage_records` of the one-user era, on `/user_id`) is an
/// error: Cosmos DB cannot change a partition key, so its documents must be
/// moved to a new container first, and the store could write none there.
pub async fn init(client: &CosmosClient, database: &str) -> Result<Vec<String>, StoreError> {
    let mut created = Vec::new();
    match client.create_database(database, None).await {
        Ok(_) => created.push(format!("database {database}")),
        Err(e) if e.status().is_conflict() => {}
        Err(e) => return Err(unavailable(e)),
    }
    let db: DatabaseClient = client.database_client(database.to_owned());
    for spec in CONTAINERS {
        let props = ContainerProperties::new(spec.name, spec.partition_key.into())
            .with_default_ttl(time_to_live(spec.default_ttl));
        match db.create_container(props, None).await {
            Ok(_) => created.push(format!("container {}", spec.name)),
            Err(e) if e.status().is_conflict() => {
                let (paths, _) = describe(client, database, spec.name).await?;
                if paths != [spec.partition_key] {
                    return Err(StoreError::corrupt(format!(
                        "container {database}/{} is partitioned on {}, the layout on {}: move its documents to a container partitioned on {} first",
                        spec.name,
                        paths.join(","),
                        spec.partition_key,
                        spec.partition_key,
                    )));
                }
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(created)
}

/// A container's partition key path and default TTL as the account has them.
pub async fn describe(
    client: &CosmosClient,
    database: &str,
    container: &str,
) -> Result<(Vec<String>, Option<i64>), StoreError> {
    let c = client
        .database_client(database.to_owned())
        .container_client(container, None)
        .await
        .map_err(unavailable)?;
    let props: ContainerProperties = c
        .read(None)
        .await
        .map_err(unavailable)?
        .into_model()
        .map_err(StoreError::corrupt)?;
    let ttl = match props.default_ttl {
        TimeToLive::Forever => None,
        TimeToLive::NoDefault => Some(-1),
        TimeToLive::Seconds(s) => Some(i64::from(s)),
        _ => None,
    };
    let paths = props
        .partition_key
        .paths()
        .iter()
        .map(|p| p.to_string())
        .collect();
    Ok((paths, ttl))
}

//! `handler migrate --from-database <old>`: copies a database of the
//! one-user era (users paid) into the database the service is configured
//! for, laid out for accounts (`layout.rs`) by `handler cosmos init`.
//!
//! Cosmos DB cannot change a container's partition key, and `payments`,
//! `invoices` and `usage_records` moved from `/user_id` to `/account_id`,
//! so an old database cannot be upgraded in place: its documents are read
//! here as raw JSON and written, in their new shapes, to the new database.
//! The old database is only read.
//!
//! What becomes of each old document:
//!
//! - a user becomes a user document and their own account (the id
//!   `AccountId::own_account_of`, the user's own UUID) holding their
//!   subscription, named after them, billing to their email, with them
//!   as owner since they registered. This goes through the store's
//!   `UserStore::register`, so the email and the Stripe customer are
//!   claimed exactly as a registration claims them.
//! - pending and sending outbox messages move to their account's
//!   partition of `accounts`, keeping their status, attempts and times;
//!   sent and failed ones are dropped.
//! - payments, invoices (and their `invoice:` claim), usage counters, the
//!   rollup's per-day index, monthly summaries and processed webhook events
//!   are copied with `account_id` for `user_id`. Records past their
//!   retention are dropped; the others get a `ttl` that ends where theirs
//!   did (Cosmos counts `ttl` from the last write, which is now the copy).
//! - the rollup cursor is copied.
//! - nothing else: the old `email:`/`customer:` lookups (remade by the
//!   registration) and the Functions host's `leases`.
//!
//! Every write is create-if-absent, so a second run, or a run after one
//! that stopped half-way, copies only what is missing and never doubles a
//! count (no increments); and a document the service has changed since in
//! the new database is left as it is. A user whose user document and
//! account are both there is "already there"; one whose registration
//! finished half-way is registered again (`register` takes its own earlier
//! attempt for done). A user who cannot be registered (their email or
//! Stripe customer is another's in the new database) is reported, and so
//! are the records left behind with them; the rest is copied, and a run
//! after the conflict is settled copies what was left.
//!
//! The old shapes, as commit e127c42 wrote them (each also carries
//! Cosmos's `_rid`, `_self`, `_etag`, `_attachments` and `_ts`):
//!
//! - `users` (pk `/user_id`), `type: "user"`: `{id, user_id, type,
//!   watch_at, user: {id, email, name, password_hash, created_at,
//!   subscription}}`, `id` and `user_id` the user's id.
//! - `users`, `type: "outbox"`: the message's fields at the top level
//!   (`id, user_id, kind, data, created_at`) with `status, attempts,
//!   claimed_at, not_before, sent_at, last_error, created_ms, ttl`.
//! - `payments` (pk `/user_id`): `{id, user_id, created_ms, expires_at,
//!   ttl, payment: {id, user_id, amount, status, description,
//!   stripe_invoice_id, receipt_url, created_at}}`.
//! - `invoices` (pk `/user_id`): `{id, user_id, created_ms, expires_at,
//!   ttl, invoice: {id, user_id, number, amount_due, amount_paid, status,
//!   period_start, period_end, hosted_invoice_url, pdf_url, created_at}}`.
//! - `usage_records` (pk `/user_id`), `type: "usage"`: `{id, user_id,
//!   type, metric, window_start, window_end, quantity, expires_at, ttl}`,
//!   `id` `<metric>:<window start ms>` or `<metric>:level`; `type:
//!   "active"`: `{id: <user id>, user_id: "day:<date>", type, expires_at,
//!   ttl}`; `type: "summary"`: `{id: "summary:<month start ms>", user_id,
//!   type, month_start, month_end, api_calls, documents, exports,
//!   updated_at, ttl}`.
//! - `webhook_events` (pk `/id`): `{id, processed_at, expires_at, ttl}`.
//! - `lookups` (pk `/id`): `{id: "email:…" | "customer:…" | "invoice:…",
//!   user_id}`, and `{id: "rollup-cursor", day}`.

use std::collections::{BTreeMap, HashSet};

use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::{CosmosClient, FeedScope, Query};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::docs::{
    self, ActiveDoc, CounterDoc, CursorDoc, EventDoc, InvoiceDoc, OutboxDoc, PaymentDoc, SummaryDoc,
};
use super::users::Claim;
use super::{brief, describe, layout, unavailable, CosmosStore};
use crate::domain::account::{own_account, AccountId};
use crate::domain::outbox::OutboxState;
use crate::domain::ports::{StoreError, UserStore};
use crate::domain::subscription::Subscription;
use crate::domain::user::{Email, PersonName, User, UserId};

/// The old database's containers (the names did not change); the ones
/// partitioned on `/user_id` are how a database of the one-user era is
/// told from a new one.
const OLD_USERS: &str = "users";
const OLD_LOOKUPS: &str = "lookups";
const OLD_PAYMENTS: &str = "payments";
const OLD_INVOICES: &str = "invoices";
const OLD_USAGE: &str = "usage_records";
const OLD_EVENTS: &str = "webhook_events";
const OLD_BY_USER: [&str; 4] = [OLD_USERS, OLD_PAYMENTS, OLD_INVOICES, OLD_USAGE];
const OLD_PARTITION_KEY: &str = "/user_id";

/// The rollup cursor's id in `lookups`, then as now.
const CURSOR_ID: &str = "rollup-cursor";

/// A user document of the one-user era: the user with their subscription.
#[derive(Deserialize)]
struct OldUserDoc {
    user: OldUser,
}

#[derive(Deserialize)]
struct OldUser {
    id: UserId,
    email: Email,
    name: PersonName,
    password_hash: String,
    created_at: DateTime<Utc>,
    subscription: Subscription,
}

/// What became of one kind of document.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Written to the new database by this run.
    pub copied: u64,
    /// Already in the new database (an earlier run): left as it is.
    pub present: u64,
    /// Not copied: dropped on purpose (see each kind) or a problem.
    pub skipped: u64,
}

/// What a run copied and skipped, kind by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Users, each with their own account and owner membership; skipped:
    /// unreadable, or a conflict in the new database (see `problems`).
    pub users: Tally,
    /// Skipped: sent or failed messages (dropped), or problems.
    pub outbox: Tally,
    /// Skipped: past retention, or problems.
    pub payments: Tally,
    pub invoices: Tally,
    pub usage_counters: Tally,
    pub day_index: Tally,
    pub monthly_summaries: Tally,
    pub webhook_events: Tally,
    pub rollup_cursor: Tally,
    /// Documents that were not copied and should have been, each with why.
    /// A run with problems leaves the rest copied; fix and run again.
    pub problems: Vec<String>,
}

impl MigrationReport {
    /// One line per kind, then one per problem.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = [
            (
                "users (each with their own account)",
                self.users,
                "unreadable or conflicting",
            ),
            ("outbox messages", self.outbox, "sent or failed, dropped"),
            ("payments", self.payments, "past retention"),
            ("invoices", self.invoices, "past retention"),
            ("usage counters", self.usage_counters, "past retention"),
            ("rollup day index entries", self.day_index, "past retention"),
            ("monthly summaries", self.monthly_summaries, "unreadable"),
            ("webhook events", self.webhook_events, "past retention"),
            ("rollup cursor", self.rollup_cursor, "unreadable"),
        ]
        .into_iter()
        .map(|(what, t, skipped)| {
            format!(
                "{what}: {} copied, {} already there, {} skipped ({skipped}, or a problem below)",
                t.copied, t.present, t.skipped
            )
        })
        .collect();
        lines.extend(self.problems.iter().map(|p| format!("not migrated: {p}")));
        lines
    }
}

/// Copies the database `from`, of the one-user era, into `to`, which
/// `init` made; idempotent. `now` decides what is past retention. Fails
/// when either database is not laid out as expected or Cosmos DB is
/// unavailable (run it again: what was copied stays); documents it could
/// not copy are listed in the report's `problems`.
pub async fn migrate(
    client: &CosmosClient,
    from: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<MigrationReport, StoreError> {
    check_layouts(client, from, to).await?;
    let store = CosmosStore::open(client, to).await?;
    let db = client.database_client(from.to_owned());
    let open = |name: &'static str| {
        let db = &db;
        async move {
            db.container_client(name, None).await.map_err(|e| {
                StoreError::unavailable(format!(
                    "container {from}/{name} cannot be opened: {}",
                    brief(&e)
                ))
            })
        }
    };
    let old = Old {
        users: open(OLD_USERS).await?,
        lookups: open(OLD_LOOKUPS).await?,
        payments: open(OLD_PAYMENTS).await?,
        invoices: open(OLD_INVOICES).await?,
        usage: open(OLD_USAGE).await?,
        events: open(OLD_EVENTS).await?,
    };
    let mut run = Migration {
        store: &store,
        now,
        accounts: HashSet::new(),
        orphans: BTreeMap::new(),
        report: MigrationReport::default(),
    };
    // Users first: every other record is copied only if its account is
    // there, so nothing lands in a partition nobody owns.
    run.scan(&old.users, Some(docs::USER), Source::Users)
        .await?;
    run.scan(&old.users, Some(docs::OUTBOX), Source::Outbox)
        .await?;
    run.scan(&old.payments, None, Source::Payments).await?;
    run.scan(&old.invoices, None, Source::Invoices).await?;
    run.scan(&old.usage, None, Source::Usage).await?;
    run.scan(&old.events, None, Source::Events).await?;
    run.cursor(&old.lookups).await?;
    for (account, count) in std::mem::take(&mut run.orphans) {
        run.report.problems.push(format!(
            "{count} record(s) of user {account}: the user was not migrated (see above, or no such user)"
        ));
    }
    Ok(run.report)
}

/// `to` must be laid out as `layout.rs` says (so `init` ran), `from` must
/// be of the one-user era, and they must differ.
async fn check_layouts(client: &CosmosClient, from: &str, to: &str) -> Result<(), StoreError> {
    if from == to {
        return Err(StoreError::corrupt(format!(
            "--from-database {from} is the database being migrated into (COSMOS_DATABASE): migrate into a new one"
        )));
    }
    for spec in layout::CONTAINERS {
        let (paths, _) = describe(client, to, spec.name).await.map_err(|e| {
            StoreError::unavailable(format!(
                "container {to}/{} cannot be read ({e}): run `COSMOS_DATABASE={to} handler cosmos init` first",
                spec.name
            ))
        })?;
        if paths != [spec.partition_key] {
            return Err(StoreError::corrupt(format!(
                "container {to}/{} is partitioned on {}, the layout on {}: migrate into a new database made by `handler cosmos init`",
                spec.name,
                paths.join(","),
                spec.partition_key
            )));
        }
    }
    for name in OLD_BY_USER {
        let (paths, _) = describe(client, from, name).await.map_err(|e| {
            StoreError::unavailable(format!("container {from}/{name} cannot be read ({e})"))
        })?;
        if paths != [OLD_PARTITION_KEY] {
            return Err(StoreError::corrupt(format!(
                "{from} is not a database of the one-user era: its container {name} is partitioned on {}, not {OLD_PARTITION_KEY}",
                paths.join(",")
            )));
        }
    }
    Ok(())
}

struct Old {
    users: ContainerClient,
    lookups: ContainerClient,
    payments: ContainerClient,
    invoices: ContainerClient,
    usage: ContainerClient,
    events: ContainerClient,
}

#[derive(Clone, Copy)]
enum Source {
    Users,
    Outbox,
    Payments,
    Invoices,
    Usage,
    Events,
}

enum Wrote {
    Copied,
    Present,
}

impl Tally {
    fn count(&mut self, wrote: Wrote) {
        match wrote {
            Wrote::Copied => self.copied += 1,
            Wrote::Present => self.present += 1,
        }
    }
}

struct Migration<'a> {
    store: &'a CosmosStore,
    now: DateTime<Utc>,
    /// The accounts in the new database, migrated or already there.
    accounts: HashSet<AccountId>,
    /// Records left behind because their user was not migrated, by user.
    orphans: BTreeMap<AccountId, u64>,
    report: MigrationReport,
}

/// The old document with `user_id` renamed `account_id` at the top level
/// and in `nested` (the account has the user's id), without Cosmos's
/// system properties.
fn account_keyed(mut doc: Value, nested: Option<&str>) -> Value {
    if let Value::Object(map) = &mut doc {
        map.retain(|k, _| !k.starts_with('_'));
        if let Some(v) = map.remove("user_id") {
            map.insert("account_id".into(), v);
        }
        if let Some(Value::Object(inner)) = nested.and_then(|n| map.get_mut(n)) {
            if let Some(v) = inner.remove("user_id") {
                inner.insert("account_id".into(), v);
            }
        }
    }
    doc
}

fn id_of(doc: &Value) -> String {
    doc["id"].as_str().unwrap_or("(no id)").to_owned()
}

impl Migration<'_> {
    /// Every document of `container` (of type `kind`, if given), page by
    /// page, each handed to `one`.
    async fn scan(
        &mut self,
        container: &ContainerClient,
        kind: Option<&str>,
        source: Source,
    ) -> Result<(), StoreError> {
        let query = match kind {
            Some(kind) => Query::from("SELECT * FROM c WHERE c.type = @t")
                .with_parameter("@t", kind)
                .map_err(StoreError::corrupt)?,
            None => Query::from("SELECT * FROM c"),
        };
        let mut pages = container
            .query_items::<Value>(query, FeedScope::full_container(), None)
            .await
            .map_err(unavailable)?
            .into_pages();
        while let Some(page) = pages.try_next().await.map_err(unavailable)? {
            self.store.meter.record(page.headers().request_charge());
            for doc in page.into_items() {
                self.one(source, doc).await?;
            }
        }
        Ok(())
    }

    async fn one(&mut self, source: Source, doc: Value) -> Result<(), StoreError> {
        match source {
            Source::Users => self.user(doc).await,
            Source::Outbox => self.outbox(doc).await,
            Source::Payments => self.payment(doc).await,
            Source::Invoices => self.invoice(doc).await,
            Source::Usage => match doc["type"].as_str() {
                Some(docs::USAGE) => self.counter(doc).await,
                Some(docs::ACTIVE) => self.active(doc).await,
                Some(docs::SUMMARY) => self.summary(doc).await,
                other => {
                    self.problem(format!(
                        "usage_records document {} of unknown type {other:?}",
                        id_of(&doc)
                    ));
                    Ok(())
                }
            },
            Source::Events => self.event(doc).await,
        }
    }

    fn problem(&mut self, what: String) {
        tracing::warn!(problem = %what, "migration: a document was not copied");
        self.report.problems.push(what);
    }

    /// Reads a document in its new shape; `None` (and a problem) if it
    /// does not decode.
    fn decode<T: serde::de::DeserializeOwned>(&mut self, what: &str, doc: Value) -> Option<T> {
        let id = id_of(&doc);
        match serde_json::from_value(doc) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(format!("{what} {id} does not read as one: {e}"));
                None
            }
        }
    }

    /// Whether the account is in the new database; if not, the record is
    /// counted as left behind.
    fn owned(&mut self, account: AccountId) -> bool {
        if self.accounts.contains(&account) {
            return true;
        }
        *self.orphans.entry(account).or_default() += 1;
        false
    }

    /// Seconds from now to `expires_ms`, rounded up; `None` once past.
    fn remaining(&self, expires_ms: i64) -> Option<i64> {
        let left = expires_ms - docs::ms(self.now);
        (left > 0).then(|| (left + 999) / 1000)
    }

    /// Creates the document if absent.
    async fn create<T: Serialize>(
        &self,
        container: &ContainerClient,
        pk: &str,
        id: &str,
        doc: &T,
    ) -> Result<Wrote, StoreError> {
        let created = self
            .store
            .call(|| container.create_item(pk.to_owned(), id, doc, None))
            .await;
        match created {
            Ok(_) => Ok(Wrote::Copied),
            Err(e) if e.status().is_conflict() => Ok(Wrote::Present),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn user(&mut self, doc: Value) -> Result<(), StoreError> {
        let Some(OldUserDoc { user: old }) = self.decode("user", doc) else {
            self.report.users.skipped += 1;
            return Ok(());
        };
        let account_id = AccountId::own_account_of(old.id);
        if let Some(done) = self.already_there(old.id, account_id).await? {
            if done {
                self.report.users.present += 1;
            } else {
                self.report.users.skipped += 1;
            }
            self.accounts.insert(account_id);
            return Ok(());
        }
        let user = User::with_password(
            old.id,
            old.email,
            old.name,
            old.password_hash,
            old.created_at,
        );
        let (account, owner) = own_account(&user, old.subscription);
        match self.store.register(&user, &account, &owner, &[]).await {
            Ok(_) => {
                self.report.users.copied += 1;
                self.accounts.insert(account_id);
            }
            Err(StoreError::Conflict(what)) => {
                self.report.users.skipped += 1;
                self.problem(format!(
                    "user {} ({}): its {} already belongs to another user or account in the new database",
                    user.id,
                    user.email.as_str(),
                    what.as_str()
                ));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// A user migrated before: their user document and account are both
    /// there. Their claims are made again (a run may have stopped before
    /// them), as the new database has them now: the service may have
    /// changed the email or customer since. `Some(true)` if so,
    /// `Some(false)` if a claim is held by another (a problem), `None` if
    /// the user is still to be migrated.
    async fn already_there(
        &mut self,
        user: UserId,
        account: AccountId,
    ) -> Result<Option<bool>, StoreError> {
        let Some((user_doc, _)) = self.store.user_doc(user).await? else {
            return Ok(None);
        };
        let Some((account_doc, _)) = self.store.account_doc(account).await? else {
            return Ok(None);
        };
        let email = self
            .store
            .claim(Claim::Email(&user_doc.user.email), &docs::user_pk(user))
            .await;
        let customer = match email {
            Ok(()) => self.store.claim_account_facts(&account_doc.account).await,
            Err(e) => Err(e),
        };
        match customer {
            Ok(()) => Ok(Some(true)),
            Err(StoreError::Conflict(what)) => {
                self.problem(format!(
                    "user {user}: migrated, but its {} is claimed by another user or account in the new database",
                    what.as_str()
                ));
                Ok(Some(false))
            }
            Err(e) => Err(e),
        }
    }

    async fn outbox(&mut self, doc: Value) -> Result<(), StoreError> {
        let Some(doc) = self.decode::<OutboxDoc>("outbox message", account_keyed(doc, None)) else {
            self.report.outbox.skipped += 1;
            return Ok(());
        };
        if matches!(doc.status, OutboxState::Sent | OutboxState::Failed) {
            self.report.outbox.skipped += 1;
            return Ok(());
        }
        let account = doc.message.account_id;
        if !self.owned(account) {
            self.report.outbox.skipped += 1;
            return Ok(());
        }
        if docs::reserved_id(account, &doc.message.id) {
            self.report.outbox.skipped += 1;
            self.problem(format!(
                "outbox message {}: the id is one of the account's own documents now",
                doc.message.id
            ));
            return Ok(());
        }
        let wrote = self
            .create(
                &self.store.accounts,
                &docs::pk(account),
                &doc.message.id,
                &doc,
            )
            .await?;
        self.report.outbox.count(wrote);
        Ok(())
    }

    async fn payment(&mut self, doc: Value) -> Result<(), StoreError> {
        let Some(mut doc) =
            self.decode::<PaymentDoc>("payment", account_keyed(doc, Some("payment")))
        else {
            self.report.payments.skipped += 1;
            return Ok(());
        };
        let Some(ttl) = self.remaining(doc.expires_at) else {
            self.report.payments.skipped += 1;
            return Ok(());
        };
        if !self.owned(doc.payment.account_id) {
            self.report.payments.skipped += 1;
            return Ok(());
        }
        doc.ttl = ttl;
        doc.account_id = docs::pk(doc.payment.account_id);
        let wrote = self
            .create(&self.store.payments, &doc.account_id, &doc.id, &doc)
            .await?;
        self.report.payments.count(wrote);
        Ok(())
    }

    async fn invoice(&mut self, doc: Value) -> Result<(), StoreError> {
        let Some(mut doc) =
            self.decode::<InvoiceDoc>("invoice", account_keyed(doc, Some("invoice")))
        else {
            self.report.invoices.skipped += 1;
            return Ok(());
        };
        let account = doc.invoice.account_id;
        let Some(ttl) = self.remaining(doc.expires_at) else {
            self.report.invoices.skipped += 1;
            return Ok(());
        };
        if !self.owned(account) {
            self.report.invoices.skipped += 1;
            return Ok(());
        }
        doc.ttl = ttl;
        doc.account_id = docs::pk(account);
        // As `upsert_invoice` does: the claim first, then the document.
        match self
            .store
            .claim(Claim::Invoice(&doc.id), &doc.account_id)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                self.report.invoices.skipped += 1;
                self.problem(format!(
                    "invoice {}: claimed by another account in the new database",
                    doc.id
                ));
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let wrote = self
            .create(&self.store.invoices, &doc.account_id, &doc.id, &doc)
            .await?;
        self.report.invoices.count(wrote);
        Ok(())
    }

    async fn counter(&mut self, doc: Value) -> Result<(), StoreError> {
        let Some(mut doc) = self.decode::<CounterDoc>("usage counter", account_keyed(doc, None))
        else {
            self.report.usage_counters.skipped += 1;
            return Ok(());
        };
        // Gauges have no expiry and keep `ttl: -1`.
        if let Some(expires) = doc.expires_at {
            let Some(ttl) = self.remaining(expires) else {
                self.report.usage_counters.skipped += 1;
                return Ok(());
            };
            doc.ttl = ttl;
        }
        let Ok(account) = docs::parse_account_id(&doc.account_id) else {
            self.report.usage_counters.skipped += 1;
            self.problem(format!(
                "usage counter {}: partition {} is no user id",
                doc.id, doc.account_id
            ));
            return Ok(());
        };
        if !self.owned(account) {
            self.report.usage_counters.skipped += 1;
            return Ok(());
        }
        let wrote = self
            .create(&self.store.usage, &doc.account_id, &doc.id, &doc)
            .await?;
        self.report.usage_counters.count(wrote);
        Ok(())
    }

    /// An entry of the rollup's day index: its partition (`user_id`, now
    /// `account_id`) is the day, its id the user, now the account.
    async fn active(&mut self, doc: Value) -> Result<(), StoreError> {
        let Some(mut doc) = self.decode::<ActiveDoc>("day index entry", account_keyed(doc, None))
        else {
            self.report.day_index.skipped += 1;
            return Ok(());
        };
        let Some(ttl) = self.remaining(doc.expires_at) else {
            self.report.day_index.skipped += 1;
            return Ok(());
        };
        doc.ttl = ttl;
        let Ok(account) = docs::parse_account_id(&doc.id) else {
            self.report.day_index.skipped += 1;
            self.problem(format!(
                "day index entry {} in {}: the id is no user id",
                doc.id, doc.account_id
            ));
            return Ok(());
        };
        if !self.owned(account) {
            self.report.day_index.skipped += 1;
            return Ok(());
        }
        let wrote = self
            .create(&self.store.usage, &doc.account_id, &doc.id, &doc)
            .await?;
        self.report.day_index.count(wrote);
        Ok(())
    }

    async fn summary(&mut self, doc: Value) -> Result<(), StoreError> {
        let Some(doc) = self.decode::<SummaryDoc>("monthly summary", account_keyed(doc, None))
        else {
            self.report.monthly_summaries.skipped += 1;
            return Ok(());
        };
        let Ok(account) = docs::parse_account_id(&doc.account_id) else {
            self.report.monthly_summaries.skipped += 1;
            self.problem(format!(
                "monthly summary {}: partition {} is no user id",
                doc.id, doc.account_id
            ));
            return Ok(());
        };
        if !self.owned(account) {
            self.report.monthly_summaries.skipped += 1;
            return Ok(());
        }
        let wrote = self
            .create(&self.store.usage, &doc.account_id, &doc.id, &doc)
            .await?;
        self.report.monthly_summaries.count(wrote);
        Ok(())
    }

    async fn event(&mut self, doc: Value) -> Result<(), StoreError> {
        let Some(mut doc) = self.decode::<EventDoc>("webhook event", account_keyed(doc, None))
        else {
            self.report.webhook_events.skipped += 1;
            return Ok(());
        };
        let Some(ttl) = self.remaining(doc.expires_at) else {
            self.report.webhook_events.skipped += 1;
            return Ok(());
        };
        doc.ttl = ttl;
        let wrote = self
            .create(&self.store.events, &doc.id, &doc.id, &doc)
            .await?;
        self.report.webhook_events.count(wrote);
        Ok(())
    }

    /// The rollup cursor, if the old database has one; a cursor the new
    /// database already has (the rollup ran there) is kept.
    async fn cursor(&mut self, old_lookups: &ContainerClient) -> Result<(), StoreError> {
        let found = self
            .store
            .call(|| old_lookups.read_item(CURSOR_ID, CURSOR_ID, None))
            .await;
        let doc: Value = match found {
            Ok(r) => r.into_model().map_err(StoreError::corrupt)?,
            Err(e) if e.status().is_not_found() => return Ok(()),
            Err(e) => return Err(unavailable(e)),
        };
        let Some(doc) = self.decode::<CursorDoc>("rollup cursor", doc) else {
            self.report.rollup_cursor.skipped += 1;
            return Ok(());
        };
        let wrote = self
            .create(&self.store.lookups, CURSOR_ID, CURSOR_ID, &doc)
            .await?;
        self.report.rollup_cursor.count(wrote);
        Ok(())
    }
}

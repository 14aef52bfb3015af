//! `handler accounts import`: users of the identity provider, and the
//! accounts they belong to, brought into billing from a JSON Lines file
//! (README, "Importing users of the identity provider"). Idempotent: what
//! exists is left as it is. Each line is parsed here (pure); the store is
//! reached through the ports only.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Read};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::audit::member_fields;
use crate::auth::oidc::check_issuer;
use crate::domain::account::{own_account, Account, AccountId, Membership, Role};
use crate::domain::audit::{Actor, AuditAction, AuditEntry, AuditId};
use crate::domain::clock::Clock;
use crate::domain::plan::{Catalog, PlanId};
use crate::domain::ports::{Store, StoreError, Uniqueness};
use crate::domain::subscription::Subscription;
use crate::domain::user::{Email, ExternalIdentity, PersonName, User, UserId};

/// The longest line read; a longer one is refused without being held.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Refusals listed in the report; the count goes on past it.
const MAX_LISTED: usize = 1000;

/// One line of the file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLine {
    pub identity: ExternalIdentity,
    pub email: Email,
    pub email_verified: bool,
    pub name: PersonName,
    pub target: Target,
}

/// Which account a line puts its user in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Their own account, on this plan.
    Own {
        plan: PlanId,
        customer: Option<String>,
    },
    /// The organization's account `key`, which this line creates.
    Owner {
        key: String,
        name: String,
        plan: PlanId,
        customer: Option<String>,
    },
    /// The organization's account `key`, which its owner's line creates.
    Joins { key: String, role: Role },
}

const FIELDS: [&str; 10] = [
    "issuer",
    "subject",
    "email",
    "name",
    "plan",
    "email_verified",
    "stripe_customer_id",
    "account",
    "account_name",
    "role",
];

/// Parses one line. The reason never quotes a value: it names the field
/// and what is wrong, so a report holds no personal data.
pub fn parse_line(text: &str) -> Result<ImportLine, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => "is not a JSON object".to_owned(),
        _ => format!("is not valid JSON (at column {})", e.column()),
    })?;
    let Value::Object(fields) = value else {
        return Err("is not a JSON object".into());
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(40).collect();
        return Err(format!("has an unknown field {shown:?}"));
    }
    let f = Fields(&fields);
    let issuer = f.required("issuer")?;
    check_issuer(issuer).map_err(|p| format!("issuer: {p}"))?;
    let subject = f.required("subject")?;
    if subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err("subject: must be at most 255 bytes, without control characters".into());
    }
    let email = Email::parse(f.required("email")?).map_err(|p| format!("email: {p}"))?;
    let name = PersonName::parse(f.required("name")?).map_err(|p| format!("name: {p}"))?;
    let email_verified = match fields.get("email_verified") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("email_verified: must be true or false".into()),
    };
    let plan = f
        .optional("plan")?
        .map(|p| {
            PlanId::from_str(p).map_err(|_| "plan: must be one of free, pro, enterprise".to_owned())
        })
        .transpose()?;
    let customer = f.optional("stripe_customer_id")?.map(str::to_owned);
    if let Some(c) = &customer {
        let shaped = c.starts_with("cus_")
            && c.len() <= 255
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !shaped {
            return Err("stripe_customer_id: must be a Stripe customer id (cus_...)".into());
        }
    }
    let billed = |plan: Option<PlanId>| -> Result<PlanId, String> {
        let plan = plan.ok_or("plan: is required (free, pro or enterprise)")?;
        if plan.is_paid() && customer.is_none() {
            return Err(format!(
                "stripe_customer_id: is required on the {} plan: Stripe bills it",
                plan.as_str()
            ));
        }
        Ok(plan)
    };
    let target = match f.optional("account")? {
        None => {
            if let Some(field) = ["account_name", "role"]
                .into_iter()
                .find(|k| fields.contains_key(*k))
            {
                return Err(format!("{field}: is only for a line with an account"));
            }
            Target::Own {
                plan: billed(plan)?,
                customer: customer.clone(),
            }
        }
        Some(key) => {
            if key.trim().is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
                return Err(
                    "account: must be a non-empty key of at most 200 bytes, without control characters"
                        .into(),
                );
            }
            let key = key.to_owned();
            match f.required("role")? {
                "owner" => {
                    let account_name = f.required("account_name")?;
                    let account_name = PersonName::parse(account_name)
                        .map_err(|p| format!("account_name: {p}"))?;
                    Target::Owner {
                        key,
                        name: account_name.as_str().to_owned(),
                        plan: billed(plan)?,
                        customer: customer.clone(),
                    }
                }
                role @ ("admin" | "member") => {
                    if customer.is_some() {
                        return Err(
                            "stripe_customer_id: is the account's, given on its owner's line"
                                .into(),
                        );
                    }
                    Target::Joins {
                        key,
                        role: if role == "admin" {
                            Role::Admin
                        } else {
                            Role::Member
                        },
                    }
                }
                _ => return Err("role: must be owner, admin or member".into()),
            }
        }
    };
    Ok(ImportLine {
        identity: ExternalIdentity {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
        },
        email,
        email_verified,
        name,
        target,
    })
}

struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn optional(&self, name: &str) -> Result<Option<&'a str>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{name}: must be a string")),
        }
    }

    fn required(&self, name: &str) -> Result<&'a str, String> {
        self.optional(name)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("{name}: is required"))
    }
}

/// A line as read: its text, or why it has none.
enum RawLine {
    Text(String),
    TooLong,
    NotUtf8,
}

/// Reads the next line, holding at most `MAX_LINE_BYTES` of it; `None` at
/// the end of the file.
fn next_line(r: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Option<RawLine>> {
    buf.clear();
    let n = Read::take(&mut *r, MAX_LINE_BYTES as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > MAX_LINE_BYTES {
        // Skip the rest of the line without holding it.
        loop {
            let chunk = r.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    r.consume(i + 1);
                    break;
                }
                None => {
                    let len = chunk.len();
                    r.consume(len);
                }
            }
        }
        return Ok(Some(RawLine::TooLong));
    }
    Ok(Some(match std::str::from_utf8(buf) {
        Ok(s) => RawLine::Text(s.to_owned()),
        Err(_) => RawLine::NotUtf8,
    }))
}

/// A line refused, by number (from 1), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub line: u64,
    pub reason: String,
}

/// An imported account holding more members than its plan's seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverSeats {
    pub account_id: AccountId,
    /// The line of its owner.
    pub line: u64,
    pub plan: PlanId,
    pub members: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Lines read, blank ones aside.
    pub lines: u64,
    pub users_created: u64,
    pub users_unchanged: u64,
    pub accounts_created: u64,
    pub accounts_unchanged: u64,
    pub memberships_added: u64,
    pub memberships_unchanged: u64,
    pub lines_refused: u64,
    /// The first refusals, by line.
    pub refused: Vec<Refusal>,
    pub over_seats: Vec<OverSeats>,
    pub elapsed_ms: u64,
}

impl ImportReport {
    /// Whether the run changed (or, dry, would change) nothing.
    pub fn unchanged(&self) -> bool {
        self.users_created + self.accounts_created + self.memberships_added == 0
    }

    /// The summary, for people: one line per kind, then the refusals and
    /// the accounts over their seats.
    pub fn lines(&self) -> Vec<String> {
        let (verb, added) = if self.dry_run {
            ("would be created", "would be added")
        } else {
            ("created", "added")
        };
        let mut out = vec![
            format!(
                "users: {} {verb}, {} unchanged",
                self.users_created, self.users_unchanged
            ),
            format!(
                "accounts: {} {verb}, {} unchanged",
                self.accounts_created, self.accounts_unchanged
            ),
            format!(
                "memberships: {} {added}, {} unchanged",
                self.memberships_added, self.memberships_unchanged
            ),
            format!("lines: {} read, {} refused", self.lines, self.lines_refused),
        ];
        out.extend(
            self.refused
                .iter()
                .map(|r| format!("line {}: refused: {}", r.line, r.reason)),
        );
        if self.lines_refused > self.refused.len() as u64 {
            out.push(format!(
                "({} more refused lines not listed)",
                self.lines_refused - self.refused.len() as u64
            ));
        }
        out.extend(self.over_seats.iter().map(|o| {
            format!(
                "account {} (owner on line {}): {} members over the {} seats of the {} plan",
                o.account_id,
                o.line,
                o.members,
                o.limit,
                o.plan.as_str()
            )
        }));
        if self.unchanged() && self.lines_refused == 0 {
            out.push(if self.dry_run {
                "nothing to do: everything is imported already".into()
            } else {
                "nothing changed: everything was imported already".into()
            });
        }
        out.push(format!(
            "{} in {:.1}s",
            if self.dry_run {
                "dry run (nothing written)"
            } else {
                "done"
            },
            self.elapsed_ms as f64 / 1000.0
        ));
        out
    }
}

/// Opens the file anew for each pass: it is streamed, never held.
pub type OpenSource<'a> = &'a (dyn Fn() -> io::Result<Box<dyn BufRead + Send>> + Sync);

/// What stops an import: the rest of the file is not read. Running it
/// again takes up where this one stopped (what exists is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the file: {0}")]
    Read(#[from] io::Error),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
}

/// The import, on a store.
pub struct AccountImport {
    pub store: Arc<dyn Store>,
    pub catalog: Catalog,
    pub clock: Arc<dyn Clock>,
}

impl AccountImport {
    /// Imports the file in three streamed passes: every line is checked and
    /// each account key's owners counted; then own accounts and the
    /// accounts of organizations (by their one owner line) are made; then
    /// the other members join. So a member may come before their owner.
    pub async fn run(
        &self,
        open: OpenSource<'_>,
        dry_run: bool,
    ) -> Result<ImportReport, ImportError> {
        let started = Instant::now();
        let mut run = Run {
            store: self.store.as_ref(),
            now: self.clock.now(),
            dry_run,
            report: ImportReport {
                dry_run,
                ..ImportReport::default()
            },
            owners: HashMap::new(),
            users: HashMap::new(),
            accounts: HashMap::new(),
            memberships: HashSet::new(),
            added_to: HashMap::new(),
            customers: HashMap::new(),
            grouped: Vec::new(),
        };
        for pass in [Pass::Check, Pass::Accounts, Pass::Members] {
            let mut reader = open()?;
            let mut buf = Vec::new();
            let mut number = 0u64;
            while let Some(raw) = next_line(reader.as_mut(), &mut buf)? {
                number += 1;
                let parsed = match raw {
                    RawLine::Text(t) if t.trim().is_empty() => continue,
                    RawLine::Text(t) => parse_line(&t),
                    RawLine::TooLong => Err(format!("is longer than {MAX_LINE_BYTES} bytes")),
                    RawLine::NotUtf8 => Err("is not UTF-8".into()),
                };
                match (pass, parsed) {
                    (Pass::Check, Ok(line)) => {
                        run.report.lines += 1;
                        if let Target::Owner { key, .. } = &line.target {
                            run.owners.entry(key.clone()).or_default().push(number);
                        }
                    }
                    (Pass::Check, Err(reason)) => {
                        run.report.lines += 1;
                        run.refuse(number, reason);
                    }
                    (_, Err(_)) => {}
                    (Pass::Accounts, Ok(line)) => run.accounts_of(number, line).await?,
                    (Pass::Members, Ok(line)) => run.join(number, line).await?,
                }
            }
        }
        run.seats(&self.catalog).await?;
        let mut report = run.report;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

#[derive(Clone, Copy)]
enum Pass {
    Check,
    Accounts,
    Members,
}

/// What one import has seen and done. It also stands in for the writes a
/// dry run does not make, so both report the same.
struct Run<'a> {
    store: &'a dyn Store,
    now: DateTime<Utc>,
    dry_run: bool,
    report: ImportReport,
    /// Each account key's owner lines.
    owners: HashMap<String, Vec<u64>>,
    /// Users seen, and whether they exist (or, dry, would).
    users: HashMap<UserId, bool>,
    /// Accounts seen, and the plan of those this run made (or would).
    accounts: HashMap<AccountId, Option<PlanId>>,
    memberships: HashSet<(AccountId, UserId)>,
    /// Members each account gained in this run (or, dry, would).
    added_to: HashMap<AccountId, u64>,
    /// Stripe customers of the accounts this run made (or would).
    customers: HashMap<String, AccountId>,
    /// Organizations' accounts made or found: (account, owner line).
    grouped: Vec<(AccountId, u64)>,
}

impl Run<'_> {
    fn refuse(&mut self, line: u64, reason: String) {
        self.report.lines_refused += 1;
        if self.report.refused.len() < MAX_LISTED {
            self.report.refused.push(Refusal { line, reason });
        }
    }

    fn user_of(line: &ImportLine, now: DateTime<Utc>) -> User {
        User::of_identity(
            line.identity.clone(),
            line.email.clone(),
            line.email_verified,
            line.name.clone(),
            now,
        )
    }

    async fn user_exists(&mut self, id: UserId) -> Result<bool, StoreError> {
        if let Some(&exists) = self.users.get(&id) {
            return Ok(exists);
        }
        let exists = self.store.user_by_id(id).await?.is_some();
        Ok(exists)
    }

    async fn account_exists(&mut self, id: AccountId) -> Result<bool, StoreError> {
        if self.accounts.contains_key(&id) {
            return Ok(true);
        }
        Ok(self.store.account_by_id(id).await?.is_some())
    }

    /// Counts a user once per run.
    fn count_user(&mut self, id: UserId, created: bool) {
        if self.users.insert(id, true).is_none() {
            if created {
                self.report.users_created += 1;
            } else {
                self.report.users_unchanged += 1;
            }
        }
    }

    /// Counts an account once per run.
    fn count_account(&mut self, id: AccountId, created: Option<PlanId>) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.accounts.entry(id) {
            e.insert(created);
            if created.is_some() {
                self.report.accounts_created += 1;
            } else {
                self.report.accounts_unchanged += 1;
            }
        }
    }

    /// Counts a membership once per run.
    fn count_membership(&mut self, account: AccountId, user: UserId, added: bool) {
        if self.memberships.insert((account, user)) {
            if added {
                self.report.memberships_added += 1;
                *self.added_to.entry(account).or_default() += 1;
            } else {
                self.report.memberships_unchanged += 1;
            }
        }
    }

    /// Why the account's Stripe customer cannot be its: another account
    /// holds it (or, dry, would).
    async fn customer_taken(&mut self, account: &Account) -> Result<bool, StoreError> {
        let Some(customer) = &account.subscription.stripe_customer_id else {
            return Ok(false);
        };
        if self
            .customers
            .get(customer)
            .is_some_and(|a| *a != account.id)
        {
            return Ok(true);
        }
        Ok(self
            .store
            .account_by_stripe_customer(customer)
            .await?
            .is_some_and(|a| a.value.id != account.id))
    }

    fn subscription(&self, plan: PlanId, customer: &Option<String>) -> Subscription {
        match customer {
            Some(c) => Subscription::imported(plan, c.clone(), self.now),
            None => Subscription::free(self.now),
        }
    }

    /// The second pass: a line's user with their own account, or an
    /// organization's owner with its account.
    async fn accounts_of(&mut self, number: u64, line: ImportLine) -> Result<(), StoreError> {
        let user = Self::user_of(&line, self.now);
        let (account, owner) = match &line.target {
            Target::Joins { .. } => return Ok(()),
            Target::Own { plan, customer } => {
                own_account(&user, self.subscription(*plan, customer))
            }
            Target::Owner {
                key,
                name,
                plan,
                customer,
            } => {
                let owners = &self.owners[key];
                if owners.len() > 1 {
                    let reason = one_owner(owners);
                    self.refuse(number, reason);
                    return Ok(());
                }
                let account = Account {
                    id: AccountId::of_import_key(key),
                    name: name.clone(),
                    billing_email: user.email.clone(),
                    created_at: self.now,
                    subscription: self.subscription(*plan, customer),
                    last_event_at: None,
                    overrides: Vec::new(),
                    enterprise_offer: None,
                };
                let owner = Membership {
                    account_id: account.id,
                    user_id: user.id,
                    role: Role::Owner,
                    joined_at: self.now,
                };
                self.grouped.push((account.id, number));
                (account, owner)
            }
        };
        let plan = account.subscription.plan_id;
        let user_exists = self.user_exists(user.id).await?;
        if self.account_exists(account.id).await? {
            if !user_exists {
                self.refuse(number, EXISTS_WITHOUT_THEM.into());
                return Ok(());
            }
            // Left as it is, with whoever owns it now.
            self.count_user(user.id, false);
            self.count_account(account.id, None);
            if !self.memberships.contains(&(account.id, user.id))
                && self.store.membership(account.id, user.id).await?.is_some()
            {
                self.count_membership(account.id, user.id, false);
            }
            return Ok(());
        }
        if self.customer_taken(&account).await? {
            self.refuse(number, CUSTOMER_TAKEN.into());
            return Ok(());
        }
        let written = match (self.dry_run, user_exists) {
            (true, _) => Ok(true),
            (false, false) => self
                .store
                .register(&user, &account, &owner, &[])
                .await
                .map(|_| true),
            (false, true) => self.store.create_account(&account, &owner).await,
        };
        match written {
            Ok(created) => {
                self.count_user(user.id, !user_exists);
                self.count_account(account.id, created.then_some(plan));
                self.count_membership(account.id, user.id, created);
                if let Some(c) = &account.subscription.stripe_customer_id {
                    self.customers.insert(c.clone(), account.id);
                }
            }
            Err(StoreError::Conflict(Uniqueness::StripeCustomer)) => {
                self.refuse(number, CUSTOMER_TAKEN.into())
            }
            // Made in between by someone else (a first sign-in): left as it is.
            Err(StoreError::Conflict(Uniqueness::Id)) if user_exists => {
                self.count_user(user.id, false);
                self.count_account(account.id, None);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The third pass: an admin or member joins their organization's account.
    async fn join(&mut self, number: u64, line: ImportLine) -> Result<(), StoreError> {
        let Target::Joins { key, role } = &line.target else {
            return Ok(());
        };
        match self.owners.get(key).map(Vec::as_slice) {
            None | Some([]) => {
                self.refuse(
                    number,
                    "account: no line is its owner (role owner, with the same account)".into(),
                );
                return Ok(());
            }
            Some([_]) => {}
            Some(owners) => {
                let reason = one_owner(owners);
                self.refuse(number, reason);
                return Ok(());
            }
        }
        let account = AccountId::of_import_key(key);
        if !self.account_exists(account).await? {
            let owner = self.owners[key][0];
            self.refuse(
                number,
                format!("account: not created, its owner's line {owner} was refused"),
            );
            return Ok(());
        }
        let user = Self::user_of(&line, self.now);
        let user_created = if self.user_exists(user.id).await? {
            false
        } else if self.dry_run {
            true
        } else {
            self.store.add_user(&user).await?
        };
        self.count_user(user.id, user_created);
        if self.memberships.contains(&(account, user.id)) {
            return Ok(());
        }
        let added = if user_created {
            // A new user is nobody's member yet.
            self.dry_run || self.add_member(account, &user, *role).await?
        } else if self.store.membership(account, user.id).await?.is_some() {
            false
        } else {
            self.dry_run || self.add_member(account, &user, *role).await?
        };
        self.count_membership(account, user.id, added);
        Ok(())
    }

    async fn add_member(
        &self,
        account: AccountId,
        user: &User,
        role: Role,
    ) -> Result<bool, StoreError> {
        // Named by the membership, so a run retried after a lost answer
        // keeps one entry.
        let added = AuditEntry {
            id: AuditId::of_name(account, &format!("import:member:{}", user.id)),
            account_id: account,
            at: self.now,
            actor: Actor::System,
            action: AuditAction::MemberAdded,
            reason: Some("import".to_owned()),
            before: None,
            after: Some(member_fields(user.id, Some(&user.email), role)),
        };
        self.store
            .add_member(
                &Membership {
                    account_id: account,
                    user_id: user.id,
                    role,
                    joined_at: self.now,
                },
                &[added],
            )
            .await
    }

    /// Lists the organizations' accounts holding more members than their
    /// plan's seats: imported all the same (they are customers already);
    /// they invite no one until they fit.
    async fn seats(&mut self, catalog: &Catalog) -> Result<(), StoreError> {
        for (account, line) in std::mem::take(&mut self.grouped) {
            let (plan, members) = match self.store.account_by_id(account).await? {
                Some(a) => {
                    let members = self.store.seats(account, self.now).await?.members;
                    let planned = if self.dry_run {
                        self.planned_members(account)
                    } else {
                        0
                    };
                    (
                        a.value.subscription.effective_plan(self.now),
                        members + planned,
                    )
                }
                // Only in a dry run: made by this run, with these members.
                None => match self.accounts.get(&account).copied().flatten() {
                    Some(plan) => (plan, self.planned_members(account)),
                    None => continue,
                },
            };
            if let Some(limit) = catalog.plan(plan).limits.team_members {
                if members > limit {
                    self.report.over_seats.push(OverSeats {
                        account_id: account,
                        line,
                        plan,
                        members,
                        limit,
                    });
                }
            }
        }
        Ok(())
    }

    /// The memberships in the account a dry run would add.
    fn planned_members(&self, account: AccountId) -> u64 {
        self.added_to.get(&account).copied().unwrap_or(0)
    }
}

const CUSTOMER_TAKEN: &str = "stripe_customer_id: belongs to another account already";
const EXISTS_WITHOUT_THEM: &str =
    "account: exists already, and this line's user is not in billing: the account is left as it is";

fn one_owner(lines: &[u64]) -> String {
    let listed: Vec<String> = lines.iter().map(u64::to_string).collect();
    format!(
        "account: has {} owner lines ({}); an account has exactly one owner",
        lines.len(),
        listed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://id.kraftd.io";

    fn line(extra: &str) -> String {
        format!(
            r#"{{"issuer":"{ISSUER}","subject":"42","email":"Ada@Corp.example","name":"Ada"{extra}}}"#
        )
    }

    #[test]
    fn a_line_without_an_account_is_its_user_s_own() {
        let parsed = parse_line(&line(r#","plan":"free","email_verified":true"#)).unwrap();
        assert_eq!(parsed.identity.issuer, ISSUER);
        assert_eq!(parsed.identity.subject, "42");
        assert_eq!(parsed.email.as_str(), "ada@corp.example");
        assert!(parsed.email_verified);
        assert_eq!(
            parsed.target,
            Target::Own {
                plan: PlanId::Free,
                customer: None
            }
        );
        let paid = parse_line(&line(r#","plan":"pro","stripe_customer_id":"cus_1""#)).unwrap();
        assert_eq!(
            paid.target,
            Target::Own {
                plan: PlanId::Pro,
                customer: Some("cus_1".into())
            }
        );
    }

    #[test]
    fn grouped_lines_name_their_account_and_role() {
        let owner = parse_line(&line(
            r#","plan":"enterprise","stripe_customer_id":"cus_9","account":"org_1","account_name":"Acme","role":"owner""#,
        ))
        .unwrap();
        assert_eq!(
            owner.target,
            Target::Owner {
                key: "org_1".into(),
                name: "Acme".into(),
                plan: PlanId::Enterprise,
                customer: Some("cus_9".into())
            }
        );
        // A member's plan is the account's: not needed on their line.
        let member = parse_line(&line(r#","account":"org_1","role":"admin""#)).unwrap();
        assert_eq!(
            member.target,
            Target::Joins {
                key: "org_1".into(),
                role: Role::Admin
            }
        );
    }

    #[test]
    fn bad_lines_say_why_without_quoting_values() {
        for (text, reason) in [
            ("{\"issuer\": ".to_owned(), "is not valid JSON"),
            ("[1, 2]".to_owned(), "is not a JSON object"),
            (line(r#","plan":"gold""#), "plan: must be one of"),
            (line(r#","plan":"pro""#), "stripe_customer_id: is required on the pro plan"),
            (line(r#","plan":"enterprise""#), "stripe_customer_id: is required on the enterprise"),
            (line(r#","plan":"free","stripe_customer_id":"ada@corp.example""#), "stripe_customer_id: must be"),
            (line(r#","plan":"free","role":"owner""#), "role: is only for a line with an account"),
            (line(r#","plan":"free","mail":"x""#), "unknown field \"mail\""),
            (line(r#","plan":"free","email_verified":"yes""#), "email_verified: must be"),
            (line(r#","account":"org","role":"boss""#), "role: must be owner, admin or member"),
            (line(r#","plan":"free","account":"org","role":"owner""#), "account_name: is required"),
            (line(r#","account":"org","role":"member","stripe_customer_id":"cus_1""#), "stripe_customer_id: is the account's"),
            (line(r#","account":" ","role":"member""#), "account: must be a non-empty key"),
            (line(""), "plan: is required"),
            (
                r#"{"issuer":"http://id.kraftd.io","subject":"1","email":"a@b.io","name":"A","plan":"free"}"#.into(),
                "issuer: must be https://",
            ),
            (
                r#"{"issuer":"https://id.kraftd.io","subject":"1","email":"Ada <ada@corp.example>","name":"A","plan":"free"}"#.into(),
                "email: is not a valid email address",
            ),
            (
                r#"{"issuer":"https://id.kraftd.io","subject":"","email":"a@b.io","name":"A","plan":"free"}"#.into(),
                "subject: is required",
            ),
        ] {
            let err = parse_line(&text).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(!err.contains("ada@corp"), "{err} quotes the email");
        }
        // Loopback http issuers are for tests and local identity providers.
        let local = r#"{"issuer":"http://127.0.0.1:9000","subject":"1","email":"a@b.io","name":"A","plan":"free"}"#;
        assert!(parse_line(local).is_ok());
    }

    #[test]
    fn lines_are_read_up_to_the_cap_and_a_longer_one_is_skipped_whole() {
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let exact = "y".repeat(MAX_LINE_BYTES);
        let text = format!("first\r\n{long}\n{exact}\nlast");
        let mut r: &[u8] = text.as_bytes();
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while let Some(l) = next_line(&mut r, &mut buf).unwrap() {
            seen.push(match l {
                RawLine::Text(t) => t.len().to_string() + ":" + &t[..t.len().min(5)],
                RawLine::TooLong => "too long".into(),
                RawLine::NotUtf8 => "not utf-8".into(),
            });
        }
        assert_eq!(
            seen,
            [
                "5:first".to_owned(),
                "too long".into(),
                format!("{MAX_LINE_BYTES}:yyyyy"),
                "4:last".into()
            ]
        );
        let mut r: &[u8] = b"\xff\xfe\n";
        assert!(matches!(
            next_line(&mut r, &mut buf).unwrap(),
            Some(RawLine::NotUtf8)
        ));
    }
}

//! Support staff's and the back office's view of accounts: find one by a
//! member's email, its Stripe customer or subscription; show it whole;
//! re-read its subscription from Stripe now. Overrides and credits are in
//! `overrides`; the log in `audit`.

use crate::domain::account::{Account, AccountId};
use crate::domain::audit::{fields, Actor, AuditAction};
use crate::domain::outbox::OutboxState;
use crate::domain::records::{Invoice, OutboxMessage};
use crate::domain::user::Email;

use super::usage::MeterReading;
use super::{AppError, Billing, Member};

/// How many invoices and outbox messages `show` lists, newest first.
pub const RECENT: usize = 10;

/// What an operator looks an account up by: exactly one.
pub enum AccountQuery<'a> {
    Email(&'a str),
    Customer(&'a str),
    Subscription(&'a str),
}

/// An outbox message about the account and where it stands.
pub struct SentMessage {
    pub message: OutboxMessage,
    pub state: Option<OutboxState>,
    pub attempts: u32,
}

/// An account whole.
pub struct AccountDetail {
    pub account: Account,
    pub members: Vec<Member>,
    pub readings: Vec<MeterReading>,
    pub invoices: Vec<Invoice>,
    pub messages: Vec<SentMessage>,
}

impl Billing {
    /// The accounts a query names (a member's email can name several).
    pub async fn find_accounts(&self, query: AccountQuery<'_>) -> Result<Vec<Account>, AppError> {
        let found = match query {
            AccountQuery::Customer(c) => self.store.account_by_stripe_customer(c).await?,
            AccountQuery::Subscription(s) => self.store.account_by_stripe_subscription(s).await?,
            AccountQuery::Email(e) => {
                let email =
                    Email::parse(e).map_err(|_| AppError::invalid("email", "is not an email"))?;
                // Only users who sign in here with a password are found by
                // email (`UserStore::user_by_email`).
                let Some(user) = self.store.user_by_email(&email).await? else {
                    return Ok(Vec::new());
                };
                let mut accounts = Vec::new();
                for m in self.store.memberships_of(user.value.id).await? {
                    if let Some(a) = self.store.account_by_id(m.account_id).await? {
                        accounts.push(a.value);
                    }
                }
                return Ok(accounts);
            }
        };
        Ok(found.into_iter().map(|a| a.value).collect())
    }

    /// The account, its members, usage against its effective limits, its
    /// overrides (on the account), recent invoices and messages.
    pub async fn account_detail(&self, account_id: &str) -> Result<AccountDetail, AppError> {
        let account = self.admin_account(account_id).await?.value;
        let now = self.clock.now();
        let mut members = Vec::new();
        for m in self.store.members(account.id).await? {
            if let Some(u) = self.store.user_by_id(m.user_id).await? {
                members.push(Member {
                    membership: m,
                    email: u.value.email,
                    name: u.value.name.as_str().to_owned(),
                });
            }
        }
        let readings = self.entitlements_of(&account).await?.readings;
        let mut invoices = self.store.invoices(account.id, now).await?;
        invoices.truncate(RECENT);
        let all = self.store.outbox_for_account(account.id).await?;
        let mut messages = Vec::new();
        for message in all.into_iter().rev().take(RECENT) {
            let status = self.store.outbox_status(account.id, &message.id).await?;
            messages.push(SentMessage {
                state: status.map(|s| s.0),
                attempts: status.map_or(0, |s| s.1),
                message,
            });
        }
        Ok(AccountDetail {
            account,
            members,
            readings,
            invoices,
            messages,
        })
    }

    /// Re-reads the account's checkout and subscription from Stripe now,
    /// as reconciliation would, and records that the operator asked.
    pub async fn resync(&self, account_id: &str, actor: Actor) -> Result<Account, AppError> {
        let before = self.admin_account(account_id).await?.value;
        let id: AccountId = before.id;
        let cause = format!("admin:{}", uuid::Uuid::new_v4());
        let changed = self.reconcile_account(id, &cause, &actor).await?;
        let after = self.admin_account(account_id).await?.value;
        let entry = self.audit_entry(
            id,
            actor,
            AuditAction::AdminResync,
            None,
            Some(fields([
                ("changed", changed.to_string()),
                ("plan", after.subscription.plan_id.as_str().to_owned()),
            ])),
        );
        self.store.append_audit(&[entry]).await?;
        Ok(after)
    }
}

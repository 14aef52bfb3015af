//! Paid subscriptions: checkout, plan changes, cancellation, the customer
//! portal and invoices. Stripe's state is the truth; every write of it to an
//! account is conditional on the account not having changed since it was read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::account::{Account, AccountId, Action};
use crate::domain::audit::{Actor, AuditAction, AuditEntry};
use crate::domain::money::Money;
use crate::domain::overrides::{self, Override};
use crate::domain::plan::{BillingInterval, PlanId};
use crate::domain::ports::{
    CheckoutRequest, CheckoutSession, CheckoutStatus, Etag, OfferCheckout, StoreError, Versioned,
};
use crate::domain::records::{EmailKind, Invoice, OutboxMessage};
use crate::domain::subscription::{
    change_direction, precedence, proration_date, ChangeDirection, Precedence, RemoteSubscription,
    ScheduledChange, Subscription, Transition,
};

use super::accounts::{parse_interval, parse_plan};
use super::{Acting, AppError, Billing, StateConflict};

/// Attempts at a conditional write before giving up with 503.
const WRITE_ATTEMPTS: usize = 8;

/// A previewed plan change: what it bills now, priced at `proration_date`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanChangeQuote {
    pub plan_id: PlanId,
    pub interval: BillingInterval,
    pub due: Money,
    pub proration_date: DateTime<Utc>,
}

/// What an upgrade did.
pub enum Upgrade {
    /// No live subscription: pay at this checkout first.
    Checkout(CheckoutSession),
    /// The live subscription now sells the new plan.
    Changed(Box<Account>),
}

/// One page of invoices, newest first.
pub struct InvoicePage {
    pub invoices: Vec<Invoice>,
    pub has_more: bool,
}

impl Billing {
    /// Plans a account can buy without talking to sales, at a price that exists.
    pub(super) fn check_self_serve(
        &self,
        plan_id: PlanId,
        interval: BillingInterval,
    ) -> Result<(), AppError> {
        let plan = self.catalog.plan(plan_id);
        if plan.contact_sales {
            return Err(AppError::invalid(
                "plan_id",
                format!("{plan_id} is sold through sales; contact sales to subscribe"),
            ));
        }
        if plan.price(interval).is_none() {
            return Err(AppError::invalid(
                "billing_interval",
                format!(
                    "the {plan_id} plan has no {} price",
                    interval_name(interval)
                ),
            ));
        }
        Ok(())
    }

    /// Makes sure the account has a Stripe customer (stored before anything
    /// else uses it) and a checkout for the plan. A pending checkout for the
    /// same plan is handed back (a second click or tab pays the same
    /// session); one for another plan is expired first, so no two checkouts
    /// can both be paid.
    pub(super) async fn begin_checkout(
        &self,
        mut account: Account,
        etag: Etag,
        plan_id: PlanId,
        interval: BillingInterval,
        attempt: &str,
        offer: Option<OfferCheckout>,
    ) -> Result<CheckoutSession, AppError> {
        // Fixed before any write below, so retries of this request share it.
        let attempt = format!("{attempt}:{}", etag.0);
        let offer_id = offer.as_ref().map(|o| o.offer_id.clone());
        if let Some(pending) = account.subscription.checkout_session_id.clone() {
            let session = self
                .payments
                .checkout(&pending)
                .await
                .map_err(AppError::Payments)?;
            match session.status {
                CheckoutStatus::Open
                    if session.plan_id == Some(plan_id)
                        && session.interval == Some(interval)
                        && session.offer_id == offer_id =>
                {
                    if let Some(url) = session.url {
                        return Ok(CheckoutSession {
                            id: session.id,
                            url,
                        });
                    }
                }
                CheckoutStatus::Open => self
                    .payments
                    .expire_checkout(&pending)
                    .await
                    .map_err(AppError::Payments)?,
                CheckoutStatus::Complete => {
                    return Err(AppError::State(StateConflict::CheckoutPending))
                }
                CheckoutStatus::Expired => {}
            }
        }
        let customer_id = match account.subscription.stripe_customer_id.clone() {
            Some(id) => id,
            None => {
                let id = self
                    .payments
                    .create_customer(account.id, &account.billing_email, &account.name)
                    .await
                    .map_err(AppError::Payments)?;
                account = self
                    .update_account(account.id, |a| {
                        a.subscription
                            .stripe_customer_id
                            .get_or_insert_with(|| id.clone());
                    })
                    .await?
                    .value;
                account
                    .subscription
                    .stripe_customer_id
                    .clone()
                    .unwrap_or(id)
            }
        };
        let checkout = self
            .payments
            .start_checkout(&CheckoutRequest {
                account_id: account.id,
                customer_id,
                plan_id,
                interval,
                attempt,
                // A negotiated price has no trial; a plan's, once an account.
                trial: match (&offer, account.subscription.trial_used_at) {
                    (None, None) => self.catalog.plan(plan_id).trial,
                    _ => None,
                },
                offer,
            })
            .await
            .map_err(AppError::Payments)?;
        let session_id = checkout.id.clone();
        let now = self.clock.now();
        self.update_account(account.id, move |a| {
            // A repeated click gets the same session: keep its start time.
            if a.subscription.checkout_session_id.as_ref() != Some(&session_id) {
                a.subscription.checkout_session_id = Some(session_id.clone());
                a.subscription.checkout_started_at = Some(now);
            }
        })
        .await?;
        Ok(checkout)
    }

    /// Reads, changes and conditionally writes the account, retrying when
    /// someone else wrote in between. Never a lost update.
    pub(super) async fn update_account(
        &self,
        id: AccountId,
        change: impl Fn(&mut Account),
    ) -> Result<Versioned<Account>, AppError> {
        self.update_account_audited(id, change, &[]).await
    }

    /// As `update_account`, with the audit entries of the change in the
    /// same write.
    pub(super) async fn update_account_audited(
        &self,
        id: AccountId,
        change: impl Fn(&mut Account),
        audit: &[AuditEntry],
    ) -> Result<Versioned<Account>, AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let current =
                self.store.account_by_id(id).await?.ok_or_else(|| {
                    AppError::Unauthenticated("the account no longer exists".into())
                })?;
            let mut next = current.value.clone();
            change(&mut next);
            if next == current.value {
                return Ok(current);
            }
            // A change KRAFTD hears of (a scheduled downgrade) goes with
            // its events; bookkeeping alone is a plain write.
            let events =
                self.account_events(&current.value, &current.etag, &mut next, self.clock.now());
            let written = if events.is_empty() && audit.is_empty() {
                self.store.replace_account(&next, &current.etag).await
            } else {
                self.store
                    .replace_account_and_enqueue(&next, &current.etag, &events, audit)
                    .await
            };
            match written {
                Ok(etag) => {
                    let written = Versioned { value: next, etag };
                    self.remember_account(&written);
                    return Ok(written);
                }
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Store(StoreError::VersionConflict))
    }

    /// Writes Stripe's view of a subscription to its account, with the emails
    /// the change deserves and its events for KRAFTD, in one conditional write. The account is read
    /// before Stripe is, every attempt: a write based on older Stripe state
    /// than another writer's loses the race and is redone with fresh state.
    /// A second live subscription of the account's customer is settled by
    /// `precedence`: the higher plan stays, the other is cancelled (with credit
    /// for a period in good standing).
    pub(super) async fn sync_subscription(
        &self,
        account_id: AccountId,
        subscription_id: &str,
        cause: &str,
        actor: &Actor,
    ) -> Result<Account, AppError> {
        self.sync_subscription_recording(account_id, subscription_id, cause, actor, None)
            .await
    }

    /// As `sync_subscription`, with `recorded` (the override that made the
    /// change at Stripe) added to the account and audited in the same
    /// write, so the record and the state it explains land together.
    pub(super) async fn sync_subscription_recording(
        &self,
        account_id: AccountId,
        subscription_id: &str,
        cause: &str,
        actor: &Actor,
        recorded: Option<&Override>,
    ) -> Result<Account, AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let current =
                self.store.account_by_id(account_id).await?.ok_or_else(|| {
                    AppError::Unauthenticated("the account no longer exists".into())
                })?;
            let remote = self
                .payments
                .subscription(subscription_id)
                .await
                .map_err(AppError::Payments)?;
            let now = self.clock.now();
            let (next, transitions) = match current.value.subscription.apply_remote(
                &remote,
                now,
                self.settings.past_due_grace,
            ) {
                Some(applied) => applied,
                None => match self.second_subscription(&current.value, &remote).await? {
                    Some(replaced) => replaced,
                    None => return self.cancel_replaced(current.value).await,
                },
            };
            let mut account = current.value.clone();
            account.subscription = next;
            let settled = self.settle_offer(&mut account, &remote, actor, now);
            let mut recorded_entry = None;
            if let Some(o) = recorded {
                overrides::add(&mut account.overrides, o.clone(), now)
                    .map_err(super::overrides::override_error)?;
                recorded_entry =
                    Some(self.override_audit(account_id, actor, AuditAction::OverrideSet, o));
            }
            if account == current.value {
                return self.cancel_replaced(current.value).await;
            }
            let mut messages = self.emails_for(&account, &transitions, cause, now);
            messages.extend(self.account_events(&current.value, &current.etag, &mut account, now));
            let audit: Vec<_> = self
                .subscription_audit(&current.value, &account, actor)
                .into_iter()
                .chain(settled)
                .chain(recorded_entry)
                .collect();
            match self
                .store
                .replace_account_and_enqueue(&account, &current.etag, &messages, &audit)
                .await
            {
                Ok(etag) => {
                    self.remember_account(&Versioned {
                        value: account.clone(),
                        etag,
                    });
                    return self.cancel_replaced(account).await;
                }
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Store(StoreError::VersionConflict))
    }

    /// A live subscription of the account's customer that is not the
    /// account's own (a second checkout; Enterprise sold by sales in the
    /// dashboard). `Some`: the account's subscription after moving to it,
    /// to be written. `None`: the account keeps its own, and the other is
    /// cancelled (credited if in good standing), unless it waits for its first
    /// payment.
    async fn second_subscription(
        &self,
        account: &Account,
        other: &RemoteSubscription,
    ) -> Result<Option<(Subscription, Vec<Transition>)>, AppError> {
        let Some(own) = account.subscription.stripe_subscription_id.as_deref() else {
            return Ok(None);
        };
        if other.has_ended() {
            return Ok(None);
        }
        let own = self
            .payments
            .subscription(own)
            .await
            .map_err(AppError::Payments)?;
        match precedence(&own, other) {
            Precedence::Replace => {
                tracing::info!(account_id = %account.id, replaced = %own.id, by = %other.id,
                    "a second live subscription of a higher plan: the account moves to it");
                Ok(Some(account.subscription.replaced_by(
                    other,
                    self.clock.now(),
                    self.settings.past_due_grace,
                )))
            }
            Precedence::Wait => Ok(None),
            Precedence::KeepCurrent => {
                tracing::warn!(account_id = %account.id, duplicate = %other.id,
                    "a second live subscription that does not win: canceling it");
                self.payments
                    .cancel_replaced(account.id, &other.id, other.credits_unused_time())
                    .await
                    .map_err(AppError::Payments)?;
                Ok(None)
            }
        }
    }

    /// Cancels the subscription the account moved away from (crediting its
    /// unused time if it was in good standing), then forgets it. Owed from the write that switched, so a crash or a
    /// failed call in between is settled by the next sync of the account
    /// (a retried webhook, reconciliation); a retry cancels nothing twice.
    async fn cancel_replaced(&self, account: Account) -> Result<Account, AppError> {
        let Some(replaced) = account.subscription.replaced_subscription_id.clone() else {
            return Ok(account);
        };
        let remote = self
            .payments
            .subscription(&replaced)
            .await
            .map_err(AppError::Payments)?;
        if !remote.has_ended() {
            self.payments
                .cancel_replaced(account.id, &replaced, remote.credits_unused_time())
                .await
                .map_err(AppError::Payments)?;
        }
        let settled = self
            .update_account(account.id, move |a| {
                if a.subscription.replaced_subscription_id.as_ref() == Some(&replaced) {
                    a.subscription.replaced_subscription_id = None;
                }
            })
            .await?;
        Ok(settled.value)
    }

    fn emails_for(
        &self,
        account: &Account,
        transitions: &[Transition],
        cause: &str,
        now: DateTime<Utc>,
    ) -> Vec<OutboxMessage> {
        let plan_name = |p: PlanId| self.catalog.plan(p).name.to_owned();
        transitions
            .iter()
            .filter_map(|t| {
                let mut data =
                    BTreeMap::from([("plan".to_owned(), plan_name(account.subscription.plan_id))]);
                let kind = match t {
                    Transition::Activated { plan } => {
                        data.insert("plan".into(), plan_name(*plan));
                        EmailKind::SubscriptionConfirmed
                    }
                    Transition::PlanChanged { from, to } => {
                        data.insert("from_plan".into(), plan_name(*from));
                        data.insert("plan".into(), plan_name(*to));
                        EmailKind::PlanChanged
                    }
                    Transition::CancellationScheduled { ends_at } => {
                        if let Some(end) = ends_at {
                            data.insert("ends_at".into(), end.to_rfc3339());
                        }
                        EmailKind::CancellationScheduled
                    }
                    Transition::CancellationWithdrawn => EmailKind::CancellationWithdrawn,
                    Transition::Ended { plan } => {
                        data.insert("plan".into(), plan_name(*plan));
                        EmailKind::SubscriptionEnded
                    }
                    // Sent from the invoice, which has the amount and the link to pay.
                    Transition::PaymentFailed { .. } | Transition::PaymentRecovered => return None,
                };
                if let Some(p) = account.subscription.current_period_end {
                    data.insert("period_end".into(), p.to_rfc3339());
                }
                Some(OutboxMessage {
                    id: format!(
                        "{}:{cause}:{}",
                        account.id,
                        serde_json::to_value(kind).ok()?.as_str()?
                    ),
                    account_id: account.id,
                    to: None,
                    kind: kind.into(),
                    data,
                    body: None,
                    created_at: now,
                })
            })
            .collect()
    }

    /// The live subscription as Stripe has it now, or `None`.
    pub(super) async fn live_subscription(
        &self,
        account: &Account,
    ) -> Result<Option<RemoteSubscription>, AppError> {
        let Some(id) = account.subscription.stripe_subscription_id.as_deref() else {
            return Ok(None);
        };
        let remote = self
            .payments
            .subscription(id)
            .await
            .map_err(AppError::Payments)?;
        Ok((!remote.has_ended()).then_some(remote))
    }

    /// Changes plan. Without a live subscription: a checkout. Up (a higher
    /// tier, or monthly → annual): the same subscription moves to the new
    /// price now, prorated and billed. Down: scheduled for the end of the
    /// paid period, nothing billed now. Back to the current plan while a
    /// downgrade is pending: the downgrade is dropped.
    pub async fn upgrade(
        &self,
        acting: &Acting,
        plan_raw: &str,
        interval_raw: Option<&str>,
        quoted: Option<DateTime<Utc>>,
    ) -> Result<Upgrade, AppError> {
        acting.require(Action::ManageBilling)?;
        let caller = &acting.account;
        let (plan_id, interval) = self.parse_target(plan_raw, interval_raw)?;
        let account = &caller.value;
        self.check_seats_fit(account, plan_id).await?;
        let Some(remote) = self.live_subscription(account).await? else {
            let checkout = self
                .begin_checkout(
                    account.clone(),
                    caller.etag.clone(),
                    plan_id,
                    interval,
                    "upgrade",
                    None,
                )
                .await?;
            return Ok(Upgrade::Checkout(checkout));
        };
        let attempt = &caller.etag.0;
        let cause = format!("change:{}:{attempt}", remote.id);
        match change_direction((remote.plan_id, remote.interval), (plan_id, interval)) {
            ChangeDirection::Same => {
                let Some(schedule) = &remote.schedule_id else {
                    return Err(AppError::State(StateConflict::AlreadyOnPlan));
                };
                self.payments
                    .release_schedule(schedule)
                    .await
                    .map_err(AppError::Payments)?;
            }
            ChangeDirection::Up => {
                // Only a change billed now is priced: the quote matters here.
                let prorate_from = match quoted {
                    None => None,
                    Some(_) => Some(
                        proration_date(quoted, self.clock.now())
                            .map_err(|e| AppError::invalid("proration_date", e.to_string()))?,
                    ),
                };
                if let Some(schedule) = &remote.schedule_id {
                    self.payments
                        .release_schedule(schedule)
                        .await
                        .map_err(AppError::Payments)?;
                }
                self.payments
                    .change_plan(
                        account.id,
                        &remote,
                        plan_id,
                        interval,
                        attempt,
                        prorate_from,
                    )
                    .await
                    .map_err(AppError::Payments)?;
            }
            ChangeDirection::Down => {
                let scheduled = self
                    .payments
                    .schedule_change(account.id, &remote, plan_id, interval, attempt)
                    .await
                    .map_err(AppError::Payments)?;
                let change = ScheduledChange {
                    plan_id,
                    billing_interval: interval,
                    effective_at: scheduled.current_period_end,
                };
                self.update_account(account.id, move |a| {
                    a.subscription.scheduled_change = Some(change.clone())
                })
                .await?;
            }
        }
        let account = self
            .sync_subscription(account.id, &remote.id, &cause, &acting.actor())
            .await?;
        Ok(Upgrade::Changed(Box::new(account)))
    }

    /// What the change would bill now, before the account commits to it, and
    /// the moment it is priced at: the change made with that
    /// `proration_date` (within `PRORATION_QUOTE_VALIDITY`) bills the same.
    pub async fn preview_change(
        &self,
        acting: &Acting,
        plan_raw: &str,
        interval_raw: Option<&str>,
    ) -> Result<PlanChangeQuote, AppError> {
        acting.require(Action::ManageBilling)?;
        let account = &acting.account.value;
        let (plan_id, interval) = self.parse_target(plan_raw, interval_raw)?;
        self.check_seats_fit(account, plan_id).await?;
        // Whole seconds: Stripe's timestamps have no finer grain.
        let now = self.clock.now();
        let priced_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let quote = |due| PlanChangeQuote {
            plan_id,
            interval,
            due,
            proration_date: priced_at,
        };
        let Some(remote) = self.live_subscription(account).await? else {
            let price = self.catalog.plan(plan_id).price(interval).map(|p| p.money);
            return Ok(quote(price.unwrap_or(Money::usd_cents(0))));
        };
        if change_direction((remote.plan_id, remote.interval), (plan_id, interval))
            != ChangeDirection::Up
        {
            // Downgrades and undoing one bill nothing now.
            return Ok(quote(Money {
                amount: 0,
                currency: remote.currency,
            }));
        }
        let due = self
            .payments
            .preview_change(&remote, plan_id, interval, priced_at)
            .await
            .map_err(AppError::Payments)?;
        Ok(quote(due))
    }

    /// A plan with fewer seats than the account holds (members and
    /// pending invitations) is refused, saying how many must go.
    /// The target plan's seats are its limits with the account's overrides
    /// in force, as every other check reads them.
    async fn check_seats_fit(&self, account: &Account, plan_id: PlanId) -> Result<(), AppError> {
        let limit = crate::domain::overrides::effective_limits(
            &self.catalog.plan(plan_id).limits,
            &account.overrides,
            self.clock.now(),
        )
        .team_members;
        let seats = self.seats(account.id).await?;
        match limit {
            Some(limit) if !seats.within(Some(limit)) => Err(AppError::TooManyMembers {
                plan: plan_id,
                seats: seats.used(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    fn parse_target(
        &self,
        plan_raw: &str,
        interval_raw: Option<&str>,
    ) -> Result<(PlanId, BillingInterval), AppError> {
        let plan_id = parse_plan(plan_raw).map_err(|_| {
            AppError::invalid("new_plan_id", "must be one of free, pro, enterprise")
        })?;
        let interval = parse_interval(interval_raw)?;
        if plan_id == PlanId::Free {
            return Err(AppError::invalid(
                "new_plan_id",
                "moving to free is a cancellation: POST /api/billing/cancel-subscription keeps the paid plan until the period ends",
            ));
        }
        self.check_self_serve(plan_id, interval)
            .map_err(|e| match e {
                AppError::Invalid {
                    field: "plan_id",
                    problem,
                } => AppError::invalid("new_plan_id", problem),
                e => e,
            })?;
        Ok((plan_id, interval))
    }

    pub async fn cancel_at_period_end(
        &self,
        acting: &Acting,
        cancel: bool,
    ) -> Result<Account, AppError> {
        acting.require(Action::ManageBilling)?;
        let caller = &acting.account;
        let account = &caller.value;
        let Some(remote) = self.live_subscription(account).await? else {
            return Err(AppError::State(StateConflict::NoPaidSubscription));
        };
        if remote.cancel_at_period_end == cancel {
            // Already as asked: answer with the state as Stripe has it.
            let cause = format!("sync:{}:{}", remote.id, caller.etag.0);
            return self
                .sync_subscription(account.id, &remote.id, &cause, &acting.actor())
                .await;
        }
        // Canceling outranks a pending downgrade (Stripe refuses both at once).
        if let (true, Some(schedule)) = (cancel, &remote.schedule_id) {
            self.payments
                .release_schedule(schedule)
                .await
                .map_err(AppError::Payments)?;
        }
        let changed = self
            .payments
            .set_cancel_at_period_end(account.id, &remote.id, cancel, &caller.etag.0)
            .await
            .map_err(AppError::Payments)?;
        let cause = format!(
            "{}:{}:{}",
            if cancel { "cancel" } else { "resume" },
            remote.id,
            caller.etag.0
        );
        self.sync_subscription(account.id, &changed.id, &cause, &acting.actor())
            .await
    }

    pub async fn portal_url(&self, acting: &Acting) -> Result<String, AppError> {
        acting.require(Action::ManageBilling)?;
        let account = &acting.account.value;
        let customer = account
            .subscription
            .stripe_customer_id
            .as_deref()
            .ok_or(AppError::NoBillingAccount)?;
        self.payments
            .portal_url(customer, &self.settings.portal_return_url)
            .await
            .map_err(AppError::Payments)
    }

    pub async fn invoices(
        &self,
        acting: &Acting,
        limit: usize,
        starting_after: Option<&str>,
    ) -> Result<InvoicePage, AppError> {
        acting.require(Action::Use)?;
        let account = &acting.account.value;
        let all = self.store.invoices(account.id, self.clock.now()).await?;
        let start = match starting_after {
            Some(id) => all
                .iter()
                .position(|i| i.id == id)
                .map(|p| p + 1)
                .ok_or(AppError::InvoiceNotFound)?,
            None => 0,
        };
        let rest = &all[start..];
        Ok(InvoicePage {
            invoices: rest.iter().take(limit).cloned().collect(),
            has_more: rest.len() > limit,
        })
    }
}

pub(super) fn interval_name(i: BillingInterval) -> &'static str {
    match i {
        BillingInterval::Monthly => "monthly",
        BillingInterval::Annual => "annual",
    }
}

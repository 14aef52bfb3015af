//! The payments port on Stripe, through async-stripe (its API version).
//!
//! Every POST carries an idempotency key made of the user, the operation and
//! its target, and is retried with that same key on transient failures
//! (network, timeouts, 409, 429, 5xx), so a retry or a double click acts
//! once. Prices are found by lookup key; a price made by sales in the
//! dashboard maps to a plan through its product's `plan_id` metadata.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::{
    CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
    CreatePreviewInvoiceSubscriptionDetailsItems,
    CreatePreviewInvoiceSubscriptionDetailsProrationBehavior, RetrieveInvoice,
};
use stripe_billing::subscription::{
    CancelSubscription, RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionPaymentBehavior, UpdateSubscriptionProrationBehavior,
    UpdateSubscriptionTrialEnd,
};
use stripe_billing::subscription_schedule::{
    CreateSubscriptionSchedule, ReleaseSubscriptionSchedule, UpdateSubscriptionSchedule,
    UpdateSubscriptionSchedulePhases, UpdateSubscriptionSchedulePhasesDuration,
    UpdateSubscriptionSchedulePhasesDurationInterval, UpdateSubscriptionSchedulePhasesEndDate,
    UpdateSubscriptionSchedulePhasesItems, UpdateSubscriptionSchedulePhasesStartDate,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems,
    CreateCheckoutSessionPaymentMethodCollection, CreateCheckoutSessionSubscriptionData,
    CreateCheckoutSessionSubscriptionDataTrialSettings,
    CreateCheckoutSessionSubscriptionDataTrialSettingsEndBehavior,
    CreateCheckoutSessionSubscriptionDataTrialSettingsEndBehaviorMissingPaymentMethod,
    ExpireCheckoutSession, RetrieveCheckoutSession,
};
use stripe_client_core::StripeMethod;
use stripe_core::customer::CreateCustomer;
use stripe_core::event::ListEvent;
use stripe_product::price::ListPrice;
use stripe_product::product::RetrieveProduct;
use stripe_shared::{CheckoutSessionMode, CheckoutSessionStatus, RecurringInterval};
use tokio::sync::RwLock;

use crate::domain::account::AccountId;
use crate::domain::health::UndeliveredEvent;
use crate::domain::money::{Currency, Money};
use crate::domain::plan::{BillingInterval, Catalog, PlanId};
use crate::domain::ports::{
    CheckoutRequest, CheckoutSession, CheckoutStatus, OfferPrice, Payments, PaymentsError,
    RemoteCheckout, RemoteInvoice, SoldPrice,
};
use crate::domain::secret::{ExposeSecret, Secret};
use crate::domain::subscription::{RemoteSubscription, SubscriptionStatus};
use crate::domain::user::Email;

/// Attempts per call, the first included.
const ATTEMPTS: u32 = 4;

#[derive(Clone)]
pub struct StripeSettings {
    pub secret_key: Secret,
    /// `https://api.stripe.com` in production; the simulator's address locally and in tests.
    pub api_base: Option<String>,
    pub checkout_success_url: String,
    pub checkout_cancel_url: String,
    /// Per attempt; a timed-out attempt is retried with the same key.
    pub timeout: Duration,
    /// First retry delay; doubles each attempt.
    pub backoff: Duration,
}

pub struct StripePayments {
    client: Client,
    settings: StripeSettings,
    catalog: Catalog,
    /// Lookup key → price id, filled on first need (never at start-up).
    prices: RwLock<HashMap<String, String>>,
}

impl StripePayments {
    pub fn new(settings: StripeSettings, catalog: Catalog) -> Result<Self, PaymentsError> {
        crate::tls::install_crypto_provider();
        let mut builder = ClientBuilder::new(settings.secret_key.expose_secret());
        if let Some(base) = &settings.api_base {
            builder = builder.url(base.trim_end_matches('/'));
        }
        let client = builder
            .build()
            .map_err(|e| PaymentsError::rejected("Stripe client configuration").caused_by(e))?;
        Ok(Self {
            client,
            settings,
            catalog,
            prices: RwLock::new(HashMap::new()),
        })
    }

    /// Sends `request`, retrying transient failures with backoff. With a
    /// `key`, every attempt carries it, so Stripe applies the request once.
    pub(super) async fn send<R>(
        &self,
        key: Option<String>,
        what: &str,
        request: R,
    ) -> Result<R::Output, PaymentsError>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        // A POST nobody named a key for (a preview, a portal session) still
        // gets one, unique to this call and shared by its retries, so a
        // retried POST is never applied twice.
        let key = match (key, request.build().method) {
            (None, StripeMethod::Post | StripeMethod::Delete) => {
                Some(format!("kraftd:once:{}", uuid::Uuid::new_v4()))
            }
            (key, _) => key,
        };
        let strategy = match key {
            Some(k) => RequestStrategy::Idempotent(
                IdempotencyKey::new(&k)
                    .map_err(|e| PaymentsError::rejected("idempotency key").caused_by(e))?,
            ),
            None => RequestStrategy::Once,
        };
        retry(what, self.settings.backoff, || {
            request
                .customize()
                .request_strategy(strategy.clone())
                .timeout(self.settings.timeout)
                .send(&self.client)
        })
        .await
    }

    pub(super) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Drops the cached lookup-key → price map (after the catalog changed).
    pub(super) async fn forget_prices(&self) {
        self.prices.write().await.clear();
    }

    async fn price_id(
        &self,
        plan: PlanId,
        interval: BillingInterval,
    ) -> Result<String, PaymentsError> {
        let key = self
            .catalog
            .plan(plan)
            .price(interval)
            .map(|p| p.lookup_key)
            .ok_or_else(|| {
                PaymentsError::rejected(format!("the {plan} plan has no {interval:?} price"))
            })?;
        if let Some(id) = self.prices.read().await.get(key) {
            return Ok(id.clone());
        }
        let keys: Vec<String> = self
            .catalog
            .plans()
            .iter()
            .flat_map(|p| p.prices.iter().map(|pr| pr.lookup_key.to_owned()))
            .collect();
        let list = self
            .send(
                None,
                "list prices",
                ListPrice::new().lookup_keys(keys).active(true),
            )
            .await?;
        let mut prices = self.prices.write().await;
        for p in list.data {
            if let Some(k) = p.lookup_key {
                prices.insert(k, p.id.to_string());
            }
        }
        prices.get(key).cloned().ok_or_else(|| {
            PaymentsError::not_found(format!(
                "price with lookup key {key} (run `handler stripe sync-catalog`)"
            ))
        })
    }

    /// The plan a Stripe price sells: by lookup key, else by its product's
    /// `plan_id` metadata (prices sales made in the dashboard).
    pub(super) async fn plan_of(
        &self,
        price: &stripe_shared::Price,
    ) -> Result<(PlanId, BillingInterval), PaymentsError> {
        let interval = match price.recurring.as_ref().map(|r| &r.interval) {
            Some(RecurringInterval::Year) => BillingInterval::Annual,
            _ => BillingInterval::Monthly,
        };
        if let Some(key) = &price.lookup_key {
            for plan in self.catalog.plans() {
                if let Some(p) = plan.prices.iter().find(|p| p.lookup_key == key) {
                    return Ok((plan.id, p.interval));
                }
            }
        }
        let product_id = price.product.id().to_string();
        let product = self
            .send(
                None,
                "retrieve product",
                RetrieveProduct::new(product_id.as_str()),
            )
            .await?;
        product
            .metadata
            .get("plan_id")
            .and_then(|p| p.parse::<PlanId>().ok())
            .map(|plan| (plan, interval))
            .ok_or_else(|| {
                PaymentsError::rejected(format!("price {} sells no KRAFTD plan", price.id))
            })
    }

    pub(super) async fn remote(
        &self,
        sub: stripe_shared::Subscription,
    ) -> Result<RemoteSubscription, PaymentsError> {
        let item = sub.items.data.first().ok_or_else(|| {
            PaymentsError::rejected(format!("subscription {} has no item", sub.id))
        })?;
        let (plan_id, interval) = self.plan_of(&item.price).await?;
        Ok(RemoteSubscription {
            id: sub.id.to_string(),
            customer_id: sub.customer.id().to_string(),
            status: status(&sub.status),
            plan_id,
            interval,
            item_id: item.id.to_string(),
            price_id: item.price.id.to_string(),
            current_period_start: time(item.current_period_start),
            current_period_end: time(item.current_period_end),
            cancel_at_period_end: sub.cancel_at_period_end,
            ended_at: sub.ended_at.and_then(time),
            schedule_id: sub.schedule.map(|s| s.id().to_string()),
            trial_end: sub.trial_end.and_then(time),
            currency: money(0, &sub.currency)?.currency,
        })
    }
}

pub(super) fn key(account: AccountId, operation: &str, target: &str) -> Option<String> {
    Some(format!("kraftd:{account}:{operation}:{target}"))
}

fn time(t: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t, 0).single()
}

fn status(s: &stripe_shared::SubscriptionStatus) -> SubscriptionStatus {
    use stripe_shared::SubscriptionStatus as S;
    match s {
        S::Active => SubscriptionStatus::Active,
        S::Trialing => SubscriptionStatus::Trialing,
        S::PastDue => SubscriptionStatus::PastDue,
        S::Canceled => SubscriptionStatus::Canceled,
        S::Incomplete => SubscriptionStatus::Incomplete,
        S::IncompleteExpired => SubscriptionStatus::IncompleteExpired,
        S::Unpaid => SubscriptionStatus::Unpaid,
        S::Paused => SubscriptionStatus::Paused,
        // A status this build does not know grants nothing until understood.
        _ => SubscriptionStatus::Incomplete,
    }
}

/// Any currency Stripe charges in is recorded as it sent it: refusing one
/// would drop a paid invoice.
pub(super) fn money(
    amount: i64,
    currency: &stripe_types::Currency,
) -> Result<Money, PaymentsError> {
    let currency = Currency::parse(&currency.to_string())
        .map_err(|e| PaymentsError::rejected(e.to_string()))?;
    Ok(Money { amount, currency })
}

fn is_transient(e: &StripeError) -> bool {
    match e {
        StripeError::ClientError(_) | StripeError::Timeout => true,
        StripeError::Stripe(_, status) => matches!(status, 409 | 429 | 500..=599),
        StripeError::JSONDeserialize(_) | StripeError::ConfigError(_) => false,
    }
}

fn classify(what: &str, e: StripeError) -> PaymentsError {
    let message = |e: &StripeError| match e {
        StripeError::Stripe(err, status) => format!(
            "{what}: {} (HTTP {status})",
            err.message.as_deref().unwrap_or("no message")
        ),
        e => format!("{what}: {e}"),
    };
    let error = match &e {
        StripeError::Stripe(_, 404) => PaymentsError::not_found(message(&e)),
        StripeError::Stripe(_, status) if !matches!(status, 409 | 429 | 500..=599) => {
            PaymentsError::rejected(message(&e))
        }
        e if is_transient(e) => PaymentsError::unavailable(message(e)),
        e => PaymentsError::rejected(message(e)),
    };
    error.caused_by(e)
}

async fn retry<T, F, Fut>(what: &str, backoff: Duration, mut attempt: F) -> Result<T, PaymentsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StripeError>>,
{
    let mut delay = backoff;
    for n in 1..=ATTEMPTS {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && n < ATTEMPTS => {
                tracing::warn!(operation = what, attempt = n, error = %e, "Stripe call failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(classify(what, e)),
        }
    }
    unreachable!("the last attempt returns")
}

#[async_trait]
impl Payments for StripePayments {
    fn is_configured(&self) -> bool {
        true
    }

    async fn create_customer(
        &self,
        account_id: AccountId,
        email: &Email,
        name: &str,
    ) -> Result<String, PaymentsError> {
        let request = CreateCustomer::new()
            .email(email.as_str())
            .name(name)
            .metadata(HashMap::from([(
                "account_id".to_owned(),
                account_id.to_string(),
            )]));
        let customer = self
            .send(
                key(account_id, "customer", "create"),
                "create customer",
                request,
            )
            .await?;
        Ok(customer.id.to_string())
    }

    async fn start_checkout(
        &self,
        req: &CheckoutRequest,
    ) -> Result<CheckoutSession, PaymentsError> {
        let price = match &req.offer {
            Some(offer) => offer.price_id.clone(),
            None => self.price_id(req.plan_id, req.interval).await?,
        };
        let interval = match req.interval {
            BillingInterval::Monthly => "monthly",
            BillingInterval::Annual => "annual",
        };
        let mut metadata = HashMap::from([
            ("account_id".to_owned(), req.account_id.to_string()),
            ("plan_id".to_owned(), req.plan_id.to_string()),
            ("billing_interval".to_owned(), interval.to_owned()),
        ]);
        if let Some(offer) = &req.offer {
            metadata.insert("offer_id".to_owned(), offer.offer_id.clone());
        }
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(price.clone());
        item.quantity = Some(1);
        let mut subscription_data = CreateCheckoutSessionSubscriptionData::new();
        subscription_data.metadata = Some(metadata.clone());
        let mut request = CreateCheckoutSession::new();
        if let Some(trial) = req.trial {
            subscription_data.trial_period_days = Some(trial.days);
            // A trial begun without a card ends the subscription rather
            // than leave an invoice nobody can pay.
            subscription_data.trial_settings =
                Some(CreateCheckoutSessionSubscriptionDataTrialSettings::new(
                    CreateCheckoutSessionSubscriptionDataTrialSettingsEndBehavior::new(
                        CreateCheckoutSessionSubscriptionDataTrialSettingsEndBehaviorMissingPaymentMethod::Cancel,
                    ),
                ));
            if !trial.card_required {
                request = request.payment_method_collection(
                    CreateCheckoutSessionPaymentMethodCollection::IfRequired,
                );
            }
        }
        let request = request
            .mode(CheckoutSessionMode::Subscription)
            .customer(req.customer_id.as_str())
            .client_reference_id(req.account_id.to_string())
            .line_items(vec![item])
            .metadata(metadata)
            .subscription_data(subscription_data)
            .allow_promotion_codes(true)
            .success_url(self.settings.checkout_success_url.as_str())
            .cancel_url(self.settings.checkout_cancel_url.as_str());
        let target = match req.trial {
            Some(t) => format!("{price}:trial{}:{}", t.days, req.attempt),
            None => format!("{price}:{}", req.attempt),
        };
        let session = self
            .send(
                key(req.account_id, "checkout", &target),
                "create checkout session",
                request,
            )
            .await?;
        Ok(CheckoutSession {
            id: session.id.to_string(),
            url: session
                .url
                .ok_or_else(|| PaymentsError::rejected("the checkout session has no URL"))?,
        })
    }

    async fn checkout(&self, session_id: &str) -> Result<RemoteCheckout, PaymentsError> {
        let s = self
            .send(
                None,
                "retrieve checkout session",
                RetrieveCheckoutSession::new(session_id),
            )
            .await?;
        let meta = |k: &str| s.metadata.as_ref().and_then(|m| m.get(k).cloned());
        let (plan_id, interval) = (
            meta("plan_id").and_then(|p| p.parse().ok()),
            match meta("billing_interval").as_deref() {
                Some("annual") => Some(BillingInterval::Annual),
                Some("monthly") => Some(BillingInterval::Monthly),
                _ => None,
            },
        );
        Ok(RemoteCheckout {
            id: s.id.to_string(),
            status: match s.status {
                Some(CheckoutSessionStatus::Complete) => CheckoutStatus::Complete,
                Some(CheckoutSessionStatus::Open) => CheckoutStatus::Open,
                _ => CheckoutStatus::Expired,
            },
            plan_id,
            interval,
            url: s.url,
            customer_id: s.customer.map(|c| c.id().to_string()),
            subscription_id: s.subscription.map(|x| x.id().to_string()),
            // A checkout begun before accounts names its user, whose id
            // the migrated account took.
            account_id: s
                .metadata
                .as_ref()
                .and_then(|m| m.get("account_id").or_else(|| m.get("user_id")).cloned())
                .or(s.client_reference_id),
            offer_id: meta("offer_id"),
        })
    }

    async fn expire_checkout(&self, session_id: &str) -> Result<(), PaymentsError> {
        self.send(
            Some(format!("kraftd:checkout:expire:{session_id}")),
            "expire checkout session",
            ExpireCheckoutSession::new(session_id),
        )
        .await
        .map(drop)
    }

    async fn schedule_change(
        &self,
        account_id: AccountId,
        current: &RemoteSubscription,
        plan_id: PlanId,
        interval: BillingInterval,
        attempt: &str,
    ) -> Result<RemoteSubscription, PaymentsError> {
        let price = self.price_id(plan_id, interval).await?;
        let target = format!("{}:{attempt}", current.id);
        let schedule_id = match &current.schedule_id {
            Some(id) => id.clone(),
            None => self
                .send(
                    key(account_id, "schedule", &target),
                    "create subscription schedule",
                    CreateSubscriptionSchedule::new().from_subscription(current.id.as_str()),
                )
                .await?
                .id
                .to_string(),
        };
        let item = |price: &str| {
            let mut i = UpdateSubscriptionSchedulePhasesItems::new();
            i.price = Some(price.to_owned());
            i.quantity = Some(1);
            i
        };
        // The paid period as it is, then the new price from its end.
        let mut now = UpdateSubscriptionSchedulePhases::new(vec![item(&current.price_id)]);
        now.start_date = current
            .current_period_start
            .map(|t| UpdateSubscriptionSchedulePhasesStartDate::Timestamp(t.timestamp()));
        now.end_date = current
            .current_period_end
            .map(|t| UpdateSubscriptionSchedulePhasesEndDate::Timestamp(t.timestamp()));
        // One period of the new price, then the schedule lets go and the
        // subscription renews on it as usual.
        let mut next = UpdateSubscriptionSchedulePhases::new(vec![item(&price)]);
        next.duration = Some(UpdateSubscriptionSchedulePhasesDuration::new(
            match interval {
                BillingInterval::Monthly => UpdateSubscriptionSchedulePhasesDurationInterval::Month,
                BillingInterval::Annual => UpdateSubscriptionSchedulePhasesDurationInterval::Year,
            },
        ));
        self.send(
            key(account_id, "schedule-phases", &format!("{target}:{price}")),
            "schedule the plan change",
            UpdateSubscriptionSchedule::new(schedule_id.as_str())
                .phases(vec![now, next])
                .end_behavior(stripe_shared::SubscriptionScheduleEndBehavior::Release),
        )
        .await?;
        self.subscription(&current.id).await
    }

    async fn release_schedule(&self, schedule_id: &str) -> Result<(), PaymentsError> {
        self.send(
            Some(format!("kraftd:schedule:release:{schedule_id}")),
            "release subscription schedule",
            ReleaseSubscriptionSchedule::new(schedule_id),
        )
        .await
        .map(drop)
    }

    async fn cancel_replaced(
        &self,
        account_id: AccountId,
        subscription_id: &str,
        credit: bool,
    ) -> Result<(), PaymentsError> {
        // `prorate` credits the unused time; `invoice_now` issues that
        // credit on a final invoice now rather than at a renewal that will
        // never come. Without credit, neither: nothing is owed back.
        let request = CancelSubscription::new(subscription_id)
            .prorate(credit)
            .invoice_now(credit);
        let sent = self
            .send(
                key(account_id, "cancel-replaced", subscription_id),
                "cancel subscription",
                request,
            )
            .await;
        match sent {
            Ok(_) => Ok(()),
            // Stripe ignores keys on DELETE: a second delivery racing the
            // first finds it canceled already, which is what was asked.
            Err(e @ (PaymentsError::Rejected { .. } | PaymentsError::NotFound { .. })) => {
                match self.subscription(subscription_id).await {
                    Ok(s) if s.has_ended() => Ok(()),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn subscription(&self, id: &str) -> Result<RemoteSubscription, PaymentsError> {
        let sub = self
            .send(None, "retrieve subscription", RetrieveSubscription::new(id))
            .await?;
        self.remote(sub).await
    }

    async fn change_plan(
        &self,
        account_id: AccountId,
        current: &RemoteSubscription,
        plan_id: PlanId,
        interval: BillingInterval,
        attempt: &str,
        proration_date: Option<DateTime<Utc>>,
    ) -> Result<RemoteSubscription, PaymentsError> {
        let price = self.price_id(plan_id, interval).await?;
        let mut item = UpdateSubscriptionItems::new();
        item.id = Some(current.item_id.clone());
        item.price = Some(price.clone());
        // The new price applies only once the prorated charge is paid.
        let request = UpdateSubscription::new(current.id.as_str())
            .items(vec![item])
            .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
            .payment_behavior(UpdateSubscriptionPaymentBehavior::PendingIfIncomplete);
        // A quoted date is part of what the key promises Stripe: the same
        // attempt with the same quote is the same request.
        let (request, target) = match proration_date {
            Some(at) => (
                request.proration_date(at.timestamp()),
                format!("{}:{price}:{attempt}:{}", current.id, at.timestamp()),
            ),
            None => (request, format!("{}:{price}:{attempt}", current.id)),
        };
        let sub = self
            .send(
                key(account_id, "change", &target),
                "change subscription price",
                request,
            )
            .await?;
        self.remote(sub).await
    }

    async fn preview_change(
        &self,
        current: &RemoteSubscription,
        plan_id: PlanId,
        interval: BillingInterval,
        proration_date: DateTime<Utc>,
    ) -> Result<Money, PaymentsError> {
        let price = self.price_id(plan_id, interval).await?;
        let mut item = CreatePreviewInvoiceSubscriptionDetailsItems::new();
        item.id = Some(current.item_id.clone());
        item.price = Some(price);
        let mut details = CreatePreviewInvoiceSubscriptionDetails::new();
        details.items = Some(vec![item]);
        details.proration_behavior =
            Some(CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::AlwaysInvoice);
        details.proration_date = Some(proration_date.timestamp());
        let request = CreatePreviewInvoice::new()
            .customer(current.customer_id.as_str())
            .subscription(current.id.as_str())
            .subscription_details(details);
        let invoice = self.send(None, "preview invoice", request).await?;
        money(invoice.amount_due, &invoice.currency)
    }

    async fn set_cancel_at_period_end(
        &self,
        account_id: AccountId,
        subscription_id: &str,
        cancel: bool,
        attempt: &str,
    ) -> Result<RemoteSubscription, PaymentsError> {
        let request = UpdateSubscription::new(subscription_id).cancel_at_period_end(cancel);
        let operation = if cancel { "cancel" } else { "resume" };
        let target = format!("{subscription_id}:{attempt}");
        let sub = self
            .send(
                key(account_id, operation, &target),
                "update cancel_at_period_end",
                request,
            )
            .await?;
        self.remote(sub).await
    }

    async fn extend_trial(
        &self,
        account_id: AccountId,
        subscription_id: &str,
        trial_end: DateTime<Utc>,
        attempt: &str,
    ) -> Result<RemoteSubscription, PaymentsError> {
        // `none`: Stripe would otherwise prorate the trial's free time.
        let request = UpdateSubscription::new(subscription_id)
            .trial_end(UpdateSubscriptionTrialEnd::Timestamp(trial_end.timestamp()))
            .proration_behavior(UpdateSubscriptionProrationBehavior::None);
        let target = format!("{subscription_id}:{attempt}");
        let sub = self
            .send(
                key(account_id, "extend-trial", &target),
                "update trial_end",
                request,
            )
            .await?;
        self.remote(sub).await
    }

    async fn portal_url(
        &self,
        customer_id: &str,
        return_url: &str,
    ) -> Result<String, PaymentsError> {
        let request = CreateBillingPortalSession::new()
            .customer(customer_id)
            .return_url(return_url);
        Ok(self.send(None, "create portal session", request).await?.url)
    }

    async fn undelivered_events(
        &self,
        types: &[&str],
        since: DateTime<Utc>,
    ) -> Result<Vec<UndeliveredEvent>, PaymentsError> {
        let request = ListEvent::new()
            .delivery_success(false)
            .created(stripe_types::RangeQueryTs::gte(since.timestamp()))
            .types(types.iter().map(|t| t.to_string()).collect::<Vec<_>>())
            .limit(100);
        let page = self.send(None, "list undelivered events", request).await?;
        Ok(page
            .data
            .into_iter()
            .map(|e| UndeliveredEvent {
                id: e.id.to_string(),
                kind: e.type_.as_str().to_owned(),
                created_at: time(e.created).unwrap_or(since),
            })
            .collect())
    }

    async fn invoice(&self, id: &str) -> Result<RemoteInvoice, PaymentsError> {
        let i = self
            .send(None, "retrieve invoice", RetrieveInvoice::new(id))
            .await?;
        let currency = i.currency.clone();
        Ok(RemoteInvoice {
            id: i.id.map(|x| x.to_string()).unwrap_or_else(|| id.to_owned()),
            customer_id: i
                .customer
                .map(|c| c.id().to_string())
                .ok_or_else(|| PaymentsError::rejected(format!("invoice {id} has no customer")))?,
            subscription_id: i
                .parent
                .and_then(|p| p.subscription_details)
                .map(|d| d.subscription.id().to_string()),
            number: i.number,
            amount_due: money(i.amount_due, &currency)?,
            amount_paid: money(i.amount_paid, &currency)?,
            status: i
                .status
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| "draft".into()),
            period_start: time(i.period_start),
            period_end: time(i.period_end),
            hosted_invoice_url: i.hosted_invoice_url,
            pdf_url: i.invoice_pdf,
            created_at: time(i.created).unwrap_or_else(Utc::now),
        })
    }

    async fn offer_price(
        &self,
        offer_id: &str,
        price: &OfferPrice,
    ) -> Result<SoldPrice, PaymentsError> {
        self.enterprise_offer_price(offer_id, price).await
    }

    async fn attach_price(
        &self,
        account_id: AccountId,
        current: &RemoteSubscription,
        price_id: &str,
        attempt: &str,
    ) -> Result<RemoteSubscription, PaymentsError> {
        self.attach_enterprise_price(account_id, current, price_id, attempt)
            .await
    }
}

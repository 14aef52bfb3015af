//! Use-cases: each public method is one thing a caller can do. They tie the
//! domain rules to the ports and know nothing about HTTP.

mod accounts;
mod admin;
mod audit;
mod email;
pub mod email_templates;
mod enterprise;
mod error;
mod events;
pub mod health;
pub mod hot_path;
pub mod import;
mod link_tokens;
mod members;
mod overrides;
mod quota;
mod reconcile;
mod rollup;
pub mod service_keys;
mod service_tokens;
mod subscriptions;
mod throttle;
mod usage;
mod verification;
mod webhooks;
pub mod whole;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

pub use accounts::{RegisterInput, Registered, Session};
pub use admin::{AccountDetail, AccountQuery, SentMessage};
pub use audit::AuditPage;
pub use email::DeliveryReport;
pub use enterprise::OfferInput;
pub use error::{AppError, StateConflict};
pub use events::MAX_EVENT_BODY_BYTES;
pub use members::{AccountSummary, Acting, Member, Team};
pub use overrides::{CreditInput, OverrideInput, OverrideValue};
pub use quota::{
    EntitlementsView, EventResult, Held, IdempotencyKey, Recorded, ReserveInput, UsageEvent,
    MAX_BATCH_EVENTS, MAX_GAUGE_VALUE,
};
pub use reconcile::ReconcileReport;
pub use rollup::RollupReport;
pub use service_tokens::Caller;
pub use subscriptions::{InvoicePage, PlanChangeQuote, Upgrade};
pub use usage::{ConsumeInput, MeterReading, UsageLine};
pub use webhooks::{handled_event_types, WebhookOutcome};

use crate::auth::password::Passwords;
use crate::auth::throttle::Throttle;
use crate::auth::token::Tokens;
use crate::domain::account::{Account, AccountId};
use crate::domain::clock::Clock;
use crate::domain::overrides::effective_limits;
use crate::domain::plan::{Catalog, Plan};
use crate::domain::ports::{EventSender, Mailer, Payments, Store, Versioned, WebhookVerifier};
use crate::domain::service::{ServiceApp, ServicePrincipal};

/// Operator choices the use-cases follow.
#[derive(Debug, Clone)]
pub struct BillingSettings {
    /// How long past_due keeps the paid plan's limits.
    pub past_due_grace: Duration,
    /// Where the Stripe customer portal sends the user back to.
    pub portal_return_url: String,
    /// Where emails point the user.
    pub links: email_templates::Links,
    /// The Entra ID applications whose app tokens are accepted
    /// (`SERVICE_APPS`), with the names they go by; empty: any application
    /// of a trusted service issuer.
    pub service_apps: Vec<ServiceApp>,
    /// How long a sender's claim on an outbox message holds
    /// (`OUTBOX_LEASE_SECONDS`): a sender that died mid-send is followed
    /// by another once it lapses.
    pub outbox_lease: Duration,
}

pub struct Billing {
    catalog: Catalog,
    store: Arc<dyn Store>,
    payments: Arc<dyn Payments>,
    webhooks: Arc<dyn WebhookVerifier>,
    mailer: Arc<dyn Mailer>,
    /// KRAFTD's event endpoint; `None`: events are not recorded.
    events: Option<Arc<dyn EventSender>>,
    tokens: Tokens,
    passwords: Passwords,
    throttle: Throttle,
    clock: Arc<dyn Clock>,
    settings: BillingSettings,
    /// Verified service keys by their hash, and the principal each is.
    credentials: hot_path::TtlCache<String, ServicePrincipal>,
    /// The accounts service routes named lately.
    accounts: hot_path::TtlCache<AccountId, Versioned<Account>>,
    leases: hot_path::Leases,
}

/// Everything `Billing` runs on.
pub struct Parts {
    pub catalog: Catalog,
    pub store: Arc<dyn Store>,
    pub payments: Arc<dyn Payments>,
    pub webhooks: Arc<dyn WebhookVerifier>,
    pub mailer: Arc<dyn Mailer>,
    /// KRAFTD's event endpoint (`EVENTS_WEBHOOK_URL`); `None`: no events.
    pub events: Option<Arc<dyn EventSender>>,
    pub tokens: Tokens,
    pub passwords: Passwords,
    pub throttle: Throttle,
    pub clock: Arc<dyn Clock>,
    pub settings: BillingSettings,
}

impl Billing {
    pub fn new(p: Parts) -> Self {
        Self {
            catalog: p.catalog,
            store: p.store,
            payments: p.payments,
            webhooks: p.webhooks,
            mailer: p.mailer,
            events: p.events,
            tokens: p.tokens,
            passwords: p.passwords,
            throttle: p.throttle,
            clock: p.clock,
            settings: p.settings,
            credentials: hot_path::TtlCache::new(hot_path::CREDENTIAL_TTL),
            accounts: hot_path::TtlCache::new(hot_path::ACCOUNT_TTL),
            leases: hot_path::Leases::default(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The plan whose limits bind this account right now, with the
    /// operators' overrides in force applied to its limits: what every
    /// entitlement and quota check reads.
    pub fn effective_plan(&self, account: &Account) -> Plan {
        self.effective_plan_at(account, self.clock.now())
    }

    pub fn effective_plan_at(&self, account: &Account, now: DateTime<Utc>) -> Plan {
        let mut plan = self
            .catalog
            .plan(account.subscription.effective_plan(now))
            .clone();
        plan.limits = effective_limits(&plan.limits, &account.overrides, now);
        plan
    }
}

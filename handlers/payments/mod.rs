//! Payment adapters: Stripe (`stripe`), its webhook verifier, and the
//! refusal used when no payment provider is configured.

pub mod catalog_sync;
mod enterprise;
pub mod stripe;
pub mod webhook;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::account::AccountId;
use crate::domain::health::UndeliveredEvent;
use crate::domain::money::Money;
use crate::domain::plan::{BillingInterval, PlanId};
use crate::domain::ports::{
    CheckoutRequest, CheckoutSession, OfferPrice, Payments, PaymentsError, RemoteCheckout,
    RemoteInvoice, SoldPrice,
};
use crate::domain::subscription::RemoteSubscription;
use crate::domain::user::Email;

/// Paid plans are refused up front with a clear 503 and nothing is written.
pub struct PaymentsNotConfigured;

#[async_trait]
impl Payments for PaymentsNotConfigured {
    fn is_configured(&self) -> bool {
        false
    }
    async fn create_customer(
        &self,
        _: AccountId,
        _: &Email,
        _: &str,
    ) -> Result<String, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn start_checkout(&self, _: &CheckoutRequest) -> Result<CheckoutSession, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn checkout(&self, _: &str) -> Result<RemoteCheckout, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn expire_checkout(&self, _: &str) -> Result<(), PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    /// Without Stripe, no webhook is owed.
    async fn undelivered_events(
        &self,
        _: &[&str],
        _: DateTime<Utc>,
    ) -> Result<Vec<UndeliveredEvent>, PaymentsError> {
        Ok(Vec::new())
    }
    async fn cancel_replaced(&self, _: AccountId, _: &str, _: bool) -> Result<(), PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn schedule_change(
        &self,
        _: AccountId,
        _: &RemoteSubscription,
        _: PlanId,
        _: BillingInterval,
        _: &str,
    ) -> Result<RemoteSubscription, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn release_schedule(&self, _: &str) -> Result<(), PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn subscription(&self, _: &str) -> Result<RemoteSubscription, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn change_plan(
        &self,
        _: AccountId,
        _: &RemoteSubscription,
        _: PlanId,
        _: BillingInterval,
        _: &str,
        _: Option<DateTime<Utc>>,
    ) -> Result<RemoteSubscription, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn preview_change(
        &self,
        _: &RemoteSubscription,
        _: PlanId,
        _: BillingInterval,
        _: DateTime<Utc>,
    ) -> Result<Money, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn set_cancel_at_period_end(
        &self,
        _: AccountId,
        _: &str,
        _: bool,
        _: &str,
    ) -> Result<RemoteSubscription, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn extend_trial(
        &self,
        _: AccountId,
        _: &str,
        _: DateTime<Utc>,
        _: &str,
    ) -> Result<RemoteSubscription, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn portal_url(&self, _: &str, _: &str) -> Result<String, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn invoice(&self, _: &str) -> Result<RemoteInvoice, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn offer_price(&self, _: &str, _: &OfferPrice) -> Result<SoldPrice, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
    async fn attach_price(
        &self,
        _: AccountId,
        _: &RemoteSubscription,
        _: &str,
        _: &str,
    ) -> Result<RemoteSubscription, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
}

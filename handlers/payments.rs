//! Payment adapters. Until the Stripe adapter lands, paid plans are refused
//! up front with a clear 503 and nothing is written.

use async_trait::async_trait;

use crate::domain::ports::{CheckoutRequest, CheckoutSession, Payments, PaymentsError};

pub struct PaymentsNotConfigured;

#[async_trait]
impl Payments for PaymentsNotConfigured {
    fn is_configured(&self) -> bool {
        false
    }

    async fn start_checkout(&self, _: &CheckoutRequest) -> Result<CheckoutSession, PaymentsError> {
        Err(PaymentsError::NotConfigured)
    }
}

//! Use-cases: each public method is one thing a caller can do. They tie the
//! domain rules to the ports and know nothing about HTTP.

mod accounts;
mod error;
mod usage;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use accounts::{RegisterInput, Registered, Session};
pub use error::AppError;
pub use usage::{ConsumeInput, MeterReading, UsageLine};

use crate::auth::token::Tokens;
use crate::domain::clock::Clock;
use crate::domain::plan::{Catalog, Plan};
use crate::domain::ports::{Payments, Store};
use crate::domain::user::User;

pub struct Billing {
    catalog: Catalog,
    store: Arc<dyn Store>,
    payments: Arc<dyn Payments>,
    tokens: Tokens,
    clock: Arc<dyn Clock>,
}

impl Billing {
    pub fn new(
        catalog: Catalog,
        store: Arc<dyn Store>,
        payments: Arc<dyn Payments>,
        tokens: Tokens,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            catalog,
            store,
            payments,
            tokens,
            clock,
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The plan whose limits bind this user right now.
    pub fn effective_plan(&self, user: &User) -> &Plan {
        self.catalog
            .plan(user.subscription.effective_plan(self.clock.now()))
    }
}

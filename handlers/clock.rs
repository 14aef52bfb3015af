//! The system's clock, behind the domain's `Clock` port.

use chrono::{DateTime, Utc};

use crate::domain::clock::Clock;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

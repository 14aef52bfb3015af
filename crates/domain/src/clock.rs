use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// The one source of "now". Every window and expiry is computed from it, in
/// UTC. The system's clock is an adapter (`kraftd_billing::clock`): reading
/// it is I/O.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock that only moves when told to: lets tests stand at 23:59:59.999.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

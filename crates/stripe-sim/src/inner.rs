//! The simulator's shared core: its state behind a lock, the clock, the
//! webhook secret and where deliveries go. `StripeSim` and the HTTP handlers
//! each hold an `Arc` of it.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use kraftd_domain::clock::Clock;

use crate::ctx::Ctx;
use crate::events::Delivery;
use crate::state::State;

pub(crate) struct Inner {
    pub state: Mutex<State>,
    pub clock: Arc<dyn Clock>,
    pub secret: String,
    pub base_url: String,
    pub deliveries: mpsc::UnboundedSender<Delivery>,
}

impl Inner {
    /// An empty simulator answering at `base_url`.
    pub fn new(
        clock: Arc<dyn Clock>,
        secret: String,
        base_url: String,
        deliveries: mpsc::UnboundedSender<Delivery>,
    ) -> Inner {
        Inner {
            state: Mutex::new(State::default()),
            clock,
            secret,
            base_url,
            deliveries,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    /// Runs `f` on the state with the clock's now, under the lock.
    pub fn with<T>(&self, f: impl FnOnce(&mut Ctx<'_>) -> T) -> T {
        let mut st = self.lock();
        let mut ctx = Ctx {
            st: &mut st,
            now: self.now(),
            base_url: &self.base_url,
            deliveries: &self.deliveries,
        };
        f(&mut ctx)
    }

    /// Returns once every event emitted so far has been delivered (or failed).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.deliveries.send(Delivery::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

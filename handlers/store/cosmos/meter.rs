//! Counts what the store spends: round trips and request units, read from
//! each response's `x-ms-request-charge`. Benchmarks read it to report the
//! RU cost of a metered request or a webhook event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use azure_data_cosmos::models::ItemResponse;
use azure_data_cosmos::CosmosError;
use azure_data_cosmos_driver::models::RequestCharge;

#[derive(Clone, Default)]
pub struct Meter(Arc<Counters>);

#[derive(Default)]
struct Counters {
    round_trips: AtomicU64,
    /// Thousandths of a request unit, so sums stay exact integers.
    milli_ru: AtomicU64,
}

/// A snapshot; subtract two to get the cost of what ran in between.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterReading {
    pub round_trips: u64,
    pub request_units: f64,
}

impl std::ops::Sub for MeterReading {
    type Output = MeterReading;
    fn sub(self, rhs: Self) -> Self {
        MeterReading {
            round_trips: self.round_trips - rhs.round_trips,
            request_units: self.request_units - rhs.request_units,
        }
    }
}

impl Meter {
    pub fn reading(&self) -> MeterReading {
        MeterReading {
            round_trips: self.0.round_trips.load(Ordering::Relaxed),
            request_units: self.0.milli_ru.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }

    pub(super) fn record(&self, charge: Option<&RequestCharge>) {
        self.0.round_trips.fetch_add(1, Ordering::Relaxed);
        let milli = charge.map_or(0.0, |c| c.value() * 1000.0).round() as u64;
        self.0.milli_ru.fetch_add(milli, Ordering::Relaxed);
    }

    pub(super) fn count(&self, result: &Result<ItemResponse, CosmosError>) {
        match result {
            Ok(r) => self.record(r.headers().request_charge()),
            Err(e) => self.record(
                e.response()
                    .and_then(|r| r.headers().request_charge.as_ref()),
            ),
        }
    }
}

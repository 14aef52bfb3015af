//! Usage metrics, their UTC windows and the quota rules. Windows are
//! half-open: `[start, end)`, so 23:59:59.999 belongs to today and 00:00 to
//! tomorrow.

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::plan::{ExportFormat, Feature, Limit, Limits, PlanId};

/// The most one report may add to (or take from) a metric. Far above any
/// real document batch or storage change, and far enough below `i64::MAX`
/// that no counter can overflow from reports.
pub const MAX_QUANTITY: i64 = 1_000_000;

/// How long a usage record is kept after its window closes.
pub const USAGE_RETENTION_DAYS: i64 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Documents,
    ApiCalls,
    Exports,
    StorageMb,
    TeamMembers,
}

impl std::str::FromStr for Metric {
    type Err = UnknownMetric;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMetric(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric {0:?}")]
pub struct UnknownMetric(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

/// Counters reset every window; gauges are a level that moves up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter(Period),
    Gauge,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::ApiCalls,
        Metric::Documents,
        Metric::Exports,
        Metric::StorageMb,
        Metric::TeamMembers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Documents => "documents",
            Metric::ApiCalls => "api_calls",
            Metric::Exports => "exports",
            Metric::StorageMb => "storage_mb",
            Metric::TeamMembers => "team_members",
        }
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::ApiCalls => MetricKind::Counter(Period::Day),
            Metric::Documents | Metric::Exports => MetricKind::Counter(Period::Month),
            Metric::StorageMb | Metric::TeamMembers => MetricKind::Gauge,
        }
    }

    /// The name of the plan limit that bounds this metric, as the catalog shows it.
    pub fn limit_name(self) -> &'static str {
        match self {
            Metric::Documents => "documents_per_month",
            Metric::ApiCalls => "api_calls_per_day",
            Metric::Exports => "exports_per_month",
            Metric::StorageMb => "storage_mb",
            Metric::TeamMembers => "team_members",
        }
    }

    pub fn limit(self, limits: &Limits) -> Limit {
        match self {
            Metric::Documents => limits.documents_per_month,
            Metric::ApiCalls => limits.api_calls_per_day,
            // No plan caps the number of exports; formats are what plans gate.
            Metric::Exports => None,
            Metric::StorageMb => limits.storage_mb,
            Metric::TeamMembers => limits.team_members,
        }
    }
}

/// A half-open UTC interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn containing(period: Period, at: DateTime<Utc>) -> Self {
        let day = at.date_naive();
        match period {
            Period::Day => {
                let start = Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN));
                Self {
                    start,
                    end: start + Duration::days(1),
                }
            }
            Period::Month => {
                let first = day.with_day(1).expect("day 1 exists");
                let next = if first.month() == 12 {
                    first
                        .with_year(first.year() + 1)
                        .and_then(|d| d.with_month(1))
                } else {
                    first.with_month(first.month() + 1)
                }
                .expect("first of next month exists");
                Self {
                    start: Utc.from_utc_datetime(&first.and_time(NaiveTime::MIN)),
                    end: Utc.from_utc_datetime(&next.and_time(NaiveTime::MIN)),
                }
            }
        }
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// Whole seconds until the window ends, rounded up so a client that waits
    /// this long is never early.
    pub fn seconds_until_end(&self, now: DateTime<Utc>) -> u64 {
        let ms = (self.end - now).num_milliseconds().max(0) as u64;
        ms.div_ceil(1000)
    }
}

/// Where one metric's count for one account lives: the metric and the window it
/// counts in (gauges have no window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageKey {
    pub metric: Metric,
    pub window: Option<Window>,
}

impl UsageKey {
    pub fn current(metric: Metric, now: DateTime<Utc>) -> Self {
        let window = match metric.kind() {
            MetricKind::Counter(period) => Some(Window::containing(period, now)),
            MetricKind::Gauge => None,
        };
        Self { metric, window }
    }

    /// Counters are kept for a retention period after their window closes;
    /// gauges are a current level and never expire.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.window
            .map(|w| w.end + Duration::days(USAGE_RETENTION_DAYS))
    }
}

/// One atomic "check the limit and record" request for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageIncrement {
    pub account_id: AccountId,
    pub key: UsageKey,
    /// Positive for counters; signed for gauges.
    pub amount: i64,
    /// Admit only if the new total stays within it (`None` = unlimited).
    /// Decrements are always admitted down to zero.
    pub limit: Limit,
    pub at: DateTime<Utc>,
}

impl UsageIncrement {
    /// The limit as the stores' signed counters hold it: a limit past
    /// `i64::MAX` is clamped there (no counter can reach it anyway).
    pub fn signed_limit(&self) -> Option<i64> {
        self.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX))
    }

    /// An increment larger than the whole limit never fits, whatever the
    /// counter holds: refused before any write.
    pub fn exceeds_limit_alone(&self) -> bool {
        self.signed_limit().is_some_and(|l| self.amount > l)
    }

    /// Whether a counter that holds `total` once this increment is added
    /// is within the limit.
    pub fn admits(&self, total: i64) -> bool {
        self.signed_limit().is_none_or(|l| total <= l)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageOutcome {
    Admitted {
        total: u64,
    },
    /// Nothing was recorded; `total` is the usage as it stands.
    Denied {
        total: u64,
    },
}

/// What a consume asks for, beyond the metric and amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumeGate {
    pub feature: Option<Feature>,
    pub format: Option<ExportFormat>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDenial {
    Feature(Feature),
    ExportFormat(ExportFormat),
}

/// The plan's yes/no rules, checked before anything is counted.
pub fn check_gate(limits: &Limits, gate: ConsumeGate) -> Result<(), GateDenial> {
    if let Some(feature) = gate.feature {
        if !limits.allows_feature(feature) {
            return Err(GateDenial::Feature(feature));
        }
    }
    if let Some(format) = gate.format {
        if !limits.allows_export(format) {
            return Err(GateDenial::ExportFormat(format));
        }
    }
    Ok(())
}

/// Everything a client needs to know about a refused consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaDenial {
    pub metric: Metric,
    pub limit: u64,
    pub used: u64,
    pub requested: i64,
    pub plan: PlanId,
    pub upgrade_to: Option<PlanId>,
    pub window: Option<Window>,
    /// Whole seconds until the window resets, for `Retry-After`.
    pub seconds_to_reset: Option<u64>,
}

/// One account's usage over one UTC month, rolled up from the daily records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthlySummary {
    pub account_id: AccountId,
    pub month: Window,
    pub api_calls: u64,
    pub documents: u64,
    pub exports: u64,
}

impl MonthlySummary {
    /// A month's totals from its counters, as `(metric, quantity)` pairs: one
    /// metric's windows add up; gauges and other metrics are not summed. A
    /// negative quantity (a gauge's bug, a corrupt record) counts as none,
    /// and a sum past `u64::MAX` stays there rather than wrapping.
    pub fn from_counters(
        account_id: AccountId,
        month: Window,
        counters: impl IntoIterator<Item = (Metric, i64)>,
    ) -> Self {
        let mut summary = MonthlySummary {
            account_id,
            month,
            api_calls: 0,
            documents: 0,
            exports: 0,
        };
        for (metric, quantity) in counters {
            let quantity = u64::try_from(quantity).unwrap_or(0);
            let total = match metric {
                Metric::ApiCalls => &mut summary.api_calls,
                Metric::Documents => &mut summary.documents,
                Metric::Exports => &mut summary.exports,
                Metric::StorageMb | Metric::TeamMembers => continue,
            };
            *total = total.saturating_add(quantity);
        }
        summary
    }
}

/// The warning thresholds (percent of a limit) that `used` has reached.
pub fn thresholds_reached(used: u64, limit: Limit) -> Vec<u8> {
    let Some(limit) = limit.filter(|l| *l > 0) else {
        return Vec::new();
    };
    [80u8, 100]
        .into_iter()
        .filter(|t| used.saturating_mul(100) >= limit.saturating_mul(u64::from(*t)))
        .collect()
}

/// The thresholds a change from `before` to `after` crossed: reached now,
/// not before.
pub fn thresholds_crossed(before: u64, after: u64, limit: Limit) -> Vec<u8> {
    let already = thresholds_reached(before, limit);
    thresholds_reached(after, limit)
        .into_iter()
        .filter(|t| !already.contains(t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_crosses_only_the_thresholds_it_reaches_anew() {
        assert_eq!(thresholds_crossed(39, 40, Some(50)), vec![80]);
        assert_eq!(thresholds_crossed(40, 41, Some(50)), Vec::<u8>::new());
        assert_eq!(thresholds_crossed(10, 50, Some(50)), vec![80, 100]);
        assert_eq!(thresholds_crossed(45, 60, Some(50)), vec![100]);
        assert_eq!(thresholds_crossed(0, 60, None), Vec::<u8>::new());
    }

    fn increment(amount: i64, limit: Limit) -> UsageIncrement {
        let at = Utc.with_ymd_and_hms(2026, 3, 5, 12, 0, 0).unwrap();
        UsageIncrement {
            account_id: AccountId(uuid::Uuid::new_v4()),
            key: UsageKey::current(Metric::Documents, at),
            amount,
            limit,
            at,
        }
    }

    #[test]
    fn the_limit_pre_check_and_clamp() {
        assert!(increment(51, Some(50)).exceeds_limit_alone());
        assert!(!increment(50, Some(50)).exceeds_limit_alone());
        assert!(!increment(i64::MAX, None).exceeds_limit_alone());
        assert_eq!(increment(1, Some(u64::MAX)).signed_limit(), Some(i64::MAX));
        assert!(increment(5, Some(50)).admits(50));
        assert!(!increment(5, Some(50)).admits(51));
        assert!(increment(5, None).admits(i64::MAX));
    }

    #[test]
    fn a_monthly_summary_adds_counters_and_ignores_the_rest() {
        let at = Utc.with_ymd_and_hms(2026, 3, 5, 12, 0, 0).unwrap();
        let month = Window::containing(Period::Month, at);
        let user = AccountId(uuid::Uuid::new_v4());
        let summary = MonthlySummary::from_counters(
            user,
            month,
            [
                (Metric::ApiCalls, 10),
                (Metric::ApiCalls, 5),
                (Metric::Documents, 7),
                (Metric::Exports, -3),
                (Metric::StorageMb, 900),
                (Metric::Exports, i64::MAX),
                (Metric::Exports, i64::MAX),
                (Metric::Exports, i64::MAX),
            ],
        );
        assert_eq!(summary.account_id, user);
        assert_eq!((summary.api_calls, summary.documents), (15, 7));
        assert_eq!(summary.exports, u64::MAX, "saturates, never wraps");
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn last_millisecond_of_day_is_in_today_and_midnight_in_tomorrow() {
        let late = t("2026-03-31T23:59:59.999Z");
        let midnight = t("2026-04-01T00:00:00Z");
        let today = Window::containing(Period::Day, late);
        assert!(today.contains(late));
        assert!(!today.contains(midnight));
        assert_eq!(today.end, midnight);
        assert_eq!(Window::containing(Period::Day, midnight).start, midnight);
        assert_eq!(today.seconds_until_end(late), 1);
    }

    #[test]
    fn month_windows_cross_year_and_leap_day() {
        let dec = Window::containing(Period::Month, t("2026-12-31T23:59:59.999Z"));
        assert_eq!(dec.start, t("2026-12-01T00:00:00Z"));
        assert_eq!(dec.end, t("2027-01-01T00:00:00Z"));
        let feb = Window::containing(Period::Month, t("2028-02-29T12:00:00Z"));
        assert_eq!(feb.end, t("2028-03-01T00:00:00Z"));
        assert!(!feb.contains(feb.end));
    }

    #[test]
    fn gauges_have_no_window_and_never_expire() {
        let k = UsageKey::current(Metric::StorageMb, t("2026-01-01T00:00:00Z"));
        assert_eq!(k.window, None);
        assert_eq!(k.expires_at(), None);
        let c = UsageKey::current(Metric::ApiCalls, t("2026-01-01T10:00:00Z"));
        assert_eq!(
            c.expires_at(),
            Some(t("2026-04-02T00:00:00Z")),
            "90 days after the day ends"
        );
    }

    #[test]
    fn gates_follow_the_plan() {
        let free = crate::plan::Catalog::standard();
        let limits = &free.plan(PlanId::Free).limits;
        assert_eq!(
            check_gate(
                limits,
                ConsumeGate {
                    feature: Some(Feature::AiFeatures),
                    format: None
                }
            ),
            Err(GateDenial::Feature(Feature::AiFeatures))
        );
        assert_eq!(
            check_gate(
                limits,
                ConsumeGate {
                    feature: None,
                    format: Some(ExportFormat::Csv)
                }
            ),
            Err(GateDenial::ExportFormat(ExportFormat::Csv))
        );
        assert!(check_gate(
            limits,
            ConsumeGate {
                feature: None,
                format: Some(ExportFormat::Pdf)
            }
        )
        .is_ok());
    }

    #[test]
    fn thresholds_are_reached_at_80_and_100_percent() {
        assert_eq!(thresholds_reached(39, Some(50)), Vec::<u8>::new());
        assert_eq!(thresholds_reached(40, Some(50)), vec![80]);
        assert_eq!(thresholds_reached(50, Some(50)), vec![80, 100]);
        assert_eq!(thresholds_reached(1_000_000, None), Vec::<u8>::new());
    }
}

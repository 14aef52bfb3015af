//! The daily usage rollup (a timer, UTC): each day's usage becomes monthly
//! summaries, and accounts crossing 80% or 100% of a monthly limit are warned,
//! once per threshold per month. Days are rolled in order from the last one
//! done, so a missed run (or a `IsPastDue` one) catches up, and a day is only
//! marked done once all its accounts are, so a crash redoes it, harmlessly:
//! summaries are recomputed, not added to, and warnings are insert-if-absent.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, NaiveTime, TimeZone, Utc};

use crate::domain::records::{EmailKind, OutboxMessage};
use crate::domain::usage::{thresholds_reached, Metric, MonthlySummary, Period, Window};

use super::{AppError, Billing};

/// Users per store call: memory stays flat however many accounts there are.
const PAGE: usize = 1000;
/// A first run, or a long outage, rolls at most this many days back.
const MAX_CATCH_UP_DAYS: i64 = 35;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RollupReport {
    pub days: usize,
    pub summaries: usize,
    pub warnings: usize,
}

impl Billing {
    pub async fn roll_up_usage(&self) -> Result<RollupReport, AppError> {
        let today = self.clock.now().date_naive();
        let last_done = self.store.rollup_cursor().await?;
        let first = match last_done {
            Some(d) => d + Duration::days(1),
            None => today - Duration::days(1),
        }
        .max(today - Duration::days(MAX_CATCH_UP_DAYS));
        let mut report = RollupReport::default();
        let mut day = first;
        // Today is still running: roll up to yesterday.
        while day < today {
            let (summaries, warnings) = self.roll_up(day).await?;
            report.days += 1;
            report.summaries += summaries;
            report.warnings += warnings;
            self.store.set_rollup_cursor(day).await?;
            day += Duration::days(1);
        }
        Ok(report)
    }

    async fn roll_up(&self, day: NaiveDate) -> Result<(usize, usize), AppError> {
        let at = Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN));
        let day_window = Window::containing(Period::Day, at);
        let month = Window::containing(Period::Month, at);
        let (mut summaries, mut warnings) = (0, 0);
        let mut after = None;
        loop {
            let page = self
                .store
                .roll_up_day(day_window, month, after, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.account_id);
            summaries += page.len();
            for summary in &page {
                warnings += self.warn_if_near_limits(summary).await?;
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok((summaries, warnings))
    }

    async fn warn_if_near_limits(&self, summary: &MonthlySummary) -> Result<usize, AppError> {
        let Some(account) = self.store.account_by_id(summary.account_id).await? else {
            return Ok(0);
        };
        let plan = self.effective_plan(&account.value);
        let metric = Metric::Documents;
        let limit = metric.limit(&plan.limits);
        let month = summary.month.start.format("%Y-%m");
        let messages: Vec<OutboxMessage> = thresholds_reached(summary.documents, limit)
            .into_iter()
            .map(|percent| OutboxMessage {
                // Once per account, limit, month and threshold.
                id: format!(
                    "{}:quota:{}:{month}:{percent}",
                    account.value.id,
                    metric.limit_name()
                ),
                account_id: account.value.id,
                to: None,
                kind: EmailKind::QuotaWarning.into(),
                data: BTreeMap::from([
                    ("plan".to_owned(), plan.name.to_owned()),
                    ("limit_name".to_owned(), metric.limit_name().to_owned()),
                    ("percent".to_owned(), percent.to_string()),
                    ("used".to_owned(), summary.documents.to_string()),
                    (
                        "limit".to_owned(),
                        limit.map(|l| l.to_string()).unwrap_or_default(),
                    ),
                ]),
                body: None,
                created_at: self.clock.now(),
            })
            .collect();
        self.store.enqueue(&messages).await?;
        // The events were sent when the usage crossed the thresholds; should
        // one have been lost to a crash, this sends it (once: same event id).
        if let Some(limit) = limit {
            for percent in thresholds_reached(summary.documents, Some(limit)) {
                self.usage_threshold_reached(
                    account.value.id,
                    metric,
                    percent,
                    summary.month,
                    summary.documents,
                    limit,
                )
                .await?;
            }
        }
        Ok(messages.len())
    }
}

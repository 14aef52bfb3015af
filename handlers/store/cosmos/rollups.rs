//! The daily rollup. Accounts active on a day are listed in that day's
//! index partition of `usage_records`, so a page of them is one
//! single-partition query; each account's month is then one query in its
//! own partition.

use async_trait::async_trait;
use azure_data_cosmos::{FeedScope, Query};
use chrono::{NaiveDate, Utc};

use super::docs::{self, CursorDoc, SummaryDoc};
use super::{unavailable, CosmosStore};
use crate::domain::account::AccountId;
use crate::domain::ports::{Rollups, StoreError};
use crate::domain::usage::{Metric, MonthlySummary, Window};

const CURSOR_ID: &str = "rollup-cursor";

fn summary_id(month: Window) -> String {
    format!("summary:{}", docs::ms(month.start))
}

impl CosmosStore {
    async fn summarise(
        &self,
        account: AccountId,
        month: Window,
    ) -> Result<MonthlySummary, StoreError> {
        let query = Query::from(
            "SELECT * FROM c WHERE c.account_id = @u AND c.type = @t AND c.window_start >= @from AND c.window_start < @to",
        )
        .with_parameter("@u", docs::pk(account))
        .and_then(|q| q.with_parameter("@t", docs::USAGE))
        .and_then(|q| q.with_parameter("@from", docs::ms(month.start)))
        .and_then(|q| q.with_parameter("@to", docs::ms(month.end)))
        .map_err(StoreError::corrupt)?;
        // Read loosely: one unreadable record (a quantity that is not an
        // integer) is logged and left out rather than failing the rollup.
        let counters: Vec<serde_json::Value> = self
            .query(&self.usage, query, FeedScope::partition(docs::pk(account)))
            .await?;
        let counters = counters.iter().filter_map(|c| {
            let metric = c["metric"].as_str()?.parse::<Metric>().ok()?;
            let Some(quantity) = c["quantity"].as_i64() else {
                tracing::error!(account_id = %account, metric = metric.as_str(), quantity = %c["quantity"], "usage record skipped by the rollup: its quantity is not an integer");
                return None;
            };
            Some((metric, quantity))
        });
        Ok(MonthlySummary::from_counters(account, month, counters))
    }
}

#[async_trait]
impl Rollups for CosmosStore {
    async fn rollup_cursor(&self) -> Result<Option<NaiveDate>, StoreError> {
        Ok(self
            .read_doc::<CursorDoc>(&self.lookups, CURSOR_ID, CURSOR_ID)
            .await?
            .map(|(c, _)| c.day))
    }

    async fn set_rollup_cursor(&self, day: NaiveDate) -> Result<(), StoreError> {
        let doc = CursorDoc {
            id: CURSOR_ID.into(),
            day,
        };
        self.call(|| self.lookups.upsert_item(CURSOR_ID, CURSOR_ID, &doc, None))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn roll_up_day(
        &self,
        day: Window,
        month: Window,
        after: Option<AccountId>,
        limit: usize,
    ) -> Result<Vec<MonthlySummary>, StoreError> {
        let query = Query::from(format!(
            "SELECT TOP {} VALUE c.id FROM c WHERE c.account_id = @day AND c.type = @t AND c.id > @after ORDER BY c.id",
            limit.max(1)
        ))
        .with_parameter("@day", docs::day_partition(day.start.date_naive()))
        .and_then(|q| q.with_parameter("@t", docs::ACTIVE))
        .and_then(|q| q.with_parameter("@after", after.map(|u| u.to_string()).unwrap_or_default()))
        .map_err(StoreError::corrupt)?;
        let partition = docs::day_partition(day.start.date_naive());
        let mut accounts: Vec<String> = self
            .query(&self.usage, query, FeedScope::partition(partition))
            .await?;
        accounts.sort();
        accounts.truncate(limit);
        let mut out = Vec::with_capacity(accounts.len());
        for account in accounts {
            let account = docs::parse_account_id(&account)?;
            let summary = self.summarise(account, month).await?;
            let doc = SummaryDoc {
                id: summary_id(month),
                account_id: docs::pk(account),
                kind: docs::SUMMARY.into(),
                month_start: docs::ms(month.start),
                month_end: docs::ms(month.end),
                api_calls: summary.api_calls,
                documents: summary.documents,
                exports: summary.exports,
                updated_at: docs::ms(Utc::now()),
                ttl: -1,
            };
            self.call(|| {
                self.usage
                    .upsert_item(doc.account_id.clone(), &doc.id, &doc, None)
            })
            .await
            .map_err(unavailable)?;
            out.push(summary);
        }
        Ok(out)
    }

    async fn monthly_summary(
        &self,
        account_id: AccountId,
        month: Window,
    ) -> Result<Option<MonthlySummary>, StoreError> {
        let found = self
            .read_doc::<SummaryDoc>(&self.usage, &docs::pk(account_id), &summary_id(month))
            .await?;
        Ok(found.map(|(d, _)| MonthlySummary {
            account_id,
            month,
            api_calls: d.api_calls,
            documents: d.documents,
            exports: d.exports,
        }))
    }
}

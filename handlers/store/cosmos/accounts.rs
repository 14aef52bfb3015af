//! Accounts: the document that holds an account's subscription, in the
//! account's partition of `accounts`, found by id or by Stripe customer.

use async_trait::async_trait;
use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, Utc};

use super::docs::{self, AccountDoc};
use super::users::Claim;
use super::CosmosStore;
use crate::domain::account::{Account, AccountId, Membership, Role};
use crate::domain::ports::{AccountStore, Etag, StoreError, Uniqueness, Versioned};

impl CosmosStore {
    pub(super) async fn account_doc(
        &self,
        id: AccountId,
    ) -> Result<Option<(AccountDoc, Etag)>, StoreError> {
        let pk = docs::pk(id);
        self.read_doc(&self.accounts, &pk, &pk).await
    }

    /// Claims what the account's document asserts before it is written (a
    /// point read when, as usual, the claim is already held).
    pub(super) async fn claim_account_facts(&self, account: &Account) -> Result<(), StoreError> {
        if let Some(customer) = &account.subscription.stripe_customer_id {
            self.claim(Claim::Customer(customer), &docs::pk(account.id))
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl AccountStore for CosmosStore {
    async fn account_by_id(&self, id: AccountId) -> Result<Option<Versioned<Account>>, StoreError> {
        Ok(self.account_doc(id).await?.map(|(d, etag)| Versioned {
            value: d.account,
            etag,
        }))
    }

    async fn account_by_stripe_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<Versioned<Account>>, StoreError> {
        let Some(holder) = self.claimed_by(Claim::Customer(customer_id)).await? else {
            return Ok(None);
        };
        let account = docs::parse_account_id(&holder)?;
        Ok(self
            .account_doc(account)
            .await?
            .filter(|(d, _)| {
                d.account.subscription.stripe_customer_id.as_deref() == Some(customer_id)
            })
            .map(|(d, etag)| Versioned {
                value: d.account,
                etag,
            }))
    }

    async fn account_by_stripe_subscription(
        &self,
        subscription_id: &str,
    ) -> Result<Option<Versioned<Account>>, StoreError> {
        // An operator's look-up across partitions, not a hot path.
        let query = Query::from(
            "SELECT VALUE c.account_id FROM c WHERE c.type = @t AND (c.account.subscription.stripe_subscription_id = @s OR c.account.subscription.replaced_subscription_id = @s)",
        )
        .with_parameter("@t", docs::ACCOUNT)
        .and_then(|q| q.with_parameter("@s", subscription_id))
        .map_err(StoreError::corrupt)?;
        let found: Vec<String> = self
            .query(&self.accounts, query, FeedScope::full_container())
            .await?;
        let Some(first) = found.first() else {
            return Ok(None);
        };
        self.account_by_id(docs::parse_account_id(first)?).await
    }

    async fn stale_subscriptions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<AccountId>, StoreError> {
        // A timer's query, across partitions; sorted here because the SDK
        // does not order across partitions.
        let query = Query::from(
            "SELECT c.account_id, c.watch_at FROM c WHERE c.type = @t AND IS_NUMBER(c.watch_at) AND c.watch_at <= @now",
        )
        .with_parameter("@t", docs::ACCOUNT)
        .and_then(|q| q.with_parameter("@now", docs::ms(now)))
        .map_err(StoreError::corrupt)?;
        #[derive(serde::Deserialize)]
        struct Row {
            account_id: String,
            watch_at: i64,
        }
        let mut rows: Vec<Row> = self
            .query(&self.accounts, query, FeedScope::full_container())
            .await?;
        rows.sort_by(|a, b| (a.watch_at, &a.account_id).cmp(&(b.watch_at, &b.account_id)));
        rows.into_iter()
            .take(limit)
            .map(|r| docs::parse_account_id(&r.account_id))
            .collect()
    }

    async fn create_account(
        &self,
        account: &Account,
        owner: &Membership,
    ) -> Result<bool, StoreError> {
        if owner.account_id != account.id || owner.role != Role::Owner {
            return Err(StoreError::corrupt(
                "the owner's membership is of another account",
            ));
        }
        if self.account_doc(account.id).await?.is_some() {
            return Ok(false);
        }
        // The documents first, then the claims that point at them, as at
        // registration.
        match self.write_account(account, owner, &[]).await {
            Ok(_) => {}
            Err(StoreError::Conflict(Uniqueness::Id)) => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Err(e) = self.claim_account_facts(account).await {
            self.drop_unfinished_account(account.id, owner.user_id)
                .await;
            return Err(e);
        }
        Ok(true)
    }

    async fn replace_account(
        &self,
        account: &Account,
        if_match: &Etag,
    ) -> Result<Etag, StoreError> {
        self.replace_account_and_enqueue_docs(account, if_match, &[], &[])
            .await
    }
}

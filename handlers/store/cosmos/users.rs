//! Users, and the lookup documents that keep emails and Stripe customers
//! unique across partitions.

use async_trait::async_trait;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, Utc};

use super::docs::{self, LookupDoc, UserDoc};
use super::{etag_of, unavailable, CosmosStore};
use crate::domain::ports::{Etag, StoreError, Uniqueness, UserStore, Versioned};
use crate::domain::user::{Email, User, UserId};

/// What a lookup document claims.
#[derive(Clone, Copy)]
pub(super) enum Claim<'a> {
    Email(&'a Email),
    Customer(&'a str),
    Invoice(&'a str),
}

impl Claim<'_> {
    fn id(&self) -> String {
        match self {
            Claim::Email(e) => format!("email:{}", e.as_str()),
            Claim::Customer(c) => format!("customer:{c}"),
            Claim::Invoice(i) => format!("invoice:{i}"),
        }
    }

    fn conflict(&self) -> StoreError {
        StoreError::Conflict(match self {
            Claim::Email(_) => Uniqueness::Email,
            Claim::Customer(_) => Uniqueness::StripeCustomer,
            Claim::Invoice(_) => Uniqueness::Invoice,
        })
    }

    /// Whether `user` (the current holder) still holds the fact; a lookup
    /// left behind by a change or a crash does not block anyone.
    fn held_by(&self, user: &User) -> bool {
        match self {
            Claim::Email(e) => user.email == **e,
            Claim::Customer(c) => user.subscription.stripe_customer_id.as_deref() == Some(*c),
            Claim::Invoice(_) => true,
        }
    }
}

impl CosmosStore {
    /// Makes `owner` the holder of the fact, insert-if-absent: `Conflict`
    /// when another user holds it.
    pub(super) async fn claim(&self, claim: Claim<'_>, owner: UserId) -> Result<(), StoreError> {
        let id = claim.id();
        let doc = LookupDoc {
            id: id.clone(),
            user_id: owner.to_string(),
        };
        // Read first: most claims (every user replace) are already held.
        for _ in 0..3 {
            let Some((held, etag)) = self.read_doc::<LookupDoc>(&self.lookups, &id, &id).await?
            else {
                let created = self
                    .call(|| self.lookups.create_item(id.clone(), &id, &doc, None))
                    .await;
                match created {
                    Ok(_) => return Ok(()),
                    // Someone created it in between: look at who.
                    Err(e) if e.status().is_conflict() => continue,
                    Err(e) => return Err(unavailable(e)),
                }
            };
            if held.user_id == doc.user_id {
                return Ok(());
            }
            let holder = docs::parse_user_id(&held.user_id)?;
            if matches!(claim, Claim::Invoice(_)) {
                return Err(claim.conflict());
            }
            if let Some(h) = self.user_doc(holder).await? {
                if claim.held_by(&h.0.user) {
                    return Err(claim.conflict());
                }
            }
            // A stale claim: take it over, unless someone else just did.
            let taken = self
                .call(|| {
                    self.lookups.replace_item(
                        id.clone(),
                        &id,
                        &doc,
                        Some(
                            ItemWriteOptions::default()
                                .with_precondition(Precondition::if_match(etag.0.clone())),
                        ),
                    )
                })
                .await;
            match taken {
                Ok(_) => return Ok(()),
                Err(e) if e.status().is_precondition_failed() => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::unavailable(format!("{id} keeps changing")))
    }

    /// The user a lookup points at, if they still hold the fact.
    async fn user_by_claim(&self, claim: Claim<'_>) -> Result<Option<Versioned<User>>, StoreError> {
        let id = claim.id();
        let Some((lookup, _)) = self.read_doc::<LookupDoc>(&self.lookups, &id, &id).await? else {
            return Ok(None);
        };
        let user = docs::parse_user_id(&lookup.user_id)?;
        Ok(self
            .user_doc(user)
            .await?
            .filter(|(d, _)| claim.held_by(&d.user))
            .map(|(d, etag)| Versioned {
                value: d.user,
                etag,
            }))
    }

    pub(super) async fn user_doc(&self, id: UserId) -> Result<Option<(UserDoc, Etag)>, StoreError> {
        let pk = docs::pk(id);
        self.read_doc(&self.users, &pk, &pk).await
    }

    /// Claims what the user's document asserts before it is written (a
    /// point read each when, as usual, the claims are already held).
    pub(super) async fn claim_user_facts(&self, user: &User) -> Result<(), StoreError> {
        self.claim(Claim::Email(&user.email), user.id).await?;
        if let Some(customer) = &user.subscription.stripe_customer_id {
            self.claim(Claim::Customer(customer), user.id).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl UserStore for CosmosStore {
    async fn create_user(&self, user: &User) -> Result<Etag, StoreError> {
        // The document first, then the claims: a crash in between leaves an
        // unreachable document, never an email that nobody can register.
        let doc = UserDoc::new(user);
        let pk = docs::pk(user.id);
        let created = self
            .call(|| self.users.create_item(pk.clone(), &pk, &doc, None))
            .await;
        let etag = match created {
            Ok(r) => etag_of(&r)?,
            // Our own earlier attempt: ids are fresh UUIDs.
            Err(e) if e.status().is_conflict() => {
                self.user_doc(user.id)
                    .await?
                    .ok_or(StoreError::VersionConflict)?
                    .1
            }
            Err(e) => return Err(unavailable(e)),
        };
        if let Err(e) = self.claim_user_facts(user).await {
            let _ = self
                .call(|| self.users.delete_item(pk.clone(), &pk, None))
                .await;
            return Err(e);
        }
        Ok(etag)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<Versioned<User>>, StoreError> {
        Ok(self.user_doc(id).await?.map(|(d, etag)| Versioned {
            value: d.user,
            etag,
        }))
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<Versioned<User>>, StoreError> {
        self.user_by_claim(Claim::Email(email)).await
    }

    async fn user_by_stripe_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<Versioned<User>>, StoreError> {
        self.user_by_claim(Claim::Customer(customer_id)).await
    }

    async fn stale_subscriptions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<UserId>, StoreError> {
        // A timer's query, across partitions; sorted here because the SDK
        // does not order across partitions.
        let query = Query::from(
            "SELECT c.user_id, c.watch_at FROM c WHERE c.type = @t AND IS_NUMBER(c.watch_at) AND c.watch_at <= @now",
        )
        .with_parameter("@t", docs::USER)
        .and_then(|q| q.with_parameter("@now", docs::ms(now)))
        .map_err(StoreError::corrupt)?;
        #[derive(serde::Deserialize)]
        struct Row {
            user_id: String,
            watch_at: i64,
        }
        let mut rows: Vec<Row> = self
            .query(&self.users, query, FeedScope::full_container())
            .await?;
        rows.sort_by(|a, b| (a.watch_at, &a.user_id).cmp(&(b.watch_at, &b.user_id)));
        rows.into_iter()
            .take(limit)
            .map(|r| docs::parse_user_id(&r.user_id))
            .collect()
    }

    async fn replace_user(&self, user: &User, if_match: &Etag) -> Result<Etag, StoreError> {
        self.replace_user_and_enqueue_docs(user, if_match, &[])
            .await
    }
}

//! Users, registration (a user with their own account), and the lookup
//! documents that keep emails, Stripe customers and invoices unique across
//! partitions.

use async_trait::async_trait;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::TransactionalBatch;

use super::docs::{self, AccountDoc, LookupDoc, MemberDoc, SeatsDoc, UserDoc};
use super::outbox::enqueue_in;
use super::{unavailable, CosmosStore};
use crate::domain::account::{Account, AccountId, Membership};
use crate::domain::ports::{Etag, StoreError, Uniqueness, UserStore, Versioned};
use crate::domain::records::OutboxMessage;
use crate::domain::user::{Email, User, UserId};

/// What a lookup document claims.
#[derive(Clone, Copy)]
pub(super) enum Claim<'a> {
    /// Held by a user.
    Email(&'a Email),
    /// Held by an account.
    Customer(&'a str),
    /// Held by an account.
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
}

impl CosmosStore {
    /// Makes `owner` (a user id for an email, an account id otherwise) the
    /// holder of the fact, insert-if-absent: `Conflict` when another holds it.
    pub(super) async fn claim(&self, claim: Claim<'_>, owner: &str) -> Result<(), StoreError> {
        let id = claim.id();
        let doc = LookupDoc {
            id: id.clone(),
            owner: owner.to_owned(),
        };
        // Read first: most claims (every account replace) are already held.
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
            if held.owner == doc.owner {
                return Ok(());
            }
            if self.still_held(claim, &held.owner).await? {
                return Err(claim.conflict());
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

    /// Whether `holder` still asserts the claimed fact; a lookup left
    /// behind by a change or a crash does not block anyone. An invoice's
    /// owner never changes.
    async fn still_held(&self, claim: Claim<'_>, holder: &str) -> Result<bool, StoreError> {
        match claim {
            Claim::Email(e) => {
                let user = docs::parse_user_id(holder)?;
                Ok(self
                    .user_doc(user)
                    .await?
                    .is_some_and(|(d, _)| d.user.signs_in_with_password() && d.user.email == *e))
            }
            Claim::Customer(c) => {
                let account = docs::parse_account_id(holder)?;
                Ok(self.account_doc(account).await?.is_some_and(|(d, _)| {
                    d.account.subscription.stripe_customer_id.as_deref() == Some(c)
                }))
            }
            Claim::Invoice(_) => Ok(true),
        }
    }

    /// Who holds the fact, if anyone (a possibly stale holder).
    pub(super) async fn claimed_by(&self, claim: Claim<'_>) -> Result<Option<String>, StoreError> {
        let id = claim.id();
        Ok(self
            .read_doc::<LookupDoc>(&self.lookups, &id, &id)
            .await?
            .map(|(l, _)| l.owner))
    }

    pub(super) async fn user_doc(&self, id: UserId) -> Result<Option<(UserDoc, Etag)>, StoreError> {
        let pk = docs::user_pk(id);
        self.read_doc(&self.users, &pk, &pk).await
    }

    /// Undoes a registration that could not finish. Best effort: what is
    /// left behind is unreachable (its claims are stale without it).
    async fn unregister(&self, user: UserId, account: Option<AccountId>) {
        if let Some(account) = account {
            self.drop_unfinished_account(account, user).await;
        }
        let pk = docs::user_pk(user);
        let _ = self
            .call(|| self.users.delete_item(pk.clone(), &pk, None))
            .await;
    }

    /// Undoes an account whose creation could not finish (its claims could
    /// not be made). Best effort, as `unregister`.
    pub(super) async fn drop_unfinished_account(&self, account: AccountId, owner: UserId) {
        let pk = docs::pk(account);
        let batch = TransactionalBatch::new(pk.clone())
            .delete_item(docs::SEATS_ID, None)
            .delete_item(docs::member_id(owner), None)
            .delete_item(pk.clone(), None);
        if let Err(e) = self.batch(&self.accounts, batch).await {
            tracing::warn!(%account, error = %e, "an unfinished account was left behind");
        }
    }

    /// Writes the account's document, its owner's membership, its seat
    /// lock and its first messages in one batch; the account's etag.
    pub(super) async fn write_account(
        &self,
        account: &Account,
        owner: &Membership,
        messages: &[OutboxMessage],
    ) -> Result<Etag, StoreError> {
        let pk = docs::pk(account.id);
        let batch = TransactionalBatch::new(pk.clone())
            .create_item(AccountDoc::new(account))
            .and_then(|b| b.create_item(MemberDoc::new(owner)))
            .and_then(|b| b.create_item(SeatsDoc::new(account.id)))
            .map_err(StoreError::corrupt)?;
        let batch = enqueue_in(batch, messages, &Default::default())?;
        match self.batch(&self.accounts, batch).await? {
            Ok(etags) => etags
                .into_iter()
                .next()
                .flatten()
                .map(Etag)
                .ok_or_else(|| StoreError::corrupt("batch answered without an etag")),
            // Our own earlier attempt, whose answer was lost (ids are fresh
            // UUIDs): it stands if its owner is ours.
            Err(409) => {
                let mine = self
                    .member_doc(account.id, owner.user_id)
                    .await?
                    .is_some_and(|(m, _)| m.role == owner.role);
                match self.account_doc(account.id).await? {
                    Some((_, etag)) if mine => Ok(etag),
                    _ => Err(StoreError::Conflict(Uniqueness::Id)),
                }
            }
            Err(s) => Err(StoreError::unavailable(format!("batch refused: {s}"))),
        }
    }
}

#[async_trait]
impl UserStore for CosmosStore {
    async fn register(
        &self,
        user: &User,
        account: &Account,
        owner: &Membership,
        messages: &[OutboxMessage],
    ) -> Result<Etag, StoreError> {
        if messages.iter().any(|m| m.account_id != account.id) {
            return Err(StoreError::corrupt("a first message of another account"));
        }
        if owner.user_id != user.id || owner.account_id != account.id {
            return Err(StoreError::corrupt(
                "the owner's membership is of another user or account",
            ));
        }
        // The account first, then the user, then the claims that point at
        // them. The user document is the commit point: a crash before it
        // leaves an account no one reaches (for an outside identity, whose
        // account id follows from the user's, the next first request finds
        // it and finishes), never a user without their account; a crash
        // after it, never an email that nobody can register.
        let etag = self.write_account(account, owner, messages).await?;
        let doc = UserDoc::new(user);
        let pk = docs::user_pk(user.id);
        let created = self
            .call(|| self.users.create_item(pk.clone(), &pk, &doc, None))
            .await;
        match created {
            Ok(_) => {}
            // Our own earlier attempt, whose answer was lost, wrote this
            // very document; anything else is another user on this id.
            Err(e) if e.status().is_conflict() => {
                let mine = self
                    .user_doc(user.id)
                    .await?
                    .is_some_and(|(d, _)| d.user == *user);
                if !mine {
                    // The account is this user id's own (an outside
                    // identity's): it stays, the other request's.
                    return Err(StoreError::Conflict(Uniqueness::Id));
                }
            }
            Err(e) => {
                self.unregister(user.id, Some(account.id)).await;
                return Err(unavailable(e));
            }
        }
        // Only a password user signs in by email; an outside identity's
        // email claims nothing.
        if user.signs_in_with_password() {
            if let Err(e) = self.claim(Claim::Email(&user.email), &pk).await {
                self.unregister(user.id, Some(account.id)).await;
                return Err(e);
            }
        }
        if let Err(e) = self.claim_account_facts(account).await {
            self.unregister(user.id, Some(account.id)).await;
            return Err(e);
        }
        Ok(etag)
    }

    async fn add_user(&self, user: &User) -> Result<bool, StoreError> {
        let doc = UserDoc::new(user);
        let pk = docs::user_pk(user.id);
        let created = self
            .call(|| self.users.create_item(pk.clone(), &pk, &doc, None))
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.status().is_conflict() => return Ok(false),
            Err(e) => return Err(unavailable(e)),
        }
        if user.signs_in_with_password() {
            if let Err(e) = self.claim(Claim::Email(&user.email), &pk).await {
                self.unregister(user.id, None).await;
                return Err(e);
            }
        }
        Ok(true)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<Versioned<User>>, StoreError> {
        Ok(self.user_doc(id).await?.map(|(d, etag)| Versioned {
            value: d.user,
            etag,
        }))
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<Versioned<User>>, StoreError> {
        let Some(holder) = self.claimed_by(Claim::Email(email)).await? else {
            return Ok(None);
        };
        let user = docs::parse_user_id(&holder)?;
        Ok(self
            .user_doc(user)
            .await?
            .filter(|(d, _)| d.user.signs_in_with_password() && d.user.email == *email)
            .map(|(d, etag)| Versioned {
                value: d.user,
                etag,
            }))
    }

    async fn replace_user(&self, user: &Versioned<User>) -> Result<Etag, StoreError> {
        let pk = docs::user_pk(user.value.id);
        let doc = UserDoc::new(&user.value);
        let replaced = self
            .call(|| {
                self.users.replace_item(
                    pk.clone(),
                    &pk,
                    &doc,
                    Some(
                        ItemWriteOptions::default()
                            .with_precondition(Precondition::if_match(user.etag.0.clone())),
                    ),
                )
            })
            .await;
        match replaced {
            Ok(r) => super::etag_of(&r),
            Err(e) if e.status().is_not_found() => Err(StoreError::NotFound),
            // A precondition failure is a `VersionConflict`.
            Err(e) => Err(unavailable(e)),
        }
    }
}

//! Memberships, invitations and seats, all in the account's partition of
//! `accounts`. Every write that changes who holds a seat (invite, accept,
//! remove) is one transactional batch that also replaces the account's
//! `seats` document If-Match: invite and accept take its etag from the
//! very query that counted the members and invitations, so of two writes
//! on the same count one lands and the other re-reads, and a limit of L
//! never holds more than L seats. Role changes, transfers and removals are
//! also If-Match on the membership documents they rewrite, so a removal
//! and a transfer to the same member never both land. Withdrawing an
//! invitation only frees a seat and takes no lock. Each change's audit
//! entries are created in its batch.

use async_trait::async_trait;
use azure_data_cosmos::options::{BatchDeleteOptions, BatchReplaceOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query, TransactionalBatch};
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use super::audit::audit_in;
use super::docs::{self, InvitationDoc, MemberDoc, SeatsDoc};
use super::outbox::enqueue_in;
use super::{contended, pause, unavailable, CosmosStore, MAX_ROUNDS};
use crate::domain::account::{
    assignable, AcceptOutcome, AccountId, Action, Invitation, InvitationId, InvitationOutcome,
    Membership, Role, Seats,
};
use crate::domain::audit::AuditEntry;
use crate::domain::plan::Limit;
use crate::domain::ports::{Etag, MemberStore, StoreError, UserStore};
use crate::domain::records::OutboxMessage;
use crate::domain::user::UserId;

/// Whether two token hashes are equal, in time that does not depend on
/// where they differ.
fn same_hash(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The seat lock's write: a replace If-Match what was read, or the
/// document's creation if there was none yet (accounts of the one-user
/// era); either fails if someone else wrote it first.
fn lock_seats(
    batch: TransactionalBatch,
    account: AccountId,
    held: Option<(SeatsDoc, Etag)>,
) -> Result<TransactionalBatch, StoreError> {
    match held {
        Some((mut doc, etag)) => {
            doc.version += 1;
            batch.replace_item(
                docs::SEATS_ID,
                doc,
                Some(
                    BatchReplaceOptions::default()
                        .with_precondition(Precondition::if_match(etag.0)),
                ),
            )
        }
        None => batch.create_item(SeatsDoc::new(account)),
    }
    .map_err(StoreError::corrupt)
}

/// Adds the creation of the change's audit entries to its batch. Each
/// entry is new: a retry whose earlier batch landed finds the change made
/// and stops before writing one again.
fn audited(
    batch: TransactionalBatch,
    account: AccountId,
    audit: &[AuditEntry],
) -> Result<TransactionalBatch, StoreError> {
    audit_in(batch, account, audit, &Default::default())
}

fn checked(messages: &[OutboxMessage], account: AccountId) -> Result<(), StoreError> {
    if messages.iter().any(|m| m.account_id != account) {
        return Err(StoreError::corrupt("an outbox message for another account"));
    }
    Ok(())
}

impl CosmosStore {
    pub(super) async fn member_doc(
        &self,
        account: AccountId,
        user: UserId,
    ) -> Result<Option<(MemberDoc, Etag)>, StoreError> {
        self.read_doc(&self.accounts, &docs::pk(account), &docs::member_id(user))
            .await
    }

    async fn seats_doc(&self, account: AccountId) -> Result<Option<(SeatsDoc, Etag)>, StoreError> {
        self.read_doc(&self.accounts, &docs::pk(account), docs::SEATS_ID)
            .await
    }

    /// The documents of one type in the account's partition.
    async fn of_type<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        account: AccountId,
        kind: &str,
    ) -> Result<Vec<T>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.account_id = @a AND c.type = @t")
            .with_parameter("@a", docs::pk(account))
            .and_then(|q| q.with_parameter("@t", kind))
            .map_err(StoreError::corrupt)?;
        self.query(
            &self.accounts,
            query,
            FeedScope::partition(docs::pk(account)),
        )
        .await
    }

    /// Everyone who holds a seat (members, and invitations pending or
    /// not) and the seat lock, as one query: one snapshot of the partition
    /// (a batch lands in it whole or not at all), so the lock's etag is
    /// that of the count. If-Match that etag, a batch fails if anything
    /// changed the seats since, whatever replica served the read.
    async fn seat_holders(&self, account: AccountId) -> Result<Holders, StoreError> {
        let query = Query::from(
            "SELECT * FROM c WHERE c.account_id = @a AND (c.type = @m OR c.type = @i OR c.type = @s)",
        )
        .with_parameter("@a", docs::pk(account))
        .and_then(|q| q.with_parameter("@m", docs::MEMBER))
        .and_then(|q| q.with_parameter("@i", docs::INVITATION))
        .and_then(|q| q.with_parameter("@s", docs::SEATS))
        .map_err(StoreError::corrupt)?;
        let found: Vec<serde_json::Value> = self
            .query(
                &self.accounts,
                query,
                FeedScope::partition(docs::pk(account)),
            )
            .await?;
        let mut holders = Holders {
            seats: None,
            members: Vec::new(),
            invitations: Vec::new(),
        };
        for doc in found {
            let kind = doc["type"].as_str().unwrap_or_default().to_owned();
            if kind == docs::SEATS {
                let etag = doc["_etag"]
                    .as_str()
                    .map(|e| Etag(e.to_owned()))
                    .ok_or_else(|| StoreError::corrupt("the seats document has no _etag"))?;
                let seats = serde_json::from_value(doc).map_err(StoreError::corrupt)?;
                holders.seats = Some((seats, etag));
            } else if kind == docs::MEMBER {
                holders
                    .members
                    .push(serde_json::from_value(doc).map_err(StoreError::corrupt)?);
            } else {
                holders
                    .invitations
                    .push(serde_json::from_value(doc).map_err(StoreError::corrupt)?);
            }
        }
        Ok(holders)
    }
}

impl CosmosStore {
    /// The ids of the invitation documents `user` sent for the account.
    async fn invitations_sent_by(
        &self,
        account: AccountId,
        user: UserId,
    ) -> Result<Vec<String>, StoreError> {
        let all: Vec<InvitationDoc> = self.of_type(account, docs::INVITATION).await?;
        Ok(all
            .into_iter()
            .filter(|d| d.invitation.invited_by == user)
            .map(|d| d.id)
            .collect())
    }
}

struct Holders {
    seats: Option<(SeatsDoc, Etag)>,
    members: Vec<MemberDoc>,
    invitations: Vec<InvitationDoc>,
}

fn pending(invitations: Vec<InvitationDoc>, now: DateTime<Utc>) -> Vec<Invitation> {
    invitations
        .into_iter()
        .map(|d| d.invitation)
        .filter(|i| i.is_pending(now))
        .collect()
}

#[async_trait]
impl MemberStore for CosmosStore {
    async fn membership(
        &self,
        account: AccountId,
        user: UserId,
    ) -> Result<Option<Membership>, StoreError> {
        self.member_doc(account, user)
            .await?
            .map(|(d, _)| d.membership())
            .transpose()
    }

    async fn memberships_of(&self, user: UserId) -> Result<Vec<Membership>, StoreError> {
        // Across partitions: one user's memberships are in as many accounts.
        let query = Query::from("SELECT * FROM c WHERE c.type = @t AND c.user_id = @u")
            .with_parameter("@t", docs::MEMBER)
            .and_then(|q| q.with_parameter("@u", user.to_string()))
            .map_err(StoreError::corrupt)?;
        let found: Vec<MemberDoc> = self
            .query(&self.accounts, query, FeedScope::full_container())
            .await?;
        let mut out = found
            .iter()
            .map(MemberDoc::membership)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|m| (m.joined_at, m.account_id));
        Ok(out)
    }

    async fn members(&self, account: AccountId) -> Result<Vec<Membership>, StoreError> {
        let found: Vec<MemberDoc> = self.of_type(account, docs::MEMBER).await?;
        let mut out = found
            .iter()
            .map(MemberDoc::membership)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|m| (m.joined_at, m.user_id));
        Ok(out)
    }

    async fn invitations(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>, StoreError> {
        let found: Vec<InvitationDoc> = self.of_type(account, docs::INVITATION).await?;
        let mut out = pending(found, now);
        out.sort_by_key(|i| (i.created_at, i.id.0));
        Ok(out)
    }

    async fn seats(&self, account: AccountId, now: DateTime<Utc>) -> Result<Seats, StoreError> {
        let holders = self.seat_holders(account).await?;
        Ok(Seats {
            members: holders.members.len() as u64,
            pending_invitations: pending(holders.invitations, now).len() as u64,
        })
    }

    async fn invite(
        &self,
        invitation: &Invitation,
        limit: Limit,
        now: DateTime<Utc>,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<InvitationOutcome, StoreError> {
        let account = invitation.account_id;
        checked(messages, account)?;
        let doc = InvitationDoc::new(invitation);
        // The address may already belong to a user (a member or not).
        let invitee = self
            .user_by_email(&invitation.email)
            .await?
            .map(|u| u.value.id.to_string());
        for round in 0..MAX_ROUNDS {
            let Holders {
                seats,
                members,
                invitations,
            } = self.seat_holders(account).await?;
            if seats.is_none() && self.account_doc(account).await?.is_none() {
                return Err(StoreError::NotFound);
            }
            if invitations.iter().any(|i| i.id == doc.id) {
                // Our own earlier attempt, whose answer was lost.
                return Ok(InvitationOutcome::Created);
            }
            let invitations = pending(invitations, now);
            if invitations.iter().any(|i| i.email == invitation.email)
                || members.iter().any(|m| Some(&m.user_id) == invitee.as_ref())
            {
                return Ok(InvitationOutcome::AlreadyInvited);
            }
            let used = Seats {
                members: members.len() as u64,
                pending_invitations: invitations.len() as u64,
            };
            if !used.admits_one_more(limit) {
                return Ok(InvitationOutcome::SeatsFull(used));
            }
            let existing = self.existing_outbox_ids(account, messages).await?;
            let batch = lock_seats(TransactionalBatch::new(docs::pk(account)), account, seats)?
                .create_item(&doc)
                .map_err(StoreError::corrupt)?;
            let batch = audited(enqueue_in(batch, messages, &existing)?, account, audit)?;
            match self.batch(&self.accounts, batch).await? {
                Ok(_) => return Ok(InvitationOutcome::Created),
                // Someone changed the seats (or enqueued a message) first.
                Err(404 | 409 | 412) => pause(round).await,
                Err(s) => return Err(StoreError::unavailable(format!("batch refused: {s}"))),
            }
        }
        Err(contended("invite"))
    }

    #[allow(clippy::too_many_arguments)]
    async fn accept_invitation(
        &self,
        account: AccountId,
        token_hash: &str,
        user: UserId,
        limit: Limit,
        now: DateTime<Utc>,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<AcceptOutcome, StoreError> {
        checked(messages, account)?;
        for round in 0..MAX_ROUNDS {
            let Holders {
                seats,
                members,
                invitations,
            } = self.seat_holders(account).await?;
            let taken = Seats {
                members: members.len() as u64,
                pending_invitations: invitations
                    .iter()
                    .filter(|d| d.invitation.is_pending(now))
                    .count() as u64,
            };
            // Every hash is compared, each in constant time.
            let mut found = None;
            for doc in invitations {
                if same_hash(&doc.token_hash, token_hash) {
                    found = Some(doc);
                }
            }
            let Some(invitation) = found else {
                return Ok(AcceptOutcome::Gone);
            };
            if !invitation.invitation.is_pending(now) {
                // Used up by the attempt all the same, as on SQLite; it held
                // no seat, so the lock is not needed.
                let pk = docs::pk(account);
                let deleted = self
                    .call(|| self.accounts.delete_item(pk.clone(), &invitation.id, None))
                    .await;
                return match deleted {
                    Ok(_) => Ok(AcceptOutcome::Gone),
                    Err(e) if e.status().is_not_found() => Ok(AcceptOutcome::Gone),
                    Err(e) => Err(unavailable(e)),
                };
            }
            let batch = lock_seats(TransactionalBatch::new(docs::pk(account)), account, seats)?
                .delete_item(invitation.id.clone(), None);
            let member_id = docs::member_id(user);
            let (batch, outcome) = match members.iter().find(|m| m.id == member_id) {
                // Used up all the same; nothing to announce.
                Some(member) => (batch, AcceptOutcome::AlreadyMember(member.membership()?)),
                None if !taken.within(limit) => return Ok(AcceptOutcome::SeatsFull(taken)),
                None => {
                    let membership = Membership {
                        account_id: account,
                        user_id: user,
                        role: invitation.invitation.role,
                        joined_at: now,
                    };
                    let existing = self.existing_outbox_ids(account, messages).await?;
                    let batch = batch
                        .create_item(MemberDoc::new(&membership))
                        .map_err(StoreError::corrupt)?;
                    (
                        audited(enqueue_in(batch, messages, &existing)?, account, audit)?,
                        AcceptOutcome::Joined(membership, invitation.invitation.email.clone()),
                    )
                }
            };
            match self.batch(&self.accounts, batch).await? {
                Ok(_) => return Ok(outcome),
                // Withdrawn, accepted or joined in between: look again.
                Err(404 | 409 | 412) => pause(round).await,
                Err(s) => return Err(StoreError::unavailable(format!("batch refused: {s}"))),
            }
        }
        Err(contended("accept"))
    }

    async fn add_member(
        &self,
        membership: &Membership,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        if !assignable(membership.role) {
            return Err(StoreError::corrupt("an owner is made with the account"));
        }
        let account = membership.account_id;
        for round in 0..MAX_ROUNDS {
            if self
                .member_doc(account, membership.user_id)
                .await?
                .is_some()
            {
                return Ok(false);
            }
            let seats = self.seats_doc(account).await?;
            if seats.is_none() && self.account_doc(account).await?.is_none() {
                return Err(StoreError::NotFound);
            }
            // A seat change like any other: a concurrent invite, whose
            // batch is conditional on the lock's etag, sees it.
            let batch = lock_seats(TransactionalBatch::new(docs::pk(account)), account, seats)?
                .create_item(MemberDoc::new(membership))
                .map_err(StoreError::corrupt)?;
            let batch = audited(batch, account, audit)?;
            match self.batch(&self.accounts, batch).await? {
                Ok(_) => return Ok(true),
                // The lock moved, or they joined in between: look again.
                Err(404 | 409 | 412) => pause(round).await,
                Err(s) => return Err(StoreError::unavailable(format!("batch refused: {s}"))),
            }
        }
        Err(contended("add member"))
    }

    async fn withdraw_invitation(
        &self,
        account: AccountId,
        id: InvitationId,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        // Frees a seat: no lock needed, a concurrent invite only counted
        // one seat too many.
        let pk = docs::pk(account);
        let doc_id = docs::invitation_id(id);
        let batch = TransactionalBatch::new(pk).delete_item(doc_id, None);
        match self
            .batch(&self.accounts, audited(batch, account, audit)?)
            .await?
        {
            Ok(_) => Ok(true),
            Err(404) => Ok(false),
            Err(s) => Err(StoreError::unavailable(format!("batch refused: {s}"))),
        }
    }

    async fn remove_member(
        &self,
        account: AccountId,
        user: UserId,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        checked(messages, account)?;
        for round in 0..MAX_ROUNDS {
            let Some((member, etag)) = self.member_doc(account, user).await? else {
                return Ok(false);
            };
            if member.role == Role::Owner {
                return Ok(false);
            }
            let seats = self.seats_doc(account).await?;
            let existing = self.existing_outbox_ids(account, messages).await?;
            // If-Match the membership: a transfer that made it the owner
            // in between wins.
            let mut batch = lock_seats(TransactionalBatch::new(docs::pk(account)), account, seats)?
                .delete_item(
                    member.id.clone(),
                    Some(
                        BatchDeleteOptions::default()
                            .with_precondition(Precondition::if_match(etag.0)),
                    ),
                );
            // Their invitations go with them: none can bring them back.
            for id in self.invitations_sent_by(account, user).await? {
                batch = batch.delete_item(id, None);
            }
            let batch = audited(enqueue_in(batch, messages, &existing)?, account, audit)?;
            match self.batch(&self.accounts, batch).await? {
                Ok(_) => return Ok(true),
                Err(404 | 409 | 412) => pause(round).await,
                Err(s) => return Err(StoreError::unavailable(format!("batch refused: {s}"))),
            }
        }
        Err(contended("remove member"))
    }

    async fn set_role(
        &self,
        account: AccountId,
        user: UserId,
        role: Role,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        if !assignable(role) {
            return Ok(false);
        }
        let pk = docs::pk(account);
        for round in 0..MAX_ROUNDS {
            let Some((mut member, etag)) = self.member_doc(account, user).await? else {
                return Ok(false);
            };
            if member.role == Role::Owner {
                return Ok(false);
            }
            if member.role == role {
                return Ok(true);
            }
            member.role = role;
            let mut batch = TransactionalBatch::new(pk.clone())
                .replace_item(
                    member.id.clone(),
                    &member,
                    Some(
                        BatchReplaceOptions::default()
                            .with_precondition(Precondition::if_match(etag.0.clone())),
                    ),
                )
                .map_err(StoreError::corrupt)?;
            // Made a member: the invitations they sent are withdrawn in
            // the same batch.
            if !role.may(Action::ManageMembers) {
                for id in self.invitations_sent_by(account, user).await? {
                    batch = batch.delete_item(id, None);
                }
            }
            match self
                .batch(&self.accounts, audited(batch, account, audit)?)
                .await?
            {
                Ok(_) => return Ok(true),
                Err(404 | 412) => pause(round).await,
                Err(s) => return Err(StoreError::unavailable(format!("batch refused: {s}"))),
            }
        }
        Err(contended("set role"))
    }

    async fn transfer_ownership(
        &self,
        account: AccountId,
        from: UserId,
        to: UserId,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        if from == to {
            return Ok(false);
        }
        for round in 0..MAX_ROUNDS {
            let Some((mut owner, owner_etag)) = self.member_doc(account, from).await? else {
                return Ok(false);
            };
            let Some((mut heir, heir_etag)) = self.member_doc(account, to).await? else {
                return Ok(false);
            };
            if owner.role != Role::Owner {
                return Ok(false);
            }
            owner.role = Role::Admin;
            heir.role = Role::Owner;
            let if_match = |e: Etag| {
                Some(BatchReplaceOptions::default().with_precondition(Precondition::if_match(e.0)))
            };
            let batch = TransactionalBatch::new(docs::pk(account))
                .replace_item(owner.id.clone(), &owner, if_match(owner_etag))
                .and_then(|b| b.replace_item(heir.id.clone(), &heir, if_match(heir_etag)))
                .map_err(StoreError::corrupt)?;
            let batch = audited(batch, account, audit)?;
            match self.batch(&self.accounts, batch).await? {
                Ok(_) => return Ok(true),
                Err(404 | 412) => pause(round).await,
                Err(s) => return Err(StoreError::unavailable(format!("batch refused: {s}"))),
            }
        }
        Err(contended("transfer ownership"))
    }
}

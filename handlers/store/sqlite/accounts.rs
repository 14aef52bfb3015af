//! Users, accounts, memberships and invitations. Every check-then-write
//! runs in one transaction on the one connection, so the seat count an
//! invitation is admitted against cannot change under it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::schema::{conflict, insert_account, insert_membership, insert_user};
use super::{
    from_json, insert_audit, insert_outbox, ms, returning, to_json, unavailable, SqliteStore,
};
use crate::domain::account::{
    assignable, AcceptOutcome, Account, AccountId, Action, Invitation, InvitationId,
    InvitationOutcome, Membership, Role, Seats,
};
use crate::domain::audit::AuditEntry;
use crate::domain::plan::Limit;
use crate::domain::ports::{
    AccountStore, Etag, MemberStore, StoreError, Uniqueness, UserStore, Versioned,
};
use crate::domain::records::OutboxMessage;
use crate::domain::user::{Email, User, UserId};

fn versioned<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &'static str,
    key: &str,
) -> Result<Option<Versioned<T>>, StoreError> {
    let row: Option<(String, i64)> = c
        .prepare_cached(sql)
        .map_err(unavailable)?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(unavailable)?;
    row.map(|(doc, version)| {
        Ok(Versioned {
            value: from_json(&doc)?,
            etag: Etag(version.to_string()),
        })
    })
    .transpose()
}

fn exists(c: &Connection, sql: &'static str, key: &str) -> Result<bool, StoreError> {
    c.prepare_cached(sql)
        .map_err(unavailable)?
        .query_row([key], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(unavailable)
}

fn uuid(s: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::parse_str(s).map_err(|e| StoreError::corrupt(format!("id {s}: {e}")))
}

fn role(s: &str) -> Result<Role, StoreError> {
    match s {
        "owner" => Ok(Role::Owner),
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        other => Err(StoreError::corrupt(format!("role {other}"))),
    }
}

type MemberRow = (String, String, String, i64);

fn membership(row: MemberRow) -> Result<Membership, StoreError> {
    let (account, user, r, joined) = row;
    Ok(Membership {
        account_id: AccountId(uuid(&account)?),
        user_id: UserId(uuid(&user)?),
        role: role(&r)?,
        joined_at: DateTime::from_timestamp_millis(joined)
            .ok_or_else(|| StoreError::corrupt(format!("joined_at {joined}")))?,
    })
}

fn memberships(
    c: &Connection,
    sql: &'static str,
    key: &str,
) -> Result<Vec<Membership>, StoreError> {
    let rows: Vec<MemberRow> = c
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .map_err(unavailable)?;
    rows.into_iter().map(membership).collect()
}

fn member_of(
    c: &Connection,
    account: AccountId,
    user: UserId,
) -> Result<Option<Membership>, StoreError> {
    let row: Option<MemberRow> = c
        .prepare_cached(
            "SELECT account_id, user_id, role, joined_at FROM memberships
             WHERE account_id = ?1 AND user_id = ?2",
        )
        .map_err(unavailable)?
        .query_row(params![account.to_string(), user.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(unavailable)?;
    row.map(membership).transpose()
}

fn seats(c: &Connection, account: AccountId, now: DateTime<Utc>) -> Result<Seats, StoreError> {
    let (members, pending): (i64, i64) = c
        .prepare_cached(
            "SELECT (SELECT COUNT(*) FROM memberships WHERE account_id = ?1),
                    (SELECT COUNT(*) FROM invitations WHERE account_id = ?1
                        AND expires_at > ?2)",
        )
        .map_err(unavailable)?
        .query_row(params![account.to_string(), ms(now)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(unavailable)?;
    Ok(Seats {
        members: members as u64,
        pending_invitations: pending as u64,
    })
}

fn pending_invitations(
    c: &Connection,
    account: AccountId,
    now: DateTime<Utc>,
) -> Result<Vec<Invitation>, StoreError> {
    let docs: Vec<String> = c
        .prepare_cached(
            "SELECT doc FROM invitations WHERE account_id = ?1
                AND expires_at > ?2 ORDER BY created_at, id",
        )
        .and_then(|mut s| {
            s.query_map(params![account.to_string(), ms(now)], |r| r.get(0))?
                .collect()
        })
        .map_err(unavailable)?;
    docs.iter().map(|d| from_json(d)).collect()
}

/// Withdraws the pending invitations `user` sent on the account's behalf.
fn withdraw_invitations_by(
    c: &Connection,
    account: AccountId,
    user: UserId,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "DELETE FROM invitations WHERE account_id = ?1 AND json_extract(doc, '$.invited_by') = ?2",
    )
    .map_err(unavailable)?
    .execute(params![account.to_string(), user.to_string()])
    .map_err(unavailable)?;
    Ok(())
}

pub(super) fn replace_account_row(
    c: &Connection,
    account: &Account,
    if_match: &Etag,
) -> Result<Etag, StoreError> {
    let id = account.id.to_string();
    let expected: i64 = if_match
        .0
        .parse()
        .map_err(|_| StoreError::VersionConflict)?;
    let updated: Option<i64> = c
        .prepare_cached(
            "UPDATE accounts SET stripe_customer_id = ?2, doc = ?3, watch_at = ?5,
                version = version + 1
             WHERE id = ?1 AND version = ?4 RETURNING version",
        )
        .and_then(|mut stmt| {
            returning(
                &mut stmt,
                params![
                    id,
                    account.subscription.stripe_customer_id,
                    to_json(account)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                    expected,
                    account.subscription.stale_after().map(ms)
                ],
            )
        })
        .map_err(|e| conflict(e, "accounts.stripe_customer_id", Uniqueness::StripeCustomer))?;
    match updated {
        Some(v) => Ok(Etag(v.to_string())),
        None => {
            let exists = c
                .query_row("SELECT 1 FROM accounts WHERE id = ?1", [&id], |_| Ok(()))
                .optional()
                .map_err(unavailable)?
                .is_some();
            Err(if exists {
                StoreError::VersionConflict
            } else {
                StoreError::NotFound
            })
        }
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn register(
        &self,
        user: &User,
        account: &Account,
        owner: &Membership,
        messages: &[OutboxMessage],
    ) -> Result<Etag, StoreError> {
        let (user, account, owner) = (user.clone(), account.clone(), owner.clone());
        let messages = messages.to_vec();
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            insert_user(&tx, &user)?;
            insert_account(&tx, &account)?;
            insert_membership(&tx, &owner)?;
            insert_outbox(&tx, &messages)?;
            tx.commit().map_err(unavailable)?;
            Ok(Etag("1".into()))
        })
        .await
    }

    async fn add_user(&self, user: &User) -> Result<bool, StoreError> {
        let user = user.clone();
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            if exists(
                &tx,
                "SELECT 1 FROM users WHERE id = ?1",
                &user.id.to_string(),
            )? {
                return Ok(false);
            }
            insert_user(&tx, &user)?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<Versioned<User>>, StoreError> {
        self.with_conn(move |c| {
            versioned(
                c,
                "SELECT doc, version FROM users WHERE id = ?1",
                &id.to_string(),
            )
        })
        .await
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<Versioned<User>>, StoreError> {
        let email = email.as_str().to_owned();
        self.with_conn(move |c| {
            versioned(
                c,
                "SELECT doc, version FROM users WHERE sign_in_email = ?1",
                &email,
            )
        })
        .await
    }

    async fn replace_user(&self, user: &Versioned<User>) -> Result<Etag, StoreError> {
        let user = user.clone();
        self.with_conn(move |c| {
            let version: i64 = user
                .etag
                .0
                .parse()
                .map_err(|_| StoreError::VersionConflict)?;
            let changed = c
                .prepare_cached(
                    "UPDATE users SET doc = ?3, email = ?4, version = version + 1
                     WHERE id = ?1 AND version = ?2",
                )
                .map_err(unavailable)?
                .execute(params![
                    user.value.id.to_string(),
                    version,
                    to_json(&user.value)?,
                    user.value.email.as_str()
                ])
                .map_err(unavailable)?;
            if changed == 0 {
                return Err(StoreError::VersionConflict);
            }
            Ok(Etag((version + 1).to_string()))
        })
        .await
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn account_by_id(&self, id: AccountId) -> Result<Option<Versioned<Account>>, StoreError> {
        self.with_conn(move |c| {
            versioned(
                c,
                "SELECT doc, version FROM accounts WHERE id = ?1",
                &id.to_string(),
            )
        })
        .await
    }

    async fn account_by_stripe_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<Versioned<Account>>, StoreError> {
        let customer = customer_id.to_owned();
        self.with_conn(move |c| {
            versioned(
                c,
                "SELECT doc, version FROM accounts WHERE stripe_customer_id = ?1",
                &customer,
            )
        })
        .await
    }

    async fn account_by_stripe_subscription(
        &self,
        subscription_id: &str,
    ) -> Result<Option<Versioned<Account>>, StoreError> {
        let subscription = subscription_id.to_owned();
        // A scan of the documents: an operator's look-up, not a hot path.
        self.with_conn(move |c| {
            versioned(
                c,
                "SELECT doc, version FROM accounts WHERE json_extract(doc, '$.subscription.stripe_subscription_id') = ?1 OR json_extract(doc, '$.subscription.replaced_subscription_id') = ?1 LIMIT 1",
                &subscription,
            )
        })
        .await
    }

    async fn stale_subscriptions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<AccountId>, StoreError> {
        self.with_conn(move |c| {
            let ids: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM accounts WHERE watch_at <= ?1 ORDER BY watch_at LIMIT ?2",
                )
                .and_then(|mut s| {
                    s.query_map(params![ms(now), limit as i64], |r| r.get(0))?
                        .collect()
                })
                .map_err(unavailable)?;
            ids.iter().map(|id| Ok(AccountId(uuid(id)?))).collect()
        })
        .await
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
        let (account, owner) = (account.clone(), owner.clone());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let id = account.id.to_string();
            if exists(&tx, "SELECT 1 FROM accounts WHERE id = ?1", &id)? {
                return Ok(false);
            }
            insert_account(&tx, &account)?;
            insert_membership(&tx, &owner)?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn replace_account(
        &self,
        account: &Account,
        if_match: &Etag,
    ) -> Result<Etag, StoreError> {
        let (account, if_match) = (account.clone(), if_match.clone());
        self.with_conn(move |c| replace_account_row(c, &account, &if_match))
            .await
    }
}

#[async_trait]
impl MemberStore for SqliteStore {
    async fn membership(
        &self,
        account: AccountId,
        user: UserId,
    ) -> Result<Option<Membership>, StoreError> {
        self.with_conn(move |c| member_of(c, account, user)).await
    }

    async fn memberships_of(&self, user: UserId) -> Result<Vec<Membership>, StoreError> {
        self.with_conn(move |c| {
            memberships(
                c,
                "SELECT account_id, user_id, role, joined_at FROM memberships
                 WHERE user_id = ?1 ORDER BY joined_at, account_id",
                &user.to_string(),
            )
        })
        .await
    }

    async fn members(&self, account: AccountId) -> Result<Vec<Membership>, StoreError> {
        self.with_conn(move |c| {
            memberships(
                c,
                "SELECT account_id, user_id, role, joined_at FROM memberships
                 WHERE account_id = ?1 ORDER BY joined_at, user_id",
                &account.to_string(),
            )
        })
        .await
    }

    async fn invitations(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Invitation>, StoreError> {
        self.with_conn(move |c| pending_invitations(c, account, now))
            .await
    }

    async fn seats(&self, account: AccountId, now: DateTime<Utc>) -> Result<Seats, StoreError> {
        self.with_conn(move |c| seats(c, account, now)).await
    }

    async fn invite(
        &self,
        invitation: &Invitation,
        limit: Limit,
        now: DateTime<Utc>,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<InvitationOutcome, StoreError> {
        let (inv, messages, audit) = (invitation.clone(), messages.to_vec(), audit.to_vec());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let account = inv.account_id.to_string();
            let email = inv.email.as_str();
            let taken = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id
                                    WHERE m.account_id = ?1 AND u.email = ?2)
                         OR EXISTS (SELECT 1 FROM invitations WHERE account_id = ?1 AND email = ?2
                                    AND expires_at > ?3)",
                )
                .map_err(unavailable)?
                .query_row(params![account, email, ms(now)], |r| r.get::<_, bool>(0))
                .map_err(unavailable)?;
            if taken {
                return Ok(InvitationOutcome::AlreadyInvited);
            }
            let seats = seats(&tx, inv.account_id, now)?;
            if !seats.admits_one_more(limit) {
                return Ok(InvitationOutcome::SeatsFull(seats));
            }
            tx.prepare_cached(
                "INSERT INTO invitations (id, account_id, email, token_hash, created_at, expires_at, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(unavailable)?
            .execute(params![
                inv.id.to_string(),
                account,
                email,
                inv.token_hash,
                ms(inv.created_at),
                ms(inv.expires_at),
                to_json(&inv)?
            ])
            .map_err(|e| conflict(e, "invitations.token_hash", Uniqueness::Id))?;
            insert_outbox(&tx, &messages)?;
            insert_audit(&tx, &audit)?;
            tx.commit().map_err(unavailable)?;
            Ok(InvitationOutcome::Created)
        })
        .await
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
        let (hash, messages, audit) = (token_hash.to_owned(), messages.to_vec(), audit.to_vec());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            // The hash is of a 256-bit random token: looking it up by index
            // tells a guesser nothing a constant-time scan would hide.
            let doc: Option<String> = tx
                .prepare_cached(
                    "SELECT doc FROM invitations WHERE account_id = ?1 AND token_hash = ?2",
                )
                .map_err(unavailable)?
                .query_row(params![account.to_string(), hash], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            let Some(doc) = doc else {
                return Ok(AcceptOutcome::Gone);
            };
            let invitation: Invitation = from_json(&doc)?;
            let outcome = if !invitation.is_pending(now) {
                AcceptOutcome::Gone
            } else if let Some(m) = member_of(&tx, account, user)? {
                AcceptOutcome::AlreadyMember(m)
            } else {
                let seats = seats(&tx, account, now)?;
                if !seats.within(limit) {
                    return Ok(AcceptOutcome::SeatsFull(seats));
                }
                let m = Membership {
                    account_id: account,
                    user_id: user,
                    role: invitation.role,
                    joined_at: now,
                };
                insert_membership(&tx, &m)?;
                insert_outbox(&tx, &messages)?;
                insert_audit(&tx, &audit)?;
                AcceptOutcome::Joined(m, invitation.email.clone())
            };
            // Used up, or expired: either way it is gone.
            tx.execute(
                "DELETE FROM invitations WHERE id = ?1",
                [invitation.id.to_string()],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(outcome)
        })
        .await
    }

    async fn add_member(
        &self,
        membership: &Membership,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        if !assignable(membership.role) {
            return Err(StoreError::corrupt("an owner is made with the account"));
        }
        let (m, audit) = (membership.clone(), audit.to_vec());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let account = m.account_id.to_string();
            if !exists(&tx, "SELECT 1 FROM accounts WHERE id = ?1", &account)? {
                return Err(StoreError::NotFound);
            }
            if member_of(&tx, m.account_id, m.user_id)?.is_some() {
                return Ok(false);
            }
            insert_membership(&tx, &m)?;
            insert_audit(&tx, &audit)?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn withdraw_invitation(
        &self,
        account: AccountId,
        id: InvitationId,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        let audit = audit.to_vec();
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let n = tx
                .prepare_cached("DELETE FROM invitations WHERE account_id = ?1 AND id = ?2")
                .map_err(unavailable)?
                .execute(params![account.to_string(), id.to_string()])
                .map_err(unavailable)?;
            if n == 1 {
                insert_audit(&tx, &audit)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn remove_member(
        &self,
        account: AccountId,
        user: UserId,
        messages: &[OutboxMessage],
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        let (messages, audit) = (messages.to_vec(), audit.to_vec());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM memberships WHERE account_id = ?1 AND user_id = ?2 AND role != 'owner'",
                )
                .map_err(unavailable)?
                .execute(params![account.to_string(), user.to_string()])
                .map_err(unavailable)?;
            if n == 1 {
                withdraw_invitations_by(&tx, account, user)?;
                insert_outbox(&tx, &messages)?;
                insert_audit(&tx, &audit)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn set_role(
        &self,
        account: AccountId,
        user: UserId,
        role: Role,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        if role == Role::Owner {
            return Ok(false);
        }
        let audit = audit.to_vec();
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            match member_of(&tx, account, user)? {
                None => return Ok(false),
                // Nothing changes, so there is nothing to record.
                Some(m) if m.role == role => return Ok(true),
                Some(_) => {}
            }
            let n = tx
                .prepare_cached(
                    "UPDATE memberships SET role = ?3
                     WHERE account_id = ?1 AND user_id = ?2 AND role != 'owner'",
                )
                .map_err(unavailable)?
                .execute(params![
                    account.to_string(),
                    user.to_string(),
                    role.as_str()
                ])
                .map_err(unavailable)?;
            if n == 1 {
                if !role.may(Action::ManageMembers) {
                    withdraw_invitations_by(&tx, account, user)?;
                }
                insert_audit(&tx, &audit)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
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
        let audit = audit.to_vec();
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let (a, f, t) = (account.to_string(), from.to_string(), to.to_string());
            let demoted = tx
                .execute(
                    "UPDATE memberships SET role = 'admin'
                     WHERE account_id = ?1 AND user_id = ?2 AND role = 'owner'
                       AND EXISTS (SELECT 1 FROM memberships WHERE account_id = ?1 AND user_id = ?3)",
                    params![a, f, t],
                )
                .map_err(unavailable)?;
            if demoted == 0 {
                return Ok(false);
            }
            tx.execute(
                "UPDATE memberships SET role = 'owner' WHERE account_id = ?1 AND user_id = ?2",
                params![a, t],
            )
            .map_err(unavailable)?;
            insert_audit(&tx, &audit)?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }
}

//! Who acts on an account, and the team around it: members, roles,
//! invitations and the seats they hold.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::account::{
    assignable, AcceptOutcome, Account, AccountId, Action, Invitation, InvitationId,
    InvitationOutcome, Membership, Role, Seats, INVITATION_VALIDITY,
};
use crate::domain::audit::{fields, Actor, AuditAction};
use crate::domain::plan::Plan;
use crate::domain::ports::Versioned;
use crate::domain::records::{EmailKind, EventKind, OutboxMessage};
use crate::domain::usage::{Metric, QuotaDenial};
use crate::domain::user::{Email, User, UserId};

use super::audit::member_fields;
use super::link_tokens::{new_token, token_hash, token_subject};
use super::{AppError, Billing, StateConflict};

/// A signed-in user acting on one account, with the role they hold in it:
/// what every account route runs as.
#[derive(Debug, Clone)]
pub struct Acting {
    pub user: User,
    pub account: Versioned<Account>,
    pub role: Role,
}

impl Acting {
    /// The caller, as the audit log names them.
    pub fn actor(&self) -> Actor {
        Actor::User {
            user_id: self.user.id,
        }
    }

    /// Refuses unless the caller's role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), AppError> {
        if self.role.may(action) {
            Ok(())
        } else {
            Err(AppError::Forbidden(action))
        }
    }
}

/// An account as one of its members sees it in a list.
#[derive(Debug, Clone)]
pub struct AccountSummary {
    pub account: Account,
    pub role: Role,
}

/// A member, with who they are.
#[derive(Debug, Clone)]
pub struct Member {
    pub membership: Membership,
    pub email: Email,
    pub name: String,
}

/// The team page: members, pending invitations and the seats they hold.
#[derive(Debug, Clone)]
pub struct Team {
    pub members: Vec<Member>,
    pub invitations: Vec<Invitation>,
    pub seats: Seats,
    pub limit: Option<u64>,
}

/// The account an invitation token is for, if it is shaped like one.
fn token_account(token: &str) -> Option<AccountId> {
    token_subject(token).map(AccountId)
}

fn parse_role(raw: &str) -> Result<Role, AppError> {
    match raw.trim() {
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        "owner" => Err(AppError::invalid(
            "role",
            "there is one owner: use transfer-ownership",
        )),
        _ => Err(AppError::invalid("role", "must be admin or member")),
    }
}

impl Billing {
    /// The account a request acts on: the one named (which the user must
    /// belong to; any other is "not found", never another account's data),
    /// else their own (made with them, found with a point read), else, when
    /// they left it, the one they own or their oldest membership.
    pub async fn acting(
        &self,
        user: Versioned<User>,
        named: Option<&str>,
    ) -> Result<Acting, AppError> {
        let user = user.value;
        let membership = match named {
            Some(raw) => {
                let id = uuid::Uuid::try_parse(raw.trim())
                    .map(AccountId)
                    .map_err(|_| AppError::AccountNotFound)?;
                self.store
                    .membership(id, user.id)
                    .await?
                    .ok_or(AppError::AccountNotFound)?
            }
            None => match self
                .store
                .membership(AccountId::own_account_of(user.id), user.id)
                .await?
            {
                Some(own) => own,
                None => self.default_membership(user.id).await?,
            },
        };
        let account = self
            .store
            .account_by_id(membership.account_id)
            .await?
            .ok_or(AppError::AccountNotFound)?;
        Ok(Acting {
            user,
            account,
            role: membership.role,
        })
    }

    /// Without their own account: the one they own, else their oldest.
    async fn default_membership(&self, user: UserId) -> Result<Membership, AppError> {
        let all = self.store.memberships_of(user).await?;
        let owned = all.iter().position(|m| m.role == Role::Owner);
        let pick = owned.or((!all.is_empty()).then_some(0));
        pick.map(|i| all[i].clone())
            .ok_or(AppError::AccountNotFound)
    }

    /// The caller's accounts, with their role in each.
    pub async fn accounts_of(&self, user: &User) -> Result<Vec<AccountSummary>, AppError> {
        let mut out = Vec::new();
        for m in self.store.memberships_of(user.id).await? {
            if let Some(a) = self.store.account_by_id(m.account_id).await? {
                out.push(AccountSummary {
                    account: a.value,
                    role: m.role,
                });
            }
        }
        Ok(out)
    }

    pub async fn team(&self, acting: &Acting) -> Result<Team, AppError> {
        acting.require(Action::Use)?;
        let id = acting.account.value.id;
        let now = self.clock.now();
        let mut members = Vec::new();
        for m in self.store.members(id).await? {
            // A membership whose user is gone is not shown.
            if let Some(u) = self.store.user_by_id(m.user_id).await? {
                members.push(Member {
                    membership: m,
                    email: u.value.email,
                    name: u.value.name.as_str().to_owned(),
                });
            }
        }
        let invitations = self.store.invitations(id, now).await?;
        let seats = Seats {
            members: members.len() as u64,
            pending_invitations: invitations.len() as u64,
        };
        Ok(Team {
            members,
            invitations,
            seats,
            limit: self
                .effective_plan(&acting.account.value)
                .limits
                .team_members,
        })
    }

    /// Invites an address to the account, if a seat is free. The email with
    /// the link is enqueued in the same write as the invitation.
    pub async fn invite(
        &self,
        acting: &Acting,
        email_raw: &str,
        role_raw: &str,
    ) -> Result<Invitation, AppError> {
        acting.require(Action::ManageMembers)?;
        // An invitation mails a stranger in the account's name: the sender
        // must have shown they own their own address first.
        if !acting.user.email_verified {
            return Err(AppError::EmailNotVerified);
        }
        let email = Email::parse(email_raw).map_err(|p| AppError::invalid("email", p))?;
        let role = parse_role(role_raw)?;
        let account = &acting.account.value;
        let plan = self.effective_plan(account);
        let limit = plan.limits.team_members;
        let now = self.clock.now();
        let token = new_token(account.id.0);
        let invitation = Invitation {
            id: InvitationId(uuid::Uuid::new_v4()),
            account_id: account.id,
            email: email.clone(),
            role,
            invited_by: acting.user.id,
            token_hash: token_hash(&token),
            created_at: now,
            expires_at: now + INVITATION_VALIDITY,
        };
        // The link must reach the invitee, so its email carries the token
        // until it is sent; the invitation itself keeps only the hash.
        let message = OutboxMessage {
            id: format!("{}:invitation:{}", account.id, invitation.id),
            account_id: account.id,
            to: Some(email.clone()),
            kind: EmailKind::Invitation.into(),
            data: BTreeMap::from([
                ("account".to_owned(), account.name.clone()),
                ("inviter".to_owned(), acting.user.name.as_str().to_owned()),
                ("role".to_owned(), role.as_str().to_owned()),
                (
                    "invitation_url".to_owned(),
                    format!("{}/{token}", self.settings.links.invitations),
                ),
                ("expires_at".to_owned(), invitation.expires_at.to_rfc3339()),
            ]),
            body: None,
            created_at: now,
        };
        let sent = self.audit_entry(
            account.id,
            acting.actor(),
            AuditAction::InvitationSent,
            None,
            Some(invitation_fields(&invitation)),
        );
        match self
            .store
            .invite(&invitation, limit, now, &[message], &[sent])
            .await?
        {
            InvitationOutcome::Created => {
                tracing::info!(account_id = %account.id, invitation_id = %invitation.id, "invitation sent");
                Ok(invitation)
            }
            InvitationOutcome::AlreadyInvited => {
                Err(AppError::AlreadyInvited(email.as_str().to_owned()))
            }
            InvitationOutcome::SeatsFull(seats) => {
                // The refusal is the answer; a warning that cannot be queued
                // is logged, not turned into a 5xx.
                if let Err(e) = self.warn_seats_full(account, seats, now).await {
                    tracing::warn!(account_id = %account.id, error = %e, "the seat-limit email was not queued");
                }
                Err(seats_full(&plan, seats))
            }
        }
    }

    /// Tells the owner and admins, once a day at most, that an invitation
    /// was refused for want of seats.
    async fn warn_seats_full(
        &self,
        account: &Account,
        seats: Seats,
        now: DateTime<Utc>,
    ) -> Result<(), AppError> {
        let mut messages = Vec::new();
        for m in self.store.members(account.id).await? {
            if !m.role.may(Action::ManageMembers) {
                continue;
            }
            let Some(u) = self.store.user_by_id(m.user_id).await? else {
                continue;
            };
            messages.push(OutboxMessage {
                id: format!(
                    "{}:seat_limit:{}:{}",
                    account.id,
                    now.format("%Y-%m-%d"),
                    m.user_id
                ),
                account_id: account.id,
                to: Some(u.value.email),
                kind: EmailKind::SeatLimitReached.into(),
                data: BTreeMap::from([
                    ("account".to_owned(), account.name.clone()),
                    (
                        "plan".to_owned(),
                        self.effective_plan(account).name.to_owned(),
                    ),
                    ("seats".to_owned(), seats.used().to_string()),
                    (
                        "recipient_name".to_owned(),
                        u.value.name.as_str().to_owned(),
                    ),
                ]),
                body: None,
                created_at: now,
            });
        }
        Ok(self.store.enqueue(&messages).await?)
    }

    pub async fn withdraw_invitation(&self, acting: &Acting, id: &str) -> Result<(), AppError> {
        acting.require(Action::ManageMembers)?;
        let id = uuid::Uuid::try_parse(id)
            .map(InvitationId)
            .map_err(|_| AppError::InvitationNotFound)?;
        let account = acting.account.value.id;
        // What it was for, when it is still pending; the id in any case.
        let before = self
            .store
            .invitations(account, self.clock.now())
            .await?
            .iter()
            .find(|i| i.id == id)
            .map_or_else(
                || fields([("invitation_id", id.to_string())]),
                invitation_fields,
            );
        let withdrawn = self.audit_entry(
            account,
            acting.actor(),
            AuditAction::InvitationWithdrawn,
            Some(before),
            None,
        );
        if self
            .store
            .withdraw_invitation(account, id, &[withdrawn])
            .await?
        {
            Ok(())
        } else {
            Err(AppError::InvitationNotFound)
        }
    }

    /// Joins the account an invitation is for. Any signed-in user holding
    /// the link may accept it, once, while it is pending.
    pub async fn accept_invitation(
        &self,
        user: &User,
        token: &str,
    ) -> Result<AccountSummary, AppError> {
        let account_id = token_account(token).ok_or(AppError::InvitationNotFound)?;
        // Per accepting user, not per invited account: account ids are
        // not secret, so a stranger could spend an account's budget. The
        // per-address limit is the route's.
        let key = self.throttle.id_key(
            crate::auth::throttle::Purpose::Acceptance,
            user.id.0.as_bytes(),
        );
        self.throttle.admit_account(&key)?;
        let Some(account) = self.store.account_by_id(account_id).await? else {
            return Err(AppError::InvitationNotFound);
        };
        let now = self.clock.now();
        let added = OutboxMessage {
            id: format!("{account_id}:member_added:{}", user.id),
            account_id,
            to: Some(user.email.clone()),
            kind: EmailKind::MemberAdded.into(),
            data: BTreeMap::from([
                ("account".to_owned(), account.value.name.clone()),
                ("recipient_name".to_owned(), user.name.as_str().to_owned()),
            ]),
            body: None,
            created_at: now,
        };
        let mut messages = vec![added];
        let mut audit = Vec::new();
        // The role the member joins with is the invitation's, which never
        // changes; a withdrawn one finds nothing, and the accept below
        // writes nothing either.
        let pending = self.store.invitations(account_id, now).await?;
        if let Some(invitation) = pending.iter().find(|i| i.token_hash == token_hash(token)) {
            if self.events_enabled() {
                messages.extend(self.member_event(
                    EventKind::MemberAdded,
                    account_id,
                    user.id,
                    invitation.role,
                    &format!("joined:{}:{}", user.id, now.timestamp_millis()),
                    now,
                ));
            }
            let mut after = member_fields(user.id, Some(&user.email), invitation.role);
            after.insert("invitation_id".to_owned(), invitation.id.to_string());
            audit.push(self.audit_entry(
                account_id,
                Actor::User { user_id: user.id },
                AuditAction::MemberAdded,
                None,
                Some(after),
            ));
        }
        let plan = self.effective_plan(&account.value);
        let limit = plan.limits.team_members;
        let outcome = self
            .store
            .accept_invitation(
                account_id,
                &token_hash(token),
                user.id,
                limit,
                now,
                &messages,
                &audit,
            )
            .await?;
        let membership = match outcome {
            AcceptOutcome::Joined(m, invited) => {
                tracing::info!(account_id = %account_id, user_id = %user.id, "invitation accepted");
                if invited == user.email {
                    self.verified_by_invitation(user).await;
                }
                m
            }
            AcceptOutcome::AlreadyMember(m) => m,
            AcceptOutcome::Gone => return Err(AppError::InvitationNotFound),
            // The plan lost seats since the invitation was sent.
            AcceptOutcome::SeatsFull(seats) => return Err(seats_full(&plan, seats)),
        };
        Ok(AccountSummary {
            account: account.value,
            role: membership.role,
        })
    }

    /// Removes a member. Admins and the owner may remove anyone but the
    /// owner; anyone may remove themselves (leave).
    pub async fn remove_member(&self, acting: &Acting, user_raw: &str) -> Result<(), AppError> {
        let target = parse_user(user_raw)?;
        if target != acting.user.id {
            acting.require(Action::ManageMembers)?;
        }
        let account = &acting.account.value;
        let membership = self.member_of(account.id, target).await?;
        if membership.role == Role::Owner {
            return Err(AppError::OwnerCannotBeRemoved);
        }
        let now = self.clock.now();
        let mut messages = Vec::new();
        let user = self.store.user_by_id(target).await?;
        let removed = self.audit_entry(
            account.id,
            acting.actor(),
            AuditAction::MemberRemoved,
            Some(member_fields(
                target,
                user.as_ref().map(|u| &u.value.email),
                membership.role,
            )),
            None,
        );
        if let Some(u) = user {
            messages.push(OutboxMessage {
                id: format!(
                    "{}:member_removed:{target}:{}",
                    account.id,
                    membership.joined_at.timestamp_millis()
                ),
                account_id: account.id,
                to: Some(u.value.email),
                kind: EmailKind::MemberRemoved.into(),
                data: BTreeMap::from([
                    ("account".to_owned(), account.name.clone()),
                    (
                        "recipient_name".to_owned(),
                        u.value.name.as_str().to_owned(),
                    ),
                ]),
                body: None,
                created_at: now,
            });
        }
        messages.extend(self.member_event(
            EventKind::MemberRemoved,
            account.id,
            target,
            membership.role,
            &format!("left:{target}:{}", membership.joined_at.timestamp_millis()),
            now,
        ));
        if self
            .store
            .remove_member(account.id, target, &messages, &[removed])
            .await?
        {
            tracing::info!(account_id = %account.id, user_id = %target, "member removed");
            Ok(())
        } else {
            Err(AppError::MemberNotFound)
        }
    }

    pub async fn set_role(
        &self,
        acting: &Acting,
        user_raw: &str,
        role_raw: &str,
    ) -> Result<Member, AppError> {
        acting.require(Action::ManageMembers)?;
        let target = parse_user(user_raw)?;
        let role = parse_role(role_raw)?;
        debug_assert!(assignable(role));
        let account = acting.account.value.id;
        let current = self.member_of(account, target).await?;
        if current.role == Role::Owner {
            return Err(AppError::State(StateConflict::OwnerRoleByTransfer));
        }
        let user = self
            .store
            .user_by_id(target)
            .await?
            .ok_or(AppError::MemberNotFound)?;
        let email = Some(&user.value.email);
        let changed = self.audit_entry(
            account,
            acting.actor(),
            AuditAction::MemberRoleChanged,
            Some(member_fields(target, email, current.role)),
            Some(member_fields(target, email, role)),
        );
        if !self
            .store
            .set_role(account, target, role, &[changed])
            .await?
        {
            return Err(AppError::MemberNotFound);
        }
        Ok(Member {
            membership: Membership { role, ..current },
            email: user.value.email,
            name: user.value.name.as_str().to_owned(),
        })
    }

    pub async fn transfer_ownership(
        &self,
        acting: &Acting,
        user_raw: &str,
    ) -> Result<(), AppError> {
        acting.require(Action::TransferOwnership)?;
        let target = parse_user(user_raw)?;
        if target == acting.user.id {
            return Err(AppError::State(StateConflict::AlreadyOwner));
        }
        let account = acting.account.value.id;
        let heir = self.member_of(account, target).await?;
        let email = self.store.user_by_id(target).await?.map(|u| u.value.email);
        let owned_by = |owner: UserId, role: Role| {
            let mut f = member_fields(target, email.as_ref(), role);
            f.insert("owner".to_owned(), owner.to_string());
            f
        };
        let transferred = self.audit_entry(
            account,
            acting.actor(),
            AuditAction::OwnershipTransferred,
            Some(owned_by(acting.user.id, heir.role)),
            Some(owned_by(target, Role::Owner)),
        );
        if self
            .store
            .transfer_ownership(account, acting.user.id, target, &[transferred])
            .await?
        {
            tracing::info!(account_id = %account, to = %target, "ownership transferred");
            Ok(())
        } else {
            Err(AppError::MemberNotFound)
        }
    }

    /// A member of the account, or `MemberNotFound`.
    async fn member_of(&self, account: AccountId, user: UserId) -> Result<Membership, AppError> {
        self.store
            .membership(account, user)
            .await?
            .ok_or(AppError::MemberNotFound)
    }

    /// Members and pending invitations: the `team_members` usage.
    pub(super) async fn seats(&self, account: AccountId) -> Result<Seats, AppError> {
        Ok(self.store.seats(account, self.clock.now()).await?)
    }
}

/// Every seat of the plan is taken: 403 with the upgrade hint.
fn seats_full(plan: &Plan, seats: Seats) -> AppError {
    AppError::QuotaExceeded(QuotaDenial {
        metric: Metric::TeamMembers,
        limit: plan.limits.team_members.unwrap_or(u64::MAX),
        used: seats.used(),
        requested: 1,
        plan: plan.id,
        upgrade_to: plan.id.next_tier(),
        window: None,
        seconds_to_reset: None,
    })
}

/// A pending invitation as its entries record it.
fn invitation_fields(i: &Invitation) -> crate::domain::audit::Fields {
    fields([
        ("invitation_id", i.id.to_string()),
        ("email", i.email.as_str().to_owned()),
        ("role", i.role.as_str().to_owned()),
    ])
}

fn parse_user(raw: &str) -> Result<UserId, AppError> {
    uuid::Uuid::try_parse(raw.trim())
        .map(UserId)
        .map_err(|_| AppError::MemberNotFound)
}

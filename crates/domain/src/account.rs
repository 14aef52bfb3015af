//! The account: the organization that pays. It holds the one subscription,
//! Stripe customer, set of counters and invoices its members share. Who may
//! do what in it is decided by their role, here.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::offer::EnterpriseOffer;
use crate::overrides::Override;
use crate::plan::Limit;
use crate::subscription::Subscription;
use crate::user::{Email, User, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub Uuid);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl AccountId {
    /// The account made with a user, at registration or by the migration
    /// from the one-user era, has the user's id. So the account a request
    /// acts on by default is found with a point read, and a migrated user's
    /// usage, invoices and emails (keyed by their id) are their account's.
    pub fn own_account_of(user: UserId) -> Self {
        AccountId(user.0)
    }

    /// The account an import file names by `key` (a stable key of the
    /// organization, e.g. its id in KRAFTD): a name-based UUID, so every
    /// line and every run naming the key lands on one account.
    pub fn of_import_key(key: &str) -> Self {
        // A namespace of our own (a fixed v4 UUID), apart from users' ids.
        const NAMESPACE: Uuid = Uuid::from_u128(0x3e91_52c4_7a0d_4f86_b1e2_9c5d_04a7_6f18);
        // Length-prefixed, as `UserId::of_identity`, should the name ever
        // gain a second part.
        let name = format!("{}:{key}", key.len());
        AccountId(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    /// Where billing emails go: the owner's address when it was created.
    pub billing_email: Email,
    pub created_at: DateTime<Utc>,
    pub subscription: Subscription,
    /// When the last event written with the account is stamped: the next
    /// write's events come after it (`outbox::stamp_after`), so the
    /// account's events keep the order of its writes whatever the clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<DateTime<Utc>>,
    /// Operators' overrides of the plan's limits and features, active and
    /// expired (`overrides::effective_limits` applies those in force).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    /// The Enterprise price sales offered, pending or accepted; a new
    /// offer replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_offer: Option<EnterpriseOffer>,
}

/// The account made with a user (at registration, or for a user of the
/// one-user era): it has their id, name and email, and them as owner.
pub fn own_account(user: &User, subscription: Subscription) -> (Account, Membership) {
    let account = Account {
        id: AccountId::own_account_of(user.id),
        name: user.name.as_str().to_owned(),
        billing_email: user.email.clone(),
        created_at: user.created_at,
        subscription,
        last_event_at: None,
        overrides: Vec::new(),
        enterprise_offer: None,
    };
    let owner = Membership {
        account_id: account.id,
        user_id: user.id,
        role: Role::Owner,
        joined_at: user.created_at,
    };
    (account, owner)
}

/// A member's role. Ordered by what it may do: an owner may do everything
/// an admin may, an admin everything a member may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

/// What a role may be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the plan, usage and invoices; use the account's quota.
    Use,
    /// Change the plan, cancel, resume, open the customer portal.
    ManageBilling,
    /// Invite, withdraw, remove members and change their roles.
    ManageMembers,
    /// Hand the account to another member.
    TransferOwnership,
    /// Read the account's audit log.
    ReadAudit,
    /// Take up an Enterprise offer: a contract, so the owner's alone.
    AcceptEnterpriseOffer,
}

impl Role {
    pub fn may(self, action: Action) -> bool {
        match action {
            Action::Use => true,
            Action::ManageBilling | Action::ManageMembers => self >= Role::Admin,
            Action::TransferOwnership | Action::ReadAudit | Action::AcceptEnterpriseOffer => {
                self == Role::Owner
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

/// A role that can be given by invitation or role change: there is
/// exactly one owner, and it changes only by transfer.
pub fn assignable(role: Role) -> bool {
    role != Role::Owner
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub account_id: AccountId,
    pub user_id: UserId,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// How long an invitation can be accepted.
pub const INVITATION_VALIDITY: Duration = Duration::days(7);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InvitationId(pub Uuid);

impl fmt::Display for InvitationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: InvitationId,
    pub account_id: AccountId,
    pub email: Email,
    pub role: Role,
    pub invited_by: UserId,
    /// SHA-256 of the token the email carries (hex). The invitation never
    /// holds the token; its email's outbox message does, until it is sent
    /// and for as long as sent messages are kept.
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Invitation {
    /// Whether it still holds a seat and can be accepted: until it expires.
    /// Only the end is checked, so an instance whose clock runs behind the
    /// one that wrote it still counts it.
    pub fn is_pending(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// Seats: members plus pending invitations, against the plan's
/// `team_members` limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seats {
    pub members: u64,
    pub pending_invitations: u64,
}

impl Seats {
    pub fn used(&self) -> u64 {
        self.members + self.pending_invitations
    }

    /// Whether one more invitation fits the limit.
    pub fn admits_one_more(&self, limit: Limit) -> bool {
        limit.is_none_or(|l| self.used() < l)
    }

    /// How many seats (members or pending invitations) must be freed
    /// before a plan with `limit` seats fits.
    pub fn over(&self, limit: Limit) -> u64 {
        limit.map_or(0, |l| self.used().saturating_sub(l))
    }

    /// Whether the seats taken fit `limit`: an invitation is accepted only
    /// then (it already holds its seat; a plan that lost seats since it was
    /// sent may no longer have room for it).
    pub fn within(&self, limit: Limit) -> bool {
        limit.is_none_or(|l| self.used() <= l)
    }
}

/// What became of an invitation the store was asked to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationOutcome {
    Created,
    /// Nothing was written: every seat is taken.
    SeatsFull(Seats),
    /// The address already belongs to a member, or has a pending invitation.
    AlreadyInvited,
}

/// What became of an invitation a user tried to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Joined; with the address the invitation was sent to, which the
    /// accepting user has just shown they read.
    Joined(Membership, Email),
    /// The user was already a member; the invitation is used up.
    AlreadyMember(Membership),
    /// Withdrawn, accepted already, or expired.
    Gone,
    /// Nothing was written: the account holds more seats than its plan
    /// allows now (it lost seats since the invitation was sent).
    SeatsFull(Seats),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest() {
        assert!(Role::Member.may(Action::Use));
        assert!(!Role::Member.may(Action::ManageBilling));
        assert!(!Role::Member.may(Action::ManageMembers));
        assert!(Role::Admin.may(Action::ManageBilling));
        assert!(Role::Admin.may(Action::ManageMembers));
        assert!(!Role::Admin.may(Action::TransferOwnership));
        assert!(Role::Owner.may(Action::TransferOwnership));
        assert!(Role::Owner.may(Action::ReadAudit));
        assert!(!Role::Admin.may(Action::ReadAudit));
        assert!(!Role::Admin.may(Action::AcceptEnterpriseOffer));
        assert!(Role::Owner.may(Action::AcceptEnterpriseOffer));
        assert!(!assignable(Role::Owner));
        assert!(assignable(Role::Admin) && assignable(Role::Member));
    }

    #[test]
    fn an_import_key_names_one_account_of_its_own() {
        let acme = AccountId::of_import_key("org_acme");
        assert_eq!(acme, AccountId::of_import_key("org_acme"));
        assert_ne!(acme, AccountId::of_import_key("org_acme2"));
        assert_ne!(acme, AccountId::of_import_key("Org_acme"));
        // Another namespace than users' ids (and so their own accounts).
        let ada = crate::user::ExternalIdentity {
            issuer: "https://id.kraftd.io".into(),
            subject: "org_acme".into(),
        };
        assert_ne!(
            AccountId::own_account_of(UserId::of_identity(&ada)),
            AccountId::of_import_key("org_acme")
        );
    }

    #[test]
    fn seats_count_members_and_pending_invitations() {
        let seats = Seats {
            members: 1,
            pending_invitations: 8,
        };
        assert!(seats.admits_one_more(Some(10)));
        let full = Seats {
            pending_invitations: 9,
            ..seats
        };
        assert!(!full.admits_one_more(Some(10)));
        assert!(full.admits_one_more(None));
        assert!(full.within(Some(10)) && !full.within(Some(9)));
        assert_eq!(full.over(Some(1)), 9);
        assert_eq!(full.over(None), 0);
    }

    #[test]
    fn invitations_are_pending_for_a_half_open_week() {
        let t = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let inv = Invitation {
            id: InvitationId(Uuid::nil()),
            account_id: AccountId(Uuid::nil()),
            email: Email::parse("a@b.io").unwrap(),
            role: Role::Member,
            invited_by: UserId(Uuid::nil()),
            token_hash: String::new(),
            created_at: t,
            expires_at: t + INVITATION_VALIDITY,
        };
        assert!(inv.is_pending(t));
        assert!(inv.is_pending(t + INVITATION_VALIDITY - Duration::seconds(1)));
        assert!(!inv.is_pending(t + INVITATION_VALIDITY));
    }
}

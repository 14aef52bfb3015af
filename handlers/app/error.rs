use crate::auth::password::Busy;
use crate::auth::throttle::Limited;
use crate::auth::token::TokenError;
use crate::domain::account::Action;
use crate::domain::plan::PlanId;
use crate::domain::ports::{PaymentsError, StoreError, WebhookError};
use crate::domain::usage::{GateDenial, QuotaDenial};

/// Everything a use-case can refuse. The HTTP layer maps each to a status
/// and the stable error shape in one place.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{field} {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("email or password is incorrect")]
    BadCredentials,
    #[error("{0}")]
    Unauthenticated(String),
    #[error("the {} limit of the {} plan is reached", .0.metric.limit_name(), .0.plan)]
    QuotaExceeded(QuotaDenial),
    #[error("{}", gate_message(.denial, *.plan))]
    NotInPlan {
        denial: GateDenial,
        plan: PlanId,
        upgrade_to: Option<PlanId>,
    },
    #[error("{0}")]
    Payments(#[source] PaymentsError),
    #[error("the webhook was refused: {0}")]
    Webhook(#[source] WebhookError),
    #[error("there is no billing account yet: subscribe to a paid plan first")]
    NoBillingAccount,
    /// The account's state, not the request, stands in the way.
    #[error("{0}")]
    State(StateConflict),
    #[error("no such invoice among this account's")]
    InvoiceNotFound,
    #[error("no such entry in this account's audit log")]
    AuditEntryNotFound,
    #[error("no such override on this account")]
    OverrideNotFound,
    #[error("this account has no Enterprise offer: ask sales for one")]
    OfferNotFound,
    #[error("{}", forbidden_message(*.0))]
    Forbidden(Action),
    #[error("no such account among yours")]
    AccountNotFound,
    /// A service credential named an account that does not exist.
    #[error("no such account")]
    NoSuchAccount,
    #[error("no such member in this account")]
    MemberNotFound,
    #[error("this invitation is used, withdrawn, expired or unknown")]
    InvitationNotFound,
    #[error("{0} is already a member or has a pending invitation")]
    AlreadyInvited(String),
    #[error("this verification link is used, replaced by a newer one, expired or unknown")]
    VerificationNotFound,
    #[error(
        "verify your email address first: follow the link we emailed you, or ask for a new one"
    )]
    EmailNotVerified,
    #[error("the owner cannot be removed: transfer ownership first")]
    OwnerCannotBeRemoved,
    #[error(
        "the {plan} plan has {limit} seat(s) and the account holds {seats} (members and pending invitations): remove {} first",
        seats - limit
    )]
    TooManyMembers {
        plan: PlanId,
        seats: u64,
        limit: u64,
    },
    #[error("this Idempotency-Key was used for another request: use a new key for a new request")]
    IdempotencyKeyReused,
    #[error("no such reservation in this account")]
    ReservationNotFound,
    #[error("this reservation is {0}: its quota is no longer held")]
    ReservationClosed(&'static str),
    #[error("this credential does not carry the {0} scope")]
    MissingScope(&'static str),
    #[error("{0}")]
    Store(#[source] StoreError),
    /// Every password hasher stayed busy: a moment later may succeed.
    #[error("{0}")]
    Busy(#[from] Busy),
    /// Too many sign-in attempts from this client address or for this
    /// account, or failed logins backing off: retry after the wait.
    #[error("{0}")]
    RateLimited(#[from] Limited),
}

/// A request that is well formed but meets the account as it stands: the
/// same request may succeed once that changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateConflict {
    /// Cancelling or resuming without a live paid subscription.
    #[error("there is no paid subscription to change")]
    NoPaidSubscription,
    #[error("the subscription is already on this plan and interval")]
    AlreadyOnPlan,
    /// A checkout was paid and its subscription is not active yet.
    #[error("a checkout was just paid; the subscription is being activated")]
    CheckoutPending,
    #[error("the owner's role changes only by transfer-ownership")]
    OwnerRoleByTransfer,
    /// Transferring ownership to the owner.
    #[error("this member is already the owner")]
    AlreadyOwner,
    /// Committing more than the reservation holds.
    #[error("quantity must be from 0 to the {0} held")]
    BeyondHold(i64),
    #[error("the Enterprise offer expired: ask sales for a new one")]
    OfferExpired,
    #[error("the Enterprise offer was accepted already")]
    OfferAccepted,
    /// Extending a trial of a subscription that is not trialing.
    #[error("the account's subscription is not trialing: there is no trial to extend")]
    NotTrialing,
}

fn forbidden_message(action: Action) -> &'static str {
    match action {
        Action::Use => "you are not a member of this account",
        Action::ManageBilling => "only the account's owner and admins can change its billing",
        Action::ManageMembers => "only the account's owner and admins can manage its members",
        Action::TransferOwnership => "only the account's owner can transfer ownership",
        Action::ReadAudit => "only the account's owner can read its audit log",
        Action::AcceptEnterpriseOffer => "only the account's owner can accept an Enterprise offer",
    }
}

fn gate_message(denial: &GateDenial, plan: PlanId) -> String {
    match denial {
        GateDenial::Feature(_) => format!("AI features are not part of the {plan} plan"),
        GateDenial::ExportFormat(f) => {
            let f = serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            format!(
                "export to {} is not part of the {plan} plan",
                f.unwrap_or_default()
            )
        }
    }
}

impl AppError {
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            problem: problem.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        Self::Unauthenticated(e.to_string())
    }
}

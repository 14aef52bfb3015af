//! The caller's accounts, and an account's members and invitations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::{self, Team};
use crate::domain::account::{Invitation, Role};

use super::accounts::AccountSummary;
use super::error::{ApiError, ErrorResponse};
use super::json::ApiJson;
use super::metering::{CurrentMember, CurrentUser};
use super::openapi::JsonBodyErrors;
use super::AppState;

/// The accounts the caller belongs to.
#[derive(Serialize, ToSchema)]
pub struct AccountList {
    accounts: Vec<AccountSummary>,
}

/// The caller's accounts and their role in each
#[utoipa::path(
    get,
    path = "/api/accounts",
    tag = "accounts",
    responses((status = 200, description = "Oldest membership first", body = AccountList))
)]
pub async fn accounts(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<AccountList>, ApiError> {
    let accounts = state.billing.accounts_of(&user.value).await?;
    Ok(Json(AccountList {
        accounts: accounts.iter().map(AccountSummary::from).collect(),
    }))
}

/// A member of the account.
#[derive(Serialize, ToSchema)]
pub struct Member {
    user_id: Uuid,
    email: String,
    name: String,
    role: Role,
    joined_at: DateTime<Utc>,
}

impl From<&app::Member> for Member {
    fn from(m: &app::Member) -> Self {
        Self {
            user_id: m.membership.user_id.0,
            email: m.email.as_str().to_owned(),
            name: m.name.clone(),
            role: m.membership.role,
            joined_at: m.membership.joined_at,
        }
    }
}

/// An invitation that holds a seat until it is accepted, withdrawn or expires.
#[derive(Serialize, ToSchema)]
pub struct PendingInvitation {
    id: Uuid,
    email: String,
    role: Role,
    /// The member who sent it (their invitations go when they leave or
    /// lose the right to invite).
    invited_by: Uuid,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl From<&Invitation> for PendingInvitation {
    fn from(i: &Invitation) -> Self {
        Self {
            id: i.id.0,
            email: i.email.as_str().to_owned(),
            role: i.role,
            invited_by: i.invited_by.0,
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

/// Seats: members plus pending invitations, against the plan's `team_members`.
#[derive(Serialize, ToSchema)]
pub struct SeatUsage {
    used: u64,
    /// `null`: unlimited.
    #[schema(required = true)]
    limit: Option<u64>,
}

/// The account's team.
#[derive(Serialize, ToSchema)]
pub struct TeamView {
    /// Oldest first.
    members: Vec<Member>,
    /// Pending only, oldest first.
    invitations: Vec<PendingInvitation>,
    seats: SeatUsage,
}

impl From<&Team> for TeamView {
    fn from(t: &Team) -> Self {
        Self {
            members: t.members.iter().map(Member::from).collect(),
            invitations: t.invitations.iter().map(PendingInvitation::from).collect(),
            seats: SeatUsage {
                used: t.seats.used(),
                limit: t.limit,
            },
        }
    }
}

/// The account's members, pending invitations and seats
///
/// Any member may read it.
#[utoipa::path(
    get,
    path = "/api/account/members",
    tag = "accounts",
    responses((status = 200, description = "The team", body = TeamView))
)]
pub async fn members(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
) -> Result<Json<TeamView>, ApiError> {
    let team = state.billing.team(&acting).await?;
    Ok(Json(TeamView::from(&team)))
}

/// A role one can be given: the owner changes only by transfer. Schema
/// only: roles arrive as text, so a wrong one is a 422 naming the field.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignableRole {
    Admin,
    Member,
}

// Role arrives as text so a wrong one is a 422 naming the field.
/// Who to invite, and as what.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    email: String,
    /// `admin` or `member`; the owner changes only by transfer.
    #[schema(value_type = AssignableRole)]
    role: String,
}

/// Invite someone to the account
///
/// Admins and the owner. The invitation holds a seat for 7 days; its email
/// carries a single-use link.
#[utoipa::path(
    post,
    path = "/api/account/invitations",
    tag = "accounts",
    request_body = InvitationRequest,
    responses(
        (status = 201, description = "Invited; the email is on its way", body = PendingInvitation),
        (status = 403, description = "`forbidden` (a member's role), `email_not_verified` (the sender has not verified their email yet), or `quota_exceeded` with `limit: team_members` and `upgrade_to` (every seat is taken)", body = ErrorResponse),
        (status = 409, description = "`already_invited`: a member, or a pending invitation, has this email", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn invite(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
    ApiJson(body): ApiJson<InvitationRequest>,
) -> Result<(StatusCode, Json<PendingInvitation>), ApiError> {
    let invitation = state
        .billing
        .invite(&acting, &body.email, &body.role)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PendingInvitation::from(&invitation)),
    ))
}

/// Withdraw a pending invitation
///
/// Admins and the owner. Its seat is free at once and its link stops working.
#[utoipa::path(
    delete,
    path = "/api/account/invitations/{id}",
    tag = "accounts",
    params(("id" = Uuid, Path, description = "The invitation's id")),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 403, description = "`forbidden`", body = ErrorResponse),
        (status = 404, description = "`invitation_not_found`", body = ErrorResponse),
    )
)]
pub async fn withdraw(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.billing.withdraw_invitation(&acting, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a member, or leave
///
/// Admins and the owner remove anyone but the owner; any member may remove
/// themselves. Access ends with the next request.
#[utoipa::path(
    delete,
    path = "/api/account/members/{user_id}",
    tag = "accounts",
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden`", body = ErrorResponse),
        (status = 404, description = "`member_not_found`", body = ErrorResponse),
        (status = 409, description = "`owner_cannot_be_removed`: transfer ownership first", body = ErrorResponse),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.billing.remove_member(&acting, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A member's new role.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// `admin` or `member`.
    #[schema(value_type = AssignableRole)]
    role: String,
}

/// Change a member's role
///
/// Admins and the owner; not the owner's own role (see transfer-ownership).
#[utoipa::path(
    patch,
    path = "/api/account/members/{user_id}",
    tag = "accounts",
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    request_body = RoleRequest,
    responses(
        (status = 200, description = "The member, with the new role", body = Member),
        (status = 403, description = "`forbidden`", body = ErrorResponse),
        (status = 404, description = "`member_not_found`", body = ErrorResponse),
        (status = 409, description = "`owner_role_by_transfer`: the owner's role changes only by transfer-ownership", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn change_role(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<RoleRequest>,
) -> Result<Json<Member>, ApiError> {
    let member = state
        .billing
        .set_role(&acting, &user_id, &body.role)
        .await?;
    Ok(Json(Member::from(&member)))
}

/// The member to hand the account to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    user_id: String,
}

/// Hand the account to another member
///
/// The owner only. The new owner takes over; the old one stays as an admin.
#[utoipa::path(
    post,
    path = "/api/account/transfer-ownership",
    tag = "accounts",
    request_body = TransferRequest,
    responses(
        (status = 200, description = "The team after the transfer", body = TeamView),
        (status = 403, description = "`forbidden`: not the owner", body = ErrorResponse),
        (status = 404, description = "`member_not_found`", body = ErrorResponse),
        (status = 409, description = "`already_owner`: the member named owns the account already", body = ErrorResponse),
        JsonBodyErrors,
    )
)]
pub async fn transfer_ownership(
    State(state): State<AppState>,
    CurrentMember(acting): CurrentMember,
    ApiJson(body): ApiJson<TransferRequest>,
) -> Result<Json<TeamView>, ApiError> {
    state
        .billing
        .transfer_ownership(&acting, &body.user_id)
        .await?;
    let team = state.billing.team(&acting).await?;
    Ok(Json(TeamView::from(&team)))
}

/// Join the account an invitation is for
///
/// Any signed-in user holding the link, once, within 7 days.
#[utoipa::path(
    post,
    path = "/api/invitations/{token}/accept",
    tag = "accounts",
    params(("token" = String, Path, description = "The token from the invitation's link")),
    responses(
        (status = 200, description = "Joined (or already a member); act on it with `X-Account-Id`", body = AccountSummary),
        (status = 404, description = "`invitation_not_found`: used, withdrawn, expired or unknown", body = ErrorResponse),
    )
)]
pub async fn accept(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(token): Path<String>,
) -> Result<Json<AccountSummary>, ApiError> {
    let joined = state.billing.accept_invitation(&user.value, &token).await?;
    Ok(Json(AccountSummary::from(&joined)))
}

//! The route table: every function this handler serves, defined once. It
//! builds the axum router (`http::router`), the OpenAPI document
//! (`http::openapi`) and, read by `crate::functions`, every
//! `functions/<Name>/function.json`.

use axum::routing::{on, post, MethodFilter, MethodRouter};

use super::openapi::{doc, OperationDoc};
use super::{
    accounts, admin, billing, billing_health, enterprise, health, openapi, plans, service, team,
    triggers, usage, AppState,
};
use crate::domain::service::Scope;
use crate::store::cosmos::layout;

/// host.json's `extensions.http.routePrefix`.
pub const ROUTE_PREFIX: &str = "api";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "get",
            HttpMethod::Post => "post",
            HttpMethod::Put => "put",
            HttpMethod::Patch => "patch",
            HttpMethod::Delete => "delete",
        }
    }

    pub fn filter(self) -> MethodFilter {
        match self {
            HttpMethod::Get => MethodFilter::GET,
            HttpMethod::Post => MethodFilter::POST,
            HttpMethod::Put => MethodFilter::PUT,
            HttpMethod::Patch => MethodFilter::PATCH,
            HttpMethod::Delete => MethodFilter::DELETE,
        }
    }
}

/// The Functions host's key check, done before the handler sees a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLevel {
    Anonymous,
    Function,
}

impl AuthLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthLevel::Anonymous => "anonymous",
            AuthLevel::Function => "function",
        }
    }
}

/// The handler's own check, before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// A signed-in user, acting on no account (their list of accounts,
    /// accepting an invitation). Not metered: there is no account to meter.
    User,
    /// A signed-in member of the account the request acts on (`X-Account-Id`,
    /// else their own). What the member's role allows is the use-case's
    /// check. Not metered: billing never spends the account's API calls.
    Member,
    /// KRAFTD's services, acting on the account the path names: a service
    /// credential carrying the scope. A user token is refused with 403.
    Service(Scope),
    /// As `Service`, and also a signed-in member of the path's account
    /// (reading their own account's entitlements).
    ServiceOrMember(Scope),
}

impl Access {
    /// Whether a bearer token is required.
    pub fn signed_in(self) -> bool {
        self != Access::Public
    }
}

/// Abuse resistance, before the handler (and before its access check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    None,
    /// A way in that costs a password hash or guards a secret (login,
    /// registration, invitation acceptance, email verification): limited
    /// per client address here (`http::client_address`), and per account
    /// in its use-case. Refused with 429 `rate_limited` and `Retry-After`.
    SignIn,
}

pub struct HttpFunction {
    pub name: &'static str,
    pub methods: &'static [HttpMethod],
    /// Below the `api` route prefix, in the syntax both axum and the host read.
    pub route: &'static str,
    pub auth_level: AuthLevel,
    pub access: Access,
    pub throttle: Throttle,
    pub mount: fn(MethodFilter) -> MethodRouter<AppState>,
    /// The handler's OpenAPI declaration: `doc::<module::__path_handler>`.
    pub doc: fn() -> OperationDoc,
}

impl HttpFunction {
    pub fn path(&self) -> String {
        format!("/{ROUTE_PREFIX}/{}", self.route)
    }
}

use Access::{Member, Public, User};
use AuthLevel::Anonymous;
use HttpMethod::{Delete, Get, Patch, Post, Put};

pub static HTTP_FUNCTIONS: &[HttpFunction] = &[
    HttpFunction {
        name: "Health",
        methods: &[Get],
        route: "health",
        auth_level: Anonymous,
        access: Public,
        throttle: Throttle::None,
        mount: |m| on(m, health::check),
        doc: doc::<health::__path_check>,
    },
    HttpFunction {
        name: "ListPlans",
        methods: &[Get],
        route: "plans",
        auth_level: Anonymous,
        access: Public,
        throttle: Throttle::None,
        mount: |m| on(m, plans::list),
        doc: doc::<plans::__path_list>,
    },
    HttpFunction {
        name: "RegisterWithPlan",
        methods: &[Post],
        route: "auth/register/with-plan",
        auth_level: Anonymous,
        access: Public,
        throttle: Throttle::SignIn,
        mount: |m| on(m, accounts::register),
        doc: doc::<accounts::__path_register>,
    },
    HttpFunction {
        name: "Login",
        methods: &[Post],
        route: "auth/login",
        auth_level: Anonymous,
        access: Public,
        throttle: Throttle::SignIn,
        mount: |m| on(m, accounts::login),
        doc: doc::<accounts::__path_login>,
    },
    HttpFunction {
        name: "VerifyEmail",
        methods: &[Post],
        route: "auth/verify-email",
        auth_level: Anonymous,
        access: Public,
        throttle: Throttle::SignIn,
        mount: |m| on(m, accounts::verify_email),
        doc: doc::<accounts::__path_verify_email>,
    },
    HttpFunction {
        name: "ResendVerification",
        methods: &[Post],
        route: "auth/verify-email/resend",
        auth_level: Anonymous,
        access: User,
        throttle: Throttle::SignIn,
        mount: |m| on(m, accounts::resend_verification),
        doc: doc::<accounts::__path_resend_verification>,
    },
    HttpFunction {
        name: "GetProfile",
        methods: &[Get],
        route: "me",
        auth_level: Anonymous,
        access: User,
        throttle: Throttle::None,
        mount: |m| on(m, accounts::me),
        doc: doc::<accounts::__path_me>,
    },
    HttpFunction {
        name: "GetSubscription",
        methods: &[Get],
        route: "billing/subscription",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, billing::subscription),
        doc: doc::<billing::__path_subscription>,
    },
    HttpFunction {
        name: "UpgradeSubscription",
        methods: &[Post],
        route: "billing/upgrade",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, billing::upgrade),
        doc: doc::<billing::__path_upgrade>,
    },
    HttpFunction {
        name: "PreviewPlanChange",
        methods: &[Post],
        route: "billing/preview-change",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, billing::preview_change),
        doc: doc::<billing::__path_preview_change>,
    },
    HttpFunction {
        name: "CancelSubscription",
        methods: &[Post],
        route: "billing/cancel-subscription",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, billing::cancel),
        doc: doc::<billing::__path_cancel>,
    },
    HttpFunction {
        name: "ResumeSubscription",
        methods: &[Post],
        route: "billing/resume",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, billing::resume),
        doc: doc::<billing::__path_resume>,
    },
    HttpFunction {
        name: "CustomerPortal",
        methods: &[Get],
        route: "billing/customer-portal",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, billing::customer_portal),
        doc: doc::<billing::__path_customer_portal>,
    },
    HttpFunction {
        name: "ListInvoices",
        methods: &[Get],
        route: "billing/invoices",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, billing::invoices),
        doc: doc::<billing::__path_invoices>,
    },
    HttpFunction {
        name: "StripeWebhook",
        methods: &[Post],
        route: "webhooks/stripe",
        auth_level: Anonymous,
        access: Public,
        throttle: Throttle::None,
        mount: |m| on(m, billing::stripe_webhook),
        doc: doc::<billing::__path_stripe_webhook>,
    },
    HttpFunction {
        name: "GetUsage",
        methods: &[Get],
        route: "usage",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, usage::report),
        doc: doc::<usage::__path_report>,
    },
    HttpFunction {
        name: "GetEntitlements",
        methods: &[Get],
        route: "entitlements",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, usage::entitlements),
        doc: doc::<usage::__path_entitlements>,
    },
    HttpFunction {
        name: "ReportUsage",
        methods: &[Post],
        route: "accounts/{account_id}/usage",
        auth_level: Anonymous,
        access: Access::Service(Scope::UsageWrite),
        throttle: Throttle::None,
        mount: |m| on(m, service::report_usage),
        doc: doc::<service::__path_report_usage>,
    },
    HttpFunction {
        name: "ReportApiCalls",
        methods: &[Post],
        route: "accounts/{account_id}/usage/calls",
        auth_level: Anonymous,
        access: Access::Service(Scope::UsageWrite),
        throttle: Throttle::None,
        mount: |m| on(m, service::report_api_calls),
        doc: doc::<service::__path_report_api_calls>,
    },
    HttpFunction {
        name: "ReportUsageBatch",
        methods: &[Post],
        route: "accounts/{account_id}/usage/batch",
        auth_level: Anonymous,
        access: Access::Service(Scope::UsageWrite),
        throttle: Throttle::None,
        mount: |m| on(m, service::report_batch),
        doc: doc::<service::__path_report_batch>,
    },
    HttpFunction {
        name: "CreateReservation",
        methods: &[Post],
        route: "accounts/{account_id}/reservations",
        auth_level: Anonymous,
        access: Access::Service(Scope::UsageWrite),
        throttle: Throttle::None,
        mount: |m| on(m, service::reserve),
        doc: doc::<service::__path_reserve>,
    },
    HttpFunction {
        name: "CommitReservation",
        methods: &[Post],
        route: "accounts/{account_id}/reservations/{reservation_id}/commit",
        auth_level: Anonymous,
        access: Access::Service(Scope::UsageWrite),
        throttle: Throttle::None,
        mount: |m| on(m, service::commit),
        doc: doc::<service::__path_commit>,
    },
    HttpFunction {
        name: "ReleaseReservation",
        methods: &[Delete],
        route: "accounts/{account_id}/reservations/{reservation_id}",
        auth_level: Anonymous,
        access: Access::Service(Scope::UsageWrite),
        throttle: Throttle::None,
        mount: |m| on(m, service::release),
        doc: doc::<service::__path_release>,
    },
    HttpFunction {
        name: "SetGauge",
        methods: &[Put],
        route: "accounts/{account_id}/gauges/{metric}",
        auth_level: Anonymous,
        access: Access::Service(Scope::UsageWrite),
        throttle: Throttle::None,
        mount: |m| on(m, service::set_gauge),
        doc: doc::<service::__path_set_gauge>,
    },
    HttpFunction {
        name: "GetAccountEntitlements",
        methods: &[Get],
        route: "accounts/{account_id}/entitlements",
        auth_level: Anonymous,
        access: Access::ServiceOrMember(Scope::EntitlementsRead),
        throttle: Throttle::None,
        mount: |m| on(m, service::entitlements),
        doc: doc::<service::__path_entitlements>,
    },
    HttpFunction {
        name: "ListAccounts",
        methods: &[Get],
        route: "accounts",
        auth_level: Anonymous,
        access: User,
        throttle: Throttle::None,
        mount: |m| on(m, team::accounts),
        doc: doc::<team::__path_accounts>,
    },
    HttpFunction {
        name: "ListMembers",
        methods: &[Get],
        route: "account/members",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, team::members),
        doc: doc::<team::__path_members>,
    },
    HttpFunction {
        name: "InviteMember",
        methods: &[Post],
        route: "account/invitations",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, team::invite),
        doc: doc::<team::__path_invite>,
    },
    HttpFunction {
        name: "WithdrawInvitation",
        methods: &[Delete],
        route: "account/invitations/{id}",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, team::withdraw),
        doc: doc::<team::__path_withdraw>,
    },
    HttpFunction {
        name: "RemoveMember",
        methods: &[Delete],
        route: "account/members/{user_id}",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, team::remove),
        doc: doc::<team::__path_remove>,
    },
    HttpFunction {
        name: "ChangeMemberRole",
        methods: &[Patch],
        route: "account/members/{user_id}",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, team::change_role),
        doc: doc::<team::__path_change_role>,
    },
    HttpFunction {
        name: "TransferOwnership",
        methods: &[Post],
        route: "account/transfer-ownership",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, team::transfer_ownership),
        doc: doc::<team::__path_transfer_ownership>,
    },
    HttpFunction {
        name: "GetAuditLog",
        methods: &[Get],
        route: "account/audit",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, admin::own_audit),
        doc: doc::<admin::__path_own_audit>,
    },
    HttpFunction {
        name: "AdminFindAccounts",
        methods: &[Get],
        route: "admin/accounts",
        auth_level: Anonymous,
        access: Access::Service(Scope::Admin),
        throttle: Throttle::None,
        mount: |m| on(m, admin::find),
        doc: doc::<admin::__path_find>,
    },
    HttpFunction {
        name: "AdminShowAccount",
        methods: &[Get],
        route: "admin/accounts/{account_id}",
        auth_level: Anonymous,
        access: Access::Service(Scope::Admin),
        throttle: Throttle::None,
        mount: |m| on(m, admin::show),
        doc: doc::<admin::__path_show>,
    },
    HttpFunction {
        name: "AdminResyncAccount",
        methods: &[Post],
        route: "admin/accounts/{account_id}/resync",
        auth_level: Anonymous,
        access: Access::Service(Scope::Admin),
        throttle: Throttle::None,
        mount: |m| on(m, admin::resync),
        doc: doc::<admin::__path_resync>,
    },
    HttpFunction {
        name: "AdminSetOverride",
        methods: &[Post],
        route: "admin/accounts/{account_id}/overrides",
        auth_level: Anonymous,
        access: Access::Service(Scope::Admin),
        throttle: Throttle::None,
        mount: |m| on(m, admin::set_override),
        doc: doc::<admin::__path_set_override>,
    },
    HttpFunction {
        name: "AdminRemoveOverride",
        methods: &[Delete],
        route: "admin/accounts/{account_id}/overrides/{override_id}",
        auth_level: Anonymous,
        access: Access::Service(Scope::Admin),
        throttle: Throttle::None,
        mount: |m| on(m, admin::remove_override),
        doc: doc::<admin::__path_remove_override>,
    },
    HttpFunction {
        name: "AdminCreditUsage",
        methods: &[Post],
        route: "admin/accounts/{account_id}/credits",
        auth_level: Anonymous,
        access: Access::Service(Scope::Admin),
        throttle: Throttle::None,
        mount: |m| on(m, admin::credit),
        doc: doc::<admin::__path_credit>,
    },
    HttpFunction {
        name: "AdminAuditLog",
        methods: &[Get],
        route: "admin/accounts/{account_id}/audit",
        auth_level: Anonymous,
        access: Access::Service(Scope::Admin),
        throttle: Throttle::None,
        mount: |m| on(m, admin::audit),
        doc: doc::<admin::__path_audit>,
    },
    HttpFunction {
        name: "AcceptInvitation",
        methods: &[Post],
        route: "invitations/{token}/accept",
        auth_level: Anonymous,
        access: User,
        throttle: Throttle::SignIn,
        mount: |m| on(m, team::accept),
        doc: doc::<team::__path_accept>,
    },
    HttpFunction {
        name: "GetOpenApi",
        methods: &[Get],
        route: "openapi.json",
        auth_level: Anonymous,
        access: Public,
        throttle: Throttle::None,
        mount: |m| on(m, openapi::serve),
        doc: doc::<openapi::__path_serve>,
    },
    HttpFunction {
        name: "GetBillingHealth",
        methods: &[Get],
        route: "admin/health/billing",
        auth_level: Anonymous,
        access: Access::Service(Scope::Admin),
        throttle: Throttle::None,
        mount: |m| on(m, billing_health::billing),
        doc: doc::<billing_health::__path_billing>,
    },
    HttpFunction {
        name: "MakeEnterpriseOffer",
        methods: &[Post],
        route: "admin/accounts/{account_id}/enterprise-offers",
        auth_level: Anonymous,
        access: Access::Service(Scope::Admin),
        throttle: Throttle::None,
        mount: |m| on(m, enterprise::make_offer),
        doc: doc::<enterprise::__path_make_offer>,
    },
    HttpFunction {
        name: "AcceptEnterpriseOffer",
        methods: &[Post],
        route: "billing/enterprise-offer/accept",
        auth_level: Anonymous,
        access: Member,
        throttle: Throttle::None,
        mount: |m| on(m, enterprise::accept_offer),
        doc: doc::<enterprise::__path_accept_offer>,
    },
];

/// A timer-triggered function. The host POSTs its invocation to
/// `/<name>`; the answer's status tells the host whether to retry.
pub struct TimerFunction {
    pub name: &'static str,
    /// NCRONTAB with seconds, in UTC.
    pub schedule: &'static str,
    pub mount: fn() -> MethodRouter<AppState>,
}

pub static TIMER_FUNCTIONS: &[TimerFunction] = &[
    TimerFunction {
        name: "ReconcileSubscriptions",
        schedule: "0 */15 * * * *",
        mount: || post(triggers::reconcile),
    },
    TimerFunction {
        name: "SweepOutbox",
        // Every two minutes: a due retry waits at most that long.
        schedule: "0 */2 * * * *",
        mount: || post(triggers::sweep_outbox),
    },
    TimerFunction {
        name: "DailyUsageRollup",
        // 00:30 UTC: yesterday's windows are closed by then.
        schedule: "0 30 0 * * *",
        mount: || post(triggers::rollup),
    },
];

/// A Cosmos DB change-feed function: the host reads the container's change
/// feed and POSTs batches of documents to `/<name>`.
pub struct ChangeFeedFunction {
    pub name: &'static str,
    /// The container whose changes trigger it.
    pub container: &'static str,
    /// Distinct per function sharing the `leases` container.
    pub lease_prefix: &'static str,
    pub mount: fn() -> MethodRouter<AppState>,
}

/// The app setting prefix of the Cosmos DB connection (`COSMOS__accountEndpoint`, ...).
pub const COSMOS_CONNECTION: &str = "COSMOS";
/// The change feed's database: a binding expression for the app setting
/// the store reads too, so one setting moves both (as after `handler migrate`).
pub const COSMOS_DATABASE: &str = "%COSMOS_DATABASE%";
pub const LEASES_CONTAINER: &str = layout::LEASES.name;

pub static CHANGE_FEED_FUNCTIONS: &[ChangeFeedFunction] = &[ChangeFeedFunction {
    name: "SendEmails",
    container: layout::ACCOUNTS.name,
    lease_prefix: "email-",
    mount: || post(triggers::send_emails),
}];

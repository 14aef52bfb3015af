use crate::auth::token::TokenError;
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
    #[error("{0}")]
    Store(#[source] StoreError),
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

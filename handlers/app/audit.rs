//! The audit log: the entries each change writes, and reading the log
//! (an operator's view of any account, an owner's of their own).

use crate::domain::account::{Account, AccountId, Action, Role};
use crate::domain::audit::{fields, Actor, AuditAction, AuditEntry, AuditId, Fields};
use crate::domain::ports::StoreError;
use crate::domain::subscription::Subscription;
use crate::domain::user::{Email, UserId};

use super::{Acting, AppError, Billing};

/// One page of the audit log, newest first.
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub has_more: bool,
}

fn subscription_fields(s: &Subscription) -> Fields {
    let status = serde_json::to_value(s.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    fields([
        ("plan", s.plan_id.as_str().to_owned()),
        ("status", status),
        ("cancel_at_period_end", s.cancel_at_period_end.to_string()),
        (
            "trial_end",
            s.trial_end.map(|t| t.to_rfc3339()).unwrap_or_default(),
        ),
    ])
}

/// A member as a member change's entry records them: who, their address
/// when known, and their role.
pub(crate) fn member_fields(user: UserId, email: Option<&Email>, role: Role) -> Fields {
    let mut f = fields([
        ("user_id", user.to_string()),
        ("role", role.as_str().to_owned()),
    ]);
    if let Some(e) = email {
        f.insert("email".to_owned(), e.as_str().to_owned());
    }
    f
}

impl Billing {
    /// A new entry, now, with an id of its own.
    pub(super) fn audit_entry(
        &self,
        account_id: AccountId,
        actor: Actor,
        action: AuditAction,
        before: Option<Fields>,
        after: Option<Fields>,
    ) -> AuditEntry {
        AuditEntry {
            id: AuditId(uuid::Uuid::new_v4()),
            account_id,
            at: self.clock.now(),
            actor,
            action,
            reason: None,
            before,
            after,
        }
    }

    /// The entry a write of Stripe's subscription state deserves: a plan
    /// change, another change of what the account is sold, or none.
    pub(super) fn subscription_audit(
        &self,
        before: &Account,
        after: &Account,
        actor: &Actor,
    ) -> Option<AuditEntry> {
        let (b, a) = (
            subscription_fields(&before.subscription),
            subscription_fields(&after.subscription),
        );
        let action = if before.subscription.plan_id != after.subscription.plan_id {
            AuditAction::PlanChanged
        } else if b != a {
            AuditAction::SubscriptionChanged
        } else {
            return None;
        };
        Some(self.audit_entry(after.id, actor.clone(), action, Some(b), Some(a)))
    }

    /// A page of the account's audit log, newest first, after the entry
    /// `starting_after` names.
    pub async fn audit_log(
        &self,
        account_id: AccountId,
        limit: usize,
        starting_after: Option<&str>,
    ) -> Result<AuditPage, AppError> {
        let after = match starting_after {
            None => None,
            Some(id) => Some(AuditId(
                uuid::Uuid::parse_str(id).map_err(|_| AppError::AuditEntryNotFound)?,
            )),
        };
        let mut entries = match self.store.audit_log(account_id, after, limit + 1).await {
            Ok(e) => e,
            Err(StoreError::NotFound) => return Err(AppError::AuditEntryNotFound),
            Err(e) => return Err(e.into()),
        };
        let has_more = entries.len() > limit;
        entries.truncate(limit);
        Ok(AuditPage { entries, has_more })
    }

    /// The owner's view of their account's log.
    pub async fn own_audit_log(
        &self,
        acting: &Acting,
        limit: usize,
        starting_after: Option<&str>,
    ) -> Result<AuditPage, AppError> {
        acting.require(Action::ReadAudit)?;
        self.audit_log(acting.account.value.id, limit, starting_after)
            .await
    }
}

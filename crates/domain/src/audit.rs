//! The audit log: an append-only record, per account, of every change to
//! its plan, overrides, usage credits and members, and of operators'
//! actions on it: who, when, what, and what it was before and after.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::AccountId;
use crate::records::AUDIT_RETENTION_DAYS;
use crate::user::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditId(pub Uuid);

impl fmt::Display for AuditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl AuditId {
    /// The entry recording an idempotent act (a credit named by its
    /// Idempotency-Key): the same name gives the same id, so writing it
    /// again after a retry keeps one entry.
    pub fn of_name(account: AccountId, name: &str) -> Self {
        const NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_0d2e_93a4_4c57_8e21_5f7a_c3d9_0b64);
        let name = format!("{}:{account}:{name}", name.len());
        AuditId(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A member, through the app.
    User { user_id: UserId },
    /// An operator through the admin API: the service credential's name
    /// and, when the tool says so, the person using it.
    Admin {
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<String>,
    },
    /// A Stripe event the change was re-read for.
    StripeWebhook { event_id: String },
    /// The reconcile timer, repairing what a lost webhook left.
    Reconciliation,
    /// The service itself (bookkeeping no one asked for).
    System,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// The plan the account pays for changed.
    PlanChanged,
    /// The subscription's state changed on the same plan (a cancellation
    /// scheduled or withdrawn, a payment failed or recovered, an end).
    SubscriptionChanged,
    OverrideSet,
    OverrideRemoved,
    UsageCredited,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    OwnershipTransferred,
    InvitationSent,
    /// A pending invitation was taken back before anyone accepted it.
    InvitationWithdrawn,
    /// An operator re-read the subscription from Stripe.
    AdminResync,
    /// Support made (or replaced) the account's Enterprise offer.
    EnterpriseOfferMade,
    /// A live subscription bills the offer's price: its limits apply.
    EnterpriseOfferAccepted,
}

/// A small, flat description of a state: field name → value as text.
pub type Fields = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: AuditId,
    pub account_id: AccountId,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub action: AuditAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Fields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Fields>,
}

impl AuditEntry {
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.at + Duration::days(AUDIT_RETENTION_DAYS)
    }

    /// The order of the log, newest first: by time, then by id, so two
    /// entries of one instant keep one order in every store.
    pub fn sort_key(&self) -> String {
        format!("{:020}:{}", self.at.timestamp_millis().max(0), self.id)
    }
}

/// A list of `name=value` pairs as `Fields`.
pub fn fields<const N: usize>(pairs: [(&str, String); N]) -> Fields {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: i64, id: u128) -> AuditEntry {
        AuditEntry {
            id: AuditId(Uuid::from_u128(id)),
            account_id: AccountId(Uuid::nil()),
            at: DateTime::from_timestamp_millis(ms).unwrap(),
            actor: Actor::System,
            action: AuditAction::PlanChanged,
            reason: None,
            before: None,
            after: None,
        }
    }

    #[test]
    fn the_sort_key_orders_by_time_then_id() {
        assert!(entry(999, 9).sort_key() < entry(1_000, 1).sort_key());
        assert!(entry(1_000, 1).sort_key() < entry(1_000, 2).sort_key());
    }

    #[test]
    fn a_named_act_has_one_id_per_account() {
        let a = AccountId(Uuid::from_u128(1));
        let b = AccountId(Uuid::from_u128(2));
        assert_eq!(
            AuditId::of_name(a, "credit:k"),
            AuditId::of_name(a, "credit:k")
        );
        assert_ne!(
            AuditId::of_name(a, "credit:k"),
            AuditId::of_name(b, "credit:k")
        );
        assert_ne!(
            AuditId::of_name(a, "credit:k"),
            AuditId::of_name(a, "credit:l")
        );
    }

    #[test]
    fn entries_are_kept_seven_years() {
        let e = entry(0, 1);
        assert!(e.expires_at() - e.at >= Duration::days(7 * 365));
    }
}

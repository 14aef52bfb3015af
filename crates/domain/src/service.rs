//! KRAFTD's own services as callers: the scopes a service credential
//! carries, the service keys issued for runs outside Azure and the Entra ID
//! applications whose app tokens are accepted in Azure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a service credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Report usage, hold and commit quota, set gauges, on any account.
    #[serde(rename = "usage:write")]
    UsageWrite,
    /// Read any account's entitlements and usage.
    #[serde(rename = "entitlements:read")]
    EntitlementsRead,
    /// Support staff's and the back office's operations.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::UsageWrite, Scope::EntitlementsRead, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UsageWrite => "usage:write",
            Scope::EntitlementsRead => "entitlements:read",
            Scope::Admin => "admin",
        }
    }

    /// A scope by its name, or by the name of the Entra ID app role that
    /// grants it (app role values cannot hold `:`): `Usage.Write`.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s || scope.app_role() == s)
    }

    pub fn app_role(self) -> &'static str {
        match self {
            Scope::UsageWrite => "Usage.Write",
            Scope::EntitlementsRead => "Entitlements.Read",
            Scope::Admin => "Admin",
        }
    }
}

/// A name a service goes by ("document-service"): 1 to 64 ASCII letters,
/// digits, '-', '_' or '.', what an operator will recognise in lists and logs.
pub fn is_service_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// An Entra ID application allowed to call with app tokens
/// (`SERVICE_APPS`): its client id (the token's `azp`, v1 `appid`) and the
/// name its calls go by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceApp {
    pub name: String,
    pub client_id: String,
}

/// The scopes an app token's `roles` grant: each role that is the app role
/// of a scope (`Usage.Write`); others are ignored, and so are scope names
/// (`usage:write`), which no app role can be.
pub fn scopes_of_app_roles<'a>(roles: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = roles
        .into_iter()
        .filter_map(|role| Scope::ALL.into_iter().find(|s| s.app_role() == role))
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// A service key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceKey {
    /// Public: the key's first part names it.
    pub id: uuid::Uuid,
    /// Which service holds it ("document-service").
    pub name: String,
    pub scopes: Vec<Scope>,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A verified service caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrincipal {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl ServicePrincipal {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_by_name_and_by_app_role() {
        assert_eq!(Scope::parse("usage:write"), Some(Scope::UsageWrite));
        assert_eq!(Scope::parse("Usage.Write"), Some(Scope::UsageWrite));
        assert_eq!(
            Scope::parse("Entitlements.Read"),
            Some(Scope::EntitlementsRead)
        );
        assert_eq!(Scope::parse("usage:read"), None);
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn app_roles_grant_their_scopes_and_nothing_else() {
        assert_eq!(
            scopes_of_app_roles([
                "Entitlements.Read",
                "Usage.Write",
                "Usage.Write",
                "usage:write",
                "admin",
                "Billing.Everything",
            ]),
            vec![Scope::UsageWrite, Scope::EntitlementsRead]
        );
        assert_eq!(scopes_of_app_roles(["Admin"]), vec![Scope::Admin]);
        assert!(scopes_of_app_roles(["User.Read", ""]).is_empty());
    }

    #[test]
    fn service_names_are_plain() {
        assert!(is_service_name("document-service"));
        assert!(is_service_name("a.b_c-1"));
        assert!(!is_service_name(""));
        assert!(!is_service_name("a b"));
        assert!(!is_service_name(&"x".repeat(65)));
    }
}

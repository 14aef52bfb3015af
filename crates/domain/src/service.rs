//! KRAFTD's own services as callers: the scopes a service credential
//! carries and the service keys issued for runs outside Azure.

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
}

//! Service keys: issued by `handler service-keys create`, shown once, kept
//! as a SHA-256 only, sent as `Authorization: Bearer kbsk_<id>-<secret>`.

use chrono::{DateTime, Utc};

use crate::domain::ports::ServiceKeyStore;
use crate::domain::service::{is_service_name, Scope, ServiceKey, ServicePrincipal};

use super::link_tokens::{new_token, same_hash, token_hash, token_subject};
use super::{AppError, Billing};

/// What every service key starts with: tells it apart from a JWT at a glance
/// (and to secret scanners).
pub const SERVICE_KEY_PREFIX: &str = "kbsk_";

/// A new key and the one time its secret is visible.
pub struct IssuedKey {
    pub key: ServiceKey,
    pub secret: String,
}

/// The name a key is issued to: what the operator will recognise in `list`.
fn check_name(name: &str) -> Result<(), AppError> {
    if is_service_name(name) {
        Ok(())
    } else {
        Err(AppError::invalid(
            "name",
            "must be 1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Parses `usage:write,entitlements:read`.
pub fn parse_scopes(list: &str) -> Result<Vec<Scope>, AppError> {
    let mut scopes = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let scope = Scope::parse(part).ok_or_else(|| {
            AppError::invalid(
                "scopes",
                format!(
                    "{part:?} is not a scope: use {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                ),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(AppError::invalid("scopes", "name at least one scope"));
    }
    scopes.sort();
    Ok(scopes)
}

pub async fn issue(
    store: &dyn ServiceKeyStore,
    name: &str,
    scopes: Vec<Scope>,
    now: DateTime<Utc>,
) -> Result<IssuedKey, AppError> {
    check_name(name)?;
    let id = uuid::Uuid::new_v4();
    let secret = format!("{SERVICE_KEY_PREFIX}{}", new_token(id));
    let key = ServiceKey {
        id,
        name: name.to_owned(),
        scopes,
        secret_hash: token_hash(&secret),
        created_at: now,
        revoked_at: None,
    };
    store.add_service_key(&key).await?;
    Ok(IssuedKey { key, secret })
}

/// The service a key belongs to, if it is a live key of ours.
pub async fn verify(
    store: &dyn ServiceKeyStore,
    presented: &str,
) -> Result<ServicePrincipal, AppError> {
    let refused = || AppError::Unauthenticated("the service key is unknown or revoked".into());
    let id = presented
        .strip_prefix(SERVICE_KEY_PREFIX)
        .and_then(token_subject)
        .ok_or_else(refused)?;
    let key = store.service_key(id).await?.ok_or_else(refused)?;
    if key.revoked_at.is_some() || !same_hash(&key.secret_hash, &token_hash(presented)) {
        return Err(refused());
    }
    Ok(ServicePrincipal {
        name: key.name,
        scopes: key.scopes,
    })
}

impl Billing {
    /// A service credential: a service key.
    pub async fn authenticate_service(
        &self,
        presented: &str,
    ) -> Result<ServicePrincipal, AppError> {
        // Only keys verified are kept, by their hash: a made-up key still
        // costs its read, and is never remembered.
        let now = self.clock.now();
        let hash = token_hash(presented);
        if let Some(principal) = self.credentials.get(&hash, now) {
            return Ok(principal);
        }
        let principal = verify(self.store.as_ref(), presented).await?;
        self.credentials.put(hash, principal.clone(), now);
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_and_refuse_strangers() {
        assert_eq!(
            parse_scopes("usage:write, entitlements:read,usage:write").unwrap(),
            vec![Scope::UsageWrite, Scope::EntitlementsRead]
        );
        assert!(parse_scopes("usage:write,root").is_err());
        assert!(parse_scopes(" , ").is_err());
    }

    #[test]
    fn names_are_plain() {
        assert!(check_name("document-service").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
    }
}

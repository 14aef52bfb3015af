//! Who calls a service route (`/api/accounts/{account_id}/…`): a service
//! key (`kbsk_…`), an Entra ID app token of one of KRAFTD's services (the
//! client-credentials flow; scopes from its app roles), or, where the route
//! lets a member read their account, a user's token. Each must carry the
//! route's scope.

use crate::auth::token::{ServiceClaims, Subject};
use crate::domain::ports::Versioned;
use crate::domain::service::{scopes_of_app_roles, Scope, ServicePrincipal};
use crate::domain::user::User;

use super::service_keys::SERVICE_KEY_PREFIX;
use super::{AppError, Billing};

/// A service route's verified caller.
#[derive(Clone)]
pub enum Caller {
    /// A service credential carrying the route's scope: any account.
    Service(ServicePrincipal),
    /// A signed-in user, on a route members may read: the handler checks
    /// their membership of the path's account.
    User(Versioned<User>),
}

impl Billing {
    /// The caller `bearer` speaks for, if it may call a route that needs
    /// `scope` (and that members may read, if `members_read`). A valid
    /// credential without the scope, a user's token where only services
    /// may call, and a person's token for the service API are
    /// `MissingScope`; anything unverifiable is `Unauthenticated`.
    pub async fn service_caller(
        &self,
        bearer: &str,
        scope: Scope,
        members_read: bool,
    ) -> Result<Caller, AppError> {
        let allowed = |p: ServicePrincipal| {
            if p.may(scope) {
                Ok(Caller::Service(p))
            } else {
                Err(AppError::MissingScope(scope.as_str()))
            }
        };
        if bearer.starts_with(SERVICE_KEY_PREFIX) {
            return allowed(self.authenticate_service(bearer).await?);
        }
        match self.tokens.verify(bearer, self.clock.now()).await? {
            Subject::Service(ServiceClaims::App {
                client_id, roles, ..
            }) => allowed(self.app_principal(client_id, &roles)?),
            // A person's token for the service API, whatever `roles` it
            // holds (users can be assigned app roles too): never a service.
            Subject::Service(ServiceClaims::Delegated) => {
                Err(AppError::MissingScope(scope.as_str()))
            }
            user => {
                let user = self.user_of(user).await?;
                if members_read {
                    Ok(Caller::User(user))
                } else {
                    Err(AppError::MissingScope(scope.as_str()))
                }
            }
        }
    }

    /// The service an app token's application is: with `SERVICE_APPS` set,
    /// one of those (by the name it is listed under), else any application
    /// of a trusted service issuer (by its client id). An application not
    /// listed is refused as an unknown credential is (401), before its
    /// roles are read; the roles that are no scope's app role are ignored.
    fn app_principal(
        &self,
        client_id: String,
        roles: &[String],
    ) -> Result<ServicePrincipal, AppError> {
        let apps = &self.settings.service_apps;
        let name = if apps.is_empty() {
            client_id
        } else {
            apps.iter()
                .find(|app| app.client_id == client_id)
                .map(|app| app.name.clone())
                .ok_or_else(|| {
                    AppError::Unauthenticated(
                        "this application is not one allowed to call the billing service".into(),
                    )
                })?
        };
        Ok(ServicePrincipal {
            name,
            scopes: scopes_of_app_roles(roles.iter().map(String::as_str)),
        })
    }
}

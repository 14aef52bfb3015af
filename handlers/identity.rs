//! The service's Azure identity, one rule for every Azure client (Cosmos DB,
//! Key Vault): the user-assigned managed identity a client id names; without
//! one, the app's system-assigned identity under the Functions host; and a
//! developer's `az login` / `azd auth login` on a workstation.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::ClientOptions;
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId,
};

pub fn service_identity(
    client_id: Option<String>,
    under_host: bool,
    client_options: ClientOptions,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let managed = |user_assigned_id| {
        ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id,
            client_options,
        }))
        .map(|c| c as Arc<dyn TokenCredential>)
    };
    match client_id {
        Some(id) => managed(Some(UserAssignedId::ClientId(id))),
        None if under_host => managed(None),
        None => DeveloperToolsCredential::new(None).map(|c| c as Arc<dyn TokenCredential>),
    }
}

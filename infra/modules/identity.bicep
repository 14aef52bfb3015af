// The app's one identity: every service it reaches (storage, Cosmos DB,
// Key Vault, Application Insights) trusts this, so no key is stored anywhere.

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId

// The vault for the app's secrets (Stripe keys, the JWT signing secret, the
// SMTP URL). Access is Azure RBAC only: the app identity reads, the engineer
// who deploys writes. The secret values are set by hand after `azd up`
// (README "Deploy"), never passed through a template or a parameter file.

import { azureRoles } from 'roles.bicep'

param name string
param location string
param tags object
@description('Principal id of the app identity, granted Key Vault Secrets User.')
param appPrincipalId string
@description('Object id of the engineer (or pipeline) that sets the secrets; empty grants nobody.')
param operatorPrincipalId string = ''
@description('What operatorPrincipalId is.')
@allowed([
  'User'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource appReads 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, azureRoles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureRoles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorWrites 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, azureRoles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', azureRoles.keyVaultSecretsOfficer)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri

// The Functions host's storage (AzureWebJobsStorage), reached with the app
// identity only: shared keys are off, so no connection string exists.

import { azureRoles } from 'roles.bicep'

param name string
param location string
param tags object
@description('Blob container holding the deployment package (Flex Consumption).')
param deploymentContainerName string
@description('Principal id of the app identity.')
param appPrincipalId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deployments 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Blob: host keys, leases, timer locks and the package; queue and table:
// the host's retry queues and diagnostic events.
var hostRoles = [
  azureRoles.storageBlobDataOwner
  azureRoles.storageQueueDataContributor
  azureRoles.storageTableDataContributor
]

resource hostAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in hostRoles: {
    name: guid(storage.id, appPrincipalId, role)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table

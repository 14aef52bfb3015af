// Cosmos DB for NoSQL: the account, the database and every container the
// store uses. The container table mirrors handlers/store/cosmos/layout.rs
// (tests/infra.rs compares them). Keys are off: the app identity reads and
// writes through a Cosmos SQL role assignment.

import { cosmosRoles } from 'roles.bicep'

param accountName string
param location string
param tags object
param databaseName string
@description('Serverless bills per request; Provisioned shares autoscale throughput across the containers.')
@allowed([
  'Serverless'
  'Provisioned'
])
param capacityMode string = 'Serverless'
@description('Autoscale ceiling in RU/s for the database (Provisioned only).')
param autoscaleMaxThroughput int = 1000
@description('Principal id of the app identity, granted Cosmos DB Built-in Data Contributor.')
param appPrincipalId string

// defaultTtl: null is off (an item's own ttl is ignored), -1 is on with
// no default (each item's ttl decides), a number is seconds after the last write.
var containers = [
  {
    // User identities only.
    name: 'users'
    partitionKey: '/user_id'
    defaultTtl: -1
  }
  {
    // Per account: the account, its members, invitations (own ttl), seat
    // lock and outbox messages (own ttl); SendEmails reads its change feed.
    name: 'accounts'
    partitionKey: '/account_id'
    defaultTtl: -1
  }
  {
    name: 'lookups'
    partitionKey: '/id'
    defaultTtl: null
  }
  {
    name: 'payments'
    partitionKey: '/account_id'
    defaultTtl: 220924800 // 2557 days: seven years and two leap days
  }
  {
    name: 'invoices'
    partitionKey: '/account_id'
    defaultTtl: 220924800 // 2557 days
  }
  {
    name: 'usage_records'
    partitionKey: '/account_id'
    defaultTtl: 7776000 // 90 days
  }
  {
    name: 'webhook_events'
    partitionKey: '/id'
    defaultTtl: 2592000 // 30 days
  }
  {
    // Change-feed leases of the Functions host (SendEmails); with an
    // identity the host cannot create it, so it exists from the start.
    name: 'leases'
    partitionKey: '/id'
    defaultTtl: null
  }
]

var serverless = capacityMode == 'Serverless'

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    capabilities: serverless ? [{ name: 'EnableServerless' }] : []
    // Entra ID only: account keys cannot read or write data, nor change the schema.
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    options: serverless ? {} : { autoscaleSettings: { maxThroughput: autoscaleMaxThroughput } }
  }
}

resource container 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = [
  for c in containers: {
    parent: database
    name: c.name
    properties: {
      resource: {
        id: c.name
        partitionKey: {
          paths: [c.partitionKey]
          kind: 'Hash'
        }
        defaultTtl: c.defaultTtl
      }
    }
  }
]

resource dataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: account
  name: guid(account.id, appPrincipalId, cosmosRoles.dataContributor)
  properties: {
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${cosmosRoles.dataContributor}'
    principalId: appPrincipalId
    scope: account.id
  }
}

output endpoint string = account.properties.documentEndpoint
output name string = account.name

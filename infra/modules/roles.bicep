// Built-in role definition ids, defined once. Checked against Microsoft's
// built-in role reference by tests/infra.rs.

@export()
@description('Azure RBAC built-in roles (Microsoft.Authorization/roleDefinitions names).')
var azureRoles = {
  // Functions host storage (AzureWebJobsStorage): keys, leases, timer locks.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Functions host storage: retry and poison queues.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Functions host storage: diagnostic events tables.
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Application Insights ingestion with Entra ID (local auth off).
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // The app reads its secrets.
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // The deploying engineer sets them.
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}

// Cosmos DB data-plane roles are not ARM roles: they live in the account
// (Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions).
@export()
@description('Cosmos DB for NoSQL built-in data-plane roles.')
var cosmosRoles = {
  dataContributor: '00000000-0000-0000-0000-000000000002'
}

// The Function App running the `handler` custom handler, and its plan.
// Flex Consumption (FC1) by default; Elastic Premium (EP1) as the
// alternative. Every connection is identity-based: storage, Cosmos DB,
// Key Vault and Application Insights all trust the one user-assigned identity.

param name string
param planName string
param location string
param tags object
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param plan string = 'FlexConsumption'
@description('Flex Consumption instance size in MB (512, 2048 or 4096).')
param instanceMemoryMB int = 2048
@description('Flex Consumption scale-out ceiling.')
param maximumInstanceCount int = 100
@description('Elastic Premium scale-out ceiling.')
param maximumElasticWorkerCount int = 20

param identityId string
param identityClientId string
param blobEndpoint string
param queueEndpoint string
param tableEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string
param cosmosEndpoint string
param cosmosDatabase string
param keyVaultUri string

@description('Origins of the KRAFTD frontends allowed by CORS, comma-separated.')
param corsAllowedOrigins string
param checkoutSuccessUrl string
param checkoutCancelUrl string
param billingPortalReturnUrl string
param upgradeUrl string
param emailFrom string
@description('Where billing events go; empty: none are recorded.')
param eventsWebhookUrl string

var flex = plan == 'FlexConsumption'

// The handler's settings in Azure (config::AZURE_REQUIRED_SETTINGS). The
// Stripe secrets are Key Vault references resolved by the platform with
// the app identity; KEY_VAULT_URL lets the handler read every secret itself.
var handlerSettings = {
  STORE: 'cosmos'
  COSMOS__accountEndpoint: cosmosEndpoint
  COSMOS__credential: 'managedidentity'
  COSMOS__clientId: identityClientId
  COSMOS_DATABASE: cosmosDatabase
  // The SDK routes to the account's region nearest this one.
  COSMOS_REGION: location
  AZURE_CLIENT_ID: identityClientId
  KEY_VAULT_URL: keyVaultUri
  STRIPE_SECRET_KEY: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/stripe-secret-key/)'
  STRIPE_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/stripe-webhook-secret/)'
  CORS_ALLOWED_ORIGINS: corsAllowedOrigins
  CHECKOUT_SUCCESS_URL: checkoutSuccessUrl
  CHECKOUT_CANCEL_URL: checkoutCancelUrl
  BILLING_PORTAL_RETURN_URL: billingPortalReturnUrl
  UPGRADE_URL: upgradeUrl
  EMAIL_FROM: emailFrom
  // Empty: no events. Their signing secret the handler reads from the vault.
  EVENTS_WEBHOOK_URL: eventsWebhookUrl
  LOG_FORMAT: 'json'
}

// What the Functions host itself needs, on every plan.
var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// Elastic Premium only (Flex Consumption rejects these: its runtime is
// functionAppConfig.runtime). No Azure Files content share: it would need a
// storage key. The app runs from the package zip deploy leaves on the instance.
var premiumSettings = {
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  FUNCTIONS_EXTENSION_VERSION: '~4'
  WEBSITE_RUN_FROM_PACKAGE: '1'
}

var appSettings = union(handlerSettings, hostSettings, flex ? {} : premiumSettings)

resource servicePlan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: flex ? 'functionapp' : 'elastic'
  sku: flex ? { name: 'FC1', tier: 'FlexConsumption' } : { name: 'EP1', tier: 'ElasticPremium' }
  properties: {
    reserved: true // Linux
    maximumElasticWorkerCount: flex ? null : maximumElasticWorkerCount
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd deploys the `api` service of azure.yaml to the site with this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: servicePlan.id
    httpsOnly: true
    // Key Vault references resolve with the app identity.
    keyVaultReferenceIdentity: identityId
    functionAppConfig: flex
      ? {
          deployment: {
            storage: {
              type: 'blobContainer'
              value: '${blobEndpoint}${deploymentContainerName}'
              authentication: {
                type: 'UserAssignedIdentity'
                userAssignedIdentityResourceId: identityId
              }
            }
          }
          scaleAndConcurrency: {
            instanceMemoryMB: instanceMemoryMB
            maximumInstanceCount: maximumInstanceCount
          }
          runtime: {
            name: 'custom'
            version: '1.0'
          }
        }
      : null
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      linuxFxVersion: flex ? null : ''
      appSettings: [for s in items(appSettings): { name: s.key, value: s.value }]
    }
  }
}

// Deployment credentials (basic auth) are off: azd and az deploy with Entra ID.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'

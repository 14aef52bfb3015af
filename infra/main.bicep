// KRAFTD billing in Azure: `azd up` provisions this and deploys the package
// that scripts/package builds (azure.yaml). Nothing here holds a key: every
// connection is the app's user-assigned identity, and the secrets live in
// Key Vault, set by hand (README "Deploy").

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; every resource name derives from it.')
param environmentName string

@minLength(1)
@description('Region of every resource; it must offer Flex Consumption for the default plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the engineer running azd (azd fills it in), granted Key Vault Secrets Officer to set the secrets.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Hosting plan of the Function App.')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param functionPlan string = 'FlexConsumption'

@description('Cosmos DB capacity: per request (Serverless) or autoscale throughput (Provisioned).')
@allowed([
  'Serverless'
  'Provisioned'
])
param cosmosCapacityMode string = 'Serverless'

@description('Origins of the KRAFTD frontends allowed by CORS, comma-separated.')
param frontendOrigins string

param checkoutSuccessUrl string = 'https://kraftd.io/dashboard?payment=success'
param checkoutCancelUrl string = 'https://kraftd.io/pricing'
param billingPortalReturnUrl string = 'https://kraftd.io/dashboard'
param upgradeUrl string = 'https://kraftd.io/pricing'
param emailFrom string = 'KRAFTD Billing <billing@kraftd.io>'

@description('KRAFTD\'s endpoint for billing events (signed webhooks); empty: no events. Its secret is events-webhook-secret in the vault.')
param eventsWebhookUrl string = ''

@description('Where billing alerts are emailed (infra/modules/alerts.bicep); empty: they show in the portal only.')
param alertEmail string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
// The database the store and the SendEmails trigger use
// (layout::DEFAULT_DATABASE, functions/SendEmails/function.json).
var cosmosDatabase = 'billing'
// The Stripe webhook function's route (StripeWebhook in the route table).
var stripeWebhookPath = '/api/webhooks/stripe'
var deploymentContainerName = 'app-package'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-billing-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    applicationInsightsId: monitoring.outputs.id
    location: location
    tags: tags
    alertEmail: alertEmail
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    appPrincipalId: identity.outputs.principalId
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    accountName: 'cosmos-${resourceToken}'
    location: location
    tags: tags
    databaseName: cosmosDatabase
    capacityMode: cosmosCapacityMode
    appPrincipalId: identity.outputs.principalId
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
  }
}

module app 'modules/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: 'func-billing-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    plan: functionPlan
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabase: cosmosDatabase
    keyVaultUri: vault.outputs.uri
    corsAllowedOrigins: frontendOrigins
    checkoutSuccessUrl: checkoutSuccessUrl
    checkoutCancelUrl: checkoutCancelUrl
    billingPortalReturnUrl: billingPortalReturnUrl
    upgradeUrl: upgradeUrl
    emailFrom: emailFrom
    eventsWebhookUrl: eventsWebhookUrl
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output FUNCTION_APP_NAME string = app.outputs.name
output FUNCTION_APP_URL string = app.outputs.url
output STRIPE_WEBHOOK_URL string = '${app.outputs.url}${stripeWebhookPath}'
output KEY_VAULT_NAME string = vault.outputs.name

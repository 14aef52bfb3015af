// Alert rules for whoever is on call. The reconcile timer logs one line a
// run, every 15 minutes (handlers/app/health.rs, `log_line`):
//   billing health: status=ok webhooks_failing=0 subscriptions_stale=0 emails_stuck=0 emails_failed=0 events_undelivered=0
// Each rule is an Application Insights scheduled query on that line; one
// more fires when the line stops coming (the timer or the app is down).
// tests/infra checks the query parses the line the code writes.

param applicationInsightsId string
param location string
param tags object
@description('Where alerts are emailed; empty: they only show in the portal.')
param alertEmail string = ''

var healthLine = 'traces | where message startswith "billing health: " | parse message with * "status=" status " webhooks_failing=" webhooks " subscriptions_stale=" stale:long " emails_stuck=" stuck:long " emails_failed=" failed:long " events_undelivered=" undelivered:long'

var rules = [
  {
    name: 'webhooks-failing'
    description: 'Stripe could not deliver webhooks to billing (or billing could not ask Stripe): subscriptions may be on the wrong plan. GET /api/admin/health/billing lists the oldest.'
    severity: 1
    query: '${healthLine} | where webhooks != "0"'
    operator: 'GreaterThan'
    window: 'PT30M'
  }
  {
    name: 'subscriptions-stale'
    description: 'Subscriptions stay stale after reconciliation runs: Stripe is unreachable or an account cannot be repaired.'
    severity: 2
    query: '${healthLine} | where stale > 0'
    operator: 'GreaterThan'
    window: 'PT1H'
  }
  {
    name: 'emails-stuck-or-failed'
    description: 'Billing emails wait more than 15 minutes or were given up on: SMTP is failing.'
    severity: 2
    query: '${healthLine} | where stuck > 0 or failed > 0'
    operator: 'GreaterThan'
    window: 'PT30M'
  }
  {
    name: 'events-undelivered'
    description: 'Events for KRAFTD are undelivered: its webhook endpoint fails or refuses the signature.'
    severity: 2
    query: '${healthLine} | where undelivered > 0'
    operator: 'GreaterThan'
    window: 'PT30M'
  }
  {
    name: 'health-line-missing'
    description: 'No billing health line for 45 minutes: the reconcile timer or the app is not running.'
    severity: 1
    query: healthLine
    operator: 'LessThan'
    window: 'PT45M'
  }
]

resource oncall 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-billing-oncall'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'billing'
    enabled: true
    emailReceivers: [
      {
        name: 'on-call'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for rule in rules: {
  name: 'billing-${rule.name}'
  location: location
  tags: tags
  properties: {
    displayName: 'Billing: ${rule.name}'
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: rule.window
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: rule.operator
          threshold: rule.operator == 'LessThan' ? 1 : 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(alertEmail) ? [] : [
        oncall.id
      ]
    }
  }
}]

// Marketo Engage <-> Dynamics 365 sync on Azure Functions (Flex Consumption, Linux, Python 3.11).
//
// What this deploys into one resource group:
//   - a user-assigned managed identity: the app's only identity. Its roles are granted before the app starts, so the
//     first start never races a role assignment;
//   - a Storage account with shared-key access disabled: host storage (blobs, queues), the deployment package
//     container and the sync state (tables, the full-sync queue), all through the identity;
//   - Log Analytics and Application Insights with local (key) authentication disabled;
//   - a Key Vault (RBAC authorization, soft delete and purge protection) holding the Dynamics and Marketo credentials,
//     referenced from the app settings and readable by the app's identity alone;
//   - the Flex Consumption plan (FC1) and the Function App.
//
// App settings: every setting of sync/settings.py is either set here or deliberately left out; tests/unit/test_infra.py
// holds the decision for each setting and fails when the model and this template drift apart.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------------------------------
// Deployment parameters
// ---------------------------------------------------------------------------------------------------------------------

@description('Short name used in every resource name (letters, digits and hyphens).')
@minLength(2)
@maxLength(12)
param appName string = 'mktdyn'

@description('Region of every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Tags applied to every resource.')
param tags object = {
  app: 'marketo-dynamics-sync'
}

@description('Most instances the app scales out to. Kept well below the platform default of 100: every instance calls Dataverse and Marketo, whose API limits are shared.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 20

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Days a deleted Key Vault (and its secrets) can be recovered. Purge protection keeps it for that long.')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionDays int = 90

@description('Days Log Analytics keeps the app logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

// ---------------------------------------------------------------------------------------------------------------------
// App settings of the sync (names in sync/settings.py). Defaults are the settings model's defaults.
// ---------------------------------------------------------------------------------------------------------------------

@description('SYNC_TABLE_PREFIX: prefix of every state table name (letters and digits).')
param syncTablePrefix string = 'sync'

@description('DYNAMICS_URL: organization URL, e.g. https://contoso.crm.dynamics.com')
param dynamicsUrl string

@description('DYNAMICS_TENANT_ID: Entra tenant id of the app registration.')
param dynamicsTenantId string

@description('DYNAMICS_CLIENT_ID: application (client) id of the Entra app registration.')
param dynamicsClientId string

@description('DYNAMICS_AUTHORITY: token authority. The default is this cloud\'s Entra endpoint for the tenant.')
param dynamicsAuthority string = '${environment().authentication.loginEndpoint}${dynamicsTenantId}'

@description('How the app authenticates to Dataverse: with a client secret (DYNAMICS_CLIENT_SECRET) or a certificate (DYNAMICS_CLIENT_CERTIFICATE).')
@allowed([
  'secret'
  'certificate'
])
param dynamicsCredentialType string = 'secret'

@description('The app registration\'s client secret, or, when dynamicsCredentialType is certificate, a PEM holding its certificate and private key. Stored in Key Vault only.')
@secure()
param dynamicsClientCredential string

@description('MARKETO_BASE_URL: REST host, e.g. https://123-ABC-456.mktorest.com')
param marketoBaseUrl string

@description('MARKETO_CLIENT_ID: client id of the LaunchPoint custom service.')
param marketoClientId string

@description('MARKETO_CLIENT_SECRET: client secret of the LaunchPoint custom service. Stored in Key Vault only.')
@secure()
param marketoClientSecret string

@description('MARKETO_DAILY_CALL_BUDGET: most Marketo API calls the sync makes per day.')
@minValue(1)
@maxValue(1000000)
param marketoDailyCallBudget int = 40000

@description('MARKETO_MAX_CONCURRENCY: concurrent Marketo calls from one instance (Marketo allows 10 per subscription).')
@minValue(1)
@maxValue(9)
param marketoMaxConcurrency int = 4

@description('DYNAMICS_PAGE_SIZE: records per Dataverse page (5000 is the most Dataverse serves).')
@minValue(1)
@maxValue(5000)
param dynamicsPageSize int = 5000

@description('SYNC_BULK_IMPORT_THRESHOLD: a full-sync page with at least this many new Marketo persons uses Bulk Import.')
@minValue(1)
param syncBulkImportThreshold int = 1000

@description('SYNC_BULK_EXTRACT_THRESHOLD: a full sync to Dynamics reads Marketo persons by REST when their ids span at most this many, by Bulk Extract otherwise (0: always Bulk Extract).')
@minValue(0)
param syncBulkExtractThreshold int = 25000

@description('SYNC_FULL_SYNC_MESSAGE_SECONDS: a full-sync queue message starts pages (several in flight) until this many seconds have passed, then hands over to the next message (0: a page per message; keep well below the 10-minute function timeout).')
@minValue(0)
@maxValue(540)
param syncFullSyncMessageSeconds int = 240

@description('SYNC_FULL_SYNC_IMPORT_UNIT_PAGES: a full sync to Marketo sends this many consecutive pages of new persons as one Bulk Import with one id export (fewer, larger jobs; more memory held).')
@minValue(1)
@maxValue(8)
param syncFullSyncImportUnitPages int = 7

@description('SYNC_FULL_SYNC_MATCH_INDEX: a first full sync to Marketo matches against one Bulk Extract of every person, a full sync to Dynamics against one paged read of the table (auto: when it costs less than per-page lookups; always; never).')
@allowed([
  'auto'
  'always'
  'never'
])
param syncFullSyncMatchIndex string = 'auto'

@description('SYNC_MAPPING_FILE: field mapping file inside the deployed package, e.g. /home/site/wwwroot/mapping.yaml. Empty: the packaged default mapping.')
param syncMappingFile string = ''

@description('SYNC_SCHEDULE_SYSTEMUSER: NCRONTAB schedule of the users -> sales persons sync.')
param syncScheduleSystemuser string = '0 */1 * * * *'

@description('SYNC_SCHEDULE_TEAM: NCRONTAB schedule of the teams -> sales persons sync.')
param syncScheduleTeam string = '0 */1 * * * *'

@description('SYNC_SCHEDULE_ACCOUNT: NCRONTAB schedule of the accounts -> companies sync.')
param syncScheduleAccount string = '0 */1 * * * *'

@description('SYNC_SCHEDULE_LEAD: NCRONTAB schedule of the lead incremental sync.')
param syncScheduleLead string = '0 */1 * * * *'

@description('SYNC_SCHEDULE_CONTACT: NCRONTAB schedule of the contact incremental sync.')
param syncScheduleContact string = '0 */1 * * * *'

@description('SYNC_SCHEDULE_OPPORTUNITY: NCRONTAB schedule of the opportunities -> Marketo opportunities sync.')
param syncScheduleOpportunity string = '0 */1 * * * *'

@description('SYNC_SCHEDULE_OPPORTUNITYROLE: NCRONTAB schedule of the opportunity contact roles sync.')
param syncScheduleOpportunityrole string = '0 */1 * * * *'

@description('SYNC_SCHEDULE_NEW_PRODUCT: NCRONTAB schedule of the products (new_product) -> product_c custom objects sync.')
param syncScheduleNewProduct string = '0 */1 * * * *'

@description('SYNC_CYCLE_TIME_BUDGET_SECONDS: an incremental cycle stops at a page boundary after this (below the function timeout).')
@minValue(10)
@maxValue(3600)
param syncCycleTimeBudgetSeconds int = 240

@description('SYNC_FULL_SYNC_QUEUE: Storage queue carrying the full sync\'s work messages (created here).')
@minLength(3)
@maxLength(63)
param syncFullSyncQueue string = 'sync-full'

// ---------------------------------------------------------------------------------------------------------------------
// Alerts (Azure Monitor): what the native sync's daily error digest told, as it happens
// ---------------------------------------------------------------------------------------------------------------------

@description('E-mail address the alerts are sent to (the action group\'s one receiver).')
param alertEmail string

@description('Alert when the record errors stored for all streams together exceed this.')
@minValue(0)
param alertRecordErrorsThreshold int = 50

@description('Alert when a stream has had no cycle that read its changes to the end for this many minutes.')
@minValue(5)
@maxValue(1440)
param alertNoSuccessMinutes int = 30

@description('Alert when the sync has made this percentage of MARKETO_DAILY_CALL_BUDGET today (00:00 US Central).')
@minValue(1)
@maxValue(100)
param alertMarketoQuotaPercent int = 90

// ---------------------------------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------------------------------

var token = uniqueString(resourceGroup().id, appName)
var functionAppName = '${appName}-${token}'
var storageAccountName = take('st${toLower(replace(appName, '-', ''))}${token}', 24)
var keyVaultName = take('kv-${appName}-${token}', 24)
var deploymentContainerName = 'app-package'
var dynamicsCredentialSecretName = (dynamicsCredentialType == 'certificate') ? 'dynamics-client-certificate' : 'dynamics-client-secret'

// ---------------------------------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------------------------------

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${functionAppName}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------------------------------
// Storage: host, deployment package and sync state, reachable only with Entra tokens (no account keys).
// ---------------------------------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource fullSyncQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: syncFullSyncQueue
}

// ---------------------------------------------------------------------------------------------------------------------
// Monitoring: Entra-only ingestion (no instrumentation key accepted).
// ---------------------------------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${functionAppName}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${functionAppName}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Key Vault: the credentials, readable by the app's identity alone (RBAC, no access policies).
// ---------------------------------------------------------------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
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
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource dynamicsCredentialSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: dynamicsCredentialSecretName
  tags: tags
  properties: {
    value: dynamicsClientCredential
    contentType: (dynamicsCredentialType == 'certificate') ? 'application/x-pem-file' : 'text/plain'
  }
}

resource marketoClientSecretSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: 'marketo-client-secret'
  tags: tags
  properties: {
    value: marketoClientSecret
    contentType: 'text/plain'
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Role assignments of the app's identity: exactly what it needs, on the resource it needs it for.
// ---------------------------------------------------------------------------------------------------------------------

// Storage Blob Data Owner: host blobs (keys, locks) and the deployment package container.
resource storageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Queue Data Contributor: the full sync's work queue and the host's queue trigger.
resource storageQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Table Data Contributor: the sync state (watermarks, links, snapshots, runs, errors, leases, jobs).
resource storageTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Monitoring Metrics Publisher: telemetry to Application Insights with an Entra token (local auth is off).
resource monitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appIdentity.id, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault Secrets User: read the secret values behind the app's Key Vault references. Nobody else gets a data role.
resource keyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, appIdentity.id, '4633458b-17de-408a-b874-0445c86b69e6')
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// App settings. Secrets appear only as Key Vault references.
// ---------------------------------------------------------------------------------------------------------------------

// Settings the Functions host reads (not part of the sync's settings model, except the two identity-based storage keys).
var hostAppSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: appIdentity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
}

// Settings of the sync, each from its parameter.
var syncAppSettings = {
  SYNC_TABLE_PREFIX: syncTablePrefix
  DYNAMICS_URL: dynamicsUrl
  DYNAMICS_TENANT_ID: dynamicsTenantId
  DYNAMICS_CLIENT_ID: dynamicsClientId
  DYNAMICS_AUTHORITY: dynamicsAuthority
  MARKETO_BASE_URL: marketoBaseUrl
  MARKETO_CLIENT_ID: marketoClientId
  MARKETO_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${marketoClientSecretSecret.properties.secretUri})'
  MARKETO_DAILY_CALL_BUDGET: string(marketoDailyCallBudget)
  MARKETO_MAX_CONCURRENCY: string(marketoMaxConcurrency)
  DYNAMICS_PAGE_SIZE: string(dynamicsPageSize)
  SYNC_BULK_IMPORT_THRESHOLD: string(syncBulkImportThreshold)
  SYNC_BULK_EXTRACT_THRESHOLD: string(syncBulkExtractThreshold)
  SYNC_FULL_SYNC_MESSAGE_SECONDS: string(syncFullSyncMessageSeconds)
  SYNC_FULL_SYNC_IMPORT_UNIT_PAGES: string(syncFullSyncImportUnitPages)
  SYNC_FULL_SYNC_MATCH_INDEX: syncFullSyncMatchIndex
  SYNC_SCHEDULE_SYSTEMUSER: syncScheduleSystemuser
  SYNC_SCHEDULE_TEAM: syncScheduleTeam
  SYNC_SCHEDULE_ACCOUNT: syncScheduleAccount
  SYNC_SCHEDULE_LEAD: syncScheduleLead
  SYNC_SCHEDULE_CONTACT: syncScheduleContact
  SYNC_SCHEDULE_OPPORTUNITY: syncScheduleOpportunity
  SYNC_SCHEDULE_OPPORTUNITYROLE: syncScheduleOpportunityrole
  SYNC_SCHEDULE_NEW_PRODUCT: syncScheduleNewProduct
  SYNC_CYCLE_TIME_BUDGET_SECONDS: string(syncCycleTimeBudgetSeconds)
  SYNC_FULL_SYNC_QUEUE: fullSyncQueue.name
}

// Exactly one Dataverse credential, by dynamicsCredentialType.
var dynamicsCredentialReference = '@Microsoft.KeyVault(SecretUri=${dynamicsCredentialSecret.properties.secretUri})'
var dynamicsCredentialAppSettings = (dynamicsCredentialType == 'certificate') ? { DYNAMICS_CLIENT_CERTIFICATE: dynamicsCredentialReference } : { DYNAMICS_CLIENT_SECRET: dynamicsCredentialReference }

// Optional settings, set only when their parameter is given (an empty value would fail validation at start).
var optionalAppSettings = empty(syncMappingFile) ? {} : { SYNC_MAPPING_FILE: syncMappingFile }

// ---------------------------------------------------------------------------------------------------------------------
// Flex Consumption plan and Function App
// ---------------------------------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${functionAppName}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: appIdentity.id
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    // The host must be able to reach storage, telemetry and the vault from its first start.
    storageBlobDataOwner
    storageQueueDataContributor
    storageTableDataContributor
    monitoringMetricsPublisher
    keyVaultSecretsUser
  ]
}

// The whole app settings collection (this resource replaces it on every deployment).
resource functionAppSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: union(hostAppSettings, syncAppSettings, dynamicsCredentialAppSettings, optionalAppSettings)
}

// ---------------------------------------------------------------------------------------------------------------------
// Alerts: log search rules over the app's SYNC_CYCLE and SYNC_FULL_SYNC trace lines (sync/metrics.py), one action
// group that e-mails the operator.
// ---------------------------------------------------------------------------------------------------------------------

resource alertActionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${functionAppName}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take('sync-${appName}', 12)
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// The latest record_errors of each stream, summed.
var recordErrorsQuery = 'traces | where message startswith "SYNC_CYCLE " | extend stream = extract("stream=([^ ]+)", 1, message), record_errors = toint(extract("record_errors=([0-9]+)", 1, message)) | summarize arg_max(timestamp, record_errors) by stream | summarize record_errors = sum(record_errors)'
// Streams seen in the last day whose newest complete, not failed cycle is older than alertNoSuccessMinutes.
var noSuccessQuery = 'traces | where message startswith "SYNC_CYCLE " | extend stream = extract("stream=([^ ]+)", 1, message), outcome = extract("outcome=([^ ]+)", 1, message), complete = extract("complete=([^ ]+)", 1, message) | summarize last_success = maxif(timestamp, complete == "true" and outcome in ("succeeded", "partial")) by stream | where isnull(last_success) or last_success < ago(${alertNoSuccessMinutes}m)'
var fullSyncFailedQuery = 'traces | where message startswith "SYNC_FULL_SYNC " | extend job = extract("job=([^ ]+)", 1, message), state = extract("state=([^ ]+)", 1, message) | where state == "failed" | distinct job'
// Marketo's day starts at 00:00 US Central, when its quota resets.
var marketoCallsQuery = 'let day_start = datetime_local_to_utc(startofday(datetime_utc_to_local(now(), "US/Central")), "US/Central"); traces | where timestamp >= day_start | where message startswith "SYNC_CYCLE " or message startswith "SYNC_FULL_SYNC " | summarize marketo_calls = sum(toint(extract("marketo_calls=([0-9]+)", 1, message)))'

resource alertRecordErrors 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-${functionAppName}-record-errors'
  location: location
  tags: tags
  properties: {
    displayName: 'Sync: record errors above ${alertRecordErrorsThreshold}'
    description: 'The record errors stored for all streams exceed the threshold: see GET /api/sync/errors or the status page.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT6H'
    criteria: {
      allOf: [
        {
          query: recordErrorsQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'record_errors'
          operator: 'GreaterThan'
          threshold: alertRecordErrorsThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        alertActionGroup.id
      ]
    }
  }
}

resource alertNoSuccessfulCycle 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-${functionAppName}-no-successful-cycle'
  location: location
  tags: tags
  properties: {
    displayName: 'Sync: a stream had no successful cycle for ${alertNoSuccessMinutes} minutes'
    description: 'A stream seen in the last day has not read its changes to the end for the set minutes: data is not flowing.'
    severity: 1
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: noSuccessQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        alertActionGroup.id
      ]
    }
  }
}

resource alertFullSyncFailed 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-${functionAppName}-full-sync-failed'
  location: location
  tags: tags
  properties: {
    displayName: 'Sync: a full sync failed'
    description: 'A full-sync job ended failed: GET /api/sync/jobs/{jobId} says why.'
    severity: 1
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: fullSyncFailedQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        alertActionGroup.id
      ]
    }
  }
}

resource alertMarketoQuota 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-${functionAppName}-marketo-quota'
  location: location
  tags: tags
  properties: {
    displayName: 'Sync: ${alertMarketoQuotaPercent}% of the Marketo call budget spent today'
    description: 'The sync made most of MARKETO_DAILY_CALL_BUDGET today; at the budget it stops until 00:00 US Central.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: marketoCallsQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'marketo_calls'
          operator: 'GreaterThanOrEqual'
          threshold: (marketoDailyCallBudget * alertMarketoQuotaPercent) / 100
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        alertActionGroup.id
      ]
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Outputs (names only; no secret)
// ---------------------------------------------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output storageAccountName string = storage.name
output keyVaultName string = keyVault.name
output appIdentityClientId string = appIdentity.properties.clientId
output appInsightsName string = appInsights.name

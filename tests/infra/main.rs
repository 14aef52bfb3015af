//! The Azure deployment (infra/, azure.yaml) agrees with the code. No Bicep
//! compiler can run here, so every .bicep file is parsed with a real Bicep
//! grammar (a syntax error fails), and the parsed templates are compared
//! with the facts the code defines once: the Cosmos containers and their
//! TTLs, the settings the handler reads, the Stripe webhook route, and the
//! built-in role ids.

mod bicep;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bicep::{Declaration, Expr, Template};
use kraftd_billing::config::AZURE_REQUIRED_SETTINGS;
use kraftd_billing::http::routes::{
    CHANGE_FEED_FUNCTIONS, COSMOS_CONNECTION, COSMOS_DATABASE, HTTP_FUNCTIONS, LEASES_CONTAINER,
};
use kraftd_billing::secrets::VAULT_SECRETS;
use kraftd_billing::store::cosmos::layout::{CONTAINERS, DEFAULT_DATABASE};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn infra(file: &str) -> Template {
    bicep::load(&root().join("infra").join(file))
}

fn bicep_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bicep_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "bicep") {
            out.push(path);
        }
    }
}

fn all_bicep_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    bicep_files(&root().join("infra"), &mut files);
    files.sort();
    files
}

fn role_assignments(t: &Template) -> Vec<&Declaration> {
    t.resources_of("Microsoft.Authorization/roleAssignments")
}

#[test]
fn every_bicep_file_parses_with_the_bicep_grammar() {
    let files = all_bicep_files();
    assert!(files.len() >= 8, "infra/ has its templates: {files:?}");
    for file in files {
        bicep::load(&file);
    }
}

#[test]
fn the_grammar_reports_syntax_errors_with_their_position() {
    // The check above can fail: a missing value and an unclosed object are
    // both reported, with line and column.
    let errors = bicep::syntax_errors(
        "param location string\n\nresource plan 'Microsoft.Web/serverfarms@2024-04-01' = {\n  name: \n  location: location\n",
    );
    assert!(!errors.is_empty());
    assert!(errors.iter().all(|e| e.contains(':')), "{errors:?}");
    assert!(bicep::syntax_errors("var x = {\n  a: 1\n}\n").is_empty());
}

#[test]
fn every_container_the_store_uses_exists_with_its_partition_key_and_ttl() {
    let cosmos = infra("modules/cosmos.bicep");
    let in_bicep: BTreeMap<&str, (&str, Option<i64>)> = cosmos
        .var("containers")
        .items()
        .iter()
        .map(|c| {
            let ttl = match c.get("defaultTtl") {
                Expr::Null => None,
                Expr::Int(n) => Some(*n),
                other => panic!("defaultTtl must be a literal, not {other:?}"),
            };
            (c.get("name").str(), (c.get("partitionKey").str(), ttl))
        })
        .collect();
    let in_code: BTreeMap<&str, (&str, Option<i64>)> = CONTAINERS
        .iter()
        .map(|c| (c.name, (c.partition_key, c.default_ttl.as_cosmos())))
        .collect();
    assert_eq!(in_bicep, in_code, "infra/modules/cosmos.bicep vs layout.rs");
    assert_eq!(cosmos.var("containers").items().len(), CONTAINERS.len());

    // The change feed's container and its leases are among them.
    for f in CHANGE_FEED_FUNCTIONS {
        assert!(in_bicep.contains_key(f.container), "{}", f.container);
    }
    assert!(in_bicep.contains_key(LEASES_CONTAINER));

    // One container resource per entry, built from the entry's fields.
    let container =
        cosmos.resource_of("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers");
    let (item, source) = container.each.as_ref().expect("a loop over the table");
    assert_eq!(source, "containers");
    let field = |f: &str| Expr::Source(format!("{item}.{f}"));
    assert_eq!(container.body.get("name"), &field("name"));
    let resource = container.body.at("properties.resource");
    assert_eq!(resource.get("id"), &field("name"));
    assert_eq!(
        resource.at("partitionKey.paths"),
        &Expr::Array(vec![field("partitionKey")])
    );
    assert_eq!(resource.get("defaultTtl"), &field("defaultTtl"));
    assert_eq!(
        container.body.get("parent"),
        &Expr::Source("database".into())
    );
}

#[test]
fn the_database_is_the_one_the_store_and_the_trigger_use() {
    let main = infra("main.bicep");
    assert_eq!(main.var("cosmosDatabase").str(), DEFAULT_DATABASE);
    // The trigger reads the same app setting as the store.
    assert_eq!(COSMOS_DATABASE, "%COSMOS_DATABASE%");
    let uses = |module: &str, param: &str| main.module(module).body.at("params").get(param).clone();
    assert_eq!(uses("cosmos", "databaseName").source(), "cosmosDatabase");
    assert_eq!(uses("app", "cosmosDatabase").source(), "cosmosDatabase");
    let cosmos = infra("modules/cosmos.bicep");
    let database = cosmos.resource_of("Microsoft.DocumentDB/databaseAccounts/sqlDatabases");
    assert_eq!(database.body.get("name").source(), "databaseName");
}

#[test]
fn every_setting_the_handler_needs_in_azure_is_set() {
    let function = infra("modules/function.bicep");
    let settings = function.var("handlerSettings");
    let set: BTreeSet<&str> = settings.keys().into_iter().collect();
    let required: BTreeSet<&str> = AZURE_REQUIRED_SETTINGS.iter().copied().collect();
    assert_eq!(
        set, required,
        "handlerSettings vs config::AZURE_REQUIRED_SETTINGS"
    );

    let value = |name: &str| settings.get(name);
    assert_eq!(value("STORE").str(), "cosmos");
    assert_eq!(value("LOG_FORMAT").str(), "json");
    assert_eq!(value("COSMOS__credential").str(), "managedidentity");
    for name in ["COSMOS__clientId", "AZURE_CLIENT_ID"] {
        assert_eq!(value(name).source(), "identityClientId", "{name}");
    }
    assert_eq!(value("COSMOS__accountEndpoint").source(), "cosmosEndpoint");
    assert_eq!(value("COSMOS_DATABASE").source(), "cosmosDatabase");
    assert_eq!(value("KEY_VAULT_URL").source(), "keyVaultUri");
    assert_eq!(value("CORS_ALLOWED_ORIGINS").source(), "corsAllowedOrigins");
    // The change-feed trigger's connection is the same `COSMOS__*` settings.
    for name in set.iter().filter(|n| n.contains("__")) {
        assert!(
            name.starts_with(&format!("{COSMOS_CONNECTION}__")),
            "{name}"
        );
    }

    // Stripe's secrets are Key Vault references, under the names the
    // handler reads from the vault.
    let secret_of: BTreeMap<&str, &str> = VAULT_SECRETS.iter().copied().collect();
    for name in ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"] {
        assert_eq!(
            value(name).source(),
            format!(
                "'@Microsoft.KeyVault(SecretUri=${{keyVaultUri}}secrets/{}/)'",
                secret_of[name]
            ),
            "{name}"
        );
    }
    // No other secret is a setting: the rest come from the vault at start.
    for (name, _) in VAULT_SECRETS {
        if !name.starts_with("STRIPE_") {
            assert!(
                settings.find(name).is_none(),
                "{name} would be a plain setting"
            );
        }
    }

    // Every plan gets the handler's settings and the host's.
    assert_eq!(
        function.var("appSettings").source(),
        "union(handlerSettings, hostSettings, flex ? {} : premiumSettings)"
    );
    let site = function.resource_of("Microsoft.Web/sites");
    assert_eq!(
        site.body.at("properties.siteConfig.appSettings").source(),
        "[for s in items(appSettings): { name: s.key, value: s.value }]"
    );
}

#[test]
fn the_host_reaches_storage_and_telemetry_with_the_identity() {
    let function = infra("modules/function.bicep");
    let host = function.var("hostSettings");
    assert_eq!(
        host.get("AzureWebJobsStorage__credential").str(),
        "managedidentity"
    );
    assert_eq!(
        host.get("AzureWebJobsStorage__clientId").source(),
        "identityClientId"
    );
    for service in ["blob", "queue", "table"] {
        assert_eq!(
            host.get(&format!("AzureWebJobsStorage__{service}ServiceUri"))
                .source(),
            format!("{service}Endpoint")
        );
    }
    assert!(
        host.find("AzureWebJobsStorage").is_none(),
        "no connection string"
    );
    assert_eq!(
        host.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
            .source(),
        "'ClientId=${identityClientId};Authorization=AAD'"
    );

    // The site runs as the identity and resolves Key Vault references with it.
    let site = function.resource_of("Microsoft.Web/sites");
    assert_eq!(site.body.at("identity.type").str(), "UserAssigned");
    assert_eq!(
        site.body
            .at("properties.keyVaultReferenceIdentity")
            .source(),
        "identityId"
    );
    assert_eq!(
        site.body.at("tags").source(),
        "union(tags, { 'azd-service-name': 'api' })"
    );
}

#[test]
fn flex_consumption_is_the_default_plan_and_elastic_premium_the_alternative() {
    let function = infra("modules/function.bicep");
    let plan = function.param("plan");
    assert_eq!(plan.allowed(), ["FlexConsumption", "ElasticPremium"]);
    assert_eq!(plan.default, Some(Expr::Str("FlexConsumption".into())));
    let main = infra("main.bicep");
    assert_eq!(main.param("functionPlan").allowed(), plan.allowed());
    assert_eq!(main.param("functionPlan").default, plan.default);
    assert_eq!(
        main.module("app").body.at("params.plan").source(),
        "functionPlan"
    );

    let server_farm = function.resource_of("Microsoft.Web/serverfarms");
    let Expr::Ternary {
        then, otherwise, ..
    } = server_farm.body.get("sku")
    else {
        panic!("the SKU follows the plan");
    };
    assert_eq!(
        (then.get("name").str(), then.get("tier").str()),
        ("FC1", "FlexConsumption")
    );
    assert_eq!(
        (otherwise.get("name").str(), otherwise.get("tier").str()),
        ("EP1", "ElasticPremium")
    );
    assert_eq!(
        server_farm.body.at("properties.reserved"),
        &Expr::Bool(true)
    );

    // Flex: the custom runtime and the package container, reached with the identity.
    let site = function.resource_of("Microsoft.Web/sites");
    let Expr::Ternary {
        then: flex,
        otherwise: premium,
        ..
    } = site.body.at("properties.functionAppConfig")
    else {
        panic!("functionAppConfig is for Flex only");
    };
    assert_eq!(premium.as_ref(), &Expr::Null);
    assert_eq!(flex.at("runtime.name").str(), "custom");
    assert_eq!(flex.at("deployment.storage.type").str(), "blobContainer");
    assert_eq!(
        flex.at("deployment.storage.authentication.type").str(),
        "UserAssignedIdentity"
    );

    // Elastic Premium: the settings Flex refuses.
    let premium = function.var("premiumSettings");
    assert_eq!(premium.get("FUNCTIONS_WORKER_RUNTIME").str(), "custom");
    assert_eq!(premium.get("FUNCTIONS_EXTENSION_VERSION").str(), "~4");
    assert!(premium
        .find("WEBSITE_CONTENTAZUREFILECONNECTIONSTRING")
        .is_none());
}

#[test]
fn local_auth_is_off_wherever_azure_allows_it() {
    let storage = infra("modules/storage.bicep");
    let account = storage.resource_of("Microsoft.Storage/storageAccounts");
    assert_eq!(
        account.body.at("properties.allowSharedKeyAccess"),
        &Expr::Bool(false)
    );
    assert_eq!(
        account.body.at("properties.allowBlobPublicAccess"),
        &Expr::Bool(false)
    );

    let cosmos = infra("modules/cosmos.bicep");
    let account = cosmos.resource_of("Microsoft.DocumentDB/databaseAccounts");
    assert_eq!(
        account.body.at("properties.disableLocalAuth"),
        &Expr::Bool(true)
    );
    assert_eq!(
        account
            .body
            .at("properties.disableKeyBasedMetadataWriteAccess"),
        &Expr::Bool(true)
    );

    let monitoring = infra("modules/monitoring.bicep");
    let insights = monitoring.resource_of("Microsoft.Insights/components");
    assert_eq!(
        insights.body.at("properties.DisableLocalAuth"),
        &Expr::Bool(true)
    );

    let vault = infra("modules/keyvault.bicep");
    let kv = vault.resource_of("Microsoft.KeyVault/vaults");
    assert_eq!(
        kv.body.at("properties.enableRbacAuthorization"),
        &Expr::Bool(true)
    );

    let function = infra("modules/function.bicep");
    let policies = function.resources_of("Microsoft.Web/sites/basicPublishingCredentialsPolicies");
    let names: BTreeSet<&str> = policies.iter().map(|p| p.body.get("name").str()).collect();
    assert_eq!(names, BTreeSet::from(["ftp", "scm"]));
    for p in policies {
        assert_eq!(p.body.at("properties.allow"), &Expr::Bool(false));
    }

    // No template reads or passes a key.
    for file in all_bicep_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for needle in [
            "listKeys(",
            "AccountKey=",
            "primaryMasterKey",
            "InstrumentationKey=",
            "@secure()",
        ] {
            assert!(!text.contains(needle), "{} uses {needle}", file.display());
        }
    }
}

/// Microsoft's built-in role ids, from the Azure built-in roles reference
/// (learn.microsoft.com/azure/role-based-access-control/built-in-roles:
/// storage, monitor and security pages) and, for Cosmos DB, the data-plane
/// RBAC reference (Cosmos DB Built-in Data Contributor).
const AZURE_ROLES: &[(&str, &str)] = &[
    (
        "storageBlobDataOwner",
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    ),
    (
        "storageQueueDataContributor",
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    ),
    (
        "storageTableDataContributor",
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    ),
    (
        "monitoringMetricsPublisher",
        "3913510d-42f4-4e42-8a64-420c390055eb",
    ),
    (
        "keyVaultSecretsUser",
        "4633458b-17de-408a-b874-0445c86b69e6",
    ),
    (
        "keyVaultSecretsOfficer",
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    ),
];
const COSMOS_DATA_CONTRIBUTOR: &str = "00000000-0000-0000-0000-000000000002";

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn role_ids_are_the_built_in_ones_and_defined_once() {
    let roles = infra("modules/roles.bicep");
    let azure: Vec<(&str, &str)> = roles
        .var("azureRoles")
        .keys()
        .into_iter()
        .map(|k| (k, roles.var("azureRoles").get(k).str()))
        .collect();
    assert_eq!(azure, AZURE_ROLES);
    assert_eq!(
        roles.var("cosmosRoles").get("dataContributor").str(),
        COSMOS_DATA_CONTRIBUTOR
    );

    // Only roles.bicep spells a GUID.
    for file in all_bicep_files() {
        if file.ends_with("modules/roles.bicep") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let words = text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'));
        assert!(
            !words.clone().any(is_guid),
            "{} spells a GUID; name it in roles.bicep",
            file.display()
        );
    }
}

/// The roles each module grants, read from its role assignments.
fn granted(t: &Template) -> Vec<String> {
    let mut out = Vec::new();
    for a in role_assignments(t) {
        let id = a.body.at("properties.roleDefinitionId").source();
        let role = id
            .strip_prefix("subscriptionResourceId('Microsoft.Authorization/roleDefinitions', ")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("role by id only: {id}"));
        match &a.each {
            // A loop over a list of roles.
            Some((item, list)) if role == item => {
                out.extend(t.var(list).items().iter().map(|r| r.source().to_owned()))
            }
            _ => out.push(role.to_owned()),
        }
        // On the one resource, never the resource group or the subscription.
        assert!(!a.body.get("scope").source().contains('('), "{}", a.symbol);
    }
    out
}

#[test]
fn the_identity_holds_the_roles_each_service_needs() {
    let roles = |file: &str| granted(&infra(file));
    assert_eq!(
        roles("modules/storage.bicep"),
        [
            "azureRoles.storageBlobDataOwner",
            "azureRoles.storageQueueDataContributor",
            "azureRoles.storageTableDataContributor"
        ]
    );
    assert_eq!(
        roles("modules/monitoring.bicep"),
        ["azureRoles.monitoringMetricsPublisher"]
    );
    assert_eq!(
        roles("modules/keyvault.bicep"),
        [
            "azureRoles.keyVaultSecretsUser",
            "azureRoles.keyVaultSecretsOfficer"
        ]
    );
    // The engineer's Secrets Officer role only when azd names one.
    let vault = infra("modules/keyvault.bicep");
    let officer = &role_assignments(&vault)[1];
    assert_eq!(
        officer.condition.as_deref(),
        Some("!empty(operatorPrincipalId)")
    );

    // Cosmos DB data access is a Cosmos SQL role assignment on the account.
    let cosmos = infra("modules/cosmos.bicep");
    let sql = cosmos.resource_of("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments");
    assert_eq!(
        sql.body.at("properties.roleDefinitionId").source(),
        "'${account.id}/sqlRoleDefinitions/${cosmosRoles.dataContributor}'"
    );
    assert_eq!(sql.body.at("properties.scope").source(), "account.id");
    assert_eq!(
        sql.body.at("properties.principalId").source(),
        "appPrincipalId"
    );

    // Each module that names a role imports the one table.
    for file in ["storage", "monitoring", "keyvault", "cosmos"] {
        let t = infra(&format!("modules/{file}.bicep"));
        assert!(
            t.imports.iter().all(|(_, from)| from == "roles.bicep"),
            "{file}: {:?}",
            t.imports
        );
        assert_eq!(t.imports.len(), 1, "{file}");
    }
}

#[test]
fn modules_get_exactly_the_params_they_declare() {
    let main = infra("main.bicep");
    for module in &main.modules {
        let file = module.target.as_str();
        let template = infra(file);
        let given: BTreeSet<&str> = module.body.get("params").keys().into_iter().collect();
        let declared: BTreeSet<&str> = template.params.keys().map(String::as_str).collect();
        let required: BTreeSet<&str> = template
            .params
            .iter()
            .filter(|(_, p)| p.default.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(
            given.is_subset(&declared),
            "{file}: unknown {:?}",
            given.difference(&declared)
        );
        assert!(
            required.is_subset(&given),
            "{file}: missing {:?}",
            required.difference(&given)
        );
        assert_eq!(module.body.get("scope").source(), "rg", "{file}");
    }

    // azd fills main.parameters.json from its environment.
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("infra/main.parameters.json")).unwrap(),
    )
    .unwrap();
    let given: BTreeSet<&str> = json["parameters"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let declared: BTreeSet<&str> = main.params.keys().map(String::as_str).collect();
    assert!(
        given.is_subset(&declared),
        "{:?}",
        given.difference(&declared)
    );
    for (name, p) in &main.params {
        assert!(
            p.default.is_some() || given.contains(name.as_str()),
            "{name} has no value"
        );
    }
}

#[test]
fn outputs_name_the_app_the_stripe_webhook_and_the_vault() {
    let main = infra("main.bicep");
    let webhook = HTTP_FUNCTIONS
        .iter()
        .find(|f| f.name == "StripeWebhook")
        .expect("the route table has the Stripe webhook");
    assert_eq!(main.var("stripeWebhookPath").str(), webhook.path());
    assert_eq!(main.outputs["FUNCTION_APP_URL"].source(), "app.outputs.url");
    assert_eq!(
        main.outputs["STRIPE_WEBHOOK_URL"].source(),
        "'${app.outputs.url}${stripeWebhookPath}'"
    );
    assert_eq!(
        main.outputs["KEY_VAULT_NAME"].source(),
        "vault.outputs.name"
    );
}

#[test]
fn azd_provisions_infra_and_deploys_the_package() {
    let yaml = std::fs::read_to_string(root().join("azure.yaml")).unwrap();
    let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
    for line in [
        "provider: bicep",
        "path: infra",
        "module: main",
        "host: function",
        "language: custom",
        "dist: dist/package",
        "run: scripts/package",
    ] {
        assert!(lines.contains(&line), "azure.yaml lacks `{line}`");
    }
    // The service azd deploys is the site the templates tag.
    assert!(lines.contains(&"api:"));
    assert!(
        std::fs::read_to_string(root().join("infra/modules/function.bicep"))
            .unwrap()
            .contains("'azd-service-name': 'api'")
    );
}

#[test]
fn the_deploy_guide_registers_every_handled_event_and_sets_every_secret() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let deploy = readme
        .split("\n## Deploy\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a Deploy section");

    let registered: BTreeSet<&str> = deploy
        .split("enabled_events[]=")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    let handled: BTreeSet<&str> = kraftd_billing::app::handled_event_types().collect();
    assert_eq!(registered, handled, "the webhook endpoint's events");

    for (_, secret) in VAULT_SECRETS {
        assert!(
            deploy.contains(&format!("set_secret {secret}")),
            "the guide sets {secret}"
        );
    }
}

/// The alert rules parse the reconcile timer's line as the code writes it:
/// the same `name=` fields in the same order, every signal with a rule.
#[test]
fn the_alert_rules_read_the_health_line_the_code_writes() {
    use kraftd_billing::app::health::log_line;
    use kraftd_billing::domain::health::assess;

    let alerts = infra("modules/alerts.bicep");
    let query = alerts.var("healthLine").str();
    let healthy = log_line(&assess(chrono::Utc::now(), Some(&[]), 0, &[]));
    let (prefix, fields) = healthy.split_once(": ").unwrap();
    assert!(
        query.contains(&format!("message startswith \"{prefix}: \"")),
        "{query}"
    );
    let written: Vec<&str> = fields
        .split(' ')
        .map(|f| f.split_once('=').unwrap().0)
        .collect();
    let parsed: Vec<&str> = query
        .split('"')
        .filter_map(|piece| piece.trim().strip_suffix('='))
        .collect();
    assert_eq!(parsed, written);
    let rules = alerts
        .resources
        .iter()
        .find(|r| r.symbol == "alerts")
        .expect("the alert rules");
    assert_eq!(
        rules.each,
        Some(("rule".to_owned(), "rules".to_owned())),
        "one scheduled query per rule"
    );
    assert!(rules
        .target
        .starts_with("Microsoft.Insights/scheduledQueryRules@"));
    let names: Vec<String> = alerts
        .var("rules")
        .items()
        .iter()
        .map(|r| r.get("name").str().to_owned())
        .collect();
    for signal in ["webhooks", "subscriptions", "emails", "events"] {
        assert!(
            names.iter().any(|n| n.starts_with(signal)),
            "no rule for {signal}: {names:?}"
        );
    }
    assert!(names.iter().any(|n| n == "health-line-missing"));
}

//! The deployment files agree with the code: every function.json is what
//! the route table generates, and host.json, every function.json and
//! local.settings.json.example satisfy SchemaStore's schemas.

use std::path::Path;

use kraftd_billing::config::SETTINGS;
use kraftd_billing::functions as manifest;
use kraftd_billing::http::routes::{
    CHANGE_FEED_FUNCTIONS, HTTP_FUNCTIONS, LEASES_CONTAINER, TIMER_FUNCTIONS,
};
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn validator(name: &str) -> jsonschema::Validator {
    let schema = read_json(&root().join("tests/schemas/azure-functions").join(name));
    // function.json's schema says draft-04 but is only correct as draft-07.
    jsonschema::draft7::new(&schema).expect("SchemaStore schema compiles")
}

fn assert_valid(v: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what} violates its schema: {errors:#?}");
}

#[test]
fn committed_function_folders_are_exactly_what_the_route_table_generates() {
    let drift = manifest::drift(&root().join("functions")).unwrap();
    assert!(
        drift.is_empty(),
        "functions/ differs from the route table ({drift:?}); run `cargo run --bin handler -- functions write`"
    );
}

#[test]
fn drift_is_detected_in_every_direction() {
    let dir = tempfile::tempdir().unwrap();
    manifest::write(dir.path()).unwrap();
    assert!(manifest::drift(dir.path()).unwrap().is_empty());

    let plans = dir.path().join("ListPlans/function.json");
    std::fs::write(
        &plans,
        std::fs::read_to_string(&plans)
            .unwrap()
            .replace("\"get\"", "\"post\""),
    )
    .unwrap();
    std::fs::remove_dir_all(dir.path().join("Login")).unwrap();
    std::fs::create_dir_all(dir.path().join("OldFunction")).unwrap();
    std::fs::write(dir.path().join("OldFunction/function.json"), "{}").unwrap();
    assert_eq!(
        manifest::drift(dir.path()).unwrap(),
        ["differs ListPlans", "missing Login", "stale OldFunction"]
    );
    manifest::write(dir.path()).unwrap();
    assert!(manifest::drift(dir.path()).unwrap().is_empty());
}

#[test]
fn every_http_function_has_one_trigger_and_one_http_output_for_forwarding() {
    for f in HTTP_FUNCTIONS {
        let json = read_json(&root().join("functions").join(f.name).join("function.json"));
        let bindings = json["bindings"].as_array().unwrap();
        assert_eq!(bindings.len(), 2, "{}", f.name);
        assert_eq!(bindings[0]["type"], "httpTrigger");
        assert_eq!(bindings[0]["direction"], "in");
        assert_eq!(bindings[0]["route"], f.route);
        assert_eq!(bindings[1]["type"], "http");
        assert_eq!(bindings[1]["direction"], "out");
        assert!(
            !f.route.starts_with('/') && !f.route.starts_with("api/"),
            "{}: routes sit below the prefix",
            f.name
        );
    }
}

#[test]
fn function_names_and_routes_are_unique() {
    // Two functions may share a route with different methods (DELETE and
    // PATCH of a member), never a route and a method.
    let mut names: Vec<_> = HTTP_FUNCTIONS.iter().map(|f| f.name).collect();
    let mut routes: Vec<_> = HTTP_FUNCTIONS
        .iter()
        .flat_map(|f| f.methods.iter().map(move |m| (f.route, m.as_str())))
        .collect();
    names.sort();
    routes.sort();
    let (n, r) = (names.len(), routes.len());
    names.dedup();
    routes.dedup();
    assert_eq!((names.len(), routes.len()), (n, r));
}

#[test]
fn every_function_json_satisfies_the_schema() {
    let v = validator("function.json");
    for name in manifest::generate().keys() {
        let path = root().join("functions").join(name).join("function.json");
        assert_valid(&v, &read_json(&path), name);
    }
}

#[test]
fn timer_functions_are_timer_triggers_with_a_retry_policy() {
    for f in TIMER_FUNCTIONS {
        let json = read_json(&root().join("functions").join(f.name).join("function.json"));
        let bindings = json["bindings"].as_array().unwrap();
        assert_eq!(bindings.len(), 1, "{}", f.name);
        assert_eq!(bindings[0]["type"], "timerTrigger");
        assert_eq!(bindings[0]["schedule"], f.schedule);
        assert_eq!(f.schedule.split(' ').count(), 6, "NCRONTAB with seconds");
        assert!(json["retry"]["maxRetryCount"].as_i64().unwrap() > 0);
    }
}

#[test]
fn the_function_schema_is_strict_enough_to_catch_mistakes() {
    // Guards the draft-07 choice: a capitalised authLevel must be refused.
    let v = validator("function.json");
    let bad: Value = serde_json::from_str(
        r#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"Anonymous"}]}"#,
    )
    .unwrap();
    assert!(!v.is_valid(&bad));
}

#[test]
fn host_json_satisfies_the_schema_and_configures_the_custom_handler() {
    let host = read_json(&root().join("host.json"));
    assert_valid(&validator("host.json"), &host, "host.json");
    assert_eq!(host["version"], "2.0");
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(
        host["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
    assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    assert_eq!(
        host["extensions"]["http"]["routePrefix"],
        manifest::ROUTE_PREFIX
    );
}

#[test]
fn local_settings_example_satisfies_the_schema_and_lists_every_setting() {
    let example = read_json(&root().join("local.settings.json.example"));
    assert_valid(
        &validator("local.settings.json"),
        &example,
        "local.settings.json.example",
    );
    let text = std::fs::read_to_string(root().join("local.settings.json.example")).unwrap();
    assert_eq!(
        text,
        manifest::local_settings_example(),
        "local.settings.json.example is stale: run `cargo run --bin handler -- functions write`"
    );
    let values = example["Values"].as_object().unwrap();
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    for (name, value) in SETTINGS {
        assert_eq!(
            values.get(*name).and_then(Value::as_str),
            Some(*value),
            "{name}"
        );
    }
    let known: Vec<&str> = SETTINGS.iter().map(|(n, _)| *n).collect();
    for name in values.keys() {
        assert!(
            known.contains(&name.as_str())
                || ["FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"].contains(&name.as_str()),
            "{name} is listed but the handler never reads it"
        );
    }
    // The example must start: its values are a valid configuration.
    let lookup = |k: &str| values.get(k).and_then(Value::as_str).map(str::to_owned);
    kraftd_billing::config::Config::from_lookup(lookup)
        .expect("the example configuration is valid");
}

#[test]
fn readme_lists_every_function_and_setting() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for f in HTTP_FUNCTIONS {
        assert!(
            readme.contains(&format!("`{}`", f.name)),
            "README misses function {}",
            f.name
        );
        assert!(
            readme.contains(&f.path()),
            "README misses route {}",
            f.path()
        );
    }
    let others = TIMER_FUNCTIONS
        .iter()
        .map(|f| f.name)
        .chain(CHANGE_FEED_FUNCTIONS.iter().map(|f| f.name));
    for name in others {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README misses function {name}"
        );
    }
    for (name, _) in SETTINGS {
        assert!(readme.contains(name), "README misses setting {name}");
    }
}

#[test]
fn change_feed_functions_name_their_container_and_a_lease_prefix_of_their_own() {
    // SchemaStore does not model cosmosDBTrigger: its fields are checked here.
    let mut prefixes = Vec::new();
    for f in CHANGE_FEED_FUNCTIONS {
        let json = read_json(&root().join("functions").join(f.name).join("function.json"));
        let b = &json["bindings"][0];
        assert_eq!(b["type"], "cosmosDBTrigger");
        assert_eq!(b["direction"], "in");
        assert_eq!(b["containerName"], f.container);
        assert_eq!(b["leaseContainerName"], LEASES_CONTAINER);
        assert_eq!(
            b["createLeaseContainerIfNotExists"], false,
            "managed identity cannot create it"
        );
        for field in ["connection", "databaseName", "leaseContainerPrefix"] {
            assert!(
                b[field].as_str().is_some_and(|v| !v.is_empty()),
                "{}: {field}",
                f.name
            );
        }
        prefixes.push(f.lease_prefix);
    }
    let n = prefixes.len();
    prefixes.dedup();
    assert_eq!(
        prefixes.len(),
        n,
        "functions on one lease container need distinct prefixes"
    );
}

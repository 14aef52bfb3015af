//! The Functions host's view of the route table: generates each function's
//! `function.json` (and `local.settings.json.example`) from `http::routes`
//! and compares the committed files with it. It only reads the table.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde_json::{json, Value};

use crate::http::routes::{
    ChangeFeedFunction, HttpFunction, TimerFunction, CHANGE_FEED_FUNCTIONS, COSMOS_CONNECTION,
    COSMOS_DATABASE, HTTP_FUNCTIONS, LEASES_CONTAINER, TIMER_FUNCTIONS,
};

pub use crate::http::routes::ROUTE_PREFIX;

/// One httpTrigger in and one http out: the shape for which the host
/// forwards the request unchanged (raw body, original path and headers).
pub fn http_function_json(f: &HttpFunction) -> Value {
    json!({
        "bindings": [
            {
                "type": "httpTrigger",
                "direction": "in",
                "name": "req",
                "authLevel": f.auth_level.as_str(),
                "methods": f.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                "route": f.route,
            },
            { "type": "http", "direction": "out", "name": "res" }
        ]
    })
}

/// A timer trigger with a bounded retry policy: a failed run is retried,
/// and the next scheduled run catches up anyway.
pub fn timer_function_json(f: &TimerFunction) -> Value {
    json!({
        "bindings": [
            {
                "type": "timerTrigger",
                "direction": "in",
                "name": "timer",
                "schedule": f.schedule,
                "runOnStartup": false,
                "useMonitor": true,
            }
        ],
        "retry": {
            "strategy": "exponentialBackoff",
            "maxRetryCount": 3,
            "minimumInterval": "00:00:10",
            "maximumInterval": "00:05:00",
        }
    })
}

/// A change-feed trigger. The leases container is made by the deployment:
/// with a managed identity, `createLeaseContainerIfNotExists: true` keeps
/// the function from starting.
pub fn change_feed_function_json(f: &ChangeFeedFunction) -> Value {
    json!({
        "bindings": [
            {
                "type": "cosmosDBTrigger",
                "direction": "in",
                "name": "documents",
                "connection": COSMOS_CONNECTION,
                "databaseName": COSMOS_DATABASE,
                "containerName": f.container,
                "leaseContainerName": LEASES_CONTAINER,
                "leaseContainerPrefix": f.lease_prefix,
                "createLeaseContainerIfNotExists": false,
                "startFromBeginning": false,
                "feedPollDelay": 5000,
                "maxItemsPerInvocation": 100,
            }
        ],
        "retry": {
            "strategy": "exponentialBackoff",
            "maxRetryCount": 5,
            "minimumInterval": "00:00:05",
            "maximumInterval": "00:05:00",
        }
    })
}

/// Every function folder and the exact text of its function.json.
pub fn generate() -> BTreeMap<&'static str, String> {
    let pretty = |v: Value| serde_json::to_string_pretty(&v).expect("JSON values serialise") + "\n";
    HTTP_FUNCTIONS
        .iter()
        .map(|f| (f.name, pretty(http_function_json(f))))
        .chain(
            TIMER_FUNCTIONS
                .iter()
                .map(|f| (f.name, pretty(timer_function_json(f)))),
        )
        .chain(
            CHANGE_FEED_FUNCTIONS
                .iter()
                .map(|f| (f.name, pretty(change_feed_function_json(f)))),
        )
        .collect()
}

/// Writes every function.json under `dir` and removes folders of functions
/// the table no longer has. Returns the names written.
pub fn write(dir: &Path) -> io::Result<Vec<&'static str>> {
    let wanted = generate();
    for stale in drift(dir)?.into_iter().filter(|d| d.starts_with("stale ")) {
        let name = stale.trim_start_matches("stale ");
        std::fs::remove_dir_all(dir.join(name))?;
    }
    for (name, text) in &wanted {
        std::fs::create_dir_all(dir.join(name))?;
        std::fs::write(dir.join(name).join("function.json"), text)?;
    }
    Ok(wanted.into_keys().collect())
}

/// What differs between `dir` and the route table, one line per function
/// ("missing X", "differs X", "stale X"); empty when they agree.
pub fn drift(dir: &Path) -> io::Result<Vec<String>> {
    let wanted = generate();
    let mut found = Vec::new();
    if dir.exists() {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.path().join("function.json").is_file() {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    for (name, text) in &wanted {
        match std::fs::read_to_string(dir.join(name).join("function.json")) {
            Err(_) => out.push(format!("missing {name}")),
            Ok(have) if have != *text => out.push(format!("differs {name}")),
            Ok(_) => {}
        }
    }
    for name in found {
        if !wanted.contains_key(name.as_str()) {
            out.push(format!("stale {name}"));
        }
    }
    out.sort();
    Ok(out)
}

/// `local.settings.json.example`: every setting the handler reads, with a
/// safe example value, plus what the Functions host needs to run locally.
pub fn local_settings_example() -> String {
    let mut values = serde_json::Map::new();
    values.insert("FUNCTIONS_WORKER_RUNTIME".into(), "custom".into());
    values.insert(
        "AzureWebJobsStorage".into(),
        "UseDevelopmentStorage=true".into(),
    );
    for (name, example) in crate::config::SETTINGS {
        values.insert((*name).into(), (*example).into());
    }
    let doc = json!({ "IsEncrypted": false, "Values": values });
    serde_json::to_string_pretty(&doc).expect("JSON values serialise") + "\n"
}

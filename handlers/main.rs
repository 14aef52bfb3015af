//! `handler`: the one binary of KRAFTD billing.
//!
//! handler                    serve (under the Functions host, or locally)
//! handler serve              serve locally on 127.0.0.1:7071 (PORT overrides)
//! handler functions write    regenerate functions/*/function.json from the route table
//!                            and local.settings.json.example from the settings list
//! handler functions check    fail if functions/ differs from the route table
//! handler openapi write      regenerate openapi.json (the OpenAPI 3.1 document) from the code
//! handler openapi check      fail if openapi.json differs from what the code generates
//! handler stripe sync-catalog  create or update the Stripe products and prices of the plan catalog
//! handler cosmos init        create the Cosmos DB database and containers (idempotent)

use std::path::PathBuf;
use std::process::ExitCode;

use kraftd_billing::config::StoreConfig;
use kraftd_billing::functions as manifest;
use kraftd_billing::http::openapi;
use kraftd_billing::payments::stripe::StripePayments;
use kraftd_billing::store::cosmos;
use kraftd_billing::{secrets, server};

const USAGE: &str = "usage: handler [serve | functions write [DIR] | functions check [DIR] | \
                     openapi write [FILE] | openapi check [FILE] | stripe sync-catalog | cosmos init]";

fn main() -> ExitCode {
    kraftd_billing::tls::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => serve(),
        ["functions", "write", rest @ ..] => functions(rest, true),
        ["functions", "check", rest @ ..] => functions(rest, false),
        ["openapi", "write", rest @ ..] => openapi_file(rest, true),
        ["openapi", "check", rest @ ..] => openapi_file(rest, false),
        ["stripe", "sync-catalog"] => sync_catalog(),
        ["cosmos", "init"] => cosmos_init(),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    let runtime = runtime();
    // Before logging starts: its format is configuration too.
    let config = match runtime.block_on(secrets::config_from_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(78);
        }
    };
    server::init_logging(config.log_format);
    match runtime.block_on(server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("{e}");
            ExitCode::from(78)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

fn sync_catalog() -> ExitCode {
    let runtime = runtime();
    let result = runtime
        .block_on(secrets::config_from_env())
        .map_err(|e| e.to_string())
        .and_then(|config| {
            let stripe = config
                .stripe
                .as_ref()
                .ok_or("configuration error: STRIPE_SECRET_KEY: is required to sync the catalog")?;
            let payments = StripePayments::new(
                server::stripe_settings(&config, stripe),
                server::catalog(&config),
            )
            .map_err(|e| e.to_string())?;
            runtime
                .block_on(payments.sync_catalog())
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(report) if report.is_empty() => {
            println!("the Stripe catalog is up to date");
            ExitCode::SUCCESS
        }
        Ok(report) => {
            for line in report {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Creates what `STORE=cosmos` needs, for emulators and first deployments
/// (Bicep does the same in Azure), then prints each container as it stands.
fn cosmos_init() -> ExitCode {
    let runtime = runtime();
    let result = runtime
        .block_on(secrets::config_from_env())
        .map_err(|e| e.to_string())
        .and_then(|config| match config.store {
            StoreConfig::Cosmos(settings) => Ok(settings),
            StoreConfig::Sqlite => Err(
                "configuration error: COSMOS__accountEndpoint: is required to initialise Cosmos DB"
                    .into(),
            ),
        })
        .and_then(|settings| {
            runtime.block_on(async {
                let client = cosmos::client::connect(&settings)
                    .await
                    .map_err(|e| e.to_string())?;
                let created = cosmos::init(&client, &settings.database)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut lines: Vec<String> = created
                    .into_iter()
                    .map(|c| format!("created {c}"))
                    .collect();
                for spec in cosmos::layout::CONTAINERS {
                    let (paths, ttl) = cosmos::describe(&client, &settings.database, spec.name)
                        .await
                        .map_err(|e| e.to_string())?;
                    let ttl = ttl.map_or("off".to_owned(), |t| t.to_string());
                    lines.push(format!(
                        "{}/{}: partition key {}, default TTL {ttl}",
                        settings.database,
                        spec.name,
                        paths.join(",")
                    ));
                }
                Ok::<_, String>(lines)
            })
        });
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn functions(rest: &[&str], write: bool) -> ExitCode {
    let dir = PathBuf::from(rest.first().copied().unwrap_or("functions"));
    let result = if write {
        manifest::write(&dir)
            .and_then(|names| {
                std::fs::write(
                    "local.settings.json.example",
                    manifest::local_settings_example(),
                )?;
                Ok(names)
            })
            .map(|names| {
                println!(
                    "wrote {} functions under {} and local.settings.json.example",
                    names.len(),
                    dir.display()
                );
                true
            })
    } else {
        manifest::drift(&dir).map(|drift| {
            for line in &drift {
                eprintln!("{line}");
            }
            if !drift.is_empty() {
                eprintln!(
                    "functions/ is out of date: run `cargo run --bin handler -- functions write`"
                );
            }
            drift.is_empty()
        })
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn openapi_file(rest: &[&str], write: bool) -> ExitCode {
    let path = PathBuf::from(rest.first().copied().unwrap_or(openapi::FILE));
    let result = if write {
        openapi::write(&path).map(|()| {
            println!("wrote {}", path.display());
            true
        })
    } else {
        let current = openapi::is_current(&path);
        if let Ok(false) = current {
            eprintln!(
                "{} is out of date: run `cargo run --bin handler -- openapi write`",
                path.display()
            );
        }
        current
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

//! `handler`: the one binary of KRAFTD billing.
//!
//! handler                    serve (under the Functions host, or locally)
//! handler serve              serve locally on 127.0.0.1:7071 (PORT overrides)
//! handler functions write    regenerate functions/*/function.json from the route table
//!                            and local.settings.json.example from the settings list
//! handler functions check    fail if functions/ differs from the route table
//! handler stripe sync-catalog  create or update the Stripe products and prices of the plan catalog

use std::path::PathBuf;
use std::process::ExitCode;

use kraftd_billing::config::Config;
use kraftd_billing::functions::manifest;
use kraftd_billing::payments::stripe::StripePayments;
use kraftd_billing::server;

const USAGE: &str =
    "usage: handler [serve | functions write [DIR] | functions check [DIR] | stripe sync-catalog]";

fn main() -> ExitCode {
    kraftd_billing::tls::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => serve(),
        ["functions", "write", rest @ ..] => functions(rest, true),
        ["functions", "check", rest @ ..] => functions(rest, false),
        ["stripe", "sync-catalog"] => sync_catalog(),
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
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(78);
        }
    };
    server::init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("{e}");
            ExitCode::from(78)
        }
    }
}

fn sync_catalog() -> ExitCode {
    let result = Config::from_env()
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
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
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

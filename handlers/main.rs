//! `handler`: the one binary of KRAFTD billing. `handler --help` lists its
//! commands; with none it serves under the Functions host, which starts it
//! so; `handler serve` is the local run.
//!
//! The generators (`functions`, `openapi`) stay in this binary rather than an
//! xtask: `scripts/package` runs `functions check` with the packaged binary
//! itself, so the package is proved to match the route table it was built
//! from, and the generators are a few hundred bytes of code.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kraftd_billing::admin_client;
use kraftd_billing::app::service_keys;
use kraftd_billing::config::StoreConfig;
use kraftd_billing::domain::service::Scope;
use kraftd_billing::functions as manifest;
use kraftd_billing::http::openapi;
use kraftd_billing::payments::stripe::StripePayments;
use kraftd_billing::store::cosmos;
use kraftd_billing::{secrets, server};

/// KRAFTD billing: plans, accounts, usage quotas and payments, served as
/// Azure Functions through a custom handler. With no command it serves under
/// the Functions host (FUNCTIONS_CUSTOMHANDLER_PORT). Settings come from the
/// environment (README, "Configuration"); flags override their variables.
#[derive(Parser)]
#[command(name = "handler", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every function locally (on the embedded defaults, with the
    /// stand-ins it names at start-up), or under the Functions host when it
    /// set FUNCTIONS_CUSTOMHANDLER_PORT.
    Serve(ServeArgs),
    /// The function.json files the Functions host reads, generated from the route table.
    #[command(subcommand)]
    Functions(Generate),
    /// The OpenAPI 3.1 document (openapi.json), generated from the code.
    #[command(subcommand)]
    Openapi(Generate),
    /// Stripe's side of the plan catalog.
    #[command(subcommand)]
    Stripe(StripeCommand),
    /// The Cosmos DB database and containers.
    #[command(subcommand)]
    Cosmos(CosmosCommand),
    /// Copy a Cosmos DB database of the one-user era into COSMOS_DATABASE.
    ///
    /// The new database is made first by `handler cosmos init`; the old one is
    /// only read. Idempotent: a second run copies only what is missing. Prints
    /// what it copied and skipped; exits 1 if a document could not be copied.
    Migrate(MigrateArgs),
    /// Users and their accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Credentials of KRAFTD's own services (README, "Service keys").
    ///
    /// Work on the configured store whether or not the service runs.
    #[command(subcommand)]
    ServiceKeys(ServiceKeysCommand),
    /// Support and on-call tools: the admin API of a running service
    /// (README, "Operating it"), with the key in KRAFTD_ADMIN_KEY.
    Admin(admin_client::AdminArgs),
}

#[derive(Subcommand)]
enum ServiceKeysCommand {
    /// Issue a key. Prints it once, alone on the last line of standard
    /// output; only its SHA-256 is stored.
    Create {
        /// Which service holds it, e.g. document-service.
        #[arg(long)]
        name: String,
        /// Comma-separated: usage:write, entitlements:read, admin.
        #[arg(long)]
        scopes: String,
    },
    /// Every key: id, name, scopes, when made and revoked. Never the key.
    List {
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id: the next request with it is refused.
    Revoke {
        /// The id `create` and `list` show.
        id: uuid::Uuid,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Bring users of the identity provider, with their accounts, into
    /// billing from a JSON Lines file (README, "Importing users").
    ///
    /// Idempotent: what exists is left as it is, and a second run changes
    /// nothing. A bad line is refused (its number and why; never its
    /// data) and the others still import. Exits 1 if any line was refused.
    Import(ImportArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// The file: one JSON object per line.
    file: PathBuf,
    /// Read the store and report what the import would do, writing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MigrateArgs {
    /// The database of the one-user era to copy from.
    #[arg(long, value_name = "DATABASE")]
    from_database: String,
}

#[derive(Args, Default)]
struct ServeArgs {
    /// The local port (ignored under the Functions host, which gives its own).
    #[arg(long, env = "PORT")]
    port: Option<u16>,
    /// The local address to listen on.
    #[arg(long, env = "BIND_ADDRESS")]
    bind_address: Option<IpAddr>,
}

#[derive(Subcommand)]
enum Generate {
    /// Regenerate the files from the code.
    Write {
        /// Where (default: functions/ or openapi.json at the repository root).
        path: Option<PathBuf>,
    },
    /// Fail (exit 1) if the files differ from what the code generates.
    Check {
        /// Where (default: functions/ or openapi.json at the repository root).
        path: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StripeCommand {
    /// Create or update the Stripe products and prices of the plan catalog.
    SyncCatalog,
}

#[derive(Subcommand)]
enum CosmosCommand {
    /// Create the database and every container the store needs (idempotent),
    /// then print each container's partition key and TTL.
    Init,
}

fn main() -> ExitCode {
    kraftd_billing::tls::install_crypto_provider();
    match Cli::parse().command {
        None => serve_under_the_host(),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Functions(Generate::Write { path })) => functions(path, true),
        Some(Command::Functions(Generate::Check { path })) => functions(path, false),
        Some(Command::Openapi(Generate::Write { path })) => openapi_file(path, true),
        Some(Command::Openapi(Generate::Check { path })) => openapi_file(path, false),
        Some(Command::Stripe(StripeCommand::SyncCatalog)) => sync_catalog(),
        Some(Command::Cosmos(CosmosCommand::Init)) => cosmos_init(),
        Some(Command::Migrate(args)) => migrate(args),
        Some(Command::Accounts(AccountsCommand::Import(args))) => import_accounts(args),
        Some(Command::ServiceKeys(command)) => service_keys(command),
        Some(Command::Admin(args)) => admin(args),
    }
}

/// The Functions host runs `handler` with no arguments and gives it a port.
/// Without one this is no host: a local run must be asked for by name, so
/// a misconfigured deployment never quietly runs on local stand-ins.
fn serve_under_the_host() -> ExitCode {
    if std::env::var_os("FUNCTIONS_CUSTOMHANDLER_PORT").is_none() {
        eprintln!(
            "configuration error: FUNCTIONS_CUSTOMHANDLER_PORT: is not set, so this is not the \
             Functions host; run `handler serve` for a local run"
        );
        return ExitCode::from(78);
    }
    serve(ServeArgs::default())
}

fn serve(args: ServeArgs) -> ExitCode {
    let runtime = runtime();
    // The flags win over their variables; everything else is the environment.
    let lookup = |name: &str| match name {
        "PORT" if args.port.is_some() => args.port.map(|p| p.to_string()),
        "BIND_ADDRESS" if args.bind_address.is_some() => args.bind_address.map(|a| a.to_string()),
        _ => std::env::var(name).ok(),
    };
    // Before logging starts: its format is configuration too.
    let config = match runtime.block_on(secrets::config_from_lookup(lookup)) {
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

/// The Cosmos DB settings of the configuration, for a command that needs
/// them `purpose` (words that finish "… is required").
fn cosmos_settings(
    runtime: &tokio::runtime::Runtime,
    purpose: &str,
) -> Result<cosmos::client::CosmosSettings, String> {
    let config = runtime
        .block_on(secrets::config_from_env())
        .map_err(|e| e.to_string())?;
    match config.store {
        StoreConfig::Cosmos(settings) => Ok(settings),
        StoreConfig::Sqlite => Err(format!(
            "configuration error: COSMOS__accountEndpoint: is required {purpose}"
        )),
    }
}

/// Creates what `STORE=cosmos` needs, for emulators and first deployments
/// (Bicep does the same in Azure), then prints each container as it stands.
fn cosmos_init() -> ExitCode {
    let runtime = runtime();
    let result = cosmos_settings(&runtime, "to initialise Cosmos DB").and_then(|settings| {
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

/// Copies `--from-database` into COSMOS_DATABASE (README, "Migrating a
/// database of the one-user era").
fn migrate(args: MigrateArgs) -> ExitCode {
    let runtime = runtime();
    let result = cosmos_settings(
        &runtime,
        "to migrate a Cosmos DB database (the embedded SQLite store migrates itself)",
    )
    .and_then(|settings| {
        runtime.block_on(async {
            let client = cosmos::client::connect(&settings)
                .await
                .map_err(|e| e.to_string())?;
            cosmos::migrate::migrate(
                &client,
                &args.from_database,
                &settings.database,
                chrono::Utc::now(),
            )
            .await
            .map_err(|e| e.to_string())
        })
    });
    match result {
        Ok(report) => {
            for line in report.lines() {
                println!("{line}");
            }
            if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "{} document(s) were not migrated (listed above); the rest was copied: fix them and run again",
                    report.problems.len()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("the migration can be run again: it copies only what is missing");
            ExitCode::FAILURE
        }
    }
}

/// `handler service-keys …` on the configured store.
/// Prints the admin API's answer as JSON; a refusal's error body on stderr
/// and exit 1, no key or a bad URL exit 78.
fn admin(args: admin_client::AdminArgs) -> ExitCode {
    let Some(key) = std::env::var(admin_client::KEY_VARIABLE)
        .ok()
        .filter(|k| !k.is_empty())
    else {
        eprintln!("{}", admin_client::AdminError::NoKey);
        return ExitCode::from(78);
    };
    match runtime().block_on(admin_client::run(
        &args.url,
        &key,
        args.actor.as_deref(),
        &args.command,
    )) {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e @ admin_client::AdminError::BadUrl(_)) => {
            eprintln!("{e}");
            ExitCode::from(78)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn service_keys(command: ServiceKeysCommand) -> ExitCode {
    let runtime = runtime();
    let config = match runtime.block_on(secrets::config_from_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(78);
        }
    };
    let result = runtime.block_on(async {
        let store = server::service_key_store(&config).await?;
        let now = chrono::Utc::now();
        match command {
            ServiceKeysCommand::Create { name, scopes } => {
                let scopes = service_keys::parse_scopes(&scopes)?;
                let issued = service_keys::issue(store.as_ref(), &name, scopes, now).await?;
                println!(
                    "Service key {} for {} ({}). Keep it now: it is not shown again.",
                    issued.key.id,
                    issued.key.name,
                    scope_list(&issued.key.scopes)
                );
                println!("{}", issued.secret);
            }
            ServiceKeysCommand::List { json } => {
                let keys = store.service_keys().await?;
                if json {
                    let rows: Vec<_> = keys
                        .iter()
                        .map(|k| {
                            serde_json::json!({
                                "id": k.id,
                                "name": k.name,
                                "scopes": k.scopes,
                                "created_at": k.created_at,
                                "revoked_at": k.revoked_at,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(rows));
                } else {
                    for k in keys {
                        let state = match k.revoked_at {
                            Some(at) => format!("revoked {}", at.to_rfc3339()),
                            None => "active".into(),
                        };
                        println!(
                            "{}  {}  {}  created {}  {state}",
                            k.id,
                            k.name,
                            scope_list(&k.scopes),
                            k.created_at.to_rfc3339()
                        );
                    }
                }
            }
            ServiceKeysCommand::Revoke { id } => {
                if !store.revoke_service_key(id, now).await? {
                    return Err(format!("there is no service key {id}").into());
                }
                println!("Revoked service key {id}.");
            }
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn scope_list(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Imports `args.file` into the configured store (README, "Importing users").
fn import_accounts(args: ImportArgs) -> ExitCode {
    let runtime = runtime();
    let config = match runtime.block_on(secrets::config_from_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(78);
        }
    };
    let imported = runtime.block_on(server::import_accounts(&config, &args.file, args.dry_run));
    let report = match imported {
        Ok(report) => report,
        Err(e) => {
            eprintln!("{}: {e}", args.file.display());
            eprintln!("the import can be run again: what it imported is left as it is");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("a report serializes")
        );
    } else {
        for line in report.lines() {
            println!("{line}");
        }
    }
    if report.lines_refused == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} line(s) were refused (listed with their reasons); the others were {}: fix them and run again",
            report.lines_refused,
            if args.dry_run { "checked" } else { "imported" }
        );
        ExitCode::FAILURE
    }
}

fn functions(dir: Option<PathBuf>, write: bool) -> ExitCode {
    let dir = dir.unwrap_or_else(|| PathBuf::from("functions"));
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

fn openapi_file(path: Option<PathBuf>, write: bool) -> ExitCode {
    let path = path.unwrap_or_else(|| PathBuf::from(openapi::FILE));
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

//! Wiring: from a checked configuration to a running server.

#[cfg(feature = "simulator")]
mod simulator;

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::app::email_templates::Links;
use crate::app::import::{AccountImport, ImportReport};
use crate::app::{Billing, BillingSettings, Parts};
use crate::auth::password::{self, Passwords};
use crate::auth::throttle::Throttle;
use crate::auth::token::Tokens;
use crate::clock::SystemClock;
use crate::config::{Config, ConfigError, LogFormat, RunMode, StoreConfig, StripeConfig};
use crate::domain::clock::Clock;
use crate::domain::plan::{Catalog, PlanId};
use crate::domain::ports::{
    EventSender, Mailer, Payments, ServiceKeyStore, Store, StoreError, WebhookVerifier,
};
use crate::domain::secret::ExposeSecret;
use crate::events::WebhookSender;
use crate::http::client_address::ClientAddresses;
use crate::http::web_app::WebApp;
use crate::http::{self, AppState};
use crate::mail::{FileMailer, SmtpMailer};
use crate::payments::stripe::{StripePayments, StripeSettings};
use crate::payments::webhook::StripeWebhookVerifier;
use crate::payments::PaymentsNotConfigured;
use crate::store::cosmos::{self, client::CosmosSettings, CosmosStore};
use crate::store::sqlite::ServiceKeyFile;
use crate::store::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the store in {dir}: {source}")]
    Store { dir: String, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// The adapters a router runs on. Tests swap the clock, the store or the
/// payment provider.
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub payments: Arc<dyn Payments>,
    pub webhooks: Arc<dyn WebhookVerifier>,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
}

impl Adapters {
    /// The configured store and payment provider: Cosmos DB is connected
    /// now (bounded), so a wrong endpoint or a missing role stops start-up.
    pub async fn configured(config: &Config) -> Result<Self, StartError> {
        match &config.store {
            StoreConfig::Sqlite => Self::embedded(config),
            StoreConfig::Cosmos(settings) => {
                Self::on_store(config, Arc::new(open_cosmos(settings).await?))
            }
        }
    }

    /// The embedded store and the configured payment provider. The data
    /// directory is created (and so checked) now; the database file opens in
    /// the background, off the start-up path.
    pub fn embedded(config: &Config) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| StartError::Store {
            dir: config.data_dir.display().to_string(),
            source: StoreError::unavailable(e.to_string()),
        })?;
        let path = config.data_dir.join("billing.sqlite3");
        let store = SqliteStore::open_in_background(&path).map_err(|source| StartError::Store {
            dir: config.data_dir.display().to_string(),
            source,
        })?;
        Self::on_store(config, Arc::new(store))
    }

    fn on_store(config: &Config, store: Arc<dyn Store>) -> Result<Self, StartError> {
        let payments: Arc<dyn Payments> = match &config.stripe {
            Some(stripe) => Arc::new(
                StripePayments::new(stripe_settings(config, stripe), catalog(config)).map_err(
                    |e| ConfigError {
                        setting: "STRIPE_API_BASE",
                        problem: e.to_string(),
                    },
                )?,
            ),
            None => Arc::new(PaymentsNotConfigured),
        };
        Ok(Self {
            store,
            payments,
            webhooks: Arc::new(StripeWebhookVerifier::new(config.webhook_secrets.clone())),
            mailer: mailer(config)?,
            clock: Arc::new(SystemClock),
        })
    }
}

/// `handler service-keys`: the configured store's service keys, opened
/// alone. On the embedded store that is a small file of its own, so it
/// works whether or not `handler serve` holds the database.
pub async fn service_key_store(
    config: &Config,
) -> Result<Arc<dyn ServiceKeyStore>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(match &config.store {
        StoreConfig::Cosmos(settings) => Arc::new(open_cosmos(settings).await?),
        StoreConfig::Sqlite => {
            std::fs::create_dir_all(&config.data_dir)?;
            Arc::new(ServiceKeyFile::open(
                &config.data_dir.join("billing.sqlite3"),
            )?)
        }
    })
}

/// `handler accounts import`: the file (streamed, opened anew for each
/// pass) into the configured store, as `handler serve` would open it. A dry
/// run on an embedded store whose file does not exist yet reads an empty
/// private one, so it creates nothing.
pub async fn import_accounts(
    config: &Config,
    file: &std::path::Path,
    dry_run: bool,
) -> Result<ImportReport, Box<dyn std::error::Error + Send + Sync>> {
    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Cosmos(settings) => Arc::new(open_cosmos(settings).await?),
        StoreConfig::Sqlite => {
            let path = config.data_dir.join("billing.sqlite3");
            if dry_run && !path.exists() {
                Arc::new(SqliteStore::in_memory()?)
            } else {
                std::fs::create_dir_all(&config.data_dir)?;
                Arc::new(SqliteStore::open(&path)?)
            }
        }
    };
    let import = AccountImport {
        store,
        catalog: catalog(config),
        clock: Arc::new(SystemClock),
    };
    let file = file.to_owned();
    let open = move || -> std::io::Result<Box<dyn std::io::BufRead + Send>> {
        Ok(Box::new(std::io::BufReader::new(std::fs::File::open(
            &file,
        )?)))
    };
    Ok(import.run(&open, dry_run).await?)
}

/// How long start-up waits for Cosmos DB before giving up.
const COSMOS_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

pub async fn open_cosmos(settings: &CosmosSettings) -> Result<CosmosStore, StartError> {
    let failed = |source| StartError::Store {
        dir: format!(
            "Cosmos DB {} (database {})",
            settings.endpoint, settings.database
        ),
        source,
    };
    let open = async {
        let client = cosmos::client::connect(settings).await?;
        CosmosStore::open(&client, &settings.database).await
    };
    match tokio::time::timeout(COSMOS_CONNECT_TIMEOUT, open).await {
        Ok(result) => result.map_err(failed),
        Err(_) => Err(failed(StoreError::unavailable(format!(
            "no answer within {}s",
            COSMOS_CONNECT_TIMEOUT.as_secs()
        )))),
    }
}

/// The service's router for a configuration and its adapters.
pub fn app(config: &Config, adapters: Adapters) -> Result<Router, StartError> {
    Ok(http::router(state(config, adapters)?, &config.cors_origins))
}

/// The use-cases on their adapters, as the handlers share them.
pub fn state(config: &Config, adapters: Adapters) -> Result<AppState, StartError> {
    let tokens = Tokens::new(&config.tokens).map_err(|e| ConfigError {
        // The one client fetches the keys of both lists' issuers.
        setting: "AUTH_ISSUERS",
        problem: e.to_string(),
    })?;
    let billing = Billing::new(Parts {
        catalog: catalog(config),
        store: adapters.store,
        payments: adapters.payments,
        webhooks: adapters.webhooks,
        mailer: adapters.mailer,
        events: event_sender(config)?,
        tokens,
        passwords: Passwords::new(config.password_hashes_at_once, password::MAX_WAIT),
        throttle: Throttle::new(&config.throttle, adapters.clock.clone()),
        clock: adapters.clock,
        settings: BillingSettings {
            past_due_grace: chrono::Duration::days(config.past_due_grace_days.into()),
            portal_return_url: config.portal_return_url.clone(),
            links: Links {
                dashboard: config.checkout_success_url.clone(),
                billing: config.portal_return_url.clone(),
                pricing: config.upgrade_url.clone(),
                invitations: config.invitation_url.clone(),
                verify_email: config.verify_email_url.clone(),
            },
            service_apps: config.service_apps.clone(),
            outbox_lease: chrono::Duration::seconds(config.outbox_lease_seconds.into()),
        },
    });
    // Under the host the TCP peer is the host itself: the client is in the
    // front end's headers (`http::client_address`). Locally only the peer.
    let addresses = match config.mode {
        RunMode::FunctionsHost { .. } => ClientAddresses::FromFrontEnd,
        RunMode::Local => ClientAddresses::PeerOnly,
    };
    Ok(AppState::new(billing, &config.upgrade_url, addresses))
}

/// SMTP when configured; locally, .eml files under `DATA_DIR/mail`.
pub fn mailer(config: &Config) -> Result<Arc<dyn Mailer>, StartError> {
    let from: lettre::message::Mailbox = config.email_from.parse().map_err(|_| ConfigError {
        setting: "EMAIL_FROM",
        problem: "is not an email address".into(),
    })?;
    Ok(match &config.smtp_url {
        Some(url) => {
            Arc::new(
                SmtpMailer::new(url.expose_secret(), from).map_err(|_| ConfigError {
                    setting: "SMTP_URL",
                    // Not the parser's message: it could echo the password.
                    problem: "is not a valid SMTP URL".into(),
                })?,
            )
        }
        None => {
            let dir = config.data_dir.join("mail");
            Arc::new(
                FileMailer::new(dir.clone(), from).map_err(|e| StartError::Store {
                    dir: dir.display().to_string(),
                    source: StoreError::unavailable(e.to_string()),
                })?,
            )
        }
    })
}

/// KRAFTD's signed webhook endpoint when `EVENTS_WEBHOOK_URL` is set.
pub fn event_sender(config: &Config) -> Result<Option<Arc<dyn EventSender>>, StartError> {
    let Some(events) = &config.events else {
        return Ok(None);
    };
    let sender = WebhookSender::new(&events.url, &events.secret).map_err(|e| ConfigError {
        setting: "EVENTS_WEBHOOK_SECRET",
        problem: e.to_string(),
    })?;
    Ok(Some(Arc::new(sender)))
}

/// The plan catalog with the operator's limit overrides.
pub fn catalog(config: &Config) -> Catalog {
    Catalog::standard()
        .with_overrides(&config.limits)
        .with_trial_days(PlanId::Pro, config.pro_trial_days)
}

pub fn stripe_settings(config: &Config, stripe: &StripeConfig) -> StripeSettings {
    StripeSettings {
        secret_key: stripe.secret_key.clone(),
        api_base: stripe.api_base.clone(),
        checkout_success_url: config.checkout_success_url.clone(),
        checkout_cancel_url: config.checkout_cancel_url.clone(),
        timeout: std::time::Duration::from_secs(20),
        backoff: std::time::Duration::from_millis(250),
    }
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Binds, serves until SIGTERM or Ctrl-C, then drains in-flight requests.
pub async fn serve(mut config: Config) -> Result<(), StartError> {
    let stand_ins = LocalStandIns::of(&config);
    stand_ins.refuse_off_loopback(&config)?;
    let mut adapters = Adapters::configured(&config).await?;
    config.ensure_local_signing_secret()?;
    // Only local runs lack a key: under the host it is a configuration error.
    #[cfg_attr(not(feature = "simulator"), allow(unused_variables))]
    let simulator = match config.stripe {
        None => Some(start_simulator(&config, &mut adapters).await?),
        Some(_) => None,
    };
    stand_ins.announce(&config);
    let store = adapters.store.clone();
    let clock = adapters.clock.clone();
    let state = state(&config, adapters)?;
    let billing = state.billing.clone();
    let router = local_router(&config, state);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, mode = ?config.mode, "listening on http://{addr}");
    #[cfg(feature = "simulator")]
    if let (Some(sim), Ok(local)) = (&simulator, listener.local_addr()) {
        let port = local.port();
        sim.set_webhook_url(Some(format!("http://127.0.0.1:{port}/api/webhooks/stripe")));
    }

    password::warm_up_soon();
    tokio::spawn(purge_expired_hourly(store, clock));
    tokio::spawn(sweep_throttles(billing.clone()));
    tokio::spawn(give_back_leases(billing.clone()));
    if config.mode == RunMode::Local {
        // No host to fire the triggers: run the same use-cases here.
        tokio::spawn(poll_outbox(billing.clone()));
        tokio::spawn(run_timers(billing.clone()));
    }

    // With each connection's peer address: the client address when not
    // under the host, and the throttle's fallback.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    // The requests are drained: what the leases admitted is recorded now,
    // the rest freed for the other instances.
    billing.give_back_leases(true).await;
    served.map_err(|source| StartError::Bind { addr, source })
}

/// What a local run stands in for the real thing: said in one start-up line,
/// and refused when the service listens beyond this machine.
struct LocalStandIns {
    stripe_simulator: bool,
    generated_signing_key: bool,
    embedded_store: bool,
    file_mail: bool,
}

impl LocalStandIns {
    fn of(config: &Config) -> Self {
        Self {
            stripe_simulator: config.stripe.is_none(),
            generated_signing_key: !config.has_signing_secret(),
            embedded_store: matches!(config.store, StoreConfig::Sqlite),
            file_mail: config.smtp_url.is_none(),
        }
    }

    /// The simulator answers anyone and a generated key signs tokens nobody
    /// else can check: both are for a developer's own machine only.
    fn refuse_off_loopback(&self, config: &Config) -> Result<(), ConfigError> {
        if config.mode != RunMode::Local || config.listen.ip().is_loopback() {
            return Ok(());
        }
        let needed = if self.stripe_simulator {
            Some("STRIPE_SECRET_KEY")
        } else if self.generated_signing_key {
            Some("JWT_SECRET")
        } else {
            None
        };
        match needed {
            Some(setting) => Err(ConfigError {
                setting,
                problem: format!(
                    "is required when BIND_ADDRESS ({}) is not a loopback address: the Stripe \
                     simulator and the generated signing key are for local runs only",
                    config.listen.ip()
                ),
            }),
            None => Ok(()),
        }
    }

    fn announce(&self, config: &Config) {
        if config.mode != RunMode::Local {
            return;
        }
        let data = config.data_dir.display();
        let mut simulated = Vec::new();
        if self.stripe_simulator {
            simulated.push("Stripe (the offline simulator; no money moves)".to_owned());
        }
        if self.generated_signing_key {
            simulated.push(format!("the token signing key (generated in {data})"));
        }
        if self.embedded_store {
            simulated.push(format!("the store (SQLite in {data})"));
        }
        if self.file_mail {
            simulated.push(format!("email (.eml files in {data}/mail)"));
        }
        simulated.push("the host's timers and change feed (run in-process)".to_owned());
        tracing::warn!(
            "local mode (`handler serve`, no Functions host): stands in for {}",
            simulated.join(", ")
        );
    }
}

/// The service's router; locally also the built web app at `/`, so one
/// command shows the pages. Under the host the frontend is deployed on its
/// own and only the API is served.
fn local_router(config: &Config, state: AppState) -> Router {
    if config.mode != RunMode::Local {
        return http::router(state, &config.cors_origins);
    }
    match WebApp::built_in(&config.web_dist) {
        Some(web) => {
            tracing::info!(dir = %config.web_dist.display(), "serving the web app at /");
            http::router_with_web_app(state, &config.cors_origins, web)
        }
        None => {
            tracing::info!(
                dir = %config.web_dist.display(),
                "no web app built there (npm --prefix web ci && npm --prefix web run build): serving the API only"
            );
            http::router(state, &config.cors_origins)
        }
    }
}

/// Locally there is no Cosmos change feed: poll the embedded outbox and hand
/// the host's payload shape to the same decoder and use-case.
async fn poll_outbox(billing: Arc<Billing>) {
    // First look after start-up, not during it.
    let period = std::time::Duration::from_secs(2);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        every.tick().await;
        let pending = match billing.pending_outbox(100).await {
            Ok(p) if p.is_empty() => continue,
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "outbox poll failed");
                continue;
            }
        };
        let documents = serde_json::to_string(&pending).unwrap_or_default();
        let invocation = serde_json::json!({ "Data": { "documents": documents }, "Metadata": {} });
        let messages = match http::triggers::decode_documents(invocation.to_string().as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "outbox poll could not decode its own batch");
                continue;
            }
        };
        if let Err(e) = billing.deliver_outbox(&messages).await {
            tracing::warn!(error = %e, "outbox delivery failed");
        }
    }
}

/// Local stand-ins for the timer functions: reconciliation every 15 minutes
/// and the usage rollup hourly (it only ever rolls finished days, so running
/// it more often than daily changes nothing).
async fn run_timers(billing: Arc<Billing>) {
    let period = std::time::Duration::from_secs(15 * 60);
    // The first run a minute after start-up, off the cold-start path.
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + std::time::Duration::from_secs(60),
        period,
    );
    let mut ticks: u64 = 0;
    loop {
        every.tick().await;
        if let Err(e) = billing.reconcile().await {
            tracing::warn!(error = %e, "local reconciliation failed");
        }
        if ticks.is_multiple_of(4) {
            if let Err(e) = billing.roll_up_usage().await {
                tracing::warn!(error = %e, "local usage rollup failed");
            }
        }
        ticks += 1;
    }
}

/// Forgets idle sign-in throttle keys each minute: governor's keyed state
/// never evicts on its own, so without this its memory would only grow.
async fn sweep_throttles(billing: Arc<Billing>) {
    let period = std::time::Duration::from_secs(60);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        every.tick().await;
        billing.sweep_throttles();
    }
}

/// Gives quota leases back before they stop admitting, so their calls are
/// recorded before their holds lapse (`domain::lease::LEASE_MARGIN` is
/// twice this period).
async fn give_back_leases(billing: Arc<Billing>) {
    let period = std::time::Duration::from_secs(5);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        every.tick().await;
        billing.give_back_leases(false).await;
    }
}

/// Enforces record retention (usage 90 days, payments 7 years) off the request path.
async fn purge_expired_hourly(store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(3600),
    );
    loop {
        every.tick().await;
        match store.purge_expired(clock.now()).await {
            Ok(n) if n > 0 => tracing::info!(purged = n, "expired records purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention purge failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

#[cfg(feature = "simulator")]
use simulator::start as start_simulator;

/// A build without the simulator (the deployment package) needs Stripe.
#[cfg(not(feature = "simulator"))]
async fn start_simulator(_: &Config, _: &mut Adapters) -> Result<(), StartError> {
    Err(ConfigError {
        setting: "STRIPE_SECRET_KEY",
        problem: "is required: this build has no Stripe simulator".into(),
    }
    .into())
}

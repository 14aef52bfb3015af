//! Configuration from environment variables, as the Functions host provides
//! them. Everything is read and checked before the server binds, so bad
//! configuration stops start-up with one line naming the setting. The
//! secrets may come from Key Vault first: `secrets::config_from_env` is the
//! way in.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use base64::Engine;

use crate::auth::oidc;
use crate::auth::throttle::{Rate, ThrottleSettings};
use crate::auth::token::{TokenSettings, TrustedIssuer};
use crate::domain::plan::{LimitOverrides, PRO_TRIAL_DAYS};
use crate::domain::secret::ExposeSecret;
use crate::domain::secret::Secret;
use crate::domain::service::{is_service_name, ServiceApp};
use crate::domain::throttle::Backoff;
use crate::store::cosmos::client::CosmosSettings;

/// Every setting the handler reads, with a safe example value. The test of
/// `local.settings.json.example` checks it lists exactly these.
pub const SETTINGS: &[(&str, &str)] = &[
    ("PORT", "7071"),
    ("BIND_ADDRESS", "127.0.0.1"),
    ("DATA_DIR", ".local"),
    ("STORE", "sqlite"),
    ("COSMOS__accountEndpoint", ""),
    ("COSMOS__clientId", ""),
    ("COSMOS_KEY", ""),
    ("COSMOS_DATABASE", "billing"),
    ("COSMOS_REGION", "East US"),
    // Read by `secrets` before `Config`: where the secrets below come from.
    ("KEY_VAULT_URL", ""),
    ("AZURE_CLIENT_ID", ""),
    (
        "JWT_SECRET",
        "replace-with-at-least-32-random-characters-0123456789",
    ),
    ("JWT_ISSUER", "kraftd"),
    ("JWT_AUDIENCE", "kraftd-billing"),
    ("JWT_TTL_SECONDS", "3600"),
    ("AUTH_ISSUERS", ""),
    ("AUTH_MAX_TOKEN_AGE_SECONDS", "86400"),
    ("SERVICE_TOKEN_ISSUERS", ""),
    ("SERVICE_TOKEN_AUDIENCE", ""),
    ("SERVICE_APPS", ""),
    ("FREE_PLAN_DOCS_LIMIT", "50"),
    ("PRO_PLAN_DOCS_LIMIT", "1000"),
    ("FREE_PLAN_API_LIMIT", "1000"),
    ("PRO_PLAN_API_LIMIT", "50000"),
    ("PRO_TRIAL_DAYS", "14"),
    ("CORS_ALLOWED_ORIGINS", "http://localhost:5173"),
    ("UPGRADE_URL", "https://kraftd.io/pricing"),
    ("STRIPE_SECRET_KEY", ""),
    ("STRIPE_WEBHOOK_SECRET", "whsec_replace_me"),
    ("STRIPE_API_BASE", ""),
    (
        "CHECKOUT_SUCCESS_URL",
        "https://kraftd.io/dashboard?payment=success",
    ),
    ("CHECKOUT_CANCEL_URL", "https://kraftd.io/pricing"),
    ("BILLING_PORTAL_RETURN_URL", "https://kraftd.io/dashboard"),
    ("INVITATION_URL", "https://kraftd.io/invitations"),
    ("VERIFY_EMAIL_URL", "https://kraftd.io/verify-email"),
    ("PAST_DUE_GRACE_DAYS", "7"),
    ("PASSWORD_HASHES_AT_ONCE", ""),
    ("SIGN_IN_PER_ADDRESS_PER_MINUTE", "20"),
    ("SIGN_IN_PER_ADDRESS_BURST", "20"),
    ("SIGN_IN_PER_ACCOUNT_PER_MINUTE", "10"),
    ("SIGN_IN_PER_ACCOUNT_BURST", "5"),
    ("LOGIN_BACKOFF_AFTER_FAILURES", "5"),
    ("LOGIN_BACKOFF_MAX_SECONDS", "900"),
    ("SMTP_URL", ""),
    ("OUTBOX_LEASE_SECONDS", "300"),
    ("EVENTS_WEBHOOK_URL", ""),
    ("EVENTS_WEBHOOK_SECRET", ""),
    ("EMAIL_FROM", "KRAFTD Billing <billing@kraftd.io>"),
    ("WEB_DIST", "web/dist"),
    ("LOG_FORMAT", "json"),
    ("RUST_LOG", "info"),
];

/// The settings the Function App in Azure must carry for the handler
/// (infra/modules/function.bicep sets each; tests/infra.rs checks). The
/// `COSMOS__*` names are also the Functions host's identity-based connection
/// `COSMOS` of the change-feed trigger.
pub const AZURE_REQUIRED_SETTINGS: &[&str] = &[
    "STORE",
    "COSMOS__accountEndpoint",
    "COSMOS__credential",
    "COSMOS__clientId",
    "COSMOS_DATABASE",
    "COSMOS_REGION",
    "AZURE_CLIENT_ID",
    "KEY_VAULT_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "CORS_ALLOWED_ORIGINS",
    "CHECKOUT_SUCCESS_URL",
    "CHECKOUT_CANCEL_URL",
    "BILLING_PORTAL_RETURN_URL",
    "UPGRADE_URL",
    "EMAIL_FROM",
    // Empty unless events go to KRAFTD (`EVENTS_WEBHOOK_URL`).
    "EVENTS_WEBHOOK_URL",
    "LOG_FORMAT",
];

/// The shortest claim on an outbox message: longer than any one send.
const MIN_OUTBOX_LEASE_SECONDS: u32 = 10;

/// Minimum HS256 secret length: shorter keys are guessable offline.
const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Started by the Functions host, which chose the port.
    FunctionsHost { port: u16 },
    /// `handler serve` on a developer's machine.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration error: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

/// Where the service keeps its data.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// One SQLite file under `DATA_DIR`: the default for local runs.
    Sqlite,
    /// Cosmos DB: `STORE=cosmos`, or implied by `COSMOS__accountEndpoint`.
    Cosmos(CosmosSettings),
}

/// KRAFTD's webhook endpoint for events. Absent: no event is recorded.
#[derive(Clone, Debug)]
pub struct EventsConfig {
    pub url: String,
    /// `whsec_` and the base64 of the signing key (Standard Webhooks).
    pub secret: Secret,
}

/// Stripe access. Absent locally means "run the offline simulator".
#[derive(Clone, Debug)]
pub struct StripeConfig {
    pub secret_key: Secret,
    pub api_base: Option<String>,
}

#[derive(Clone)]
pub struct Config {
    pub mode: RunMode,
    pub listen: SocketAddr,
    pub store: StoreConfig,
    pub data_dir: PathBuf,
    pub tokens: TokenSettings,
    /// `SERVICE_APPS`: the only applications whose app tokens are accepted,
    /// by name; empty: any application of `SERVICE_TOKEN_ISSUERS`.
    pub service_apps: Vec<ServiceApp>,
    pub limits: LimitOverrides,
    /// The Pro plan's free trial, on an account's first subscription; 0: none.
    pub pro_trial_days: u32,
    pub cors_origins: Vec<String>,
    pub upgrade_url: String,
    pub log_format: LogFormat,
    pub stripe: Option<StripeConfig>,
    /// Accepted webhook signing secrets (more than one while rotating).
    pub webhook_secrets: Vec<Secret>,
    pub checkout_success_url: String,
    pub checkout_cancel_url: String,
    pub portal_return_url: String,
    /// Where an invitation's link points, before `/<token>`.
    pub invitation_url: String,
    /// A verification link is this, `/`, and its token.
    pub verify_email_url: String,
    pub past_due_grace_days: u32,
    /// Argon2 hashes run at once (each holds 19 MiB); the CPU count when unset.
    pub password_hashes_at_once: usize,
    /// Sign-in rate limits and the failed-login back-off (per instance).
    pub throttle: ThrottleSettings,
    /// Unset locally: emails are written as .eml files under the data directory.
    pub smtp_url: Option<Secret>,
    pub email_from: String,
    /// How long a sender's claim on an outbox message holds before another
    /// sender may take it (and send it again).
    pub outbox_lease_seconds: u32,
    /// Where events for KRAFTD go, signed; `None` when `EVENTS_WEBHOOK_URL`
    /// is unset, and then no event is recorded at all.
    pub events: Option<EventsConfig>,
    /// The built web app (`npm --prefix web run build`), served at `/` by
    /// `handler serve` when present. Never under the host.
    pub web_dist: PathBuf,
}

impl Config {
    /// Reads every setting through `get`; empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let mode = match get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            Some(p) => RunMode::FunctionsHost {
                port: parse_port("FUNCTIONS_CUSTOMHANDLER_PORT", &p)?,
            },
            None => RunMode::Local,
        };
        let listen = match mode {
            // The host talks to the handler over loopback only.
            RunMode::FunctionsHost { port } => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            }
            RunMode::Local => {
                let ip = match get("BIND_ADDRESS") {
                    Some(a) => a
                        .parse()
                        .map_err(|_| bad("BIND_ADDRESS", format!("{a:?} is not an IP address")))?,
                    None => IpAddr::V4(Ipv4Addr::LOCALHOST),
                };
                let port = match get("PORT") {
                    Some(p) => parse_port("PORT", &p)?,
                    None => 7071,
                };
                SocketAddr::new(ip, port)
            }
        };

        let cosmos_endpoint = get("COSMOS__accountEndpoint");
        let store = match (get("STORE").as_deref(), cosmos_endpoint) {
            (Some("sqlite"), _) | (None, None) => StoreConfig::Sqlite,
            (Some("cosmos"), None) => {
                return Err(bad(
                    "COSMOS__accountEndpoint",
                    "is required with STORE=cosmos (https://<account>.documents.azure.com:443/)",
                ))
            }
            (Some("cosmos") | None, Some(endpoint)) => {
                let endpoint = url_setting("COSMOS__accountEndpoint", endpoint)?;
                let settings = CosmosSettings {
                    endpoint,
                    key: get("COSMOS_KEY").map(Secret::from),
                    client_id: get("COSMOS__clientId").or_else(|| get("AZURE_CLIENT_ID")),
                    database: get("COSMOS_DATABASE")
                        .unwrap_or_else(|| crate::store::cosmos::layout::DEFAULT_DATABASE.into()),
                    region: get("COSMOS_REGION").unwrap_or_else(|| "East US".into()),
                    under_host: matches!(mode, RunMode::FunctionsHost { .. }),
                };
                if settings.key.is_some() && !settings.is_emulator() {
                    return Err(bad(
                        "COSMOS_KEY",
                        "is only for emulators on loopback; in Azure the managed identity signs in",
                    ));
                }
                StoreConfig::Cosmos(settings)
            }
            (Some(other), _) => {
                return Err(bad(
                    "STORE",
                    format!("{other:?} is not a store this build has (sqlite, cosmos)"),
                ))
            }
        };
        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| ".local".into()));

        let hs256_secret = match get("JWT_SECRET") {
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(bad(
                    "JWT_SECRET",
                    format!("must be at least {MIN_SECRET_BYTES} bytes long"),
                ))
            }
            Some(s) => Some(Secret::from(s)),
            None if matches!(mode, RunMode::FunctionsHost { .. }) => {
                return Err(bad(
                    "JWT_SECRET",
                    "is required when running under the Functions host",
                ))
            }
            None => None,
        };
        let issuer = get("JWT_ISSUER").unwrap_or_else(|| "kraftd".into());
        let audience = get("JWT_AUDIENCE").unwrap_or_else(|| "kraftd-billing".into());
        let issuers = match get("AUTH_ISSUERS") {
            Some(list) => trusted_issuers("AUTH_ISSUERS", &list, &issuer)?,
            None => Vec::new(),
        };
        let service = service_tokens(
            get("SERVICE_TOKEN_ISSUERS"),
            get("SERVICE_TOKEN_AUDIENCE"),
            get("SERVICE_APPS"),
            &issuer,
            &audience,
            &issuers,
        )?;
        let tokens = TokenSettings {
            hs256_secret: hs256_secret.unwrap_or_else(|| Secret::from(String::new())),
            issuers,
            service_issuers: service.issuers,
            service_audiences: service.audiences,
            max_token_age_seconds: match get("AUTH_MAX_TOKEN_AGE_SECONDS") {
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (60..=2_592_000).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "AUTH_MAX_TOKEN_AGE_SECONDS",
                            format!("{v:?} is not a number of seconds from 60 to 2592000"),
                        )
                    })?,
                None => 86_400,
            },
            issuer,
            audience,
            ttl_seconds: match get("JWT_TTL_SECONDS") {
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (60..=86_400).contains(&n) => n,
                    _ => {
                        return Err(bad(
                            "JWT_TTL_SECONDS",
                            format!("{v:?} is not a number of seconds from 60 to 86400"),
                        ))
                    }
                },
                None => 3600,
            },
        };

        let limit = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            get(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| bad(name, format!("{v:?} is not a non-negative whole number")))
                })
                .transpose()
        };
        let limits = LimitOverrides {
            free_documents_per_month: limit("FREE_PLAN_DOCS_LIMIT")?,
            pro_documents_per_month: limit("PRO_PLAN_DOCS_LIMIT")?,
            free_api_calls_per_day: limit("FREE_PLAN_API_LIMIT")?,
            pro_api_calls_per_day: limit("PRO_PLAN_API_LIMIT")?,
        };
        // Stripe's bound on trial_period_days.
        let pro_trial_days = match get("PRO_TRIAL_DAYS") {
            Some(v) => v.parse::<u32>().ok().filter(|d| *d <= 730).ok_or_else(|| {
                bad(
                    "PRO_TRIAL_DAYS",
                    format!("{v:?} is not a number of days from 0 to 730"),
                )
            })?,
            None => PRO_TRIAL_DAYS,
        };

        let cors_origins = get("CORS_ALLOWED_ORIGINS")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(|o| {
                        let ok = (o.starts_with("https://") || o.starts_with("http://"))
                            && !o.trim_end_matches('/').contains(['?', '#', ' '])
                            && o.splitn(4, '/').nth(3).is_none_or(str::is_empty);
                        if ok {
                            Ok(o.trim_end_matches('/').to_owned())
                        } else {
                            Err(bad(
                                "CORS_ALLOWED_ORIGINS",
                                format!("{o:?} is not an origin like https://app.example.com"),
                            ))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();

        let upgrade_url = get("UPGRADE_URL").unwrap_or_else(|| "https://kraftd.io/pricing".into());
        if !(upgrade_url.starts_with("https://") || upgrade_url.starts_with("http://")) {
            return Err(bad("UPGRADE_URL", "must be an http(s) URL"));
        }

        let log_format = match get("LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            None if matches!(mode, RunMode::FunctionsHost { .. }) => LogFormat::Json,
            None => LogFormat::Text,
            Some(other) => return Err(bad("LOG_FORMAT", format!("{other:?} is not json or text"))),
        };

        let host = matches!(mode, RunMode::FunctionsHost { .. });
        let api_base = get("STRIPE_API_BASE")
            .map(|u| url_setting("STRIPE_API_BASE", u))
            .transpose()?;
        let stripe = match get("STRIPE_SECRET_KEY") {
            Some(k) if !(k.starts_with("sk_") || k.starts_with("rk_")) => {
                return Err(bad(
                    "STRIPE_SECRET_KEY",
                    "is not a Stripe secret or restricted key (sk_... or rk_...)",
                ))
            }
            Some(k) => Some(StripeConfig {
                secret_key: Secret::from(k),
                api_base,
            }),
            None if host => {
                return Err(bad(
                    "STRIPE_SECRET_KEY",
                    "is required when running under the Functions host",
                ))
            }
            None => None,
        };
        let webhook_secrets: Vec<Secret> = get("STRIPE_WEBHOOK_SECRET")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::from)
                    .collect()
            })
            .unwrap_or_default();
        if stripe.is_some() && webhook_secrets.is_empty() {
            return Err(bad(
                "STRIPE_WEBHOOK_SECRET",
                "is required with STRIPE_SECRET_KEY (comma-separated while rotating)",
            ));
        }
        // Locally the return URLs default to the web app this server serves,
        // so checkout and the portal come back to it; deployed, to kraftd.io.
        let app_origin = match mode {
            RunMode::Local => format!("http://{}", loopback_if_unspecified(listen)),
            RunMode::FunctionsHost { .. } => "https://kraftd.io".to_owned(),
        };
        let url = |name: &'static str, deployed: &str, local: &str| {
            let default = match mode {
                RunMode::Local => format!("{app_origin}{local}"),
                RunMode::FunctionsHost { .. } => format!("{app_origin}{deployed}"),
            };
            url_setting(name, get(name).unwrap_or(default))
        };
        let checkout_success_url = url(
            "CHECKOUT_SUCCESS_URL",
            "/dashboard?payment=success",
            "/account?payment=success",
        )?;
        let checkout_cancel_url = url("CHECKOUT_CANCEL_URL", "/pricing", "/pricing")?;
        let portal_return_url = url("BILLING_PORTAL_RETURN_URL", "/dashboard", "/account")?;
        let invitation_url = url("INVITATION_URL", "/invitations", "/invitations")?
            .trim_end_matches('/')
            .to_owned();
        let verify_email_url = url("VERIFY_EMAIL_URL", "/verify-email", "/verify-email")?
            .trim_end_matches('/')
            .to_owned();
        let password_hashes_at_once = match get("PASSWORD_HASHES_AT_ONCE") {
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| {
                    bad(
                        "PASSWORD_HASHES_AT_ONCE",
                        format!("{v:?} is not a number from 1 to 64"),
                    )
                })?,
            None => crate::auth::password::default_at_once(),
        };
        // Sign-in throttling. The defaults suit one serverless instance: a
        // person signing in, registering or accepting an invitation needs a
        // few requests a minute; an office behind one address a few more.
        let count = |name: &'static str, default: u32, max: u32| -> Result<u32, ConfigError> {
            match get(name) {
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| bad(name, format!("{v:?} is not a number from 1 to {max}"))),
                None => Ok(default),
            }
        };
        const MAX_RATE: u32 = 1_000_000;
        let rate = |per_minute: u32, burst: u32| {
            Rate::new(per_minute, burst).expect("counts are at least 1")
        };
        let standard = Backoff::standard();
        let throttle = ThrottleSettings {
            per_address: rate(
                count("SIGN_IN_PER_ADDRESS_PER_MINUTE", 20, MAX_RATE)?,
                count("SIGN_IN_PER_ADDRESS_BURST", 20, MAX_RATE)?,
            ),
            per_account: rate(
                count("SIGN_IN_PER_ACCOUNT_PER_MINUTE", 10, MAX_RATE)?,
                count("SIGN_IN_PER_ACCOUNT_BURST", 5, MAX_RATE)?,
            ),
            backoff: Backoff {
                free_failures: count("LOGIN_BACKOFF_AFTER_FAILURES", standard.free_failures, 1000)?,
                max_wait: chrono::Duration::seconds(
                    count("LOGIN_BACKOFF_MAX_SECONDS", 900, 86_400)?.into(),
                ),
                ..standard
            },
            max_keys: ThrottleSettings::MAX_KEYS,
        };
        // Shorter than a send's own timeouts (5 s an event, SMTP's), a claim
        // would lapse while its sender still works and the message go twice.
        let outbox_lease_seconds = count("OUTBOX_LEASE_SECONDS", 300, 86_400)?;
        if outbox_lease_seconds < MIN_OUTBOX_LEASE_SECONDS {
            return Err(bad(
                "OUTBOX_LEASE_SECONDS",
                format!("must be at least {MIN_OUTBOX_LEASE_SECONDS} (a send may take that long)"),
            ));
        }
        let past_due_grace_days = match get("PAST_DUE_GRACE_DAYS") {
            Some(v) => v.parse::<u32>().ok().filter(|d| *d <= 60).ok_or_else(|| {
                bad(
                    "PAST_DUE_GRACE_DAYS",
                    format!("{v:?} is not a number of days from 0 to 60"),
                )
            })?,
            None => 7,
        };

        let smtp_url = match get("SMTP_URL") {
            Some(u) if !(u.starts_with("smtp://") || u.starts_with("smtps://")) => {
                return Err(bad("SMTP_URL", "must be an smtp:// or smtps:// URL"))
            }
            Some(u) => Some(Secret::from(u)),
            None if host => {
                return Err(bad(
                    "SMTP_URL",
                    "is required when running under the Functions host",
                ))
            }
            None => None,
        };
        let email_from =
            get("EMAIL_FROM").unwrap_or_else(|| "KRAFTD Billing <billing@kraftd.io>".into());
        if email_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad(
                "EMAIL_FROM",
                "is not an address like KRAFTD Billing <billing@kraftd.io>",
            ));
        }

        // A secret without a URL is left unused: no events are recorded.
        let events_secret = get("EVENTS_WEBHOOK_SECRET").map(Secret::from);
        let events = match get("EVENTS_WEBHOOK_URL") {
            None => None,
            Some(url) => {
                let url = url_setting("EVENTS_WEBHOOK_URL", url)?;
                let secret = events_secret.ok_or_else(|| {
                    bad(
                        "EVENTS_WEBHOOK_SECRET",
                        "is required with EVENTS_WEBHOOK_URL (a whsec_ secret)",
                    )
                })?;
                crate::events::signing_key(&secret)
                    .map_err(|e| bad("EVENTS_WEBHOOK_SECRET", e.to_string()))?;
                Some(EventsConfig { url, secret })
            }
        };

        let web_dist = PathBuf::from(get("WEB_DIST").unwrap_or_else(|| "web/dist".into()));

        let config = Self {
            mode,
            listen,
            store,
            data_dir,
            tokens,
            service_apps: service.apps,
            limits,
            pro_trial_days,
            cors_origins,
            upgrade_url,
            log_format,
            stripe,
            webhook_secrets,
            checkout_success_url,
            checkout_cancel_url,
            portal_return_url,
            invitation_url,
            verify_email_url,
            past_due_grace_days,
            password_hashes_at_once,
            throttle,
            smtp_url,
            email_from,
            outbox_lease_seconds,
            events,
            web_dist,
        };
        Ok(config)
    }

    pub fn has_signing_secret(&self) -> bool {
        !self.tokens.hs256_secret.expose_secret().is_empty()
    }

    /// Local runs without JWT_SECRET get a random secret kept in the data
    /// directory, so tokens survive restarts. Never used under the host.
    pub fn ensure_local_signing_secret(&mut self) -> Result<(), ConfigError> {
        if self.has_signing_secret() {
            return Ok(());
        }
        let path = self.data_dir.join("dev-jwt-secret");
        let secret = match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().len() >= MIN_SECRET_BYTES => s.trim().to_owned(),
            _ => {
                let mut bytes = [0u8; 48];
                rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
                let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
                write_private(&path, &s).map_err(|e| {
                    bad("DATA_DIR", format!("cannot write {}: {e}", path.display()))
                })?;
                s
            }
        };
        self.tokens.hs256_secret = Secret::from(secret);
        Ok(())
    }
}

/// `AUTH_ISSUERS`, `SERVICE_TOKEN_ISSUERS`: comma-separated `ISSUER_URL`
/// (keys from its discovery document) or `ISSUER_URL|JWKS_URL` entries.
fn trusted_issuers(
    setting: &'static str,
    list: &str,
    own_issuer: &str,
) -> Result<Vec<TrustedIssuer>, ConfigError> {
    let mut issuers: Vec<TrustedIssuer> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (issuer, jwks_url) = match entry.split_once('|') {
            Some((issuer, jwks)) => (issuer.trim(), Some(jwks.trim())),
            None => (entry, None),
        };
        oidc::check_issuer(issuer).map_err(|p| bad(setting, format!("issuer {issuer:?} {p}")))?;
        if let Some(url) = jwks_url {
            oidc::check_url(url).map_err(|p| bad(setting, format!("JWKS URL {url:?} {p}")))?;
        }
        if issuer == own_issuer {
            return Err(bad(
                setting,
                format!("{issuer:?} is JWT_ISSUER, the issuer of this service's own tokens"),
            ));
        }
        if issuers.iter().any(|t| t.issuer == issuer) {
            return Err(bad(setting, format!("{issuer:?} is listed twice")));
        }
        issuers.push(TrustedIssuer {
            issuer: issuer.to_owned(),
            jwks_url: jwks_url.map(str::to_owned),
        });
    }
    Ok(issuers)
}

/// What `SERVICE_TOKEN_ISSUERS`, `SERVICE_TOKEN_AUDIENCE` and
/// `SERVICE_APPS` say, checked together.
struct ServiceTokens {
    issuers: Vec<TrustedIssuer>,
    audiences: Vec<String>,
    apps: Vec<ServiceApp>,
}

/// KRAFTD's services' Entra ID app tokens: their issuers (as
/// `AUTH_ISSUERS`; an issuer in both lists must name the same keys, since it
/// has one key cache), this API's audience (the application ID URI and/or
/// client id, comma-separated; never a user token's `JWT_AUDIENCE`) and the
/// applications allowed (`name=client_id`, comma-separated). The audience is
/// required with issuers; the other two are refused without them, so a
/// half-made configuration does not pass for a working one.
fn service_tokens(
    issuers: Option<String>,
    audience: Option<String>,
    apps: Option<String>,
    own_issuer: &str,
    user_audience: &str,
    user_issuers: &[TrustedIssuer],
) -> Result<ServiceTokens, ConfigError> {
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let Some(issuers) = issuers else {
        for (setting, value) in [
            ("SERVICE_TOKEN_AUDIENCE", &audience),
            ("SERVICE_APPS", &apps),
        ] {
            if value.is_some() {
                return Err(bad(setting, "is set but SERVICE_TOKEN_ISSUERS is not"));
            }
        }
        return Ok(ServiceTokens {
            issuers: Vec::new(),
            audiences: Vec::new(),
            apps: Vec::new(),
        });
    };
    let issuers = trusted_issuers("SERVICE_TOKEN_ISSUERS", &issuers, own_issuer)?;
    for t in &issuers {
        if let Some(user) = user_issuers.iter().find(|u| u.issuer == t.issuer) {
            if user.jwks_url != t.jwks_url {
                return Err(bad(
                    "SERVICE_TOKEN_ISSUERS",
                    format!(
                        "{:?} is in AUTH_ISSUERS with another JWKS URL: list it alike in both",
                        t.issuer
                    ),
                ));
            }
        }
    }
    let audiences = audience.as_deref().map(list).unwrap_or_default();
    if audiences.is_empty() {
        return Err(bad(
            "SERVICE_TOKEN_AUDIENCE",
            "is required with SERVICE_TOKEN_ISSUERS: this API's application ID URI or client id",
        ));
    }
    if audiences.iter().any(|a| a == user_audience) {
        return Err(bad(
            "SERVICE_TOKEN_AUDIENCE",
            format!("{user_audience:?} is JWT_AUDIENCE, the audience of users' tokens"),
        ));
    }
    let mut allowed: Vec<ServiceApp> = Vec::new();
    for entry in apps.as_deref().map(list).unwrap_or_default() {
        let (name, client_id) = entry
            .split_once('=')
            .map(|(n, id)| (n.trim(), id.trim()))
            .filter(|(_, id)| !id.is_empty() && !id.contains(['=', ' ']))
            .ok_or_else(|| {
                bad(
                    "SERVICE_APPS",
                    format!("{entry:?} is not NAME=CLIENT_ID (document-service=<guid>)"),
                )
            })?;
        if !is_service_name(name) {
            return Err(bad(
                "SERVICE_APPS",
                format!("{name:?} is not a name of 1 to 64 letters, digits, '-', '_' or '.'"),
            ));
        }
        if allowed
            .iter()
            .any(|a| a.name == name || a.client_id == client_id)
        {
            return Err(bad(
                "SERVICE_APPS",
                format!("{name}={client_id} repeats a name or client id"),
            ));
        }
        allowed.push(ServiceApp {
            name: name.to_owned(),
            client_id: client_id.to_owned(),
        });
    }
    Ok(ServiceTokens {
        issuers,
        audiences,
        apps: allowed,
    })
}

/// The address a browser on this machine reaches a server bound to `addr` at.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, addr.port()).into()
        }
        _ => addr,
    }
}

fn url_setting(setting: &'static str, v: String) -> Result<String, ConfigError> {
    if v.starts_with("https://") || v.starts_with("http://") {
        Ok(v)
    } else {
        Err(bad(setting, "must be an http(s) URL"))
    }
}

fn parse_port(setting: &'static str, v: &str) -> Result<u16, ConfigError> {
    v.parse::<u16>()
        .map_err(|_| bad(setting, format!("{v:?} is not a port number (0-65535)")))
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn settings_lists_exactly_what_is_read() {
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        let _ = Config::from_lookup(|k| {
            asked.lock().unwrap().insert(k.to_owned());
            // With an endpoint, the Cosmos settings are read too.
            (k == "COSMOS__accountEndpoint").then(|| "https://127.0.0.1:8081/".to_owned())
        });
        let mut listed: std::collections::BTreeSet<String> =
            SETTINGS.iter().map(|(n, _)| n.to_string()).collect();
        // Set by the Functions host, never by an operator.
        listed.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into());
        // RUST_LOG is read by the log filter, the vault's URL by `secrets`,
        // not by Config (AZURE_CLIENT_ID by both).
        for other in ["RUST_LOG", "KEY_VAULT_URL"] {
            listed.remove(other);
        }
        assert_eq!(asked.into_inner().unwrap(), listed);
    }

    #[test]
    fn every_setting_azure_must_carry_is_one_the_handler_knows() {
        for name in AZURE_REQUIRED_SETTINGS {
            // COSMOS__credential is the Functions host's, for the trigger.
            assert!(
                *name == "COSMOS__credential" || SETTINGS.iter().any(|(s, _)| s == name),
                "{name}"
            );
        }
    }

    #[test]
    fn local_defaults_bind_loopback_7071() {
        let c = with(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7071".parse().unwrap());
        assert_eq!(c.mode, RunMode::Local);
    }

    #[test]
    fn host_mode_binds_the_hosts_port_and_needs_a_secret() {
        let e = with(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "4321")])
            .err()
            .unwrap();
        assert_eq!(e.setting, "JWT_SECRET");
        let e = with(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "4321"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .err()
        .unwrap();
        assert_eq!(
            e.setting, "STRIPE_SECRET_KEY",
            "never a simulator under the host"
        );
        let c = with(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "4321"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("STRIPE_SECRET_KEY", "sk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b"),
            ("SMTP_URL", "smtp://127.0.0.1:2525"),
            ("PORT", "9999"),
        ])
        .unwrap();
        assert_eq!(c.webhook_secrets.len(), 2);
        assert_eq!(c.listen, "127.0.0.1:4321".parse().unwrap());
    }

    #[test]
    fn sign_in_throttle_defaults_and_overrides() {
        let c = with(&[]).unwrap();
        assert_eq!(c.throttle.per_address, Rate::new(20, 20).unwrap());
        assert_eq!(c.throttle.per_account, Rate::new(10, 5).unwrap());
        assert_eq!(c.throttle.backoff, Backoff::standard());
        let c = with(&[
            ("SIGN_IN_PER_ADDRESS_PER_MINUTE", "600"),
            ("SIGN_IN_PER_ACCOUNT_BURST", "50"),
            ("LOGIN_BACKOFF_AFTER_FAILURES", "3"),
            ("LOGIN_BACKOFF_MAX_SECONDS", "60"),
        ])
        .unwrap();
        assert_eq!(c.throttle.per_address, Rate::new(600, 20).unwrap());
        assert_eq!(c.throttle.per_account, Rate::new(10, 50).unwrap());
        assert_eq!(c.throttle.backoff.free_failures, 3);
        assert_eq!(c.throttle.backoff.max_wait, chrono::Duration::minutes(1));
    }

    #[test]
    fn return_urls_default_to_the_local_web_app_locally_and_to_kraftd_under_the_host() {
        let c = with(&[("PORT", "8080"), ("BIND_ADDRESS", "0.0.0.0")]).unwrap();
        assert_eq!(
            c.checkout_success_url,
            "http://127.0.0.1:8080/account?payment=success"
        );
        assert_eq!(c.checkout_cancel_url, "http://127.0.0.1:8080/pricing");
        assert_eq!(c.portal_return_url, "http://127.0.0.1:8080/account");
        let c = with(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "4321"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("STRIPE_SECRET_KEY", "sk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_a"),
            ("SMTP_URL", "smtp://127.0.0.1:2525"),
        ])
        .unwrap();
        assert_eq!(
            c.checkout_success_url,
            "https://kraftd.io/dashboard?payment=success"
        );
        assert_eq!(c.checkout_cancel_url, "https://kraftd.io/pricing");
        assert_eq!(c.portal_return_url, "https://kraftd.io/dashboard");
    }

    #[test]
    fn each_bad_value_names_its_setting_and_never_echoes_secrets() {
        for (name, value) in [
            ("FREE_PLAN_DOCS_LIMIT", "lots"),
            ("PRO_PLAN_API_LIMIT", "-1"),
            ("PRO_TRIAL_DAYS", "731"),
            ("PORT", "70000"),
            ("JWT_TTL_SECONDS", "5"),
            ("CORS_ALLOWED_ORIGINS", "kraftd.io"),
            ("LOG_FORMAT", "xml"),
            ("STORE", "mongo"),
            ("AUTH_ISSUERS", "http://idp.example.com"),
            (
                "AUTH_ISSUERS",
                "https://idp.example.com|http://idp.example.com/keys",
            ),
            (
                "AUTH_ISSUERS",
                "https://a.example.com, https://a.example.com",
            ),
            ("AUTH_ISSUERS", "kraftd"),
            ("AUTH_MAX_TOKEN_AGE_SECONDS", "forever"),
            (
                "SERVICE_TOKEN_ISSUERS",
                "http://login.microsoftonline.com/t/v2.0",
            ),
            ("SERVICE_TOKEN_AUDIENCE", "api://kraftd-billing"),
            ("SERVICE_APPS", "document-service=abc"),
            ("STRIPE_SECRET_KEY", "pk_live_publishable"),
            ("CHECKOUT_SUCCESS_URL", "kraftd.io/done"),
            ("PAST_DUE_GRACE_DAYS", "many"),
            ("SIGN_IN_PER_ADDRESS_PER_MINUTE", "0"),
            ("SIGN_IN_PER_ACCOUNT_BURST", "lots"),
            ("LOGIN_BACKOFF_MAX_SECONDS", "100000"),
            ("SMTP_URL", "mail.kraftd.io"),
            ("EMAIL_FROM", "not an address <"),
        ] {
            let e = with(&[
                (name, value),
                ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ])
            .err();
            assert_eq!(e.map(|e| e.setting), Some(name), "{name}={value}");
        }
        let e = with(&[("JWT_SECRET", "short-secret-value")]).err().unwrap();
        assert_eq!(e.setting, "JWT_SECRET");
        assert!(!e.to_string().contains("short-secret-value"));
    }

    #[test]
    fn trusted_issuers_are_https_or_loopback_with_discovery_or_a_jwks_url() {
        let c = with(&[(
            "AUTH_ISSUERS",
            " https://login.kraftd.io , http://127.0.0.1:9000|http://127.0.0.1:9000/keys,",
        )])
        .unwrap();
        assert_eq!(
            c.tokens.issuers,
            [
                TrustedIssuer {
                    issuer: "https://login.kraftd.io".into(),
                    jwks_url: None
                },
                TrustedIssuer {
                    issuer: "http://127.0.0.1:9000".into(),
                    jwks_url: Some("http://127.0.0.1:9000/keys".into())
                },
            ]
        );
        assert_eq!(c.tokens.max_token_age_seconds, 86_400);
        let c = with(&[]).unwrap();
        assert!(c.tokens.issuers.is_empty());
        let e = with(&[("AUTH_ISSUERS", "http://idp.example.com")])
            .err()
            .unwrap();
        assert!(e.to_string().contains("https://"), "{e}");
        assert_eq!(e.setting, "AUTH_ISSUERS");
        let c = with(&[("AUTH_MAX_TOKEN_AGE_SECONDS", "600")]).unwrap();
        assert_eq!(c.tokens.max_token_age_seconds, 600);
    }

    #[test]
    fn service_tokens_need_an_audience_apart_from_users_and_share_issuers_alike() {
        let entra = "https://login.microsoftonline.com/tid/v2.0";
        let c = with(&[
            ("SERVICE_TOKEN_ISSUERS", entra),
            (
                "SERVICE_TOKEN_AUDIENCE",
                "api://kraftd-billing, 11111111-2222-3333-4444-555555555555",
            ),
            (
                "SERVICE_APPS",
                "document-service=aaaa-1, export-service = bbbb-2",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.tokens.service_issuers,
            [TrustedIssuer {
                issuer: entra.into(),
                jwks_url: None
            }]
        );
        assert_eq!(
            c.tokens.service_audiences,
            [
                "api://kraftd-billing",
                "11111111-2222-3333-4444-555555555555"
            ]
        );
        assert_eq!(
            c.service_apps,
            [
                ServiceApp {
                    name: "document-service".into(),
                    client_id: "aaaa-1".into()
                },
                ServiceApp {
                    name: "export-service".into(),
                    client_id: "bbbb-2".into()
                },
            ]
        );
        // The same issuer for users and services: fine when listed alike.
        assert!(with(&[
            ("AUTH_ISSUERS", entra),
            ("SERVICE_TOKEN_ISSUERS", entra),
            ("SERVICE_TOKEN_AUDIENCE", "api://kraftd-billing"),
        ])
        .is_ok());
        let c = with(&[]).unwrap();
        assert!(c.tokens.service_issuers.is_empty() && c.service_apps.is_empty());

        let keys = format!("{entra}|https://login.microsoftonline.com/tid/discovery/v2.0/keys");
        for (vars, setting) in [
            (
                vec![("SERVICE_TOKEN_ISSUERS", entra)],
                "SERVICE_TOKEN_AUDIENCE",
            ),
            (
                vec![
                    ("SERVICE_TOKEN_ISSUERS", entra),
                    ("SERVICE_TOKEN_AUDIENCE", "kraftd-billing"),
                ],
                "SERVICE_TOKEN_AUDIENCE",
            ),
            (
                vec![("SERVICE_TOKEN_AUDIENCE", "api://kraftd-billing")],
                "SERVICE_TOKEN_AUDIENCE",
            ),
            (vec![("SERVICE_APPS", "doc=abc")], "SERVICE_APPS"),
            (
                vec![
                    ("AUTH_ISSUERS", entra),
                    ("SERVICE_TOKEN_ISSUERS", &keys),
                    ("SERVICE_TOKEN_AUDIENCE", "api://kraftd-billing"),
                ],
                "SERVICE_TOKEN_ISSUERS",
            ),
            (
                vec![
                    ("SERVICE_TOKEN_ISSUERS", "kraftd"),
                    ("SERVICE_TOKEN_AUDIENCE", "api://kraftd-billing"),
                ],
                "SERVICE_TOKEN_ISSUERS",
            ),
        ] {
            let e = with(&vars).err().map(|e| e.setting);
            assert_eq!(e, Some(setting), "{vars:?}");
        }
        for apps in ["doc", "doc=", "a b=x", "doc=x,doc=y", "a=x,b=x", "doc=x=y"] {
            let e = with(&[
                ("SERVICE_TOKEN_ISSUERS", entra),
                ("SERVICE_TOKEN_AUDIENCE", "api://kraftd-billing"),
                ("SERVICE_APPS", apps),
            ])
            .err()
            .map(|e| e.setting);
            assert_eq!(e, Some("SERVICE_APPS"), "{apps}");
        }
    }
}

//! `handler admin …`: the admin API from a terminal, for support staff and
//! whoever is on call. It is a client of the deployed service, not of its
//! store: it needs only a service key with the `admin` scope (from
//! `KRAFTD_ADMIN_KEY`, never a flag, so it stays out of shell history and
//! process lists), and every action it takes is the API's, with its checks
//! and its audit entry naming that key.

use clap::{ArgGroup, Args, Subcommand};
use reqwest_rustls as reqwest;
use serde_json::{json, Value};

/// Where the admin key is read from.
pub const KEY_VARIABLE: &str = "KRAFTD_ADMIN_KEY";

#[derive(Args)]
pub struct AdminArgs {
    /// The service's base URL (the Function App's, or a local run's).
    #[arg(
        long,
        env = "KRAFTD_BILLING_URL",
        default_value = "http://127.0.0.1:7071"
    )]
    pub url: String,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// The health of billing: webhooks failing, subscriptions stale,
    /// emails stuck or failed, events undelivered.
    Health,
    /// Accounts by a member's email, a Stripe customer or a subscription.
    #[command(group(ArgGroup::new("by").required(true)))]
    Find {
        #[arg(long, group = "by")]
        email: Option<String>,
        #[arg(long, group = "by")]
        customer: Option<String>,
        #[arg(long, group = "by")]
        subscription: Option<String>,
    },
    /// One account whole: plan, subscription, members, usage, overrides,
    /// invoices, emails.
    Show { account: String },
    /// Re-reads the account's subscription from Stripe now.
    Resync { account: String },
    /// The account's audit log, newest first.
    Audit { account: String },
}

/// What a command asks of the admin API.
pub struct AdminRequest {
    pub method: reqwest::Method,
    /// Below `/api/admin`, each segment as typed (encoded when sent).
    pub segments: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl AdminCommand {
    pub fn request(&self) -> AdminRequest {
        use reqwest::Method;
        let on = |method, segments: &[&str], body| AdminRequest {
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body,
        };
        match self {
            AdminCommand::Health => on(Method::GET, &["health", "billing"], None),
            AdminCommand::Find {
                email,
                customer,
                subscription,
            } => AdminRequest {
                query: [
                    ("email", email),
                    ("customer", customer),
                    ("subscription", subscription),
                ]
                .into_iter()
                .filter_map(|(by, v)| v.clone().map(|v| (by, v)))
                .collect(),
                ..on(Method::GET, &["accounts"], None)
            },
            AdminCommand::Show { account } => on(Method::GET, &["accounts", account], None),
            AdminCommand::Resync { account } => on(
                Method::POST,
                &["accounts", account, "resync"],
                Some(json!({})),
            ),
            AdminCommand::Audit { account } => {
                on(Method::GET, &["accounts", account, "audit"], None)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{KEY_VARIABLE} is not set: a service key with the admin scope (`handler service-keys create --scopes admin`)")]
    NoKey,
    #[error("not a base URL: {0}")]
    BadUrl(String),
    #[error("could not reach {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The service's own refusal, as its error body says it.
    #[error("{status}: {body}")]
    Refused { status: u16, body: String },
}

/// Sends the command's request with `key`; the answer's JSON (`null` for
/// an empty one).
pub async fn run(url: &str, key: &str, command: &AdminCommand) -> Result<Value, AdminError> {
    let request = command.request();
    let mut target = reqwest::Url::parse(url)
        .ok()
        .filter(|u| !u.cannot_be_a_base())
        .ok_or_else(|| AdminError::BadUrl(url.to_owned()))?;
    target
        .path_segments_mut()
        .map_err(|()| AdminError::BadUrl(url.to_owned()))?
        .pop_if_empty()
        .extend(["api", "admin"])
        .extend(&request.segments);
    if !request.query.is_empty() {
        target.query_pairs_mut().extend_pairs(&request.query);
    }
    let url = target.to_string();
    let mut call = reqwest::Client::new()
        .request(request.method, target)
        .bearer_auth(key);
    if let Some(body) = request.body {
        call = call
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let unreachable = |source| AdminError::Unreachable {
        url: url.clone(),
        source,
    };
    let response = call.send().await.map_err(unreachable)?;
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(AdminError::Refused {
            status: status.as_u16(),
            body: text,
        });
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

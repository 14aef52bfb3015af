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
    /// Who is acting (your email), recorded in the audit log beside the
    /// key's name.
    #[arg(long = "as", env = "KRAFTD_ADMIN_ACTOR")]
    pub actor: Option<String>,
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
    /// Overrides a limit or a feature of the account's plan at once, or
    /// extends its trial.
    #[command(group(ArgGroup::new("what").required(true)))]
    Override {
        account: String,
        /// A limit to set: documents, api_calls, storage_mb, team_members.
        #[arg(long, group = "what", requires = "value")]
        limit: Option<String>,
        /// A feature to turn on or off: ai_features, sso, ...
        #[arg(long, group = "what", requires = "value")]
        feature: Option<String>,
        /// Days to add to a trialing account's trial (1 to 90), at Stripe.
        #[arg(long, group = "what", conflicts_with_all = ["value", "expires_at"])]
        trial_extension_days: Option<u32>,
        /// A whole number for a limit, true or false for a feature.
        #[arg(long)]
        value: Option<String>,
        #[arg(long)]
        reason: String,
        /// When it stops counting (RFC 3339, UTC); none: until removed.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Removes an override.
    RemoveOverride {
        account: String,
        override_id: String,
    },
    /// Gives usage back in the metric's current window.
    Credit {
        account: String,
        #[arg(long)]
        metric: String,
        #[arg(long)]
        quantity: u64,
        #[arg(long)]
        reason: String,
        /// Names the credit, so running it again credits nothing more; a
        /// new one when absent (printed, to retry with).
        #[arg(long)]
        key: Option<String>,
    },
    /// Makes the account an Enterprise offer (README, "The Enterprise
    /// sales flow").
    #[command(group(ArgGroup::new("price").required(true)))]
    Offer {
        account: String,
        /// A recurring Stripe price of the Enterprise plan.
        #[arg(long, group = "price")]
        price_id: Option<String>,
        /// A new price: the amount in the currency's minor unit.
        #[arg(long, group = "price", requires_all = ["currency", "interval"])]
        amount: Option<i64>,
        #[arg(long)]
        currency: Option<String>,
        /// monthly or annual.
        #[arg(long)]
        interval: Option<String>,
        /// A negotiated limit, METRIC=N; repeat for more.
        #[arg(long = "limit", value_parser = metric_value)]
        limits: Vec<(String, u64)>,
        #[arg(long)]
        reason: String,
        /// The offer's validity (RFC 3339, UTC).
        #[arg(long)]
        expires_at: Option<String>,
        /// Move the live subscription to the price now, prorated.
        #[arg(long)]
        attach: bool,
    },
}

fn metric_value(s: &str) -> Result<(String, u64), String> {
    let (metric, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not METRIC=N"))?;
    let value = value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number"))?;
    Ok((metric.to_owned(), value))
}

/// What a command asks of the admin API.
pub struct AdminRequest {
    pub method: reqwest::Method,
    /// Below `/api/admin`, each segment as typed (encoded when sent).
    pub segments: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl AdminCommand {
    pub fn request(&self) -> AdminRequest {
        use reqwest::Method;
        let on = |method, segments: &[&str], body| AdminRequest {
            method,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            headers: Vec::new(),
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
            AdminCommand::Override {
                account,
                limit,
                feature,
                trial_extension_days,
                value,
                reason,
                expires_at,
            } => {
                let mut body = json!({"reason": reason});
                if let Some(value) = value {
                    // The service says what a value may be; a bare word is a string.
                    body["value"] = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
                }
                if let Some(days) = trial_extension_days {
                    body["trial_extension_days"] = json!(days);
                }
                if let Some(limit) = limit {
                    body["limit"] = json!(limit);
                }
                if let Some(feature) = feature {
                    body["feature"] = json!(feature);
                }
                if let Some(at) = expires_at {
                    body["expires_at"] = json!(at);
                }
                on(
                    Method::POST,
                    &["accounts", account, "overrides"],
                    Some(body),
                )
            }
            AdminCommand::RemoveOverride {
                account,
                override_id,
            } => on(
                Method::DELETE,
                &["accounts", account, "overrides", override_id],
                None,
            ),
            AdminCommand::Credit {
                account,
                metric,
                quantity,
                reason,
                key,
            } => AdminRequest {
                headers: vec![(
                    "idempotency-key",
                    key.clone()
                        .unwrap_or_else(|| format!("credit-{}", uuid::Uuid::new_v4())),
                )],
                ..on(
                    Method::POST,
                    &["accounts", account, "credits"],
                    Some(json!({"metric": metric, "quantity": quantity, "reason": reason})),
                )
            },
            AdminCommand::Offer {
                account,
                price_id,
                amount,
                currency,
                interval,
                limits,
                reason,
                expires_at,
                attach,
            } => {
                let mut body = json!({
                    "limits": limits
                        .iter()
                        .map(|(m, n)| (m.clone(), Value::from(*n)))
                        .collect::<serde_json::Map<_, _>>(),
                    "reason": reason,
                    "attach": attach,
                });
                for (name, value) in [
                    ("price_id", price_id.clone().map(Value::from)),
                    ("amount", amount.map(Value::from)),
                    ("currency", currency.clone().map(Value::from)),
                    ("interval", interval.clone().map(Value::from)),
                    ("expires_at", expires_at.clone().map(Value::from)),
                ] {
                    if let Some(value) = value {
                        body[name] = value;
                    }
                }
                on(
                    Method::POST,
                    &["accounts", account, "enterprise-offers"],
                    Some(body),
                )
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
pub async fn run(
    url: &str,
    key: &str,
    actor: Option<&str>,
    command: &AdminCommand,
) -> Result<Value, AdminError> {
    let request = command.request();
    if let Some((_, key)) = request
        .headers
        .iter()
        .find(|(h, _)| *h == "idempotency-key")
    {
        // Before sending: an answer lost on the way back is retried with it.
        eprintln!("Idempotency-Key: {key} (run again with --key {key} to retry)");
    }
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
    for (name, value) in &request.headers {
        call = call.header(*name, value);
    }
    if let Some(person) = actor {
        call = call.header("x-admin-actor", person);
    }
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

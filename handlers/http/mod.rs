//! The HTTP face of the service: thin handlers per resource, one error
//! mapping, and the middleware every request passes through.

pub mod accounts;
pub mod admin;
pub mod billing;
pub mod billing_health;
pub mod client_address;
pub mod enterprise;
pub mod error;
pub mod health;
pub mod json;
mod layers;
mod metered_schema;
pub mod metering;
pub mod openapi;
pub mod plans;
pub mod routes;
pub mod service;
pub mod team;
pub mod triggers;
pub mod usage;
pub mod web_app;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::routing::MethodFilter;
use axum::Router;

use crate::app::Billing;
use client_address::ClientAddresses;
use routes::{Access, Throttle, CHANGE_FEED_FUNCTIONS, HTTP_FUNCTIONS, TIMER_FUNCTIONS};
use web_app::WebApp;

/// Request bodies past this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub billing: Arc<Billing>,
    pub plans: Arc<plans::CachedCatalog>,
    pub upgrade_url: Arc<str>,
    /// Where a request's client address comes from.
    pub client_addresses: ClientAddresses,
}

impl AppState {
    pub fn new(billing: Billing, upgrade_url: &str, client_addresses: ClientAddresses) -> Self {
        let plans = Arc::new(plans::CachedCatalog::new(billing.catalog()));
        Self {
            billing: Arc::new(billing),
            plans,
            upgrade_url: upgrade_url.into(),
            client_addresses,
        }
    }
}

/// The whole service as one router, built from the route table.
pub fn router(state: AppState, cors_origins: &[String]) -> Router {
    build(state, cors_origins, None)
}

/// The service plus the built web app at `/` (for `handler serve`).
pub fn router_with_web_app(state: AppState, cors_origins: &[String], web: WebApp) -> Router {
    build(state, cors_origins, Some(web))
}

fn build(state: AppState, cors_origins: &[String], web: Option<WebApp>) -> Router {
    let mut api = Router::new();
    for f in HTTP_FUNCTIONS {
        let methods = f
            .methods
            .iter()
            .map(|m| m.filter())
            .reduce(MethodFilter::or)
            .expect("every function has a method");
        let mut route = (f.mount)(methods);
        route = match f.access {
            Access::Public => route,
            Access::User => {
                route.route_layer(from_fn_with_state(state.clone(), metering::require_user))
            }
            Access::Member => {
                route.route_layer(from_fn_with_state(state.clone(), metering::require_member))
            }
            Access::Service(scope) | Access::ServiceOrMember(scope) => {
                let members_read = matches!(f.access, Access::ServiceOrMember(_));
                route.route_layer(from_fn_with_state(
                    state.clone(),
                    move |State(state): State<AppState>, req: Request, next: Next| {
                        metering::require_service(state, scope, members_read, req, next)
                    },
                ))
            }
        };
        // Added last, so it runs first: before the token is checked.
        route = match f.throttle {
            Throttle::None => route,
            Throttle::SignIn => {
                route.route_layer(from_fn_with_state(state.clone(), layers::throttle_sign_in))
            }
        };
        api = api.route(&f.path(), route);
    }
    // Non-HTTP triggers: the host POSTs to /<FunctionName> over loopback.
    for f in TIMER_FUNCTIONS {
        let route = (f.mount)().route_layer(from_fn(layers::host_only));
        api = api.route(&format!("/{}", f.name), route);
    }
    for f in CHANGE_FEED_FUNCTIONS {
        let route = (f.mount)().route_layer(from_fn(layers::host_only));
        api = api.route(&format!("/{}", f.name), route);
    }
    let api = match web {
        Some(web) => api.fallback(move |req: Request| web.serve(req)),
        None => api.fallback(error::not_found),
    };
    api.layer(from_fn(layers::method_not_allowed_as_json))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), layers::upgrade_links))
        .layer(from_fn(layers::request_id))
        .layer(layers::trace())
        .layer(from_fn(layers::no_store_by_default))
        .layer(layers::cors(cors_origins))
        .with_state(state)
}

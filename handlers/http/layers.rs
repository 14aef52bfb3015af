use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use super::client_address::{client_address, ClientAddress};
use super::error::{ApiError, UpgradeHint};
use super::AppState;

/// The Functions host's id for this invocation, carried into every log line.
const INVOCATION_ID: &str = "x-azure-functions-invocationid";

/// One span per request with method, path (never the query: it may carry
/// tokens) and the host's invocation id. Headers and bodies are never logged.
pub fn trace() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, fn(&Request) -> tracing::Span>
{
    fn span(req: &Request) -> tracing::Span {
        let invocation = req
            .headers()
            .get(INVOCATION_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!(
            "request",
            method = %req.method(),
            path = %loggable_path(req.uri().path()),
            invocation_id = %invocation,
            request_id = tracing::field::Empty,
        )
    }
    TraceLayer::new_for_http()
        .make_span_with(span as fn(&Request) -> tracing::Span)
        .on_response(DefaultOnResponse::new().level(Level::INFO))
}

/// The path as logs may show it: an invitation's token is a credential
/// (whoever holds it may join the account), so its segment is replaced.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    // Paths whose next segment is a link's token: the API's acceptance,
    // and the web app's pages the emailed links open.
    const SECRET_AFTER: [&str; 3] = ["/api/invitations/", "/invitations/", "/verify-email/"];
    for prefix in SECRET_AFTER {
        if let Some(rest) = path.strip_prefix(prefix) {
            let tail = rest.find('/').map_or("", |i| &rest[i..]);
            return format!("{prefix}{{token}}{tail}").into();
        }
    }
    path.into()
}

pub fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static(super::metering::ACCOUNT_HEADER),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::ETAG,
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("x-upgrade-url"),
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being answered, for an error answer to name: the
/// same id is in the answer's `X-Request-Id` and on every log line of it.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Gives each request an id: the host's invocation id when the Functions
/// host forwarded it (so the host's logs and ours agree), else a new one. A
/// client's own `X-Request-Id` is not trusted as ours.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(INVOCATION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    tracing::Span::current().record("request_id", id.as_str());
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Turns an upgrade hint on a response into `X-Upgrade-Url`.
pub async fn upgrade_links(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    if let Some(UpgradeHint(plan)) = response.extensions().get::<UpgradeHint>().copied() {
        let sep = if state.upgrade_url.contains('?') {
            '&'
        } else {
            '?'
        };
        if let Ok(v) = HeaderValue::from_str(&format!("{}{sep}plan={plan}", state.upgrade_url)) {
            response.headers_mut().insert("x-upgrade-url", v);
        }
    }
    response
}

/// Billing answers are per user: no cache may keep them unless a handler
/// says otherwise (the public plan catalog does).
pub async fn no_store_by_default(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// axum's own 405 carries the `Allow` header but an empty body; keep the
/// header and give it the service's error shape.
pub async fn method_not_allowed_as_json(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let mut json = ApiError::MethodNotAllowed.into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        json.headers_mut().insert(header::ALLOW, allow.clone());
    }
    json
}

/// The per-address limit of the routes the route table marks
/// `Throttle::SignIn`; the per-account limits are their use-cases'.
/// The timer and change-feed endpoints answer the Functions host alone,
/// which POSTs JSON over loopback. Locally (`handler serve`) they share the
/// listener with the web app, so a browser-style request (one with an
/// `Origin`, or a form or text body that needs no CORS preflight) is
/// refused before it can run a sweep or a rollup.
pub async fn host_only(req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::ORIGIN) {
        return ApiError::NotFromHost.into_response();
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return ApiError::UnsupportedMediaType.into_response();
    }
    next.run(req).await
}

pub async fn throttle_sign_in(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let address = client_address(state.client_addresses, req.headers(), peer);
    match state.billing.admit_client(address) {
        Ok(()) => {
            // The use-case's throttles key by it too (the login back-off).
            let mut req = req;
            req.extensions_mut().insert(ClientAddress(address));
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn link_tokens_never_reach_the_log() {
        for (path, logged) in [
            (
                "/api/invitations/abc-def/accept",
                "/api/invitations/{token}/accept",
            ),
            ("/invitations/abc-def", "/invitations/{token}"),
            ("/verify-email/abc-def", "/verify-email/{token}"),
            ("/api/auth/verify-email", "/api/auth/verify-email"),
            ("/api/usage", "/api/usage"),
        ] {
            assert_eq!(loggable_path(path), logged);
        }
    }
}

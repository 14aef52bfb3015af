//! The OpenAPI 3.1 document of every HTTP function, built from the code.
//!
//! Each handler's `#[utoipa::path]` gives its path, method, bodies and the
//! answers only it gives; the types' `ToSchema` derives give the schemas.
//! The route table gives each operation its id (the function's name) and
//! its caller, and the answers the shared layers give are added here by
//! rule, once:
//! - signed in (`Access::User`, `Access::Member`): bearer security, 401
//!   (`WWW-Authenticate`);
//! - acting on an account (`Access::Member`): the `X-Account-Id` header and
//!   404 `account_not_found` (billing routes are not metered);
//! - KRAFTD's services (`Access::Service`, `ServiceOrMember`): 403
//!   `missing_scope`, 404 `account_not_found`, `Retry-After` on 429, and on
//!   the routes named below the RateLimit fields and `Idempotent-Replayed`;
//! - sign-in throttled (`Throttle::SignIn`): 429 `rate_limited` (`Retry-After`);
//! - 403, and 429 on the usage-writing routes, carry `X-Upgrade-Url` (the
//!   upgrade-link layer);
//! - every operation: `default`, the error shape for 5xx (`Retry-After` on 503).
//!
//! `handler openapi write` commits the document as `openapi.json`; a test
//! keeps the two in step and checks the table and the document agree.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, Content, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required,
};
use utoipa::{IntoResponses, ToSchema};

use super::error::ErrorResponse;
use super::routes::{Access, Throttle, HTTP_FUNCTIONS};
use crate::domain::service::Scope;

/// The committed copy, at the repository root.
pub const FILE: &str = "openapi.json";

/// The security scheme's name in `components.securitySchemes`.
const BEARER: &str = "bearer";

/// What one handler's `#[utoipa::path]` declares.
pub struct OperationDoc {
    pub path: String,
    pub methods: Vec<HttpMethod>,
    pub operation: Operation,
    /// The schemas its bodies name, with everything they name in turn.
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

/// The route table's link to a handler's declaration: `doc::<module::__path_handler>`
/// (the struct `#[utoipa::path]` generates beside the handler).
/// (`__dev` is the macro's own interface, which utoipa-axum uses too.)
pub fn doc<P>() -> OperationDoc
where
    P: utoipa::Path + utoipa::__dev::SchemaReferences + for<'t> utoipa::__dev::Tags<'t>,
{
    let mut schemas = Vec::new();
    P::schemas(&mut schemas);
    let mut operation = P::operation();
    let tags: Vec<String> = P::tags().into_iter().map(str::to_owned).collect();
    if !tags.is_empty() {
        operation.tags = Some(tags);
    }
    OperationDoc {
        path: P::path(),
        methods: P::methods(),
        operation,
        schemas,
    }
}

fn error_response(description: &str) -> ApiResponse {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name(ErrorResponse::name()))),
        )
        .build()
}

/// What every handler taking a JSON body (`ApiJson`) can answer before it
/// runs. Named in the handlers' `responses(...)`.
pub struct JsonBodyErrors;

impl IntoResponses for JsonBodyErrors {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        [
            ("400", "`malformed_json`, with the line and column"),
            ("413", "`payload_too_large`: over `max_bytes` (1 MiB)"),
            (
                "415",
                "`unsupported_media_type`: the body must be `application/json`",
            ),
            (
                "422",
                "`invalid_field`: the `field` that is missing or wrong",
            ),
        ]
        .into_iter()
        .map(|(status, text)| (status.to_owned(), error_response(text).into()))
        .collect()
    }
}

fn integer_header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .description(Some(description))
        .build()
}

fn string_header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

fn retry_after() -> utoipa::openapi::Header {
    integer_header("Seconds to wait before trying again")
}

/// The RateLimit headers of the metric an answer is about (`http::service`):
/// the IETF draft's pair, and the older three fields while clients move.
fn rate_limit_headers() -> [(&'static str, utoipa::openapi::Header); 5] {
    [
        (
            "RateLimit-Policy",
            string_header(
                "The limit of the metric asked about, as the IETF draft writes it: \
                 `\"documents\";q=50;w=2678400` (quota, window seconds); absent when unlimited",
            ),
        ),
        (
            "RateLimit",
            string_header(
                "What is left of it: `\"documents\";r=12;t=86400` (remaining, seconds to \
                 the reset); absent when unlimited",
            ),
        ),
        (
            "RateLimit-Limit",
            integer_header("The metric's limit; absent when unlimited"),
        ),
        (
            "RateLimit-Remaining",
            integer_header("What is left of it; absent when unlimited"),
        ),
        (
            "RateLimit-Reset",
            integer_header("Seconds until its window resets; absent for gauges and when unlimited"),
        ),
    ]
}

fn responses(op: &mut Operation) -> &mut BTreeMap<String, RefOr<ApiResponse>> {
    &mut op.responses.responses
}

/// Adds a response unless the handler declared that status itself.
fn answer(op: &mut Operation, status: &str, response: ApiResponse) {
    responses(op)
        .entry(status.to_owned())
        .or_insert(response.into());
}

fn add_header(response: &mut RefOr<ApiResponse>, name: &str, header: utoipa::openapi::Header) {
    if let RefOr::T(r) = response {
        r.headers.entry(name.to_owned()).or_insert(header);
    }
}

/// The answers the metering layer gives a signed-in function.
fn signed_in(op: &mut Operation) {
    op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    answer(
        op,
        "401",
        error_response("`unauthenticated`: no bearer token, or one that is invalid or expired"),
    );
    let unauthenticated = responses(op).get_mut("401").expect("just added");
    add_header(
        unauthenticated,
        "WWW-Authenticate",
        string_header("`Bearer`"),
    );
}

/// A route that acts on an account the caller is a member of.
fn acting_member(op: &mut Operation) {
    let account = ParameterBuilder::new()
        .name("X-Account-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "The account to act on (one of `GET /api/accounts`); the caller's own when absent.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        ))
        .build();
    op.parameters.get_or_insert_with(Vec::new).push(account);
    answer(
        op,
        "404",
        error_response(
            "`account_not_found`: `X-Account-Id` names no account of the caller's \
             (other codes where the operation says so)",
        ),
    );
}

/// The service routes whose answers state the limit of the metric they
/// are about (`http::service`): admitted, and refused by the quota.
const STATE_THEIR_LIMIT: [&str; 4] = [
    "ReportUsage",
    "ReportApiCalls",
    "CreateReservation",
    "SetGauge",
];
/// The service routes named by an `Idempotency-Key`.
const TAKE_A_KEY: [&str; 2] = ["ReportUsage", "CreateReservation"];

/// A route KRAFTD's services call on the account the path names.
fn service(op: &mut Operation, scope: Scope, states_limit: bool, takes_key: bool) {
    answer(
        op,
        "403",
        error_response(&format!(
            "`missing_scope`: the credential does not carry `{}` (a user token on a route \
             only services may call); other codes where the operation says so",
            scope.as_str()
        )),
    );
    answer(
        op,
        "404",
        error_response(
            "`account_not_found`: no such account (other codes where the operation says so)",
        ),
    );
    if let Some(limited) = responses(op).get_mut("429") {
        add_header(limited, "Retry-After", retry_after());
    }
    if takes_key {
        for (status, response) in responses(op) {
            if ["200", "201"].contains(&status.as_str()) {
                add_header(
                    response,
                    "Idempotent-Replayed",
                    string_header(
                        "`true` when this answer repeats the first answer to its \
                         Idempotency-Key (nothing was counted again); absent otherwise",
                    ),
                );
            }
        }
    }
    if states_limit {
        for (status, response) in responses(op) {
            if ["200", "201", "403", "429"].contains(&status.as_str()) {
                for (name, header) in rate_limit_headers() {
                    add_header(response, name, header);
                }
            }
        }
    }
}

/// The sign-in throttle's answer (`layers::throttle_sign_in` and the
/// use-cases' per-account limits).
fn throttled(op: &mut Operation) {
    answer(
        op,
        "429",
        error_response(
            "`rate_limited`: too many attempts from this address or for this account, \
             or failed logins backing off; retry after `Retry-After` seconds",
        ),
    );
    let limited = responses(op).get_mut("429").expect("just added");
    add_header(limited, "Retry-After", retry_after());
}

/// Every function's answer to what goes wrong on the server side.
fn fallback(op: &mut Operation) {
    answer(
        op,
        "default",
        error_response(
            "Any other error: 5xx (`internal_error`; `temporarily_unavailable` and \
             `payments_unavailable`, with `Retry-After`; `payment_provider_error`)",
        ),
    );
}

/// The headers the error mapping and the upgrade-link layer add (a 429
/// names an upgrade only where it is the plan's API-call quota).
fn error_headers(op: &mut Operation, metered: bool) {
    for (status, response) in responses(op) {
        if status == "default" {
            add_header(response, "Retry-After", retry_after());
        }
        if status == "403" || (status == "429" && metered) {
            add_header(
                response,
                "X-Upgrade-Url",
                string_header("The pricing page for the next tier up; absent at the top tier"),
            );
        }
    }
}

fn collect<T: ToSchema>(into: &mut Vec<(String, RefOr<Schema>)>) {
    into.push((T::name().into_owned(), T::schema()));
    T::schemas(into);
}

/// Every HTTP function of the route table, documented.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    let mut schemas = Vec::new();
    collect::<ErrorResponse>(&mut schemas);
    for f in HTTP_FUNCTIONS {
        let mut d = (f.doc)();
        d.operation.operation_id = Some(f.name.to_owned());
        fallback(&mut d.operation);
        if f.access.signed_in() {
            signed_in(&mut d.operation);
        }
        match f.access {
            Access::Member => acting_member(&mut d.operation),
            Access::Service(scope) | Access::ServiceOrMember(scope) => service(
                &mut d.operation,
                scope,
                STATE_THEIR_LIMIT.contains(&f.name),
                TAKE_A_KEY.contains(&f.name),
            ),
            Access::Public | Access::User => {}
        }
        if f.throttle == Throttle::SignIn {
            throttled(&mut d.operation);
        }
        error_headers(
            &mut d.operation,
            matches!(f.access, Access::Service(Scope::UsageWrite)),
        );
        paths.add_path_operation(&d.path, d.methods, d.operation);
        schemas.extend(d.schemas);
    }
    let mut components = Components::new();
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A user's token from `POST /api/auth/login` or registration (HS256), or one \
                     of a trusted OpenID Connect issuer (RS256 or ES256, checked with the \
                     issuer's published keys); or, on the `/api/accounts/{account_id}/…` \
                     service routes, a service key (`kbsk_…`, from `handler service-keys \
                     create`) or an Entra ID app-only access token of KRAFTD's services \
                     (client credentials; scopes from its `roles`) carrying the route's scope. \
                     Billing routes count no API calls.",
                ))
                .build(),
        ),
    );
    components.schemas = unique(schemas);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("KRAFTD billing")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Plans, accounts, usage quotas and payments of KRAFTD. Money is integer \
                     minor units (cents) with a currency; times are UTC (RFC 3339). Every error \
                     is `{\"error\": {\"code\", \"message\", ...}}`.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// One schema per name: two types that share a name would otherwise
/// silently replace one another.
fn unique(schemas: Vec<(String, RefOr<Schema>)>) -> BTreeMap<String, RefOr<Schema>> {
    let mut out = BTreeMap::new();
    for (name, schema) in schemas {
        if let Some(before) = out.get(&name) {
            let same = serde_json::to_value(before).ok() == serde_json::to_value(&schema).ok();
            assert!(same, "two different schemas are named {name}: rename one");
        } else {
            out.insert(name, schema);
        }
    }
    out
}

/// The document as committed and served.
pub fn to_json() -> String {
    serde_json::to_string_pretty(&document()).expect("the document serialises") + "\n"
}

/// Writes the document to `path`.
pub fn write(path: &Path) -> io::Result<()> {
    std::fs::write(path, to_json())
}

/// Whether `path` holds exactly the document the code generates.
pub fn is_current(path: &Path) -> io::Result<bool> {
    Ok(std::fs::read_to_string(path)? == to_json())
}

/// This document
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document of every HTTP function",
        content_type = "application/json", body = Object)),
)]
pub async fn serve() -> Response {
    // The document is a function of the code: build it once per process.
    static JSON: OnceLock<Bytes> = OnceLock::new();
    let body = JSON.get_or_init(|| to_json().into()).clone();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

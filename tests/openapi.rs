//! The OpenAPI document is in step with the code, agrees with the route
//! table, is valid OpenAPI 3.1, and tells the truth: real answers of a
//! running service validate against the schemas it documents, with no
//! undocumented field or header.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kraftd_billing::http::openapi;
use kraftd_billing::http::routes::{Access, HTTP_FUNCTIONS};
use serde_json::{json, Map, Value};
use support::{TestApp, PASSWORD};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn committed() -> Value {
    let text = std::fs::read_to_string(root().join(openapi::FILE)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn generated() -> Value {
    serde_json::from_str(&openapi::to_json()).unwrap()
}

#[test]
fn committed_openapi_json_is_what_the_code_generates() {
    assert!(
        openapi::is_current(&root().join(openapi::FILE)).unwrap(),
        "openapi.json is stale: run `cargo run --bin handler -- openapi write`"
    );
}

#[test]
fn the_cli_writes_the_document_and_checks_a_stale_one() {
    let handler = env!("CARGO_BIN_EXE_handler");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, "{}\n").unwrap();
    let check = || {
        Command::new(handler)
            .args(["openapi", "check"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let stale = check();
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("openapi write"));
    let write = Command::new(handler)
        .args(["openapi", "write"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(write.status.success());
    assert!(check().status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), openapi::to_json());
}

/// (path, method) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect()
}

type Route = (String, String);

/// Routes of the table missing from `doc`, and operations of `doc` the
/// table lacks, as (path, method).
fn route_differences(doc: &Value) -> (Vec<Route>, Vec<Route>) {
    let table: BTreeSet<Route> = HTTP_FUNCTIONS
        .iter()
        .flat_map(|f| f.methods.iter().map(|m| (f.path(), m.as_str().to_owned())))
        .collect();
    let documented = operations(doc);
    (
        table.difference(&documented).cloned().collect(),
        documented.difference(&table).cloned().collect(),
    )
}

#[test]
fn the_document_has_exactly_the_routes_of_the_route_table() {
    let doc = generated();
    let (missing, extra) = route_differences(&doc);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "route table and document differ: missing from the document {missing:?}, \
         not in the table {extra:?} (the #[utoipa::path] of a handler disagrees with its entry)"
    );
    for f in HTTP_FUNCTIONS {
        for m in f.methods {
            let op = &doc["paths"][f.path()][m.as_str()];
            assert_eq!(op["operationId"], f.name, "{} {}", m.as_str(), f.path());
            let bearer = op["security"] == json!([{"bearer": []}]);
            assert_eq!(bearer, f.access.signed_in(), "security of {}", f.name);
            let account_header = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "X-Account-Id"));
            assert_eq!(
                account_header,
                f.access == Access::Member,
                "X-Account-Id of {}",
                f.name
            );
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()));
        }
    }
}

#[test]
fn a_handler_declared_at_another_path_or_method_is_caught() {
    let mut doc = generated();
    let paths = doc["paths"].as_object_mut().unwrap();
    let login = paths.remove("/api/auth/login").unwrap();
    paths.insert("/api/auth/signin".into(), login);
    let plans = paths["/api/plans"].as_object_mut().unwrap();
    let get = plans.remove("get").unwrap();
    plans.insert("put".into(), get);
    let route = |p: &str, m: &str| (p.to_owned(), m.to_owned());
    assert_eq!(
        route_differences(&doc),
        (
            vec![route("/api/auth/login", "post"), route("/api/plans", "get")],
            vec![
                route("/api/auth/signin", "post"),
                route("/api/plans", "put")
            ]
        )
    );
}

fn oas_validator() -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(root().join("tests/schemas/openapi/3.1-schema-2022-10-07.json"))
            .unwrap();
    jsonschema::draft202012::new(&serde_json::from_str(&text).unwrap())
        .expect("the OpenAPI 3.1 schema compiles")
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

/// Every `$ref` string in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let doc = generated();
    assert_eq!(doc["openapi"], "3.1.0");
    let problems = errors(&oas_validator(), &doc);
    assert!(problems.is_empty(), "not valid OpenAPI 3.1: {problems:#?}");

    // The OAS schema leaves schema objects to JSON Schema itself.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        assert!(
            jsonschema::meta::is_valid(schema),
            "components.schemas.{name} is not a JSON Schema"
        );
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let pointer = r.strip_prefix('#').expect("local references only");
        assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
    }
    let ids: Vec<&str> = HTTP_FUNCTIONS.iter().map(|f| f.name).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "operationIds are unique");
}

#[test]
fn the_openapi_schema_refuses_a_broken_document() {
    // Guards the validator itself: these must fail.
    let v = oas_validator();
    let mut undescribed = generated();
    undescribed["paths"]["/api/health"]["get"]["responses"]["200"]
        .as_object_mut()
        .unwrap()
        .remove("description");
    let mut old_version = generated();
    old_version["openapi"] = json!("3.0.3");
    let mut bad_security = generated();
    bad_security["components"]["securitySchemes"]["bearer"]["type"] = json!("token");
    for (what, doc) in [
        ("a response without description", undescribed),
        ("3.0", old_version),
        ("security type", bad_security),
    ] {
        assert!(!v.is_valid(&doc), "{what} passed");
    }
}

/// The component schemas, made strict for the check: an object may hold
/// only the properties its schema declares. (A schema that is part of an
/// `allOf` stays open; the `allOf` as a whole is closed instead.)
fn strict_components(doc: &Value) -> Value {
    let mut schemas = doc["components"]["schemas"].clone();
    let mut in_all_of = BTreeSet::new();
    for schema in schemas.as_object().unwrap().values() {
        for part in schema["allOf"].as_array().into_iter().flatten() {
            if let Some(r) = part["$ref"].as_str() {
                in_all_of.insert(r.rsplit('/').next().unwrap().to_owned());
            }
        }
    }
    for (name, schema) in schemas.as_object_mut().unwrap() {
        let s = schema.as_object_mut().unwrap();
        let closable =
            s.contains_key("allOf") || (s.contains_key("properties") && !in_all_of.contains(name));
        if closable && !s.contains_key("additionalProperties") {
            s.insert("unevaluatedProperties".into(), json!(false));
        }
    }
    json!({ "schemas": schemas })
}

/// The headers the shared layers add, which the document must show where
/// they are sent.
const DOCUMENTED_HEADERS: [&str; 10] = [
    "ratelimit",
    "ratelimit-policy",
    "idempotent-replayed",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "x-upgrade-url",
    "www-authenticate",
    "etag",
];

/// Whether a path is an instance of a documented route (`{name}` matches
/// any one segment).
fn same_route(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
}

struct Checker {
    doc: Value,
    components: Value,
}

impl Checker {
    fn new() -> Self {
        let doc = committed();
        let components = strict_components(&doc);
        Self { doc, components }
    }

    /// Sends the request and checks its answer against the document:
    /// the status is documented (or falls to `default`), the body
    /// validates against its schema, and every layer header is documented.
    async fn check(&self, req: reqwest::RequestBuilder, path: &str) -> (u16, Value) {
        let r = req.send().await.unwrap();
        assert!(
            same_route(path, r.url().path()),
            "{} is not {path}",
            r.url().path()
        );
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let method = self.method_of(path);
        let op = &self.doc["paths"][path][&method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let key = if op["responses"][status.to_string()].is_object() {
            status.to_string()
        } else {
            assert!(
                status >= 500,
                "{method} {path} answered {status}, which is not documented: {}",
                String::from_utf8_lossy(&bytes)
            );
            "default".to_owned()
        };
        let response = op["responses"][&key].clone();
        for name in DOCUMENTED_HEADERS {
            if headers.contains_key(name) {
                let documented = response["headers"]
                    .as_object()
                    .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name)));
                assert!(
                    documented,
                    "{method} {path} {status} sends {name}, undocumented"
                );
            }
        }
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        match response["content"]["application/json"]["schema"].as_object() {
            Some(schema) => {
                let content_type = headers["content-type"].to_str().unwrap();
                assert!(
                    content_type.starts_with("application/json"),
                    "{content_type}"
                );
                let problems = self.problems(schema.clone(), &body);
                assert!(
                    problems.is_empty(),
                    "{method} {path} {status} does not match the document: {problems:#?}\n{body:#}"
                );
            }
            None => assert!(
                bytes.is_empty(),
                "{method} {path} {status} has an undocumented body"
            ),
        }
        (status, body)
    }

    fn method_of(&self, path: &str) -> String {
        let item = self.doc["paths"][path].as_object().unwrap();
        assert_eq!(item.len(), 1, "one method per path here");
        item.keys().next().unwrap().clone()
    }

    /// What is wrong with `body` as an instance of `schema` (a schema of
    /// the document, whose `$ref`s point into its components).
    fn problems(&self, mut schema: Map<String, Value>, body: &Value) -> Vec<String> {
        schema.insert("components".into(), self.components.clone());
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&Value::Object(schema))
            .expect("the documented schema compiles");
        errors(&v, body)
    }
}

#[test]
fn the_strict_check_refuses_an_undocumented_field() {
    // Guards the checker itself.
    let c = Checker::new();
    let valid = |name: &str, body: Value| {
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        c.problems(schema.as_object().unwrap().clone(), &body)
            .is_empty()
    };
    assert!(valid(
        "PortalLink",
        json!({"url": "https://billing.example/p"})
    ));
    assert!(!valid(
        "PortalLink",
        json!({"url": "https://billing.example/p", "x": 1})
    ));
    assert!(!valid("PortalLink", json!({})));
    // Through an allOf: Price is Money and more.
    let price = json!({"interval": "monthly", "amount": 900, "currency": "usd", "lookup_key": "k"});
    assert!(valid("Price", price.clone()));
    let mut extra = price;
    extra["discount"] = json!(1);
    assert!(!valid("Price", extra));
    // Formats are checked.
    let window = |t: &str| json!({"start": t, "end": "2026-01-02T00:00:00Z"});
    assert!(valid("Window", window("2026-01-01T00:00:00Z")));
    assert!(!valid("Window", window("yesterday")));
}

#[tokio::test]
async fn real_answers_match_the_document() {
    let app = TestApp::spawn().await;
    let c = Checker::new();
    let get = |path: &str| app.client.get(app.url(path));
    let post = |path: &str| app.client.post(app.url(path));

    // Public functions.
    c.check(get("/api/health"), "/api/health").await;
    let (_, plans) = c.check(get("/api/plans"), "/api/plans").await;
    assert_eq!(plans["plans"].as_array().unwrap().len(), 3);
    let (_, served) = c.check(get("/api/openapi.json"), "/api/openapi.json").await;
    assert_eq!(
        served,
        committed(),
        "the service serves the committed document"
    );

    let register = "/api/auth/register/with-plan";
    let new_user =
        json!({"email": "doc@example.com", "password": PASSWORD, "name": "Doc", "plan_id": "free"});
    let (status, session) = c.check(post(register).json(&new_user), register).await;
    assert_eq!(status, 201);
    let token = session["access_token"].as_str().unwrap().to_owned();
    let (status, _) = c.check(post(register).json(&new_user), register).await;
    assert_eq!(status, 409);
    let (status, _) = c
        .check(
            post(register).json(&json!({"email": "x@example.com"})),
            register,
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = c
        .check(
            post(register)
                .header("content-type", "application/json")
                .body("{\"email\": "),
            register,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c.check(post(register).body("email=x"), register).await;
    assert_eq!(status, 415);
    let (status, _) = c
        .check(
            post(register)
                .header("content-type", "application/json")
                .body(vec![b' '; 1024 * 1024 + 1]),
            register,
        )
        .await;
    assert_eq!(status, 413);

    let login = "/api/auth/login";
    let (status, _) = c
        .check(
            post(login).json(&json!({"email": "doc@example.com", "password": PASSWORD})),
            login,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            post(login).json(&json!({"email": "doc@example.com", "password": "wrong horse 9"})),
            login,
        )
        .await;
    assert_eq!(status, 401);

    // Signed in.
    let as_user = |r: reqwest::RequestBuilder| r.bearer_auth(&token);
    let (status, _) = c.check(get("/api/usage"), "/api/usage").await;
    assert_eq!(status, 401);
    for path in [
        "/api/usage",
        "/api/entitlements",
        "/api/billing/subscription",
    ] {
        let (status, _) = c.check(as_user(get(path)), path).await;
        assert_eq!(status, 200, "{path}");
    }
    let invoices = "/api/billing/invoices";
    let (status, _) = c.check(as_user(get(invoices)), invoices).await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(as_user(get("/api/billing/invoices?limit=0")), invoices)
        .await;
    assert_eq!(status, 422);
    let portal = "/api/billing/customer-portal";
    let (status, _) = c.check(as_user(get(portal)), portal).await;
    assert_eq!(status, 409);

    // KRAFTD's services, on the user's account.
    let accounts: Value = app.get_json(&token, "/api/accounts").await;
    let account = accounts["accounts"][0]["id"].as_str().unwrap().to_owned();
    let service = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, app.url(&path.replace("{account_id}", &account)))
            .bearer_auth(&app.service_key)
    };
    let usage = "/api/accounts/{account_id}/usage";
    let report = |key: &str, body: Value| {
        service(reqwest::Method::POST, usage)
            .header("Idempotency-Key", key)
            .json(&body)
    };
    let docs = |n: u64| json!({"metric": "documents", "quantity": n});
    let (status, _) = c.check(report("a", docs(45)), usage).await;
    assert_eq!(status, 200);
    let (status, _) = c.check(report("a", docs(45)), usage).await;
    assert_eq!(status, 200, "replayed");
    let (status, refused) = c.check(report("a", docs(1)), usage).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    let xml = json!({"metric": "exports", "quantity": 1, "format": "xml"});
    let (status, refused) = c.check(report("b", xml), usage).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("not_in_plan"))
    );
    let (status, refused) = c
        .check(
            app.client
                .post(app.url(&usage.replace("{account_id}", &account)))
                .bearer_auth(&token)
                .header("Idempotency-Key", "c")
                .json(&docs(1)),
            usage,
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("missing_scope"))
    );
    let reservations = "/api/accounts/{account_id}/reservations";
    let (status, held) = c
        .check(
            service(reqwest::Method::POST, reservations)
                .header("Idempotency-Key", "r1")
                .json(&docs(3)),
            reservations,
        )
        .await;
    assert_eq!(status, 201);
    let id = held["id"].as_str().unwrap();
    let (status, refused) = c
        .check(
            service(reqwest::Method::POST, reservations)
                .header("Idempotency-Key", "r2")
                .json(&docs(3)),
            reservations,
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("quota_exceeded"))
    );
    let commit = "/api/accounts/{account_id}/reservations/{reservation_id}/commit";
    let commit_path = commit.replace("{reservation_id}", id);
    let (status, _) = c
        .check(
            service(reqwest::Method::POST, &commit_path).json(&json!({"quantity": 2})),
            commit,
        )
        .await;
    assert_eq!(status, 200);
    let release = "/api/accounts/{account_id}/reservations/{reservation_id}";
    let (status, _) = c
        .check(
            service(
                reqwest::Method::DELETE,
                &release.replace("{reservation_id}", id),
            ),
            release,
        )
        .await;
    assert_eq!(status, 409);
    let gauge = "/api/accounts/{account_id}/gauges/{metric}";
    let (status, _) = c
        .check(
            service(
                reqwest::Method::PUT,
                &gauge.replace("{metric}", "storage_mb"),
            )
            .json(&json!({"value": 10, "observed_at": "2026-01-01T00:00:00Z"})),
            gauge,
        )
        .await;
    assert_eq!(status, 200);
    let batch = "/api/accounts/{account_id}/usage/batch";
    let now = chrono::Utc::now();
    let (status, _) = c
        .check(
            service(reqwest::Method::POST, batch).json(&json!({"events": [
                {"id": "e1", "metric": "api_calls", "quantity": 1, "occurred_at": now}
            ]})),
            batch,
        )
        .await;
    assert_eq!(status, 200);
    let entitlements = "/api/accounts/{account_id}/entitlements";
    let (status, _) = c
        .check(service(reqwest::Method::GET, entitlements), entitlements)
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .check(
            app.client
                .get(
                    app.url(
                        &entitlements.replace("{account_id}", &uuid::Uuid::new_v4().to_string()),
                    ),
                )
                .bearer_auth(&app.service_key),
            entitlements,
        )
        .await;
    assert_eq!(status, 404);

    let webhook = "/api/webhooks/stripe";
    let (status, _) = c
        .check(
            post(webhook).json(&json!({"id": "evt_1", "type": "x"})),
            webhook,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = c
        .check(post(webhook).body(vec![b' '; 1024 * 1024 + 1]), webhook)
        .await;
    assert_eq!(status, 413);

    // Payments without Stripe configured: 503, documented as `default`.
    let upgrade = "/api/billing/upgrade";
    let (status, _) = c
        .check(
            as_user(post(upgrade)).json(&json!({"new_plan_id": "pro"})),
            upgrade,
        )
        .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn the_daily_api_limit_answers_as_documented() {
    let app = TestApp::spawn_with(&[("FREE_PLAN_API_LIMIT", "1")]).await;
    let token = app.free_user("limited@example.com").await;
    let account = app.own_account_id(&token).await;
    let c = Checker::new();
    let usage = "/api/accounts/{account_id}/usage";
    let call = |key: &str| {
        app.client
            .post(app.url(&usage.replace("{account_id}", &account)))
            .bearer_auth(&app.service_key)
            .header("Idempotency-Key", key)
            .json(&json!({"metric": "api_calls", "quantity": 1}))
    };
    assert_eq!(c.check(call("1"), usage).await.0, 200);
    let (status, body) = c.check(call("2"), usage).await;
    assert_eq!(
        (status, body["error"]["metric"].as_str()),
        (429, Some("api_calls"))
    );
    let reads = app.get_as(&token, "/api/usage").await;
    assert_eq!(
        reads.status(),
        200,
        "the user's own reads are never refused"
    );
}

#[tokio::test]
async fn paid_plan_answers_match_the_document() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let c = Checker::new();
    let post = |path: &str| app.client.post(app.url(path));
    let register = "/api/auth/register/with-plan";
    let (status, checkout) = c
        .check(
            post(register).json(&json!({
                "email": "paid@example.com", "password": PASSWORD, "name": "Paid",
                "plan_id": "pro", "billing_interval": "monthly"
            })),
            register,
        )
        .await;
    assert_eq!(status, 201);
    app.sim()
        .complete_checkout(checkout["session_id"].as_str().unwrap())
        .await
        .unwrap();
    let token = app.login("paid@example.com").await;
    let as_user = |r: reqwest::RequestBuilder| r.bearer_auth(&token);
    let get = |path: &str| app.client.get(app.url(path));

    let mut answers = Vec::new();
    for path in [
        "/api/billing/subscription",
        "/api/billing/invoices",
        "/api/billing/customer-portal",
    ] {
        let (status, body) = c.check(as_user(get(path)), path).await;
        assert_eq!(status, 200, "{path}: {body}");
        answers.push(body);
    }
    // The optional parts were there to check.
    assert_eq!(answers[0]["plan"]["price"]["amount"], 9900);
    assert_eq!(answers[1]["invoices"][0]["amount"], 9900);
    let annual = json!({"new_plan_id": "pro", "billing_interval": "annual"});
    let preview = "/api/billing/preview-change";
    assert_eq!(
        c.check(as_user(post(preview)).json(&annual), preview)
            .await
            .0,
        200
    );
    for path in ["/api/billing/cancel-subscription", "/api/billing/resume"] {
        assert_eq!(c.check(as_user(post(path)), path).await.0, 200, "{path}");
    }
    let upgrade = "/api/billing/upgrade";
    let (status, changed) = c.check(as_user(post(upgrade)).json(&annual), upgrade).await;
    assert_eq!(status, 200);
    assert_eq!(changed["subscription"]["billing_interval"], "annual");

    // A free account upgrading gets a checkout.
    let free = app.free_user("free@example.com").await;
    let (status, _) = c
        .check(
            post(upgrade)
                .bearer_auth(&free)
                .json(&json!({"new_plan_id": "pro"})),
            upgrade,
        )
        .await;
    assert_eq!(status, 201);
}

//! KRAFTD's services in Azure call the service routes with Entra ID access
//! tokens of the client-credentials flow (`SERVICE_TOKEN_ISSUERS`,
//! `SERVICE_TOKEN_AUDIENCE`, `SERVICE_APPS`), their scopes taken from the
//! token's `roles`. The issuer is the loopback identity provider
//! (support/jwks.rs), the same machinery as users' outside tokens.

mod support;

use kraftd_billing::app::Caller;
use kraftd_billing::domain::service::{Scope, ServicePrincipal};
use reqwest::Method;
use serde_json::{json, Value};
use support::jwks::{IdentityProvider, AUDIENCE, EC, RSA, SERVICE_AUDIENCE, UNPUBLISHED};
use support::{error_of, TestApp};

const DOCUMENT_SERVICE: &str = "3f1c0b8e-0000-4000-8000-00000000d0c5";
const EXPORT_SERVICE: &str = "7a2e9d41-0000-4000-8000-0000000e4905";

/// An app trusting `idp`'s app tokens for `SERVICE_AUDIENCE`, and `extra`.
async fn trusting(idp: &IdentityProvider, extra: &[(&str, &str)]) -> TestApp {
    let issuer = idp.issuer();
    let mut vars = vec![
        ("SERVICE_TOKEN_ISSUERS", issuer.as_str()),
        ("SERVICE_TOKEN_AUDIENCE", SERVICE_AUDIENCE),
    ];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(&vars).await
}

fn docs(quantity: u64) -> Value {
    json!({"metric": "documents", "quantity": quantity})
}

/// `POST /api/accounts/<account>/usage` with `bearer` and a new key.
async fn report(app: &TestApp, bearer: &str, account: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/accounts/{account}/usage")))
        .bearer_auth(bearer)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&docs(1))
        .send()
        .await
        .unwrap()
}

async fn entitlements(app: &TestApp, bearer: &str, account: &str) -> reqwest::Response {
    app.get_as(bearer, &format!("/api/accounts/{account}/entitlements"))
        .await
}

#[tokio::test]
async fn an_app_token_with_usage_write_reports_usage() {
    let idp = IdentityProvider::start().await;
    let app = trusting(&idp, &[]).await;
    let user = app.free_user("ada@example.com").await;
    let account = app.own_account_id(&user).await;
    let now = app.clock_now();

    let v2 = idp.token(
        RSA,
        &idp.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now),
    );
    let r = report(&app, &v2, &account).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["used"], 1, "{body}");

    // The v1 shape (appid, no idtyp) and an ES256 key work alike.
    let v1 = idp.token(
        EC,
        &idp.app_claims_v1(DOCUMENT_SERVICE, &["Usage.Write"], now),
    );
    assert_eq!(report(&app, &v1, &account).await.status(), 200);
    let seen = app.get_json(&user, "/api/usage").await;
    assert_eq!(seen["usage"]["documents"]["used"], 2, "{seen}");

    // Usage.Write grants nothing else: reading entitlements needs its role.
    let r = entitlements(&app, &v2, &account).await;
    let error = error_of(r, 403, "missing_scope").await;
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("entitlements:read"));
    // The keys were fetched once, through the discovery document.
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));
}

#[tokio::test]
async fn entitlements_read_alone_reads_but_does_not_write_and_unknown_roles_grant_nothing() {
    let idp = IdentityProvider::start().await;
    let app = trusting(&idp, &[]).await;
    let user = app.free_user("grace@example.com").await;
    let account = app.own_account_id(&user).await;
    let now = app.clock_now();

    let reader = idp.token(
        RSA,
        &idp.app_claims(
            EXPORT_SERVICE,
            &["Entitlements.Read", "Billing.Everything", "usage:write"],
            now,
        ),
    );
    let r = report(&app, &reader, &account).await;
    let error = error_of(r, 403, "missing_scope").await;
    assert!(error["message"].as_str().unwrap().contains("usage:write"));
    let r = entitlements(&app, &reader, &account).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["plan"], "free", "{body}");

    // A valid app token without a known role, or without `roles` at all.
    let mut roleless = idp.app_claims(EXPORT_SERVICE, &[], now);
    roleless.as_object_mut().unwrap().remove("roles");
    for claims in [
        idp.app_claims(EXPORT_SERVICE, &["User.Read"], now),
        roleless,
    ] {
        let token = idp.token(RSA, &claims);
        error_of(report(&app, &token, &account).await, 403, "missing_scope").await;
        error_of(
            entitlements(&app, &token, &account).await,
            403,
            "missing_scope",
        )
        .await;
    }
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let idp = IdentityProvider::start().await;
    let app = trusting(&idp, &[]).await;
    let user = app.free_user("alan@example.com").await;
    let account = app.own_account_id(&user).await;
    let now = app.clock_now();
    // Another API's, and one for users' audience from a services-only issuer.
    for aud in [json!("api://another-api"), json!(AUDIENCE), json!([])] {
        let mut claims = idp.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now);
        claims["aud"] = aud.clone();
        let token = idp.token(RSA, &claims);
        let r = report(&app, &token, &account).await;
        error_of(r, 401, "unauthenticated").await;
    }
    // Several audiences, ours among them, is ours.
    let mut claims = idp.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now);
    claims["aud"] = json!(["api://another-api", SERVICE_AUDIENCE]);
    let token = idp.token(RSA, &claims);
    assert_eq!(report(&app, &token, &account).await.status(), 200);
}

#[tokio::test]
async fn a_persons_token_of_the_same_issuer_is_never_a_service() {
    let idp = IdentityProvider::start().await;
    let issuer = idp.issuer();
    // The tenant signs users' tokens for the web app and services' tokens.
    let app = trusting(&idp, &[("AUTH_ISSUERS", &issuer)]).await;
    let owner = app.free_user("owner@example.com").await;
    let account = app.own_account_id(&owner).await;
    let now = app.clock_now();

    // A user's token (scp) for users' audience: a user, as before: 403 on
    // the write route, and a member's read of their own account only.
    let user = idp.token(
        RSA,
        &idp.delegated_claims("pat", AUDIENCE, DOCUMENT_SERVICE, &[], now),
    );
    error_of(report(&app, &user, &account).await, 403, "missing_scope").await;
    let own = app.own_account_id(&user).await;
    error_of(report(&app, &user, &own).await, 403, "missing_scope").await;
    assert_eq!(entitlements(&app, &user, &own).await.status(), 200);
    error_of(
        entitlements(&app, &user, &account).await,
        404,
        "account_not_found",
    )
    .await;

    // A person's token for the service API, even with the app role
    // assigned to them and the service's own client id as `azp`: 403
    // everywhere on service routes, and no user elsewhere.
    let mut variants = vec![idp.delegated_claims(
        "pat",
        SERVICE_AUDIENCE,
        DOCUMENT_SERVICE,
        &["Usage.Write", "Entitlements.Read"],
        now,
    )];
    // No scp, but idtyp says user; no idtyp nor scp, but sub is not oid.
    let mut no_scp = variants[0].clone();
    no_scp.as_object_mut().unwrap().remove("scp");
    variants.push(no_scp.clone());
    no_scp.as_object_mut().unwrap().remove("idtyp");
    variants.push(no_scp);
    // An app token's shape with a scp added.
    let mut app_with_scp = idp.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now);
    app_with_scp["scp"] = json!("Usage.Write");
    variants.push(app_with_scp);
    for claims in variants {
        let token = idp.token(RSA, &claims);
        error_of(report(&app, &token, &account).await, 403, "missing_scope").await;
        error_of(report(&app, &token, &own).await, 403, "missing_scope").await;
        error_of(entitlements(&app, &token, &own).await, 403, "missing_scope").await;
        error_of(
            app.get_as(&token, "/api/accounts").await,
            401,
            "unauthenticated",
        )
        .await;
    }

    // An app token is no user either, and both kinds share the issuer's
    // one key cache.
    let service = idp.token(
        RSA,
        &idp.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now),
    );
    assert_eq!(report(&app, &service, &account).await.status(), 200);
    error_of(
        app.get_as(&service, "/api/accounts").await,
        401,
        "unauthenticated",
    )
    .await;
    assert_eq!(idp.jwks_fetches(), 1);
}

/// With `SERVICE_APPS`, an application not listed is refused as an unknown
/// credential is: 401 `unauthenticated`, like an unknown or revoked service
/// key, before its roles are read. It is not a caller this service knows,
/// whatever its token carries; 403 `missing_scope` would tell a stranger its
/// token was good and only lacked a role.
#[tokio::test]
async fn with_service_apps_only_the_listed_apps_call_and_by_their_names() {
    let idp = IdentityProvider::start().await;
    let listed = format!("document-service={DOCUMENT_SERVICE}");
    let app = trusting(&idp, &[("SERVICE_APPS", &listed)]).await;
    let user = app.free_user("edsger@example.com").await;
    let account = app.own_account_id(&user).await;
    let now = app.clock_now();

    let stranger = idp.token(
        RSA,
        &idp.app_claims(EXPORT_SERVICE, &["Usage.Write", "Entitlements.Read"], now),
    );
    error_of(
        report(&app, &stranger, &account).await,
        401,
        "unauthenticated",
    )
    .await;
    error_of(
        entitlements(&app, &stranger, &account).await,
        401,
        "unauthenticated",
    )
    .await;

    let known = idp.token(
        RSA,
        &idp.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now),
    );
    assert_eq!(report(&app, &known, &account).await.status(), 200);
    let v1 = idp.token(
        RSA,
        &idp.app_claims_v1(DOCUMENT_SERVICE, &["Usage.Write"], now),
    );
    let Ok(Caller::Service(principal)) = app
        .billing
        .service_caller(&v1, Scope::UsageWrite, false)
        .await
    else {
        panic!("a listed application's token is its service");
    };
    assert_eq!(
        principal,
        ServicePrincipal {
            name: "document-service".into(),
            scopes: vec![Scope::UsageWrite],
        }
    );

    // Without SERVICE_APPS any application of the issuer is named by its
    // client id.
    let open = trusting(&idp, &[]).await;
    let Ok(Caller::Service(principal)) = open
        .billing
        .service_caller(&stranger, Scope::EntitlementsRead, false)
        .await
    else {
        panic!("any application's token is a service without SERVICE_APPS");
    };
    assert_eq!(principal.name, EXPORT_SERVICE);
    assert_eq!(
        principal.scopes,
        [Scope::UsageWrite, Scope::EntitlementsRead]
    );
}

#[tokio::test]
async fn forged_untrusted_and_oversized_tokens_are_refused_without_a_needless_fetch() {
    let idp = IdentityProvider::start().await;
    let stranger = IdentityProvider::start().await;
    let app = trusting(&idp, &[]).await;
    let user = app.free_user("barbara@example.com").await;
    let account = app.own_account_id(&user).await;
    let now = app.clock_now();
    let claims = idp.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now);

    // A key the issuer does not publish; a published kid over another key's
    // signature.
    let unpublished = idp.token(UNPUBLISHED, &claims);
    error_of(
        report(&app, &unpublished, &account).await,
        401,
        "unauthenticated",
    )
    .await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(RSA.into());
    let forged = idp.token_with_header(&header, UNPUBLISHED, &claims);
    error_of(
        report(&app, &forged, &account).await,
        401,
        "unauthenticated",
    )
    .await;
    let fetches = idp.jwks_fetches();
    assert!(fetches <= 1, "the unknown kid fetched once: {fetches}");

    // An issuer not trusted, with a perfect token otherwise: no fetch.
    let foreign = stranger.token(
        RSA,
        &stranger.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now),
    );
    error_of(
        report(&app, &foreign, &account).await,
        401,
        "unauthenticated",
    )
    .await;
    assert_eq!(
        (stranger.discovery_fetches(), stranger.jwks_fetches()),
        (0, 0)
    );

    // Over 16 KiB: refused before it is parsed, so before any fetch.
    let big_idp = IdentityProvider::start().await;
    let big_app = trusting(&big_idp, &[]).await;
    let mut big = big_idp.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now);
    big["padding"] = json!("x".repeat(16 * 1024));
    let big = big_idp.token(RSA, &big);
    error_of(
        report(&big_app, &big, &account).await,
        401,
        "unauthenticated",
    )
    .await;
    assert_eq!(
        (big_idp.discovery_fetches(), big_idp.jwks_fetches()),
        (0, 0)
    );

    // An expired token.
    let mut old = idp.app_claims(DOCUMENT_SERVICE, &["Usage.Write"], now);
    old["exp"] = json!(now.timestamp() - 3600);
    let old = idp.token(RSA, &old);
    error_of(report(&app, &old, &account).await, 401, "unauthenticated").await;

    // Service keys still work beside the tokens.
    let r = app
        .service(
            Method::GET,
            &format!("/api/accounts/{account}/entitlements"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

//! Tokens of trusted outside issuers (`AUTH_ISSUERS`), verified with the keys
//! they publish: the identity provider is a real server on loopback
//! (support/jwks.rs), and the verifier runs on a clock the test sets.

mod support;

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, Header};
use kraftd_billing::auth::token::{ExternalClaims, Subject, TokenError, Tokens};
use serde_json::{json, Value};
use support::jwks::{IdentityProvider, EC, RSA, RSA_NEXT, UNPUBLISHED};
use support::{TestApp, SECRET};

/// The verifier as the service builds it from these settings.
fn tokens(vars: &[(&str, &str)]) -> Arc<Tokens> {
    Arc::new(Tokens::new(&support::config(vars).tokens).unwrap())
}

fn trusting(idp: &IdentityProvider) -> Arc<Tokens> {
    tokens(&[("AUTH_ISSUERS", &idp.issuer())])
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn rs256_and_es256_tokens_of_a_configured_issuer_verify() {
    let idp = IdentityProvider::start().await;
    let tokens = trusting(&idp);
    let now = now();
    let mut claims = idp.claims("user-123", now);
    claims["email"] = json!("ada@corp.example");
    claims["email_verified"] = json!(true);
    claims["name"] = json!("Ada Lovelace");
    for kid in [RSA, EC] {
        let subject = tokens.verify(&idp.token(kid, &claims), now).await;
        assert_eq!(
            subject,
            Ok(Subject::External(ExternalClaims {
                issuer: idp.issuer(),
                subject: "user-123".into(),
                email: Some("ada@corp.example".into()),
                email_verified: true,
                name: Some("Ada Lovelace".into()),
            })),
            "{kid}"
        );
    }
    // The keys came from the discovery document's jwks_uri, once.
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));

    // The audience may be one of several; email_verified may be a string.
    let mut claims = idp.claims("user-123", now);
    claims["aud"] = json!(["another-api", "kraftd-billing"]);
    claims["email_verified"] = json!("true");
    claims["given_name"] = json!("Ada");
    claims["family_name"] = json!("Lovelace");
    let Ok(Subject::External(c)) = tokens.verify(&idp.token(EC, &claims), now).await else {
        panic!("an audience array holding ours is refused");
    };
    assert!(c.email_verified);
    assert_eq!(c.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(c.email, None);
}

#[tokio::test]
async fn a_configured_jwks_url_needs_no_discovery_and_startup_fetches_nothing() {
    let idp = IdentityProvider::start().await;
    let entry = format!("{}|{}", idp.issuer(), idp.jwks_url());
    let tokens = tokens(&[("AUTH_ISSUERS", &entry)]);
    assert_eq!(idp.jwks_fetches(), 0, "keys are fetched on first use");
    let now = now();
    let token = idp.token(RSA, &idp.claims("u", now));
    assert!(tokens.verify(&token, now).await.is_ok());
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (0, 1));
}

#[tokio::test]
async fn a_rotated_key_works_without_restart_and_the_withdrawn_one_stops() {
    let idp = IdentityProvider::start().await;
    let tokens = trusting(&idp);
    let t0 = now();
    let old = idp.token(RSA, &idp.claims("u", t0));
    assert!(tokens.verify(&old, t0).await.is_ok());

    idp.rotate_to(RSA_NEXT);
    let new = idp.token(RSA_NEXT, &idp.claims("u", t0));
    // Within a minute of the last fetch the unknown kid does not fetch again.
    let t1 = t0 + Duration::seconds(30);
    assert_eq!(tokens.verify(&new, t1).await, Err(TokenError::UnknownKey));
    assert_eq!(idp.jwks_fetches(), 1);
    // A minute on, it does: the new key works, the withdrawn one is gone.
    let t2 = t0 + Duration::seconds(61);
    assert!(tokens.verify(&new, t2).await.is_ok());
    assert_eq!(idp.jwks_fetches(), 2);
    assert_eq!(tokens.verify(&old, t2).await, Err(TokenError::UnknownKey));
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn keys_are_refreshed_after_twelve_hours_and_kept_when_the_provider_fails() {
    let idp = IdentityProvider::start().await;
    let tokens = trusting(&idp);
    let t0 = now();
    let token = |at| idp.token(RSA, &idp.claims("u", at));
    assert!(tokens.verify(&token(t0), t0).await.is_ok());
    let t1 = t0 + Duration::hours(11);
    assert!(tokens.verify(&token(t1), t1).await.is_ok());
    assert_eq!(idp.jwks_fetches(), 1, "fresh keys are not fetched again");

    idp.set_failing(true);
    let t2 = t0 + Duration::hours(13);
    assert!(
        tokens.verify(&token(t2), t2).await.is_ok(),
        "a failed refresh keeps the keys"
    );
    assert_eq!(idp.discovery_fetches(), 2, "stale keys are refreshed");
    // A failing provider is asked at most once a minute.
    assert!(tokens.verify(&token(t2), t2).await.is_ok());
    assert_eq!(idp.discovery_fetches(), 2);

    idp.set_failing(false);
    idp.rotate_to(EC);
    let t3 = t2 + Duration::seconds(61);
    assert_eq!(
        tokens.verify(&token(t3), t3).await,
        Err(TokenError::UnknownKey),
        "a successful refresh replaces the keys"
    );
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_token_of_an_unknown_issuer_is_refused_without_a_fetch() {
    let trusted = IdentityProvider::start().await;
    let stranger = IdentityProvider::start().await;
    let tokens = trusting(&trusted);
    let now = now();
    // Not the configured issuer exactly: a trailing slash.
    let mut slash = trusted.claims("u", now);
    slash["iss"] = json!(format!("{}/", trusted.issuer()));
    for token in [
        stranger.token(RSA, &stranger.claims("u", now)),
        trusted.token(RSA, &slash),
    ] {
        assert_eq!(
            tokens.verify(&token, now).await,
            Err(TokenError::UnknownIssuer)
        );
    }
    let mut no_iss = trusted.claims("u", now);
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        tokens.verify(&trusted.token(RSA, &no_iss), now).await,
        Err(TokenError::Invalid)
    );
    for idp in [&trusted, &stranger] {
        assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (0, 0));
    }

    // Through HTTP too.
    let app = TestApp::spawn_with(&[("AUTH_ISSUERS", &trusted.issuer())]).await;
    let token = stranger.token(RSA, &stranger.claims("u", app.clock_now()));
    let r = app.get_as(&token, "/api/billing/subscription").await;
    support::error_of(r, 401, "unauthenticated").await;
    assert_eq!(stranger.jwks_fetches() + trusted.jwks_fetches(), 0);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_not_trusted() {
    let idp = IdentityProvider::start().await;
    // The same server under another name: its document says 127.0.0.1.
    let alias = idp.issuer().replace("127.0.0.1", "localhost");
    let tokens = tokens(&[("AUTH_ISSUERS", &alias)]);
    let now = now();
    let mut claims = idp.claims("u", now);
    claims["iss"] = json!(alias);
    assert_eq!(
        tokens.verify(&idp.token(RSA, &claims), now).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 0));
}

#[tokio::test]
async fn misaddressed_mistimed_and_forged_outside_tokens_are_refused() {
    let idp = IdentityProvider::start().await;
    let tokens = tokens(&[
        ("AUTH_ISSUERS", &idp.issuer()),
        ("AUTH_MAX_TOKEN_AGE_SECONDS", "3600"),
    ]);
    let now = now();
    let good = idp.claims("u", now);
    assert!(tokens.verify(&idp.token(RSA, &good), now).await.is_ok());
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        edit(&mut c);
        c
    };
    let without = |claim: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(claim);
        c
    };
    let at = |s: i64| json!(now.timestamp() + s);

    let cases: Vec<(&str, Value, TokenError)> = vec![
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("another-api")),
            TokenError::Invalid,
        ),
        (
            "audience array without ours",
            with(&|c| c["aud"] = json!(["another-api"])),
            TokenError::Invalid,
        ),
        ("no audience", without("aud"), TokenError::Invalid),
        (
            "expired",
            with(&|c| c["exp"] = at(-31)),
            TokenError::Expired,
        ),
        (
            "not before in the future",
            with(&|c| c["nbf"] = at(120)),
            TokenError::NotYetValid,
        ),
        (
            "issued in the future",
            with(&|c| c["iat"] = at(120)),
            TokenError::NotYetValid,
        ),
        (
            "issued longer ago than the maximum age",
            with(&|c| {
                c["iat"] = at(-3600 - 31);
                c["nbf"] = at(-3600 - 31);
            }),
            TokenError::TooOld,
        ),
        ("no exp", without("exp"), TokenError::Invalid),
        ("no nbf", without("nbf"), TokenError::Invalid),
        ("no iat", without("iat"), TokenError::Invalid),
        (
            "empty sub",
            with(&|c| c["sub"] = json!("")),
            TokenError::Invalid,
        ),
        ("no sub", without("sub"), TokenError::Invalid),
    ];
    for (why, claims, error) in cases {
        for kid in [RSA, EC] {
            assert_eq!(
                tokens.verify(&idp.token(kid, &claims), now).await,
                Err(error),
                "{why} ({kid})"
            );
        }
    }
    // Within the leeway, times are fine.
    let edge = with(&|c| {
        c["exp"] = at(-29);
        c["nbf"] = at(29);
        c["iat"] = at(-3600 - 29);
    });
    assert!(tokens.verify(&idp.token(RSA, &edge), now).await.is_ok());

    // Header attacks.
    let no_kid = idp.token_with_header(&Header::new(Algorithm::RS256), RSA, &good);
    assert_eq!(tokens.verify(&no_kid, now).await, Err(TokenError::Invalid));
    let mut es_for_rsa_kid = Header::new(Algorithm::ES256);
    es_for_rsa_kid.kid = Some(RSA.into());
    let confused = idp.token_with_header(&es_for_rsa_kid, EC, &good);
    assert_eq!(
        tokens.verify(&confused, now).await,
        Err(TokenError::Invalid),
        "an ES256 token naming an RSA key"
    );
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(RSA.into());
    for secret in [
        SECRET.as_bytes(),
        include_bytes!("fixtures/rs256-public.pem").as_slice(),
    ] {
        let token =
            jsonwebtoken::encode(&hs, &good, &jsonwebtoken::EncodingKey::from_secret(secret))
                .unwrap();
        assert_eq!(
            tokens.verify(&token, now).await,
            Err(TokenError::Invalid),
            "HS256 claiming the outside issuer"
        );
    }
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": RSA})),
        b64(&good)
    );
    assert_eq!(tokens.verify(&none, now).await, Err(TokenError::Invalid));

    // Signed by a key the provider does not publish: under a published kid,
    // and under its own.
    let mut rsa_kid = Header::new(Algorithm::RS256);
    rsa_kid.kid = Some(RSA.into());
    let forged = idp.token_with_header(&rsa_kid, UNPUBLISHED, &good);
    assert_eq!(tokens.verify(&forged, now).await, Err(TokenError::Invalid));
    assert_eq!(
        tokens.verify(&idp.token(UNPUBLISHED, &good), now).await,
        Err(TokenError::UnknownKey)
    );
    // A tampered payload under a valid signature.
    let real = idp.token(RSA, &good);
    let parts: Vec<&str> = real.split('.').collect();
    let other = with(&|c| c["sub"] = json!("admin"));
    let tampered = format!("{}.{}.{}", parts[0], b64(&other), parts[2]);
    assert_eq!(
        tokens.verify(&tampered, now).await,
        Err(TokenError::Invalid)
    );
}

#[tokio::test]
async fn published_keys_are_used_only_as_their_jwk_allows() {
    let idp = IdentityProvider::start().await;
    // The RSA key again, for encryption; and claiming another algorithm.
    idp.publish_as(RSA, "for-encryption", |jwk| jwk["use"] = json!("enc"));
    idp.publish_as(RSA, "for-ps256", |jwk| jwk["alg"] = json!("PS256"));
    idp.publish_as(EC, "ec-without-alg", |jwk| {
        jwk.as_object_mut().unwrap().remove("alg");
    });
    let tokens = trusting(&idp);
    let now = now();
    let claims = idp.claims("u", now);
    let signed = |as_kid: &str, key: &str, alg| {
        let mut header = Header::new(alg);
        header.kid = Some(as_kid.into());
        idp.token_with_header(&header, key, &claims)
    };
    for kid in ["for-encryption", "for-ps256"] {
        assert_eq!(
            tokens
                .verify(&signed(kid, RSA, Algorithm::RS256), now)
                .await,
            Err(TokenError::UnknownKey),
            "{kid}"
        );
    }
    assert!(tokens
        .verify(&signed("ec-without-alg", EC, Algorithm::ES256), now)
        .await
        .is_ok());
    assert_eq!(idp.jwks_fetches(), 1);
}

/// `signed` under a header naming a random kid (its signature, never
/// checked against an unknown key, is left as it was: no signing per token).
fn under_a_random_kid(signed: &str) -> String {
    let (_, rest) = signed.split_once('.').unwrap();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": uuid::Uuid::new_v4().to_string()});
    format!("{}.{rest}", b64(&header))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_unknown_kids_fetch_the_keys_at_most_once_a_minute() {
    let idp = IdentityProvider::start().await;
    let tokens = trusting(&idp);
    let t0 = now();
    let signed = idp.token(RSA, &idp.claims("u", t0));
    let burst = |at: DateTime<Utc>| {
        let tokens = tokens.clone();
        let forged: Vec<String> = (0..100).map(|_| under_a_random_kid(&signed)).collect();
        async move {
            let all = forged.iter().map(|t| tokens.verify(t, at));
            futures::future::join_all(all).await
        }
    };
    // Concurrently, before any key is known: one fetch, which all await.
    let results = burst(t0).await;
    assert!(results.iter().all(|r| *r == Err(TokenError::UnknownKey)));
    assert_eq!(idp.jwks_fetches(), 1);
    burst(t0 + Duration::seconds(59)).await;
    assert_eq!(idp.jwks_fetches(), 1);
    burst(t0 + Duration::seconds(60)).await;
    assert_eq!(idp.jwks_fetches(), 2);
    // On tasks of their own, in parallel, too.
    let at = t0 + Duration::seconds(125);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let tokens = tokens.clone();
            let token = under_a_random_kid(&signed);
            tokio::spawn(async move { tokens.verify(&token, at).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Err(TokenError::UnknownKey));
    }
    assert_eq!(idp.jwks_fetches(), 3);
    // The real key still works, without a fetch.
    assert!(tokens.verify(&signed, at).await.is_ok());
    assert_eq!(idp.jwks_fetches(), 3);
}

#[tokio::test]
async fn an_email_in_sub_does_not_reach_the_local_user_with_that_email() {
    let idp = IdentityProvider::start().await;
    let app = TestApp::spawn_with(&[("AUTH_ISSUERS", &idp.issuer())]).await;
    // Someone registers the CEO's address here first...
    let squatter = app.free_user("ceo@corp.example").await;
    let squatter_account: Value = app.get_json(&squatter, "/api/accounts").await;

    // ...and the CEO's own token, whose sub is that address, arrives.
    let mut claims = idp.claims("ceo@corp.example", app.clock_now());
    claims["email"] = json!("ceo@corp.example");
    claims["email_verified"] = json!(true);
    for kid in [RSA, EC] {
        let token = idp.token(kid, &claims);
        let me: Value = app.get_json(&token, "/api/me").await;
        let squatter_me: Value = app.get_json(&squatter, "/api/me").await;
        assert_ne!(
            me["id"], squatter_me["id"],
            "{kid}: the token reached the squatter"
        );
        let accounts: Value = app.get_json(&token, "/api/accounts").await;
        assert_ne!(accounts, squatter_account);
        assert_eq!(accounts["accounts"].as_array().unwrap().len(), 1);
        assert_ne!(
            accounts["accounts"][0]["id"],
            squatter_account["accounts"][0]["id"]
        );
    }
    // The token was checked against the provider's keys.
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test]
async fn the_first_token_provisions_a_user_with_their_own_free_account_and_later_ones_reuse_it() {
    let idp = IdentityProvider::start().await;
    let app = TestApp::spawn_with(&[("AUTH_ISSUERS", &idp.issuer())]).await;
    let mut claims = idp.claims("00u-ada", app.clock_now());
    claims["email"] = json!("Ada@Corp.example");
    claims["email_verified"] = json!(true);
    claims["name"] = json!("Ada Lovelace");
    let token = idp.token(RSA, &claims);

    // Ten first requests at once: one user, one account.
    let answers = futures::future::join_all((0..10).map(|_| app.get_as(&token, "/api/me"))).await;
    let mut ids = Vec::new();
    for r in answers {
        let status = r.status();
        let me: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{me}");
        ids.push(me["id"].clone());
        assert_eq!(me["email"], "ada@corp.example");
        assert_eq!(me["email_verified"], true);
        assert_eq!(me["name"], "Ada Lovelace");
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");

    // A later token (another key, other claims) is the same user: the
    // pair (issuer, subject) decides; the profile follows the provider.
    app.clock.set(app.clock_now() + Duration::minutes(5));
    let mut later = idp.claims("00u-ada", app.clock_now());
    later["email"] = json!("ada@elsewhere.example");
    let again: Value = app.get_json(&idp.token(EC, &later), "/api/me").await;
    assert_eq!(again["id"], ids[0]);
    assert_eq!(again["email"], "ada@elsewhere.example");
    assert_eq!(again["email_verified"], false);
    assert_eq!(again["name"], "Ada Lovelace");

    // Their own account, on Free, acted on by default and metered.
    let sub: Value = app.get_json(&token, "/api/billing/subscription").await;
    assert_eq!(sub["effective_plan"], "free");
    let accounts: Value = app.get_json(&token, "/api/accounts").await;
    assert_eq!(accounts["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(accounts["accounts"][0]["role"], "owner");

    // A verified address may invite at once; the provider vouched for it.
    let r = app
        .post_as(
            &token,
            "/api/account/invitations",
            json!({"email": "friend@corp.example", "role": "member"}),
        )
        .await;
    // Free has one seat: refused for seats, not for verification.
    support::error_of(r, 403, "quota_exceeded").await;

    // The same subject at another issuer would be another user; a token
    // without a usable email provisions nobody.
    let mut nameless = idp.claims("00u-no-email", app.clock_now());
    nameless["email"] = json!("not an address");
    let r = app.get_as(&idp.token(RSA, &nameless), "/api/me").await;
    support::error_of(r, 401, "unauthenticated").await;

    // Unverified by the provider: unverified here, and no link is mailed
    // (nothing here can verify it but an accepted invitation).
    let mut unverified = idp.claims("00u-bob", app.clock_now());
    unverified["email"] = json!("bob@corp.example");
    unverified["email_verified"] = json!("false");
    let me: Value = app.get_json(&idp.token(RSA, &unverified), "/api/me").await;
    assert_eq!(me["email_verified"], false);
    assert_eq!(me["name"], "bob");
}

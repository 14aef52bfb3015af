//! Email verification of password users, through the HTTP API: the link
//! registration mails works once, only the newest works, it expires, and
//! inviting others waits for it; an accepted invitation proves the mailbox.

mod support;

use chrono::Duration;
use kraftd_billing::domain::account::AccountId;
use kraftd_billing::domain::clock::Clock;
use kraftd_billing::domain::records::EmailKind;
use serde_json::{json, Value};
use support::{error_of, TestApp};

async fn me(app: &TestApp, token: &str) -> Value {
    app.get_json(token, "/api/me").await
}

/// The token of the newest invitation `owner_email`'s account sent.
async fn invitation_link(app: &TestApp, owner_email: &str) -> String {
    let account = app.account(owner_email).await;
    let invitation = app
        .emails(account.id, Some(EmailKind::Invitation))
        .await
        .pop()
        .unwrap();
    invitation.data["invitation_url"]
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

async fn verify(app: &TestApp, token: &str) -> reqwest::Response {
    app.post("/api/auth/verify-email", json!({ "token": token }))
        .await
}

#[tokio::test]
async fn registration_mails_a_single_use_link_that_verifies_the_email() {
    let app = TestApp::spawn().await;
    let r = app.register("new@verify.io", "free").await;
    assert_eq!(r.status(), 201);
    let session: Value = r.json().await.unwrap();
    assert_eq!(session["user"]["email_verified"], false);
    let token = session["access_token"].as_str().unwrap().to_owned();

    // The email went out with the registration, to the user, with the link.
    let user = app.user_by_email("new@verify.io").await;
    let sent = app
        .emails(
            AccountId::own_account_of(user.id),
            Some(EmailKind::VerifyEmail),
        )
        .await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to.as_ref().unwrap().as_str(), "new@verify.io");
    let link = app.verification_token("new@verify.io").await;
    // Only the hash is kept with the user.
    let stored = serde_json::to_string(&user).unwrap();
    assert!(!stored.contains(&link));

    let r = verify(&app, &link).await;
    assert_eq!(r.status(), 200);
    let profile: Value = r.json().await.unwrap();
    assert_eq!(profile["email"], "new@verify.io");
    assert_eq!(profile["email_verified"], true);
    assert_eq!(me(&app, &token).await["email_verified"], true);

    // Once only.
    error_of(verify(&app, &link).await, 404, "verification_not_found").await;
    // Asking again once verified sends nothing.
    let r = app
        .post_as(&token, "/api/auth/verify-email/resend", json!({}))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        app.emails(
            AccountId::own_account_of(user.id),
            Some(EmailKind::VerifyEmail)
        )
        .await
        .len(),
        1
    );
}

#[tokio::test]
async fn only_the_newest_unexpired_link_works_and_made_up_ones_never_do() {
    let app = TestApp::spawn().await;
    let token = app.free_user("late@verify.io").await;
    let first = app.verification_token("late@verify.io").await;

    // Asking again at once mails nothing: one link per five minutes.
    let r = app
        .post_as(&token, "/api/auth/verify-email/resend", json!({}))
        .await;
    assert_eq!(r.headers()["retry-after"], "300");
    error_of(r, 429, "rate_limited").await;

    // Five minutes on, a new link replaces the first.
    app.clock.set(app.clock.now() + Duration::minutes(5));
    let r = app
        .post_as(&token, "/api/auth/verify-email/resend", json!({}))
        .await;
    assert_eq!(r.status(), 202);
    let second = app.verification_token("late@verify.io").await;
    assert_ne!(first, second);
    error_of(verify(&app, &first).await, 404, "verification_not_found").await;

    // Made up, truncated or of another shape: the same answer.
    let user = app.user_by_email("late@verify.io").await;
    let forged = format!("{}-{}", user.id.0.simple(), "A".repeat(43));
    for bad in [forged.as_str(), &second[..second.len() - 1], "", "x-y"] {
        error_of(verify(&app, bad).await, 404, "verification_not_found").await;
    }
    // A body without the token is named.
    let r = app.post("/api/auth/verify-email", json!({})).await;
    assert_eq!(r.status(), 422);

    // 48 hours on, the link is no longer good (half-open: at the instant
    // it expires, it is gone).
    let sent_at = app.clock.now();
    let second_expires = sent_at + Duration::hours(48);
    assert_eq!(
        app.user_by_email("late@verify.io")
            .await
            .verification
            .unwrap()
            .expires_at,
        second_expires
    );
    app.clock.set(sent_at + Duration::hours(48));
    error_of(verify(&app, &second).await, 404, "verification_not_found").await;
    app.clock
        .set(sent_at + Duration::hours(48) - Duration::milliseconds(1));
    assert_eq!(verify(&app, &second).await.status(), 200);
}

#[tokio::test]
async fn inviting_waits_for_a_verified_email_and_an_accepted_invitation_proves_the_invitee_s() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.subscribe_to_pro("lead@verify.io").await;
    let owner = app.login("lead@verify.io").await;
    let invite = || {
        app.post_as(
            &owner,
            "/api/account/invitations",
            json!({"email": "mate@verify.io", "role": "member"}),
        )
    };
    // Paying did not wait for verification; inviting does.
    let refused = error_of(invite().await, 403, "email_not_verified").await;
    assert!(refused["message"].as_str().unwrap().contains("verify"));
    app.verify_email("lead@verify.io").await;
    assert_eq!(invite().await.status(), 201);

    // The invitee registers (unverified) and accepts the emailed link: the
    // invitation went to their address, so the address is theirs.
    let mate = app.free_user("mate@verify.io").await;
    assert_eq!(me(&app, &mate).await["email_verified"], false);
    let link = invitation_link(&app, "lead@verify.io").await;
    let r = app
        .post_as(&mate, &format!("/api/invitations/{link}/accept"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(me(&app, &mate).await["email_verified"], true);
}

#[tokio::test]
async fn accepting_someone_else_s_invitation_verifies_nothing() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.subscribe_to_pro("boss@fwd.io").await;
    app.verify_email("boss@fwd.io").await;
    let owner = app.login("boss@fwd.io").await;
    let r = app
        .post_as(
            &owner,
            "/api/account/invitations",
            json!({"email": "intended@fwd.io", "role": "member"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    // The link was forwarded to someone with another address.
    let other = app.free_user("forwarded@fwd.io").await;
    let link = invitation_link(&app, "boss@fwd.io").await;
    let r = app
        .post_as(
            &other,
            &format!("/api/invitations/{link}/accept"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(me(&app, &other).await["email_verified"], false);
}

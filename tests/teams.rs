//! Accounts with members, through the HTTP API: the account pays, its
//! members share its quota, roles are enforced, seats are exact under
//! concurrency, and a removed member loses access at once.

mod support;

use kraftd_billing::domain::records::EmailKind;
use serde_json::{json, Value};
use support::{error_of, TestApp};

/// The invitation link the invitee's email carries, as the outbox holds it.
async fn invitation_token(app: &TestApp, owner_email: &str, invitee: &str) -> String {
    let account = app.account(owner_email).await;
    let emails = app.emails(account.id, Some(EmailKind::Invitation)).await;
    let email = emails
        .iter()
        .find(|m| m.to.as_ref().is_some_and(|t| t.as_str() == invitee))
        .expect("an invitation email to the invitee");
    let url = &email.data["invitation_url"];
    assert!(url.contains("/invitations/"), "{url}");
    url.rsplit('/').next().unwrap().to_owned()
}

/// The user id of the team member `field` == `value` names.
fn user_id_of(team: &Value, field: &str, value: &str) -> String {
    team["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m[field] == value)
        .unwrap_or_else(|| panic!("no member with {field} {value}: {team}"))["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

impl TestApp {
    fn send_as(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        account: Option<&str>,
        body: Option<Value>,
    ) -> impl std::future::Future<Output = reqwest::Response> + '_ {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(a) = account {
            req = req.header("X-Account-Id", a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.unwrap() }
    }

    async fn invite(&self, token: &str, email: &str, role: &str) -> reqwest::Response {
        self.post_as(
            token,
            "/api/account/invitations",
            json!({"email": email, "role": role}),
        )
        .await
    }

    /// A member's role set, as `token` (in `account`, else their own).
    async fn set_role(
        &self,
        token: &str,
        user_id: &str,
        role: &str,
        account: Option<&str>,
    ) -> reqwest::Response {
        let path = format!("/api/account/members/{user_id}");
        let body = json!({ "role": role });
        self.send_as(reqwest::Method::PATCH, token, &path, account, Some(body))
            .await
    }

    /// A member removed, as `token` (in `account`, else their own).
    async fn remove(&self, token: &str, user_id: &str, account: Option<&str>) -> reqwest::Response {
        let path = format!("/api/account/members/{user_id}");
        self.send_as(reqwest::Method::DELETE, token, &path, account, None)
            .await
    }

    async fn team(&self, token: &str) -> Value {
        let r = self.get_as(token, "/api/account/members").await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Registers the invitee on Free and accepts the invitation; returns
    /// their token and the joined account's id.
    async fn join(&self, owner_email: &str, invitee: &str) -> (String, String) {
        let token = self.free_user(invitee).await;
        let link = invitation_token(self, owner_email, invitee).await;
        let r = self
            .post_as(
                &token,
                &format!("/api/invitations/{link}/accept"),
                json!({}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let joined: Value = r.json().await.unwrap();
        assert_eq!(joined["role"], "member");
        (token, joined["id"].as_str().unwrap().to_owned())
    }
}

#[tokio::test]
async fn a_pro_team_fills_its_seats_shares_the_quota_and_removal_revokes_access() {
    let app = TestApp::spawn_with_stripe(&[("PRO_PLAN_DOCS_LIMIT", "5")]).await;
    app.subscribe_to_pro("owner@team.io").await;
    app.verify_email("owner@team.io").await;
    let owner = app.login("owner@team.io").await;

    for n in 1..=9 {
        let r = app.invite(&owner, &format!("p{n}@team.io"), "member").await;
        assert_eq!(r.status(), 201, "invitation {n}");
    }
    // Pro has 10 seats: the owner and 9 pending invitations fill them.
    let r = app.invite(&owner, "tenth@team.io", "member").await;
    assert_eq!(
        r.headers()["x-upgrade-url"],
        "https://kraftd.io/pricing?plan=enterprise"
    );
    let e = error_of(r, 403, "quota_exceeded").await;
    assert_eq!(
        (
            &e["limit"],
            &e["limit_value"],
            &e["usage"],
            &e["upgrade_to"]
        ),
        (
            &json!("team_members"),
            &json!(10),
            &json!(10),
            &json!("enterprise")
        )
    );
    let usage: Value = app.get_as(&owner, "/api/usage").await.json().await.unwrap();
    assert_eq!(usage["usage"]["team_members"]["used"], 10);
    // The owner was told the seats ran out.
    let account = app.account("owner@team.io").await;
    let warned = app
        .emails(account.id, Some(EmailKind::SeatLimitReached))
        .await;
    assert_eq!(warned.len(), 1);
    assert_eq!(warned[0].to.as_ref().unwrap().as_str(), "owner@team.io");

    // An invitee accepts, and acts on the team's account with its header.
    let (member, account_id) = app.join("owner@team.io", "p1@team.io").await;
    assert_eq!(account_id, account.id.to_string());
    // The link is single use: someone else holding it gets nothing.
    let used = invitation_token(&app, "owner@team.io", "p1@team.io").await;
    let other = app.free_user("p1-friend@team.io").await;
    let r = app
        .post_as(
            &other,
            &format!("/api/invitations/{used}/accept"),
            json!({}),
        )
        .await;
    error_of(r, 404, "invitation_not_found").await;
    // KRAFTD's document service reports the member's work on the team's
    // account; the quota is the team's: 3 of the 5 are gone for the owner too.
    let docs = json!({"metric": "documents", "quantity": 3});
    assert_eq!(
        app.report(&account_id, "member-work", docs.clone())
            .await
            .status(),
        200
    );
    let r = app.report(&account_id, "owner-work", docs).await;
    let e = error_of(r, 403, "quota_exceeded").await;
    assert_eq!((&e["usage"], &e["plan"]), (&json!(3), &json!("pro")));
    // Without the header the member acts on their own Free account.
    let own: Value = app
        .get_as(&member, "/api/usage")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["plan"], "free");

    // A member reads the plan but changes nothing.
    let r = app
        .send_as(
            reqwest::Method::GET,
            &member,
            "/api/billing/subscription",
            Some(&account_id),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    for (path, body) in [
        (
            "/api/billing/upgrade",
            json!({"new_plan_id": "pro", "billing_interval": "annual"}),
        ),
        ("/api/billing/cancel-subscription", json!({})),
        ("/api/billing/resume", json!({})),
        (
            "/api/account/invitations",
            json!({"email": "x@team.io", "role": "member"}),
        ),
        (
            "/api/account/transfer-ownership",
            json!({"user_id": account_id}),
        ),
    ] {
        let r = app
            .send_as(
                reqwest::Method::POST,
                &member,
                path,
                Some(&account_id),
                Some(body),
            )
            .await;
        error_of(r, 403, "forbidden").await;
    }
    let r = app
        .send_as(
            reqwest::Method::GET,
            &member,
            "/api/billing/customer-portal",
            Some(&account_id),
            None,
        )
        .await;
    error_of(r, 403, "forbidden").await;

    // The team as the owner sees it: two members, eight invitations pending.
    let team = app.team(&owner).await;
    assert_eq!(team["members"].as_array().unwrap().len(), 2);
    assert_eq!(team["invitations"].as_array().unwrap().len(), 8);
    assert_eq!(team["seats"], json!({"used": 10, "limit": 10}));
    let member_id = user_id_of(&team, "email", "p1@team.io");

    // The owner cannot be removed; the member can, and loses access at once.
    let owner_id = user_id_of(&team, "role", "owner");
    let r = app.remove(&owner, &owner_id, None).await;
    error_of(r, 409, "owner_cannot_be_removed").await;
    // Nor demoted, nor handed the account they hold: well-formed requests
    // the team's state refuses.
    let r = app.set_role(&owner, &owner_id, "admin", None).await;
    error_of(r, 409, "owner_role_by_transfer").await;
    let r = app
        .post_as(
            &owner,
            "/api/account/transfer-ownership",
            json!({"user_id": owner_id}),
        )
        .await;
    error_of(r, 409, "already_owner").await;
    let r = app.remove(&owner, &member_id, None).await;
    assert_eq!(r.status(), 204);
    // Removed: the team's account is no longer theirs to read.
    let r = app
        .send_as(
            reqwest::Method::GET,
            &member,
            "/api/usage",
            Some(&account_id),
            None,
        )
        .await;
    error_of(r, 404, "account_not_found").await;
    let removed = app.emails(account.id, Some(EmailKind::MemberRemoved)).await;
    assert_eq!(removed[0].to.as_ref().unwrap().as_str(), "p1@team.io");
    let mine: Value = app
        .get_as(&member, "/api/accounts")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["accounts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn thirty_parallel_invitations_on_pro_admit_exactly_nine() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.subscribe_to_pro("race@team.io").await;
    app.verify_email("race@team.io").await;
    let owner = app.login("race@team.io").await;
    let emails: Vec<String> = (0..30).map(|n| format!("r{n}@team.io")).collect();
    let answers =
        futures::future::join_all(emails.iter().map(|e| app.invite(&owner, e, "member"))).await;
    let created = answers.iter().filter(|r| r.status() == 201).count();
    let refused = answers.iter().filter(|r| r.status() == 403).count();
    assert_eq!((created, refused), (9, 21));
    assert_eq!(app.team(&owner).await["seats"]["used"], 10);
}

#[tokio::test]
async fn free_has_one_seat_and_other_accounts_are_not_found() {
    let app = TestApp::spawn().await;
    let owner = app.free_user("solo@team.io").await;
    app.verify_email("solo@team.io").await;
    // Free has one seat, the owner's: nobody can be invited.
    let e = error_of(
        app.invite(&owner, "friend@team.io", "member").await,
        403,
        "quota_exceeded",
    )
    .await;
    assert_eq!(e["upgrade_to"], "pro");
    error_of(
        app.invite(&owner, "not-an-email", "member").await,
        422,
        "invalid_field",
    )
    .await;
    error_of(
        app.invite(&owner, "x@team.io", "owner").await,
        422,
        "invalid_field",
    )
    .await;

    // Naming an account one does not belong to finds nothing.
    let stranger = app.free_user("stranger@team.io").await;
    let theirs = app.account("solo@team.io").await.id.to_string();
    for header in [theirs.as_str(), "not-a-uuid"] {
        let r = app
            .send_as(
                reqwest::Method::GET,
                &stranger,
                "/api/usage",
                Some(header),
                None,
            )
            .await;
        error_of(r, 404, "account_not_found").await;
    }

    // A made-up link is refused like a used one.
    let r = app
        .post_as(
            &stranger,
            &format!("/api/invitations/{}-nope/accept", theirs.replace('-', "")),
            json!({}),
        )
        .await;
    error_of(r, 404, "invitation_not_found").await;
}

#[tokio::test]
async fn an_admin_manages_members_and_the_owner_hands_over() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.subscribe_to_pro("boss@org.io").await;
    app.verify_email("boss@org.io").await;
    let boss = app.login("boss@org.io").await;
    assert_eq!(
        app.invite(&boss, "deputy@org.io", "member").await.status(),
        201
    );
    let (deputy, account_id) = app.join("boss@org.io", "deputy@org.io").await;
    let team = app.team(&boss).await;
    let deputy_id = user_id_of(&team, "email", "deputy@org.io");
    let r = app.set_role(&boss, &deputy_id, "admin", None).await;
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["role"], "admin");

    // The admin invites, and withdraws: the link then no longer works.
    let r = app
        .send_as(
            reqwest::Method::POST,
            &deputy,
            "/api/account/invitations",
            Some(&account_id),
            Some(json!({"email": "temp@org.io", "role": "member"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let inv: Value = r.json().await.unwrap();
    let link = invitation_token(&app, "boss@org.io", "temp@org.io").await;
    let r = app
        .send_as(
            reqwest::Method::DELETE,
            &deputy,
            &format!("/api/account/invitations/{}", inv["id"].as_str().unwrap()),
            Some(&account_id),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let temp = app.free_user("temp@org.io").await;
    let r = app
        .post_as(&temp, &format!("/api/invitations/{link}/accept"), json!({}))
        .await;
    error_of(r, 404, "invitation_not_found").await;

    // An admin does not hand the account over; the owner does.
    let r = app
        .send_as(
            reqwest::Method::POST,
            &deputy,
            "/api/account/transfer-ownership",
            Some(&account_id),
            Some(json!({"user_id": deputy_id})),
        )
        .await;
    error_of(r, 403, "forbidden").await;
    let r = app
        .post_as(
            &boss,
            "/api/account/transfer-ownership",
            json!({"user_id": deputy_id}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let after: Value = r.json().await.unwrap();
    let roles: Vec<(String, String)> = after["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(roles.contains(&("deputy@org.io".into(), "owner".into())));
    assert!(roles.contains(&("boss@org.io".into(), "admin".into())));
    let accounts: Value = app
        .get_as(&deputy, "/api/accounts")
        .await
        .json()
        .await
        .unwrap();
    let roles_of_deputy: Vec<&str> = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles_of_deputy, ["owner", "owner"]);
}

#[tokio::test]
async fn a_plan_with_fewer_seats_than_are_held_is_refused_saying_how_many_must_go() {
    use kraftd_billing::domain::plan::PlanId;
    use kraftd_billing::domain::subscription::SubscriptionStatus;
    let app = TestApp::spawn_with_stripe(&[]).await;
    let boss = app.free_user("big@corp.io").await;
    app.verify_email("big@corp.io").await;
    // An Enterprise account (sold by sales, so written straight to the store).
    let mut account = app.account("big@corp.io").await;
    let etag = app
        .store
        .account_by_id(account.id)
        .await
        .unwrap()
        .unwrap()
        .etag;
    account.subscription.plan_id = PlanId::Enterprise;
    account.subscription.status = SubscriptionStatus::Active;
    app.store.replace_account(&account, &etag).await.unwrap();
    for n in 0..10 {
        let email = format!("e{n}@corp.io");
        assert_eq!(app.invite(&boss, &email, "member").await.status(), 201);
        app.join("big@corp.io", &email).await;
    }
    assert_eq!(
        app.team(&boss).await["seats"],
        json!({"used": 11, "limit": null})
    );
    for path in ["/api/billing/preview-change", "/api/billing/upgrade"] {
        let r = app
            .post_as(&boss, path, json!({"new_plan_id": "pro"}))
            .await;
        let e = error_of(r, 409, "too_many_members").await;
        assert_eq!(
            (&e["limit"], &e["limit_value"], &e["usage"], &e["plan"]),
            (
                &json!("team_members"),
                &json!(10),
                &json!(11),
                &json!("pro")
            )
        );
        assert!(
            e["message"].as_str().unwrap().contains("remove 1 first"),
            "{e}"
        );
    }
    // An operator's seat override goes with the account to the new plan.
    let r = app
        .service(
            reqwest::Method::POST,
            &format!("/api/admin/accounts/{}/overrides", account.id),
        )
        .json(&json!({"limit": "team_members", "value": 20, "reason": "20 seats agreed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .post_as(
            &boss,
            "/api/billing/preview-change",
            json!({"new_plan_id": "pro"}),
        )
        .await;
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_ne!(answer["error"]["code"], "too_many_members", "{answer}");
}

#[tokio::test]
async fn an_ended_paid_plan_keeps_its_members_but_takes_no_new_ones() {
    use kraftd_billing::domain::subscription::SubscriptionStatus;
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.subscribe_to_pro("lapsed@team.io").await;
    app.verify_email("lapsed@team.io").await;
    let owner = app.login("lapsed@team.io").await;
    for email in ["a@lapsed.io", "b@lapsed.io"] {
        assert_eq!(app.invite(&owner, email, "member").await.status(), 201);
        app.join("lapsed@team.io", email).await;
    }
    // The paid period ends canceled (as Stripe's webhook would record it):
    // Free's one seat.
    let mut account = app.account("lapsed@team.io").await;
    let etag = app
        .store
        .account_by_id(account.id)
        .await
        .unwrap()
        .unwrap()
        .etag;
    account.subscription.status = SubscriptionStatus::Canceled;
    account.subscription.current_period_end = Some(app.clock_now());
    app.store.replace_account(&account, &etag).await.unwrap();
    let team = app.team(&owner).await;
    assert_eq!(team["members"].as_array().unwrap().len(), 3);
    assert_eq!(team["seats"], json!({"used": 3, "limit": 1}));
    let e = error_of(
        app.invite(&owner, "c@lapsed.io", "member").await,
        403,
        "quota_exceeded",
    )
    .await;
    assert_eq!((&e["usage"], &e["limit_value"]), (&json!(3), &json!(1)));
}

/// Every route that needs a token refuses without one (401), and every route
/// that acts on an account refuses an account the caller does not belong to
/// (404), whatever the method and path parameters.
#[tokio::test]
async fn every_signed_in_route_refuses_strangers() {
    use kraftd_billing::http::routes::{Access, HTTP_FUNCTIONS};
    let app = TestApp::spawn().await;
    let stranger = app.free_user("stranger@routes.io").await;
    app.free_user("owner@routes.io").await;
    let theirs = app.account("owner@routes.io").await.id.to_string();
    let mut checked = 0;
    for f in HTTP_FUNCTIONS.iter().filter(|f| f.access.signed_in()) {
        let path = f
            .path()
            .replace("{id}", &theirs)
            .replace("{user_id}", &theirs)
            .replace("{token}", &format!("{}-x", theirs.replace('-', "")));
        for m in f.methods {
            let method = reqwest::Method::from_bytes(m.as_str().to_uppercase().as_bytes()).unwrap();
            let body = Some(json!({}));
            let r = app
                .client
                .request(method.clone(), app.url(&path))
                .json(&body)
                .send()
                .await
                .unwrap();
            error_of(r, 401, "unauthenticated").await;
            if f.access == Access::Member {
                let r = app
                    .send_as(method, &stranger, &path, Some(&theirs), body)
                    .await;
                error_of(r, 404, "account_not_found").await;
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} routes checked");
}

#[tokio::test]
async fn every_member_change_is_in_the_owner_s_audit_log_with_who_made_it() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    app.subscribe_to_pro("chief@log.io").await;
    app.verify_email("chief@log.io").await;
    let chief = app.login("chief@log.io").await;
    // Each step a second apart: the log's order is the steps'.
    let tick = || {
        app.clock
            .set(app.clock_now() + chrono::Duration::seconds(1))
    };

    tick();
    assert_eq!(
        app.invite(&chief, "second@log.io", "member").await.status(),
        201
    );
    // Refused (invited already): nothing to record.
    tick();
    assert_eq!(
        app.invite(&chief, "second@log.io", "member").await.status(),
        409
    );
    tick();
    let (second, account_id) = app.join("chief@log.io", "second@log.io").await;
    let team = app.team(&chief).await;
    let (chief_id, second_id) = (
        user_id_of(&team, "email", "chief@log.io"),
        user_id_of(&team, "email", "second@log.io"),
    );
    tick();
    let r = app.set_role(&chief, &second_id, "admin", None).await;
    assert_eq!(r.status(), 200);
    tick();
    let r = app.invite(&chief, "passing@log.io", "member").await;
    assert_eq!(r.status(), 201);
    let inv: Value = r.json().await.unwrap();
    tick();
    let r = app
        .send_as(
            reqwest::Method::DELETE,
            &chief,
            &format!("/api/account/invitations/{}", inv["id"].as_str().unwrap()),
            None,
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    tick();
    let r = app
        .post_as(
            &chief,
            "/api/account/transfer-ownership",
            json!({"user_id": second_id}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // The new owner removes the old one.
    tick();
    let r = app.remove(&second, &chief_id, Some(&account_id)).await;
    assert_eq!(r.status(), 204);

    let r = app
        .send_as(
            reqwest::Method::GET,
            &second,
            "/api/account/audit?limit=100",
            Some(&account_id),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let log: Value = r.json().await.unwrap();
    let members: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let a = e["action"].as_str().unwrap();
            a.starts_with("member_") || a.starts_with("invitation_") || a == "ownership_transferred"
        })
        .collect();
    let seen: Vec<(&str, &str)> = members
        .iter()
        .map(|e| {
            assert_eq!(e["actor"]["type"], "user", "{e}");
            (
                e["action"].as_str().unwrap(),
                e["actor"]["user_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("member_removed", second_id.as_str()),
            ("ownership_transferred", chief_id.as_str()),
            ("invitation_withdrawn", chief_id.as_str()),
            ("invitation_sent", chief_id.as_str()),
            ("member_role_changed", chief_id.as_str()),
            ("member_added", second_id.as_str()),
            ("invitation_sent", chief_id.as_str()),
        ]
    );
    let [removed, transferred, withdrawn, _, changed, added, invited] = members[..] else {
        unreachable!()
    };
    assert_eq!(removed["before"]["user_id"], chief_id);
    assert_eq!(removed["before"]["email"], "chief@log.io");
    assert_eq!(removed["before"]["role"], "admin");
    assert_eq!(transferred["before"]["owner"], chief_id);
    assert_eq!(transferred["after"]["owner"], second_id);
    assert_eq!(transferred["after"]["role"], "owner");
    assert_eq!(withdrawn["before"]["email"], "passing@log.io");
    assert_eq!(changed["before"]["role"], "member");
    assert_eq!(changed["after"]["role"], "admin");
    assert_eq!(changed["after"]["email"], "second@log.io");
    assert_eq!(added["after"]["user_id"], second_id);
    assert_eq!(added["after"]["role"], "member");
    assert_eq!(invited["after"]["email"], "second@log.io");
}

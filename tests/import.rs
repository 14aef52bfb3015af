//! `handler accounts import`, through the real binary on an embedded
//! store: ten thousand users in one run, idempotent reruns, dry runs, bad
//! lines, and an imported user signing in with the identity provider.

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use kraftd_billing::domain::account::{AccountId, Role};
use kraftd_billing::domain::audit::{Actor, AuditAction};
use kraftd_billing::domain::ports::{AuditLog, MemberStore, Store};
use kraftd_billing::domain::user::{ExternalIdentity, UserId};
use kraftd_billing::store::SqliteStore;
use serde_json::{json, Value};
use support::jwks::{IdentityProvider, RSA};
use support::TestApp;

const ISSUER: &str = "https://id.kraftd.io";

fn import(data_dir: &Path, file: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["accounts", "import"])
        .arg(file)
        .args(extra)
        .env_clear()
        .env("DATA_DIR", data_dir)
        .output()
        .expect("the handler runs")
}

/// The run's summary (`--json`), with the time taken left out.
fn summary(out: &Output) -> Value {
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v.as_object_mut().unwrap().remove("elapsed_ms");
    v
}

fn owner_line(issuer: &str, subject: &str, key: &str, plan: &str) -> Value {
    let mut line = json!({
        "issuer": issuer, "subject": subject, "email": format!("{subject}@corp.example"),
        "name": format!("Owner {subject}"), "plan": plan, "account": key,
        "account_name": format!("Org {key}"), "role": "owner",
    });
    if plan != "free" {
        line["stripe_customer_id"] = json!(format!("cus_{key}"));
    }
    line
}

fn member_line(issuer: &str, subject: &str, key: &str, role: &str) -> Value {
    json!({
        "issuer": issuer, "subject": subject, "email": format!("{subject}@corp.example"),
        "name": format!("Member {subject}"), "account": key, "role": role,
        "email_verified": true,
    })
}

/// 6,000 users with their own account (every 500th on Pro with a Stripe
/// customer) and 1,000 organizations of four, members listed before their
/// owner: every 50th on Free (so over its one seat), the others on Pro or
/// Enterprise with a customer.
fn ten_thousand() -> String {
    let mut file = String::new();
    for i in 0..6000 {
        let mut line = json!({
            "issuer": ISSUER, "subject": format!("u{i}"), "email": format!("u{i}@mail.example"),
            "name": format!("User {i}"), "plan": "free",
        });
        if i % 500 == 0 {
            line["plan"] = json!("pro");
            line["stripe_customer_id"] = json!(format!("cus_u{i}"));
        }
        writeln!(file, "{line}").unwrap();
    }
    for k in 0..1000 {
        let key = format!("org{k}");
        let plan = match k {
            k if k % 50 == 0 => "free",
            k if k % 2 == 0 => "pro",
            _ => "enterprise",
        };
        for (n, role) in ["member", "member", "admin"].into_iter().enumerate() {
            let line = member_line(ISSUER, &format!("{key}-m{n}"), &key, role);
            writeln!(file, "{line}").unwrap();
        }
        writeln!(
            file,
            "{}",
            owner_line(ISSUER, &format!("{key}-o"), &key, plan)
        )
        .unwrap();
    }
    file
}

/// What the store holds: counts and the sum of every row's version.
fn snapshot(data_dir: &Path) -> [i64; 5] {
    let c = rusqlite::Connection::open(data_dir.join("billing.sqlite3")).unwrap();
    let one = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    [
        one("SELECT COUNT(*) FROM users"),
        one("SELECT COUNT(*) FROM accounts"),
        one("SELECT COUNT(*) FROM memberships"),
        one("SELECT COALESCE(SUM(version), 0) FROM users"),
        one("SELECT COALESCE(SUM(version), 0) FROM accounts"),
    ]
}

#[test]
fn ten_thousand_users_import_once_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    std::fs::write(&file, ten_thousand()).unwrap();

    // A dry run on a fresh store: what the import will do, and nothing written.
    let dry_dir = dir.path().join("dry");
    let dry = import(&dry_dir, &file, &["--dry-run", "--json"]);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(!dry_dir.exists(), "a dry run created {}", dry_dir.display());

    let data = dir.path().join("data");
    let started = std::time::Instant::now();
    let first = import(&data, &file, &["--json"]);
    let took = started.elapsed();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = summary(&first);
    println!("imported 10,000 users in {took:.2?} (the binary's run, start to end)");
    assert_eq!(report["users_created"], 10_000);
    assert_eq!(report["accounts_created"], 7_000);
    // Each account's owner, and three more in each organization.
    assert_eq!(report["memberships_added"], 10_000);
    assert_eq!(report["lines_refused"], 0);
    let over = report["over_seats"].as_array().unwrap();
    assert_eq!(over.len(), 20, "the free organizations: {over:?}");
    assert!(over
        .iter()
        .all(|o| o["plan"] == "free" && o["members"] == 4 && o["limit"] == 1));

    let mut dry = summary(&dry);
    dry["dry_run"] = json!(false);
    assert_eq!(dry, report, "the dry run foretold another import");

    let before = snapshot(&data);
    assert_eq!(before[..3], [10_000, 7_000, 10_000]);

    // Again: everything is there already.
    let again = import(&data, &file, &[]);
    assert_eq!(again.status.code(), Some(0));
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("users: 0 created, 10000 unchanged"), "{text}");
    assert!(
        text.contains("accounts: 0 created, 7000 unchanged"),
        "{text}"
    );
    assert!(
        text.contains("memberships: 0 added, 10000 unchanged"),
        "{text}"
    );
    assert!(text.contains("nothing changed"), "{text}");
    assert_eq!(snapshot(&data), before, "the rerun wrote");

    // A dry run on the imported store foretells nothing either.
    let dry_again = summary(&import(&data, &file, &["--dry-run", "--json"]));
    assert_eq!(dry_again["users_unchanged"], 10_000);
    assert_eq!(dry_again["memberships_added"], 0);
    assert_eq!(snapshot(&data), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_holds_the_organizations_as_the_file_says() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    let lines = [
        member_line(ISSUER, "bob", "acme", "admin"),
        owner_line(ISSUER, "ada", "acme", "enterprise"),
        member_line(ISSUER, "eve", "acme", "member"),
        // Bob in a second organization too.
        owner_line(ISSUER, "cy", "initech", "free"),
        member_line(ISSUER, "bob", "initech", "member"),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let out = import(dir.path(), &file, &["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report = summary(&out);
    assert_eq!(
        (
            &report["users_created"],
            &report["accounts_created"],
            &report["memberships_added"]
        ),
        (&json!(4), &json!(2), &json!(5))
    );

    let store = SqliteStore::open(&dir.path().join("billing.sqlite3")).unwrap();
    let id = |s: &str| {
        UserId::of_identity(&ExternalIdentity {
            issuer: ISSUER.into(),
            subject: s.into(),
        })
    };
    let acme = AccountId::of_import_key("acme");
    let members = store.members(acme).await.unwrap();
    let roles: Vec<(UserId, Role)> = members.iter().map(|m| (m.user_id, m.role)).collect();
    for expected in [
        (id("ada"), Role::Owner),
        (id("bob"), Role::Admin),
        (id("eve"), Role::Member),
    ] {
        assert!(roles.contains(&expected), "{roles:?}");
    }
    let account = kraftd_billing::domain::ports::AccountStore::account_by_id(&store, acme)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(account.name, "Org acme");
    assert_eq!(account.billing_email.as_str(), "ada@corp.example");
    assert_eq!(
        account.subscription.stripe_customer_id.as_deref(),
        Some("cus_acme")
    );
    // No one in an organization gets an account of their own.
    assert!(store.memberships_of(id("eve")).await.unwrap().len() == 1);
    assert_eq!(store.memberships_of(id("bob")).await.unwrap().len(), 2);
    // Each member the import added is in the account's audit log, by the
    // service itself.
    let log = store.audit_log(acme, None, 10).await.unwrap();
    let mut added: Vec<(String, String)> = log
        .iter()
        .filter(|e| e.action == AuditAction::MemberAdded && e.actor == Actor::System)
        .map(|e| {
            let after = e.after.as_ref().unwrap();
            (after["email"].clone(), after["role"].clone())
        })
        .collect();
    added.sort();
    assert_eq!(
        added,
        [
            ("bob@corp.example".to_owned(), "admin".to_owned()),
            ("eve@corp.example".to_owned(), "member".to_owned()),
        ]
    );
}

#[test]
fn bad_lines_are_refused_by_number_and_the_good_ones_import() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    let good = |s: &str| {
        json!({"issuer": ISSUER, "subject": s, "email": format!("{s}@mail.example"),
               "name": "Good", "plan": "free"})
        .to_string()
    };
    let lines = [
        good("g1"),                                                      // 1
        "{\"issuer\": \"https://id.kraftd.io\", \"subject\"".to_owned(), // 2: malformed
        json!({"issuer": ISSUER, "subject": "b3", "email": "secret person <sp@mail.example>",
               "name": "B", "plan": "free"})
        .to_string(), // 3: bad email
        json!({"issuer": ISSUER, "subject": "b4", "email": "b4@mail.example",
               "name": "B", "plan": "platinum"})
        .to_string(), // 4: unknown plan
        json!({"issuer": "http://id.kraftd.io", "subject": "b5",
               "email": "b5@mail.example", "name": "B", "plan": "free"})
        .to_string(), // 5
        json!({"issuer": ISSUER, "subject": "b6", "email": "b6@mail.example",
               "name": "B", "plan": "pro"})
        .to_string(), // 6: no customer
        format!("{{\"pad\": \"{}\"}}", "x".repeat(70 * 1024)),           // 7: too long
        String::new(),                                                   // 8: blank
        owner_line(ISSUER, "o9", "twice", "free").to_string(),           // 9: two owners
        owner_line(ISSUER, "o10", "twice", "free").to_string(),          // 10
        member_line(ISSUER, "m11", "nobody", "member").to_string(),      // 11: no owner
        member_line(ISSUER, "m12", "twice", "member").to_string(),       // 12: two owners
        good("g13"),                                                     // 13
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = import(dir.path(), &file, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for (line, reason) in [
        (2, "is not valid JSON"),
        (3, "email: is not a valid email address"),
        (4, "plan: must be one of free, pro, enterprise"),
        (5, "issuer: must be https://"),
        (6, "stripe_customer_id: is required on the pro plan"),
        (7, "is longer than 65536 bytes"),
        (9, "account: has 2 owner lines (9, 10)"),
        (10, "account: has 2 owner lines (9, 10)"),
        (11, "account: no line is its owner"),
        (12, "account: has 2 owner lines (9, 10)"),
    ] {
        assert!(
            text.contains(&format!("line {line}: refused: {reason}")),
            "line {line}: {text}"
        );
    }
    assert!(text.contains("users: 2 created"), "{text}");
    assert!(text.contains("lines: 12 read, 10 refused"), "{text}");
    assert!(
        !text.contains("mail.example") && !text.contains("secret person"),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("10 line(s) were refused"), "{err}");
    assert_eq!(snapshot(dir.path())[..3], [2, 2, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_user_signs_in_with_the_identity_provider_and_lands_on_their_account() {
    let idp = IdentityProvider::start().await;
    let issuer = idp.issuer();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    let lines = [
        member_line(&issuer, "member-7", "acme", "member"),
        owner_line(&issuer, "owner-7", "acme", "enterprise"),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let data = dir.path().join("data");
    let out = import(&data, &file, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&data.join("billing.sqlite3")).unwrap());
    let app = TestApp::spawn_on(store.clone(), &[("AUTH_ISSUERS", &issuer)]).await;
    for (subject, role) in [("member-7", "member"), ("owner-7", "owner")] {
        // The token carries other details than the file: the user is found
        // by (issuer, subject) alone, as imported, and their profile then
        // follows the provider.
        let mut claims = idp.claims(subject, app.clock_now());
        claims["email"] = json!("changed@elsewhere.example");
        let token = idp.token(RSA, &claims);
        let me: Value = app.get_json(&token, "/api/me").await;
        let imported = UserId::of_identity(&ExternalIdentity {
            issuer: issuer.clone(),
            subject: subject.into(),
        });
        assert_eq!(me["id"], json!(imported.to_string()), "{subject}: {me}");
        assert_eq!(me["email"], "changed@elsewhere.example");
        let accounts: Value = app.get_json(&token, "/api/accounts").await;
        let list = accounts["accounts"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{subject}: {accounts}");
        assert_eq!(
            list[0]["id"],
            json!(AccountId::of_import_key("acme").to_string())
        );
        assert_eq!(list[0]["role"], role);
        // The account a request names no account for: the organization's.
        let sub: Value = app.get_json(&token, "/api/billing/subscription").await;
        assert_eq!(sub["effective_plan"], "enterprise", "{subject}: {sub}");
    }
    // Signing in provisioned no one else.
    let acme = AccountId::of_import_key("acme");
    assert_eq!(store.members(acme).await.unwrap().len(), 2);
    assert!(kraftd_billing::domain::ports::AccountStore::account_by_id(
        store.as_ref(),
        AccountId::own_account_of(UserId::of_identity(&ExternalIdentity {
            issuer: issuer.clone(),
            subject: "member-7".into(),
        }))
    )
    .await
    .unwrap()
    .is_none());
}

//! Emails from the outbox: rendered, sent once through the change-feed
//! function (every payload shape the host sends), retried and then given
//! up on, and delivered over real SMTP to a server on loopback.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kraftd_billing::domain::outbox::OutboxState;
use kraftd_billing::domain::records::{EmailKind, OutboxMessage};
use serde_json::{json, Value};
use support::{files, TestApp, PASSWORD};

/// A paid user's billing emails (their registration's verification link
/// aside): the confirmation and the receipt.
async fn paid_user_outbox(app: &TestApp, email: &str) -> Vec<OutboxMessage> {
    let all = paid_user_all_messages(app, email).await;
    all.into_iter()
        .filter(|m| m.kind != EmailKind::VerifyEmail)
        .collect()
}

/// Every message of a paid user's account: the verification link too.
async fn paid_user_all_messages(app: &TestApp, email: &str) -> Vec<OutboxMessage> {
    app.subscribe_to_pro(email).await;
    let user = app.account(email).await;
    app.store.outbox_for_account(user.id).await.unwrap()
}

async fn invoke(app: &TestApp, documents: Value) -> (u16, String) {
    let r = app
        .client
        .post(app.url("/SendEmails"))
        .json(&json!({"Data": {"documents": documents}, "Metadata": {"sys": {"MethodName": "SendEmails"}}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ReturnValue"], Value::Null);
    (status, body["Logs"][0].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn each_outbox_message_is_sent_once_whatever_shape_and_however_often_it_arrives() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let outbox = paid_user_outbox(&app, "reader@example.com").await;
    assert_eq!(outbox.len(), 2, "confirmation and receipt: {outbox:?}");
    let docs = serde_json::to_value(&outbox).unwrap();

    let (status, log) = invoke(&app, docs.clone()).await;
    assert_eq!(
        (status, log.as_str()),
        (200, "emails: sent 2, skipped 0, retrying 0, failed 0")
    );
    let sent = files(&app.mail_dir());
    assert_eq!(sent.len(), 2);
    let all = sent.join("\n");
    assert!(all.contains("To: reader@example.com"), "{all}");
    assert!(
        all.contains("Subject: Welcome to KRAFTD Professional"),
        "{all}"
    );
    assert!(
        all.contains("$99.00"),
        "the receipt states the amount: {all}"
    );
    assert!(all.contains("Content-Type: text/html") && all.contains("Content-Type: text/plain"));

    // At-least-once delivery: the same documents again, as a JSON string and
    // as a string of a string, send nothing more.
    let once = Value::String(docs.to_string());
    let twice = Value::String(once.to_string());
    for again in [docs, once, twice] {
        let (status, log) = invoke(&app, again).await;
        assert_eq!(
            (status, log.as_str()),
            (200, "emails: sent 0, skipped 2, retrying 0, failed 0")
        );
    }
    assert_eq!(files(&app.mail_dir()).len(), 2);
    for m in &outbox {
        assert_eq!(
            app.store.outbox_status(m.account_id, &m.id).await.unwrap(),
            Some((OutboxState::Sent, 1))
        );
    }
}

#[tokio::test]
async fn a_sender_that_died_after_claiming_is_replaced_once_its_lease_runs_out() {
    let app = TestApp::spawn_with_stripe(&[]).await;
    let outbox = paid_user_outbox(&app, "lease@example.com").await;
    // Another instance claimed the first message and died before sending.
    let claimed = app
        .store
        .claim_outbox(
            outbox[0].account_id,
            &outbox[0].id,
            app.clock_now(),
            chrono::Duration::minutes(5),
        )
        .await
        .unwrap();
    assert!(claimed.is_some());
    let (_, log) = invoke(&app, serde_json::to_value(&outbox).unwrap()).await;
    assert_eq!(log, "emails: sent 1, skipped 1, retrying 0, failed 0");
    app.clock
        .set(app.clock_now() + chrono::Duration::minutes(6));
    let (_, log) = invoke(&app, serde_json::to_value(&outbox).unwrap()).await;
    assert_eq!(log, "emails: sent 1, skipped 1, retrying 0, failed 0");
    assert_eq!(files(&app.mail_dir()).len(), 2);
}

#[tokio::test]
async fn the_sweep_timer_takes_up_a_claim_whose_sender_died_once_its_lease_runs_out() {
    // In Azure no poller runs and the change feed does not fire again for a
    // claim: the SweepOutbox timer is what finds it, after the lease set.
    let app = TestApp::spawn_with_stripe(&[("OUTBOX_LEASE_SECONDS", "600")]).await;
    let outbox = paid_user_all_messages(&app, "swept@example.com").await;
    let dead = &outbox[0];
    let claimed = app
        .store
        .claim_outbox(
            dead.account_id,
            &dead.id,
            app.clock_now(),
            chrono::Duration::minutes(10),
        )
        .await
        .unwrap();
    assert!(claimed.is_some());
    let others = outbox.len() - 1;
    assert_eq!(
        app.sweep_outbox().await,
        format!("emails: sent {others}, skipped 0, retrying 0, failed 0"),
        "the rest go; the claimed one is within its lease"
    );
    let idle = "emails: sent 0, skipped 0, retrying 0, failed 0";
    // Past the default lease of five minutes, within the one set.
    app.clock
        .set(app.clock_now() + chrono::Duration::minutes(9));
    assert_eq!(app.sweep_outbox().await, idle);
    app.clock
        .set(app.clock_now() + chrono::Duration::minutes(2));
    assert_eq!(
        app.sweep_outbox().await,
        "emails: sent 1, skipped 0, retrying 0, failed 0"
    );
    assert_eq!(app.sweep_outbox().await, idle, "sent once");
    assert_eq!(files(&app.mail_dir()).len(), outbox.len(), "each once");
    assert_eq!(
        app.store
            .outbox_status(dead.account_id, &dead.id)
            .await
            .unwrap(),
        Some((OutboxState::Sent, 2)),
        "the dead sender's attempt and the sweep's"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_send_that_keeps_failing_is_retried_with_backoff_then_marked_failed_never_lost_silently()
{
    // Nothing listens on this port: every SMTP attempt fails.
    let url = format!("smtp://127.0.0.1:{}", free_port());
    let app = TestApp::spawn_with_stripe(&[("SMTP_URL", &url)]).await;
    // All of them: the sweep below retries every message of the account.
    let outbox = paid_user_all_messages(&app, "bounce@example.com").await;
    let n = outbox.len();
    let all = serde_json::to_value(&outbox).unwrap();
    let status = || app.store.outbox_status(outbox[0].account_id, &outbox[0].id);
    let (code, log) = invoke(&app, all.clone()).await;
    assert_eq!(
        (code, log),
        (
            200,
            format!("emails: sent 0, skipped 0, retrying {n}, failed 0")
        )
    );
    // The host's redelivery, or the change feed firing on the rewrite,
    // spends no try: the next one waits its backoff.
    let (_, log) = invoke(&app, all.clone()).await;
    assert!(log.contains(&format!("skipped {n}")), "{log}");
    assert_eq!(status().await.unwrap(), Some((OutboxState::Pending, 1)));
    for attempt in 2..=5 {
        let wait = kraftd_billing::domain::outbox::retry_backoff(attempt - 1);
        app.clock
            .set(app.clock_now() + wait - chrono::Duration::seconds(1));
        let log = app.sweep_outbox().await;
        assert_eq!(
            log, "emails: sent 0, skipped 0, retrying 0, failed 0",
            "not due yet"
        );
        app.clock
            .set(app.clock_now() + chrono::Duration::seconds(1));
        let log = app.sweep_outbox().await;
        let expected = if attempt < 5 {
            (OutboxState::Pending, format!("retrying {n}, failed 0"))
        } else {
            (OutboxState::Failed, format!("retrying 0, failed {n}"))
        };
        assert!(log.contains(&expected.1), "attempt {attempt}: {log}");
        assert_eq!(status().await.unwrap(), Some((expected.0, attempt)));
    }
    app.clock.set(app.clock_now() + chrono::Duration::days(1));
    let (_, log) = invoke(&app, all).await;
    assert!(
        log.contains(&format!("skipped {n}")),
        "a failed message is not retried forever: {log}"
    );
    assert!(app
        .sweep_outbox()
        .await
        .contains("sent 0, skipped 0, retrying 0, failed 0"));
}

/// In Azure nothing polls: the change feed fires on writes only. The
/// `SweepOutbox` timer brings a failed send back once its backoff has run
/// out, and the tries outlast a half-hour mail outage.
#[tokio::test]
async fn a_receipt_survives_a_half_hour_smtp_outage() {
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = TestApp::spawn_with_stripe(&[("SMTP_URL", &url)]).await;
    let outbox = paid_user_outbox(&app, "outage@example.com").await;
    assert!(outbox.len() >= 2, "{outbox:?}");
    let (code, log) = invoke(&app, serde_json::to_value(&outbox).unwrap()).await;
    assert_eq!(code, 200);
    assert!(log.contains(&format!("retrying {}", outbox.len())), "{log}");

    let start = app.clock_now();
    let mut server = None;
    for minute in (2..=90).step_by(2) {
        if minute == 30 {
            server = Some(smtp_server_on(port));
        }
        app.clock.set(start + chrono::Duration::minutes(minute));
        app.sweep_outbox().await;
    }
    // Every message of the account, the registration's verification link
    // (which only the sweep brought) included.
    let everything = app
        .store
        .outbox_for_account(outbox[0].account_id)
        .await
        .unwrap();
    assert_eq!(everything.len(), outbox.len() + 1);
    for m in &everything {
        let (state, attempts) = app
            .store
            .outbox_status(m.account_id, &m.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state, OutboxState::Sent, "{}", m.id);
        assert!(attempts <= 5, "{}: {attempts}", m.id);
    }
    let server = server.unwrap();
    let delivered = files(&server.maildir.path().join("Maildir/new"));
    assert_eq!(delivered.len(), everything.len(), "{delivered:?}");
}

struct SmtpServer {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aiosmtpd (PyPI, installed by .ci/run) storing what it receives in a Maildir.
fn smtp_server() -> SmtpServer {
    smtp_server_on(free_port())
}

fn smtp_server_on(port: u16) -> SmtpServer {
    let maildir = tempfile::tempdir().unwrap();
    let child = Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(maildir.path().join("Maildir"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut server = SmtpServer {
        child,
        port,
        maildir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = server.child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(server.child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("aiosmtpd exited ({status}); .ci/run installs it with pip: {err}");
        }
        assert!(Instant::now() < deadline, "aiosmtpd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[tokio::test]
async fn emails_arrive_over_smtp_with_recipient_subject_and_amount() {
    let server = smtp_server();
    let url = format!("smtp://127.0.0.1:{}", server.port);
    let app = TestApp::spawn_with_stripe(&[
        ("SMTP_URL", &url),
        ("EMAIL_FROM", "KRAFTD Billing <billing@kraftd.io>"),
    ])
    .await;
    let outbox = paid_user_outbox(&app, "smtp@example.com").await;
    let (status, log) = invoke(&app, serde_json::to_value(&outbox).unwrap()).await;
    assert_eq!(
        (status, log.as_str()),
        (200, "emails: sent 2, skipped 0, retrying 0, failed 0")
    );
    let arrived = files(&server.maildir.path().join("Maildir/new"));
    assert_eq!(arrived.len(), 2);
    let receipt = arrived
        .iter()
        .find(|m| m.contains("Subject: Your KRAFTD receipt"))
        .expect("a receipt");
    assert!(receipt.contains("To: smtp@example.com"));
    assert!(
        receipt.contains("From: \"KRAFTD Billing\" <billing@kraftd.io>")
            || receipt.contains("From: KRAFTD Billing <billing@kraftd.io>"),
        "{receipt}"
    );
    assert!(receipt.contains("$99.00"));
    let account = app.account("smtp@example.com").await;
    assert!(
        receipt.contains(&format!("Message-ID: <{}", account.id)),
        "the outbox id is the Message-ID: {receipt}"
    );
}

#[tokio::test]
async fn handler_serve_delivers_the_confirmation_after_a_paid_registration() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("serve")
        .env_clear()
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.path())
        // Charged at once, so there is a receipt to deliver.
        .env("PRO_TRIAL_DAYS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/api");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/plans")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r: Value = client
        .post(format!("{base}/auth/register/with-plan"))
        .json(&json!({"email": "local@example.com", "password": PASSWORD, "name": "Local", "plan_id": "pro"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pay = format!(
        "{}/pay",
        r["checkout_url"]
            .as_str()
            .expect("a checkout on the simulator")
    );
    let paid = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(pay)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);
    // The local change-feed poller picks the outbox up within seconds.
    let mail = dir.path().join("mail");
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivered = |sent: &[String], subject: &str| sent.iter().any(|m| m.contains(subject));
    let sent = loop {
        let sent = files(&mail);
        let both = delivered(&sent, "Subject: Welcome to KRAFTD Professional")
            && delivered(&sent, "Subject: Your KRAFTD receipt");
        if both || Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        sent.iter()
            .any(|m| m.contains("Subject: Welcome to KRAFTD Professional")),
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .any(|m| m.contains("Subject: Your KRAFTD receipt")),
        "{sent:?}"
    );
}

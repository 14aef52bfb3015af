//! The real `handler` binary as the Functions host runs it: it reads the
//! port from FUNCTIONS_CUSTOMHANDLER_PORT, binds loopback, and answers the
//! forwarded request at its original `/api/...` path.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const HANDLER: &str = env!("CARGO_BIN_EXE_handler");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(env: &[(&str, &str)], args: &[&str], port: u16) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(HANDLER)
        .args(args)
        .env_clear()
        .env("DATA_DIR", dir.path())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if reqwest::get(format!("{base}/api/health"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the handler did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Running {
        child,
        base,
        _dir: dir,
    }
}

/// A stand-in for `npm --prefix web run build`: index.html and one asset,
/// so these tests need no Node.js.
fn built_web_app() -> tempfile::TempDir {
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(
        dist.path().join("index.html"),
        "<!doctype html><title>KRAFTD</title><div id=\"root\"></div>",
    )
    .unwrap();
    std::fs::create_dir(dist.path().join("assets")).unwrap();
    std::fs::write(dist.path().join("assets/app-1234.js"), "console.log('app')").unwrap();
    dist
}

#[tokio::test]
async fn under_the_functions_host_it_serves_forwarded_requests_on_the_hosts_port() {
    let port = free_port();
    let port_s = port.to_string();
    let web = built_web_app();
    let mut h = start(
        &[
            ("WEB_DIST", web.path().to_str().unwrap()),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", &port_s),
            ("JWT_SECRET", "host-secret-0123456789abcdef0123456789"),
            ("STRIPE_SECRET_KEY", "sk_test_never_called"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_test"),
            ("SMTP_URL", "smtp://127.0.0.1:1"),
            ("PORT", "1"),
        ],
        &[],
        port,
    )
    .await;
    let client = reqwest::Client::new();
    // What the host forwards: original path with prefix, its headers, raw body.
    let r = client
        .get(format!("{}/api/plans", h.base))
        .header("x-azure-functions-invocationid", "6f1f6d3e-host-invocation")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let plans: Value = r.json().await.unwrap();
    assert_eq!(plans["plans"][1]["prices"][0]["amount"], 9900);

    let raw = json!({"email": "host@example.com", "password": "correct horse 9", "name": "H", "plan_id": "free"}).to_string();
    let r = client
        .post(format!("{}/api/auth/register/with-plan", h.base))
        .header("content-type", "application/json")
        .header("content-length", raw.len())
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // The frontend is deployed on its own: under the host only the API answers.
    let r = client.get(format!("{}/", h.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );

    // Logs are JSON lines on stdout and carry the host's invocation id.
    h.child.kill().unwrap();
    let out = BufReader::new(h.child.stdout.take().unwrap());
    let lines: Vec<Value> = out
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.to_string().contains("6f1f6d3e-host-invocation")),
        "{lines:?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.to_string().contains(&format!("127.0.0.1:{port}"))));
}

#[tokio::test]
async fn handler_serve_binds_port_from_the_environment_and_stops_cleanly_on_sigterm() {
    let port = free_port();
    let port_s = port.to_string();
    let mut h = start(&[("PORT", &port_s)], &["serve"], port).await;
    let r = reqwest::get(format!("{}/api/plans", h.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    // Without JWT_SECRET a local run signs with a generated key kept in DATA_DIR.
    assert!(h._dir.path().join("dev-jwt-secret").is_file());
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(h.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(code) = h.child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "the handler ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(code.success(), "{code:?}");
}

#[tokio::test]
async fn handler_serve_serves_the_built_web_app_at_the_root_and_the_api_unchanged() {
    let port = free_port();
    let port_s = port.to_string();
    let web = built_web_app();
    let h = start(
        &[
            ("PORT", &port_s),
            ("WEB_DIST", web.path().to_str().unwrap()),
        ],
        &["serve"],
        port,
    )
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", h.base)).send();

    // The page, and the same page for the app's own routes (a reload, or the
    // way back from checkout), so the browser's router can show them.
    for path in ["/", "/account?payment=success", "/pricing"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(r.headers()["cache-control"], "no-cache", "{path}");
        assert!(
            r.text().await.unwrap().contains("<div id=\"root\">"),
            "{path}"
        );
    }
    let r = get("/assets/app-1234.js").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    // A missing asset is missing, not the page.
    assert_eq!(get("/assets/gone-5678.js").await.unwrap().status(), 404);

    // The API is untouched: its routes, and its JSON 404 for unknown ones.
    let r = get("/api/plans").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["plans"][0]["id"], "free");
    for path in ["/api/no-such-route", "/api"] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "not_found",
            "{path}"
        );
    }
    let r = client
        .post(format!("{}/api/billing/subscription", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn handler_serve_without_a_built_web_app_serves_the_api_only() {
    let port = free_port();
    let port_s = port.to_string();
    let empty = tempfile::tempdir().unwrap();
    let h = start(
        &[
            ("PORT", &port_s),
            ("WEB_DIST", empty.path().to_str().unwrap()),
        ],
        &["serve"],
        port,
    )
    .await;
    let r = reqwest::get(format!("{}/", h.base)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}

/// Starts the handler as the host would, expects it to refuse, and returns
/// its one line.
fn refuses_to_start(env: &[(&str, &str)], setting: &str) -> String {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(HANDLER)
        .env_clear()
        .env("DATA_DIR", dir.path())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with bad {setting}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr:?}");
    assert!(
        stderr.contains(setting),
        "{stderr:?} does not name {setting}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing started: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "it never half-starts"
    );
    stderr
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_setting() {
    let secret = ("JWT_SECRET", "host-secret-0123456789abcdef0123456789");
    let key = ("STRIPE_SECRET_KEY", "sk_test_never_called");
    let hook = ("STRIPE_WEBHOOK_SECRET", "whsec_test");
    let smtp = ("SMTP_URL", "smtp://127.0.0.1:1");
    refuses_to_start(&[], "JWT_SECRET");
    refuses_to_start(&[("JWT_SECRET", "tooshort")], "JWT_SECRET");
    refuses_to_start(&[secret], "STRIPE_SECRET_KEY");
    refuses_to_start(&[secret, key], "STRIPE_WEBHOOK_SECRET");
    refuses_to_start(&[secret, key, hook], "SMTP_URL");
    for bad in [
        ("FREE_PLAN_DOCS_LIMIT", "fifty"),
        ("PRO_PLAN_API_LIMIT", "-5"),
        ("CORS_ALLOWED_ORIGINS", "*"),
        ("STRIPE_SECRET_KEY", "pk_live_not_a_secret_key"),
        ("AUTH_ISSUERS", "http://idp.example.com"),
    ] {
        let env: Vec<(&str, &str)> = [secret, key, hook, smtp]
            .into_iter()
            .filter(|(n, _)| *n != bad.0)
            .chain([bad])
            .collect();
        refuses_to_start(&env, bad.0);
    }
    // The secret's value never appears in the error.
    let out = Command::new(HANDLER)
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", "1")
        .env("JWT_SECRET", "leaked-if-printed")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("leaked-if-printed"));
}

/// The binary reads Key Vault as a managed identity, which a test cannot
/// give it, so only the failure path runs end to end here; the reads
/// themselves are tested in `key_vault.rs` with a static credential.
#[test]
fn an_unreachable_key_vault_stops_start_up_with_one_line_naming_it() {
    let vault = format!("127.0.0.1:{}", free_port());
    let line = refuses_to_start(
        &[("KEY_VAULT_URL", &format!("https://{vault}"))],
        "KEY_VAULT_URL",
    );
    assert!(line.contains(&format!("Key Vault {vault}")), "{line:?}");
}

#[test]
fn the_committed_functions_folder_passes_the_cli_check() {
    let out = Command::new(HANDLER)
        .args([
            "functions",
            "check",
            concat!(env!("CARGO_MANIFEST_DIR"), "/functions"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(HANDLER).args(["bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A local run is asked for by name: `handler` alone is for the Functions
/// host, and without the host's port it refuses rather than stand in for
/// Stripe, the signing key, the store and mail.
#[test]
fn without_the_hosts_port_handler_alone_refuses_and_names_handler_serve() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(HANDLER)
        .env_clear()
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("FUNCTIONS_CUSTOMHANDLER_PORT") && stderr.contains("handler serve"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created"
    );
}

#[test]
fn handler_serve_says_in_one_line_what_it_stands_in_for() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(HANDLER)
        .arg("serve")
        .env_clear()
        .env("DATA_DIR", dir.path())
        .env("PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, found) = std::sync::mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = found
            .recv_timeout(left)
            .expect("handler serve announces local mode within 20 s");
        if line.contains("local mode") {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    for stand_in in ["Stripe", "signing key", "SQLite", "eml", "timers"] {
        assert!(line.contains(stand_in), "{stand_in} missing from {line}");
    }
}

#[test]
fn off_loopback_a_local_run_needs_a_real_stripe_key_and_signing_key() {
    let refused = |env: &[(&str, &str)], setting: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(HANDLER)
            .arg("serve")
            .env_clear()
            .env("DATA_DIR", dir.path())
            .env("PORT", free_port().to_string())
            .env("BIND_ADDRESS", "0.0.0.0")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{stderr}");
        assert!(
            stderr.contains(setting) && stderr.contains("BIND_ADDRESS"),
            "{setting}: {stderr}"
        );
        assert!(
            !dir.path().join("dev-jwt-secret").exists(),
            "no key was generated"
        );
    };
    refused(&[], "STRIPE_SECRET_KEY");
    refused(
        &[
            ("STRIPE_SECRET_KEY", "sk_test_never_called"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_test"),
        ],
        "JWT_SECRET",
    );
}

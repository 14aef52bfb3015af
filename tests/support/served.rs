//! The built `handler` binary serving on a free loopback port with its
//! embedded store, for tests of the binary itself. Included by path:
//! `#[path = "support/served.rs"] mod served;`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const HANDLER: &str = env!("CARGO_BIN_EXE_handler");

pub struct Served {
    pub child: Child,
    pub base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `handler serve` with only `env` set, answering `/api/health`.
pub async fn serve(env: Vec<(&'static str, String)>) -> Served {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(HANDLER)
        .args(["serve", "--port", &port.to_string()])
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::get(format!("{base}/api/health"))
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "the handler did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Served { child, base }
}

/// `handler service-keys create` on the data directory: the key, alone on
/// stdout's last line, and the whole of stdout.
pub fn create_service_key(env: Vec<(&'static str, String)>, name: &str) -> (String, String) {
    let out = Command::new(HANDLER)
        .args([
            "service-keys",
            "create",
            "--name",
            name,
            "--scopes",
            "usage:write,entitlements:read",
        ])
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = stdout.lines().last().unwrap().to_owned();
    (key, stdout)
}

/// Registers a Free user: their token and the id of the account they own.
pub async fn register_owner(base: &str, email: &str, name: &str) -> (String, String) {
    let client = reqwest::Client::new();
    let r: serde_json::Value = client
        .post(format!("{base}/api/auth/register/with-plan"))
        .json(&serde_json::json!({
            "email": email,
            "password": "correct horse 9",
            "name": name,
            "plan_id": "free",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = r["access_token"].as_str().expect("registered").to_owned();
    let accounts: serde_json::Value = client
        .get(format!("{base}/api/accounts"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account = accounts["accounts"][0]["id"].as_str().unwrap().to_owned();
    (token, account)
}

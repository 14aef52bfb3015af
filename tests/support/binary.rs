//! The `handler` binary as an engineer runs it: `handler serve` on a free
//! loopback port with the settings a test gives, its commands, and a
//! SIGKILL for the crash tests. Needs nothing else of `support`, so a test
//! of the binary alone includes it by path:
//! `#[path = "support/binary.rs"] mod binary;`.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const HANDLER: &str = env!("CARGO_BIN_EXE_handler");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command of the binary with exactly these settings.
pub fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(HANDLER)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `handler serve`, restartable with the same settings (and so the same
/// data directory and store).
pub struct Served {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`, new at each start.
    pub base: String,
    env: Vec<(String, String)>,
}

impl Served {
    /// Starts `handler serve` and waits until it answers `/api/health`.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut served = Self {
            child: None,
            base: String::new(),
            env,
        };
        served.restart().await;
        served
    }

    /// Runs a command of the binary (`service-keys create`, ...) with the
    /// same settings.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(HANDLER)
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    /// A service key made with `handler service-keys create`.
    pub fn service_key(&self, scopes: &str) -> String {
        let out = self.cli(&[
            "service-keys",
            "create",
            "--name",
            "test-service",
            "--scopes",
            scopes,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_owned()
    }

    /// SIGKILL: no shutdown, no flush, whatever was in flight is cut off.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the binary again (killing a running one first) on a new port.
    pub async fn restart(&mut self) {
        self.kill();
        let port = free_port();
        let child = Command::new(HANDLER)
            .args(["serve", "--port", &port.to_string()])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        while !client
            .get(format!("{}/api/health", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(
                Instant::now() < deadline,
                "handler serve did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
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

//! Login burst benchmark behind `scripts/bench`: 400 concurrent sign-ins
//! with unknown emails (each verifies against the decoy argon2id hash, as a
//! real user's would) against `handler serve`, once with the hashers bounded
//! as deployed (`PASSWORD_HASHES_AT_ONCE` unset: one per core) and once with
//! 64 at a time, nearly the unbounded blocking pool of before. Reports the
//! process's peak resident memory (VmHWM), idle memory, and the answers.
//!
//! Usage: logins HANDLER [BURST]. Prints a Markdown table.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Outcome {
    idle_mib: f64,
    peak_mib: f64,
    answers: BTreeMap<u16, usize>,
    seconds: f64,
}

async fn burst(handler: &str, at_once: Option<&str>, logins: usize) -> Outcome {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(handler);
    cmd.arg("serve")
        .env_clear()
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.path())
        .env("JWT_SECRET", "bench-secret-0123456789abcdef0123456789")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(n) = at_once {
        cmd.env("PASSWORD_HASHES_AT_ONCE", n);
    }
    let mut child = cmd.spawn().unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = client.get(format!("{base}/api/health")).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "the handler never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The decoy hash is made half a second after start: let it be.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = status_kib(child.id(), "VmRSS:");
    let started = Instant::now();
    let answers = futures::future::join_all((0..logins).map(|n| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client
                .post(format!("{base}/api/auth/login"))
                .json(&serde_json::json!({"email": format!("nobody{n}@bench.io"), "password": "not the password 1"}))
                .send()
                .await;
            r.map_or(0, |r| r.status().as_u16())
        }
    }))
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let peak = status_kib(child.id(), "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    let mut counts = BTreeMap::new();
    for a in answers {
        *counts.entry(a).or_insert(0) += 1;
    }
    Outcome {
        idle_mib: idle as f64 / 1024.0,
        peak_mib: peak as f64 / 1024.0,
        answers: counts,
        seconds,
    }
}

fn mix(answers: &BTreeMap<u16, usize>) -> String {
    answers
        .iter()
        .map(|(status, n)| {
            let status = if *status == 0 {
                "no answer".to_owned()
            } else {
                status.to_string()
            };
            format!("{n} × {status}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let handler = args.next().expect("usage: logins HANDLER [BURST]");
    let logins: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(400);
    let bounded = burst(&handler, None, logins).await;
    let wide = burst(&handler, Some("64"), logins).await;
    println!(
        "| {logins} concurrent logins, unknown emails | peak RSS | idle RSS | answers | seconds | peak ratio to 64 at once |"
    );
    println!("|---|---:|---:|---|---:|---:|");
    for (name, o) in [
        ("hashers bounded (one per core, as deployed)", &bounded),
        ("64 hashes at once (the unbounded pool, nearly)", &wide),
    ] {
        println!(
            "| {name} | {:.0} MiB | {:.0} MiB | {} | {:.1} | {:.2} |",
            o.peak_mib,
            o.idle_mib,
            mix(&o.answers),
            o.seconds,
            o.peak_mib / wide.peak_mib
        );
    }
}

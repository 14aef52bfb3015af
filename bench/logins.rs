//! Login burst benchmark behind `scripts/bench`: 400 concurrent sign-ins
//! with unknown emails (each verifies against the decoy argon2id hash, as a
//! real user's would) against `handler serve`, all from 127.0.0.1:
//! - with the default sign-in limits (as deployed; one client address, so
//!   the per-address burst passes and the rest is refused with 429);
//! - with the limits lifted, hashers bounded as deployed
//!   (`PASSWORD_HASHES_AT_ONCE` unset: one per core);
//! - with the limits lifted and 64 hashes at a time, nearly the unbounded
//!   blocking pool of before.
//!
//! Reports the process's peak resident memory (VmHWM), idle memory, and the
//! answers by status. Reporting only: a benchmark asserts nothing.
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

/// The sign-in limits lifted far past the burst.
const LIFTED: &[(&str, &str)] = &[
    ("SIGN_IN_PER_ADDRESS_PER_MINUTE", "1000000"),
    ("SIGN_IN_PER_ADDRESS_BURST", "1000000"),
    ("SIGN_IN_PER_ACCOUNT_PER_MINUTE", "1000000"),
    ("SIGN_IN_PER_ACCOUNT_BURST", "1000000"),
];

async fn burst(handler: &str, env: &[(&str, &str)], logins: usize) -> Outcome {
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
    for (k, v) in env {
        cmd.env(k, v);
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

/// The answers by class: 200, 401, 429, 503, other 5xx, anything else.
fn mix(answers: &BTreeMap<u16, usize>) -> [usize; 6] {
    let mut m = [0; 6];
    for (status, n) in answers {
        let i = match status {
            200 => 0,
            401 => 1,
            429 => 2,
            503 => 3,
            500..=599 => 4,
            _ => 5,
        };
        m[i] += n;
    }
    m
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let handler = args.next().expect("usage: logins HANDLER [BURST]");
    let logins: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(400);
    let limited = burst(&handler, &[], logins).await;
    let lifted = burst(&handler, LIFTED, logins).await;
    let mut wide_env = LIFTED.to_vec();
    wide_env.push(("PASSWORD_HASHES_AT_ONCE", "64"));
    let wide = burst(&handler, &wide_env, logins).await;
    println!(
        "| {logins} concurrent logins, unknown emails, one address | peak RSS | idle RSS | 200 | 401 | 429 | 503 | other 5xx | other / no answer | seconds |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, o) in [
        ("default limits, hashers bounded (as deployed)", &limited),
        ("limits lifted, hashers bounded (one per core)", &lifted),
        (
            "limits lifted, 64 hashes at once (the unbounded pool, nearly)",
            &wide,
        ),
    ] {
        let [ok, unauthorized, limited, busy, other_5xx, other] = mix(&o.answers);
        println!(
            "| {name} | {:.0} MiB | {:.0} MiB | {ok} | {unauthorized} | {limited} | {busy} | {other_5xx} | {other} | {:.1} |",
            o.peak_mib, o.idle_mib, o.seconds,
        );
    }
}

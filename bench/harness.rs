//! Benchmark harness behind `scripts/bench`. Compares the release `handler`
//! with the bare axum hello-world built in the same run, on loopback:
//!
//! - cold start: process exec to first 200 on /api/plans (median of N);
//! - signed-in read: GET /api/entitlements with a JWT, which verifies the
//!   token and reads the user, their membership and the account on the
//!   embedded store (no write: signed-in requests are not metered since
//!   KRAFTD's services report API calls), under wrk at 1, 16 and 64
//!   connections, against the bare endpoint;
//! - footprint: binary sizes and resident memory idle and after load.
//!
//! Usage: bench HANDLER BARE_HELLO (env BENCH_STARTS, BENCH_SECONDS).
//! Prints a Markdown report on stdout. No assertions: numbers only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &str) -> (Server, Instant) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("serve")
        .env_clear()
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.path())
        .env("JWT_SECRET", "bench-secret-0123456789abcdef0123456789")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (
        Server {
            child,
            port,
            _dir: dir,
        },
        started,
    )
}

/// One HTTP/1.1 request on a fresh connection; the status code, or None if
/// nothing listens yet.
fn status(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.get(9..12)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(port, "GET", "/api/plans", "").map(|s| s.0) != Some(200) {
        assert!(Instant::now() < deadline, "server on {port} never answered");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn cold_start_ms(bin: &str) -> f64 {
    let (server, started) = spawn(bin);
    wait_ready(server.port);
    started.elapsed().as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn to_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

fn wrk(url: &str, conns: u64, secs: u64, token: Option<&str>) -> Load {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "--latency",
        "-t",
        &conns.min(2).to_string(),
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk is installed (scripts/bench installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("nan")
            .to_owned()
    };
    assert!(
        !text.contains("Non-2xx"),
        "the load run got errors:\n{text}"
    );
    Load {
        rps: field("Requests/sec:").parse().unwrap_or(f64::NAN),
        p50_ms: to_ms(&field("50%")),
        p99_ms: to_ms(&field("99%")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (handler, bare) = (&args[1], &args[2]);
    let starts = env_num("BENCH_STARTS", 20) as usize;
    let secs = env_num("BENCH_SECONDS", 5);

    // Interleaved, so drift on a shared machine hits both alike.
    let (mut h, mut b) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        b.push(cold_start_ms(bare));
        h.push(cold_start_ms(handler));
    }
    let (hm, bm) = (median(h), median(b));

    let (hs, _) = spawn(handler);
    let (bs, _) = spawn(bare);
    wait_ready(hs.port);
    wait_ready(bs.port);
    let idle = rss_kib(hs.child.id());
    let reg = r#"{"email":"bench@example.com","password":"correct horse 9","name":"Bench","plan_id":"free"}"#;
    let (code, body) = status(hs.port, "POST", "/api/auth/register/with-plan", reg).unwrap();
    assert_eq!(code, 201, "{body}");
    let token = body
        .split("\"access_token\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let signed_in = format!("http://127.0.0.1:{}/api/entitlements", hs.port);
    let baseline = format!("http://127.0.0.1:{}/", bs.port);

    let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / 1_048_576.0;
    println!("| figure | handler | bare axum | ratio |");
    println!("|---|---:|---:|---:|");
    println!("| cold start, exec → first 200 on /api/plans (median of {starts}) | {hm:.1} ms | {bm:.1} ms | {:.2}× |", hm / bm);
    for c in [1, 16, 64] {
        let base = wrk(&baseline, c, secs, None);
        let load = wrk(&signed_in, c, secs, Some(&token));
        println!(
            "| signed-in read, {c} connection(s): req/s | {:.0} | {:.0} | {:.2} |",
            load.rps,
            base.rps,
            load.rps / base.rps
        );
        println!(
            "| signed-in read, {c} connection(s): p50 / p99 | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.1}× / {:.1}× |",
            load.p50_ms,
            load.p99_ms,
            base.p50_ms,
            base.p99_ms,
            load.p50_ms / base.p50_ms,
            load.p99_ms / base.p99_ms
        );
    }
    let loaded = rss_kib(hs.child.id());
    let bare_rss = rss_kib(bs.child.id());
    println!(
        "| resident memory, idle → after load | {:.1} → {:.1} MiB | {:.1} MiB (after load) | |",
        idle as f64 / 1024.0,
        loaded as f64 / 1024.0,
        bare_rss as f64 / 1024.0
    );
    println!(
        "| release binary size | {:.1} MiB | {:.1} MiB | |",
        size(handler),
        size(bare)
    );
}

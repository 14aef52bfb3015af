//! The deployment package as the Functions host receives it: this runs
//! `scripts/package` (a no-op rebuild when nothing changed), unpacks
//! dist/kraftd-billing.zip and checks the layout the host expects, then
//! starts the packaged `handler` the way the host does.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kraftd_billing::functions as manifest;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the package and unpacks it with a standard unzip into a fresh
/// directory.
fn unpacked() -> tempfile::TempDir {
    let mut package = Command::new("bash");
    package.arg(root().join("scripts/package"));
    // As an engineer runs it: without what `cargo test` sets for tests. Build
    // scripts (ring's) watch CARGO_MANIFEST_DIR, so inheriting it would make
    // the inner cargo rebuild everything on every other run.
    for (name, _) in std::env::vars() {
        let from_cargo_test = name == "CARGO"
            || name == "LD_LIBRARY_PATH"
            || [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
                "CARGO_TARGET_TMPDIR",
            ]
            .iter()
            .any(|p| name.starts_with(p));
        if from_cargo_test {
            package.env_remove(name);
        }
    }
    let out = package.output().expect("bash runs scripts/package");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scripts/package failed:\n{log}");
    let summary = log
        .lines()
        .find(|l| l.starts_with("package: "))
        .unwrap_or_else(|| panic!("scripts/package prints the package size:\n{log}"));
    assert!(summary.contains(" bytes"), "{summary}");
    println!("{summary}");
    let handler_bytes: u64 = summary
        .split("; handler ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the summary names the handler's size: {summary}"));
    // The Functions host copies and starts it on every cold start.
    assert!(
        handler_bytes <= 25 * 1024 * 1024,
        "the deployed handler is at most 25 MiB: {summary}"
    );

    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("unzip")
        .args(["-q", "-d"])
        .arg(dir.path())
        .arg(root().join("dist/kraftd-billing.zip"))
        .status()
        .expect("unzip runs");
    assert!(status.success());
    dir
}

/// (64-bit x86-64, no dynamic loader): an ELF file that runs on any Linux
/// image, whatever its libc.
fn elf_facts(bytes: &[u8]) -> (bool, bool) {
    assert_eq!(&bytes[..4], b"\x7fELF", "handler is an ELF executable");
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
    let x86_64 = bytes[4] == 2 && u16_at(0x12) == 62;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    let needs_loader = (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) == PT_INTERP
    });
    (x86_64, !needs_loader)
}

#[tokio::test]
async fn the_package_has_the_layout_the_functions_host_runs() {
    let dir = unpacked();
    let pkg = dir.path();

    // host.json at the root, the repository's, naming the executable.
    let host: Value =
        serde_json::from_str(&std::fs::read_to_string(pkg.join("host.json")).unwrap()).unwrap();
    let repo_host: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("host.json")).unwrap()).unwrap();
    assert_eq!(host, repo_host);
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );

    // One folder per function of the route table, each with its generated
    // function.json, and nothing else.
    let generated = manifest::generate();
    let mut expected: BTreeSet<String> = generated.keys().map(|k| k.to_string()).collect();
    expected.extend(["host.json".to_owned(), "handler".to_owned()]);
    let found: BTreeSet<String> = std::fs::read_dir(pkg)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(found, expected);
    for (name, text) in &generated {
        let folder: Vec<_> = std::fs::read_dir(pkg.join(name)).unwrap().collect();
        assert_eq!(folder.len(), 1, "{name} holds only function.json");
        assert_eq!(
            &std::fs::read_to_string(pkg.join(name).join("function.json")).unwrap(),
            text,
            "{name}"
        );
    }

    // The executable: kept executable through zip and unzip, static x86-64.
    let handler = pkg.join("handler");
    let mode = std::fs::metadata(&handler).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "handler is executable ({mode:o})");
    let (x86_64, static_binary) = elf_facts(&std::fs::read(&handler).unwrap());
    assert!(x86_64, "handler is built for x86-64");
    assert!(static_binary, "handler needs no dynamic loader");

    // It runs, and agrees with the folders shipped beside it.
    let check = Command::new(&handler)
        .args(["functions", "check"])
        .arg(pkg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Started as the host starts it (working directory = the package,
    // FUNCTIONS_CUSTOMHANDLER_PORT), it serves the forwarded routes.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(&handler)
        .current_dir(pkg)
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("DATA_DIR", data.path())
        .env("JWT_SECRET", "package-secret-0123456789abcdef012345")
        .env("STRIPE_SECRET_KEY", "sk_test_never_called")
        .env("STRIPE_WEBHOOK_SECRET", "whsec_test")
        .env("SMTP_URL", "smtp://127.0.0.1:1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/api");
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        match reqwest::get(format!("{base}/health")).await {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => {
                let _ = child.kill();
                panic!("the packaged handler did not answer within 30 s: {e}");
            }
        }
    };
    let plans = reqwest::get(format!("{base}/plans")).await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health.status(), 200);
    assert_eq!(plans.status(), 200);
    let plans: Value = plans.json().await.unwrap();
    assert!(plans.to_string().contains("\"pro\""), "{plans}");

    no_simulator_inside(&handler);
}

/// The simulator (its code, its 188 KB of Stripe fixtures, its test controls)
/// stays out of the deployment: the package's handler holds no byte run of
/// the fixtures, which the development build does hold, and run locally
/// without a Stripe key it stops instead of simulating.
fn no_simulator_inside(packaged: &Path) {
    let fixtures = std::fs::read(root().join("crates/stripe-sim/src/fixtures3.json")).unwrap();
    let middle = fixtures.len() / 2;
    let sample = &fixtures[middle..middle + 256];
    let holds = |binary: &Path| {
        let bytes = std::fs::read(binary).unwrap();
        bytes.windows(sample.len()).any(|w| w == sample)
    };
    assert!(
        holds(Path::new(env!("CARGO_BIN_EXE_handler"))),
        "the development handler embeds the simulator's fixtures (so the check can see them)"
    );
    assert!(
        !holds(packaged),
        "the packaged handler embeds the simulator's fixtures"
    );

    let data = tempfile::tempdir().unwrap();
    let out = Command::new(packaged)
        .arg("serve")
        .env_clear()
        .env("DATA_DIR", data.path())
        .env("PORT", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("STRIPE_SECRET_KEY") && stderr.contains("no Stripe simulator"),
        "{stderr}"
    );
}

//! One Cosmos REST server (tests/cosmos-server/server.js) per test binary,
//! started on first use on a free loopback port. It exits when this process
//! does: it watches its stdin, which only this process holds.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use kraftd_billing::store::cosmos::client::CosmosSettings;

/// The Cosmos emulator's published, well-known key (not a secret).
pub const EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

struct Server {
    _child: Child,
    port: u16,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cosmos-server");
        assert!(
            std::path::Path::new(dir).join("node_modules").exists(),
            "the Cosmos test server is not installed: run `npm ci --prefix tests/cosmos-server` (scripts/test does)"
        );
        let mut child = Command::new("node")
            .arg("server.js")
            .arg("0")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs tests/cosmos-server/server.js");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("cosmos test server said {line:?}"));
        Server {
            _child: child,
            port,
        }
    })
}

pub fn settings(database: &str) -> CosmosSettings {
    CosmosSettings {
        endpoint: format!("https://127.0.0.1:{}/", server().port),
        key: Some(kraftd_billing::domain::secret::Secret::from(EMULATOR_KEY)),
        client_id: None,
        database: database.to_owned(),
        region: "East US".into(),
        under_host: false,
    }
}

//! The store contract on Cosmos DB over the wire: a Cosmos REST server
//! (@vercel/cosmosdb-server, tests/cosmos-server) on loopback HTTPS, reached
//! through `store::cosmos::client::connect` exactly as `STORE=cosmos` does:
//! real HTTP, TLS, key authentication and the emulator settings.

mod support;

use std::sync::Arc;

use kraftd_billing::domain::ports::Store;
use kraftd_billing::store::cosmos::{self, CosmosStore};

async fn cosmos_server_store() -> Arc<dyn Store> {
    let settings = support::cosmos_server::settings(&format!("contract-{}", uuid::Uuid::new_v4()));
    let client = cosmos::client::connect(&settings).await.unwrap();
    cosmos::init(&client, &settings.database).await.unwrap();
    Arc::new(
        CosmosStore::open(&client, &settings.database)
            .await
            .unwrap(),
    )
}

store_contract_tests!(cosmos_server_store);

/// Each call connects anew (a new client, as a restarted process) to one database.
async fn cosmos_server_opener() -> support::quota_contract::Opener {
    let settings = support::cosmos_server::settings(&format!("quota-{}", uuid::Uuid::new_v4()));
    let client = cosmos::client::connect(&settings).await.unwrap();
    cosmos::init(&client, &settings.database).await.unwrap();
    Box::new(move || {
        let settings = settings.clone();
        Box::pin(async move {
            let client = cosmos::client::connect(&settings).await.unwrap();
            Arc::new(
                CosmosStore::open(&client, &settings.database)
                    .await
                    .unwrap(),
            ) as Arc<dyn Store>
        })
    })
}

quota_contract_tests!(cosmos_server_store, cosmos_server_opener);

mod handler_binary {
    //! The `handler` binary on `STORE=cosmos`, as an engineer runs it
    //! against an emulator: `handler cosmos init`, then `handler serve`.

    use std::process::Command;

    use serde_json::json;

    use super::support::binary::{register_owner, Served, HANDLER};

    fn cosmos_env(database: &str) -> Vec<(String, String)> {
        let s = super::support::cosmos_server::settings(database);
        vec![
            ("COSMOS__accountEndpoint".into(), s.endpoint),
            (
                "COSMOS_KEY".into(),
                kraftd_billing::domain::secret::ExposeSecret::expose_secret(&s.key.unwrap())
                    .to_owned(),
            ),
            ("COSMOS_DATABASE".into(), database.into()),
        ]
    }

    fn init(env: &[(String, String)]) -> String {
        let out = Command::new(HANDLER)
            .args(["cosmos", "init"])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[tokio::test]
    async fn cosmos_init_then_serve_keeps_accounts_and_quotas_in_cosmos() {
        let database = format!("serve-{}", uuid::Uuid::new_v4().simple());
        let env = cosmos_env(&database);
        let first = init(&env);
        assert!(
            first.contains(&format!("created database {database}")),
            "{first}"
        );
        assert!(
            first.contains(&format!(
                "{database}/usage_records: partition key /account_id, default TTL 7776000"
            )),
            "{first}"
        );
        assert!(
            first.contains(&format!(
                "{database}/accounts: partition key /account_id, default TTL -1"
            )),
            "{first}"
        );
        assert!(first.contains(&format!(
            "{database}/leases: partition key /id, default TTL off"
        )));
        let second = init(&env);
        assert!(!second.contains("created"), "init is idempotent: {second}");

        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let mut settings: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        settings.extend([("DATA_DIR", data.as_str()), ("FREE_PLAN_DOCS_LIMIT", "3")]);
        let served = Served::start(&settings).await;
        let base = format!("{}/api", served.base);
        let client = reqwest::Client::new();
        let (_, account) = register_owner(&served.base, "cosmos@example.com", "Ada").await;
        // A service key made on the Cosmos DB store while the service runs.
        let key = served.service_key("usage:write");
        let mut n = 0;
        let mut consume = || {
            n += 1;
            client
                .post(format!("{base}/accounts/{account}/usage"))
                .bearer_auth(&key)
                .header("Idempotency-Key", format!("doc-{n}"))
                .json(&json!({"metric": "documents", "quantity": 1}))
                .send()
        };
        for _ in 0..3 {
            assert_eq!(consume().await.unwrap().status(), 200);
        }
        let refused = consume().await.unwrap();
        assert_eq!(refused.status(), 403);
        let again = client
            .post(format!("{base}/auth/register/with-plan"))
            .json(&json!({"email": "cosmos@example.com", "password": "correct horse 9", "name": "Ada", "plan_id": "free"}))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 409, "the email is claimed in Cosmos");
    }
}

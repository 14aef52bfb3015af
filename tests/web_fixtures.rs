//! The web app's component tests answer `GET /api/plans` from a committed
//! fixture (web/src/test/plans.json, through web/src/test/fakeApi.ts). It
//! must be what the service serves, or those tests pass against a catalog
//! that does not exist. The catalog is written down once, in
//! `Catalog::standard()` (crates/domain/src/plan.rs).
//!
//! After changing the catalog, regenerate the fixture from the service's
//! answer and run the web tests:
//!
//!     UPDATE_WEB_FIXTURES=1 cargo test --test web_fixtures
//!     npm --prefix web test

mod support;

use std::path::Path;

use serde_json::Value;
use support::TestApp;

const PLANS: &str = "web/src/test/plans.json";

#[tokio::test]
async fn the_web_plans_fixture_is_what_get_api_plans_serves() {
    // Default configuration: no limit overrides, the standard catalog (the
    // harness turns Pro's trial off for the payment suites; not here).
    let trial = kraftd_billing::domain::plan::PRO_TRIAL_DAYS.to_string();
    let app = TestApp::spawn_with(&[("PRO_TRIAL_DAYS", &trial)]).await;
    let r = app.client.get(app.url("/api/plans")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let served: Value = r.json().await.unwrap();

    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(PLANS);
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let fixture: Option<Value> = serde_json::from_str(&text).ok();
    if fixture.as_ref() == Some(&served) {
        return;
    }
    if std::env::var_os("UPDATE_WEB_FIXTURES").is_some() {
        let pretty = serde_json::to_string_pretty(&served).unwrap();
        std::fs::write(&file, pretty + "\n").unwrap();
        eprintln!("rewrote {PLANS} from GET /api/plans");
        return;
    }
    panic!(
        "{PLANS} is not what GET /api/plans serves: regenerate it with \
         `UPDATE_WEB_FIXTURES=1 cargo test --test web_fixtures`, then run \
         `npm --prefix web test`.\nserved: {served:#}"
    );
}

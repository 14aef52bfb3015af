//! Non-HTTP functions through the custom-handler protocol, with the
//! payloads the Functions host really sends.

mod support;

use serde_json::{json, Value};
use support::TestApp;

/// Captured from a real host (see the project notes), plus the variants
/// hosts are known to send: schedule monitoring on, a missed run, and the
/// timer object JSON-encoded as a string.
fn timer_payloads() -> Vec<Value> {
    let plain = json!({"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},
        "Metadata":{"sys":{"MethodName":"ReconcileSubscriptions","UtcNow":"2022-07-05T11:40:07.48Z","RandGuid":"9cd4c3b1-1b5e-4d5c-9c55-3a4e0f0c2d11"}}});
    let monitored = json!({"Data":{"timer":{"Schedule":{"AdjustForDST":true},
        "ScheduleStatus":{"Last":"2026-11-24T09:00:00+00:00","Next":"2026-11-24T09:15:00+00:00","LastUpdated":"2026-11-24T09:00:00.0123+00:00"},
        "IsPastDue":true}},"Metadata":{"sys":{"MethodName":"ReconcileSubscriptions","UtcNow":"2026-11-24T09:31:02.1Z","RandGuid":"0b6e"}}});
    let stringly = json!({"Data":{"timer":"{\"Schedule\":{\"AdjustForDST\":true},\"ScheduleStatus\":null,\"IsPastDue\":true}"},"Metadata":{}});
    vec![plain, monitored, stringly]
}

#[tokio::test]
async fn the_timer_answers_the_host_protocol_for_every_payload_shape() {
    let app = TestApp::spawn().await;
    for payload in timer_payloads() {
        let r = app
            .client
            .post(app.url("/ReconcileSubscriptions"))
            .header("x-azure-functions-invocationid", "3f1b")
            .json(&payload)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{payload}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["Outputs"], json!({}));
        assert_eq!(body["ReturnValue"], Value::Null);
        let logs = body["Logs"].as_array().unwrap();
        assert!(logs[0].as_str().unwrap().contains("checked 0"), "{body}");
        let past_due = payload["Data"]["timer"]
            .to_string()
            .contains("IsPastDue\\\":true")
            || payload["Data"]["timer"]["IsPastDue"] == true;
        assert_eq!(
            logs[0].as_str().unwrap().contains("past due"),
            past_due,
            "{body}"
        );
    }
}

//! Non-HTTP functions through the custom-handler protocol, with payloads
//! shaped like the Functions host's, as its documentation and source
//! describe them (see `timer_payloads`).

mod support;

use serde_json::{json, Value};
use support::TestApp;

/// Written by hand from the documented protocol, not captured from a running
/// host (none runs where these tests run). Sources:
/// - the request payload of the custom-handler docs ("Azure Functions custom
///   handlers", learn.microsoft.com/azure/azure-functions/functions-custom-handlers,
///   "Request payload"): `Data` keyed by binding name, `Metadata.sys` with
///   `MethodName`, `UtcNow` and `RandGuid`;
/// - the timer object: the timer extension's `TimerInfo`
///   (github.com/Azure/azure-webjobs-sdk-extensions,
///   src/WebJobs.Extensions/Extensions/Timers/TimerInfo.cs; described in
///   learn.microsoft.com/azure/azure-functions/functions-bindings-timer):
///   `Schedule`, `ScheduleStatus` (`Last`, `Next`, `LastUpdated`; null
///   without schedule monitoring) and `IsPastDue`;
/// - the host's source (github.com/Azure/azure-functions-host,
///   src/WebJobs.Script/Workers/MessageExtensions/ScriptInvocationContextExtensions.cs,
///   `ToHttpScriptInvocationContext` and `GetHttpScriptInvocationContextValue`),
///   which JSON-encodes as a string any value it cannot make an object of.
///
/// Hence three payloads: schedule monitoring off, schedule monitoring on with
/// a missed run, and the timer object JSON-encoded as a string. The times and
/// ids in them are made up.
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

//! Non-HTTP functions as the custom-handler protocol delivers them: the
//! host POSTs `{"Data": {...}, "Metadata": {...}}` and expects
//! `{"Outputs", "Logs", "ReturnValue"}`; a non-2xx answer is a failed
//! invocation that the function's retry policy retries.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AppState;

/// A timer invocation: only `IsPastDue` matters (a run was missed; the job
/// catches up either way). Every shape the host is known to send decodes.
#[derive(Debug, Default, Deserialize)]
struct TimerInvocation {
    #[serde(rename = "Data", default)]
    data: serde_json::Map<String, Value>,
}

impl TimerInvocation {
    fn is_past_due(&self) -> bool {
        self.data.values().any(|timer| {
            let timer = match timer {
                // The host JSON-encodes non-object values as strings.
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                v => v.clone(),
            };
            timer
                .get("IsPastDue")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
    }
}

fn invocation_result(status: StatusCode, logs: Vec<String>) -> Response {
    (
        status,
        Json(json!({ "Outputs": {}, "Logs": logs, "ReturnValue": null })),
    )
        .into_response()
}

pub async fn reconcile(State(state): State<AppState>, body: Bytes) -> Response {
    let invocation: TimerInvocation = serde_json::from_slice(&body).unwrap_or_default();
    match state.billing.reconcile().await {
        Ok(r) => invocation_result(
            StatusCode::OK,
            vec![format!(
                "reconciled subscriptions: checked {}, repaired {}, failed {}{}",
                r.checked,
                r.repaired,
                r.failed,
                if invocation.is_past_due() {
                    " (past due run)"
                } else {
                    ""
                }
            )],
        ),
        Err(e) => {
            tracing::error!(error = %e, "reconciliation failed");
            invocation_result(
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![format!("reconciliation failed: {e}")],
            )
        }
    }
}

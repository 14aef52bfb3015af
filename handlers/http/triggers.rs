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
use crate::app::{health, DeliveryReport};
use crate::domain::records::OutboxMessage;

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
            std::iter::once(format!(
                "reconciled subscriptions: checked {}, repaired {}, failed {}{}",
                r.checked,
                r.repaired,
                r.failed,
                if invocation.is_past_due() {
                    " (past due run)"
                } else {
                    ""
                }
            ))
            .chain(r.health.as_ref().map(health::log_line))
            .collect(),
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

/// The change feed's documents, however the host wrapped them: an array,
/// a JSON string holding the array, or a string of that string.
pub fn decode_documents<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, String> {
    let payload: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let mut documents = payload
        .get("Data")
        .and_then(|d| d.get("documents"))
        .cloned()
        .ok_or("no Data.documents in the invocation")?;
    for _ in 0..3 {
        match documents {
            Value::String(s) => {
                documents = serde_json::from_str(&s).map_err(|e| format!("documents: {e}"))?
            }
            _ => break,
        }
    }
    let Value::Array(items) = documents else {
        return Err("documents is not an array".into());
    };
    items
        .into_iter()
        .map(|d| serde_json::from_value(d).map_err(|e| format!("a document: {e}")))
        .collect()
}

/// Outbox messages among the change feed's documents. On Cosmos DB they
/// share the `accounts` container with the account, membership and
/// invitation documents (one transactional batch writes a change and its
/// emails), told apart by `type`.
fn outbox_messages(body: &[u8]) -> Result<Vec<OutboxMessage>, String> {
    Ok(decode_documents::<Value>(body)?
        .into_iter()
        .filter(|d| d.get("type").is_none_or(|t| t == "outbox"))
        .filter_map(|d| {
            let id = d.get("id").and_then(Value::as_str).unwrap_or("?").to_owned();
            // One document that is no outbox message must not hold up the
            // others in its batch.
            serde_json::from_value(d)
                .inspect_err(|e| tracing::error!(id, error = %e, "change-feed document skipped: not an outbox message"))
                .ok()
        })
        .collect())
}

/// Outbox documents from the change feed: sends what is pending. A send
/// that failed is stored with the time of its next try, which the
/// `SweepOutbox` timer keeps; an immediate redelivery by the host would
/// only spend the tries, so the batch is acknowledged. A store failure
/// answers 500, and the host retries the batch (claims make that safe).
pub async fn send_emails(State(state): State<AppState>, body: Bytes) -> Response {
    let messages = match outbox_messages(&body) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "undecodable change-feed invocation");
            // A retry would decode no better.
            return invocation_result(
                StatusCode::OK,
                vec![format!("skipped an undecodable batch: {e}")],
            );
        }
    };
    match state.billing.deliver_outbox(&messages).await {
        Ok(r) => invocation_result(StatusCode::OK, vec![delivery_log(&r)]),
        Err(e) => invocation_result(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![format!("email delivery failed: {e}")],
        ),
    }
}

fn delivery_log(r: &DeliveryReport) -> String {
    format!(
        "emails: sent {}, skipped {}, retrying {}, failed {}",
        r.sent, r.skipped, r.retrying, r.failed
    )
}

/// The timer that keeps the outbox moving where no poller runs (Azure):
/// lapsed claims and retries whose backoff has run out.
pub async fn sweep_outbox(State(state): State<AppState>) -> Response {
    match state.billing.sweep_outbox().await {
        Ok(r) => invocation_result(StatusCode::OK, vec![delivery_log(&r)]),
        Err(e) => {
            tracing::error!(error = %e, "outbox sweep failed");
            invocation_result(
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![format!("outbox sweep failed: {e}")],
            )
        }
    }
}

pub async fn rollup(State(state): State<AppState>, body: Bytes) -> Response {
    let invocation: TimerInvocation = serde_json::from_slice(&body).unwrap_or_default();
    match state.billing.roll_up_usage().await {
        Ok(r) => invocation_result(
            StatusCode::OK,
            vec![format!(
                "rolled up {} days: {} monthly summaries, {} quota warnings{}",
                r.days,
                r.summaries,
                r.warnings,
                if invocation.is_past_due() {
                    " (past due run)"
                } else {
                    ""
                }
            )],
        ),
        Err(e) => {
            tracing::error!(error = %e, "usage rollup failed");
            invocation_result(
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![format!("usage rollup failed: {e}")],
            )
        }
    }
}

use axum::Json;
use serde_json::{json, Value};

/// Liveness for load balancers and deploy checks; touches nothing.
pub async fn check() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

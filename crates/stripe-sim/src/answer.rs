//! What an API handler answers: a status and a JSON body, and the Stripe
//! error objects shared by the route handlers (api.rs, schedule_api.rs).

use serde_json::Value;

use crate::objects;

pub(crate) type Answer = (u16, Value);

pub(crate) fn err(
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Answer {
    (status, objects::error(kind, code, message, param))
}

pub(crate) fn missing(kind: &str, id: &str) -> Answer {
    err(
        404,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
        Some("id"),
    )
}

/// A referenced id in the parameters that does not exist (Stripe answers 400).
pub(crate) fn bad_ref(kind: &str, id: &str, param: &str) -> Answer {
    err(
        400,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
        Some(param),
    )
}

pub(crate) fn required(param: &str) -> Answer {
    err(
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        &format!("Missing required param: {param}."),
        Some(param),
    )
}

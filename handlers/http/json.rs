//! A JSON body extractor whose every failure is the service's error shape:
//! 415 for a non-JSON content type, 413 past the size cap, 400 naming the
//! line and column where the JSON broke, 422 naming the field that is wrong.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct ApiJson<T>(pub T);

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(unreadable)?;
        parse(&bytes).map(ApiJson)
    }
}

/// A body that could not be read: too large (413), or cut off (400).
pub fn unreadable(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::MalformedJson {
            line: 0,
            column: 0,
            detail: "the body could not be read".into(),
        }
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => de.end().map(|_| value).map_err(syntax),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_data() {
                let detail = strip_position(&inner.to_string());
                Err(ApiError::InvalidBody {
                    field: field_name(&path, &detail),
                    detail,
                })
            } else {
                Err(syntax(inner))
            }
        }
    }
}

fn syntax(e: serde_json::Error) -> ApiError {
    ApiError::MalformedJson {
        line: e.line(),
        column: e.column(),
        detail: strip_position(&e.to_string()),
    }
}

/// serde_json appends " at line L column C"; the body carries those apart.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// For "missing field `x`" the path is the parent; name the field itself.
fn field_name(path: &str, detail: &str) -> String {
    let missing = detail
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(f)) => f.to_owned(),
        (p, Some(f)) => format!("{p}.{f}"),
        (".", None) => "body".to_owned(),
        (p, None) => p.to_owned(),
    }
}

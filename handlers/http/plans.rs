use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::domain::plan::{Catalog, Plan, PlanId};

use super::AppState;

// The plans a request may name, as the schema lists them: the catalog's
// self-serve plans (Enterprise is sold by sales). Schema only; requests
// carry text, so a wrong plan is a 422 naming its field.
/// A plan one can sign up for without talking to sales.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SelfServePlan {
    Free,
    Pro,
}

/// A paid plan a subscription can move to without talking to sales (to
/// Free is a cancellation).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaidSelfServePlan {
    Pro,
}

/// Every plan, and the order plans upgrade in.
#[derive(Serialize, ToSchema)]
pub struct PlanCatalog<'a> {
    plans: &'a [Plan],
    upgrade_order: [PlanId; 3],
}

/// The catalog never changes while the process runs: serialise it once and
/// let clients revalidate with its ETag.
pub struct CachedCatalog {
    body: Bytes,
    etag: HeaderValue,
}

impl CachedCatalog {
    pub fn new(catalog: &Catalog) -> Self {
        let body = serde_json::to_vec(&PlanCatalog {
            plans: catalog.plans(),
            upgrade_order: PlanId::ALL,
        })
        .expect("the catalog serialises");
        let digest = Sha256::digest(&body);
        let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            etag: HeaderValue::from_str(&format!("\"{tag}\"")).expect("hex is a valid header"),
            body: body.into(),
        }
    }
}

/// Whether an `If-None-Match` list names `etag` (weak or strong) or `*`.
pub(super) fn matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let want = etag.to_str().unwrap_or_default();
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == want)
}

/// The plan catalog
///
/// Public and cacheable: prices in integer cents, limits typed (`null` is
/// unlimited). Revalidate with `If-None-Match`.
#[utoipa::path(
    get,
    path = "/api/plans",
    tag = "plans",
    params(("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer")),
    responses(
        (status = 200, description = "The catalog", body = PlanCatalog,
            headers(
                ("ETag" = String, description = "The catalog's version"),
                ("Cache-Control" = String, description = "`public, max-age=300`"),
            )),
        (status = 304, description = "Unchanged since that ETag",
            headers(
                ("ETag" = String, description = "The catalog's version"),
                ("Cache-Control" = String, description = "`public, max-age=300`"),
            )),
    )
)]
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let cached = &state.plans;
    let cache = [
        (header::ETAG, cached.etag.clone()),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| matches(v, &cached.etag))
    {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let json = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    (cache, json, cached.body.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    #[test]
    fn the_schemas_self_serve_plans_are_the_catalogs() {
        let catalog = Catalog::standard();
        let listed = |schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
            serde_json::to_value(schema).unwrap()["enum"].clone()
        };
        let self_serve: Vec<&str> = catalog
            .plans()
            .iter()
            .filter(|p| !p.contact_sales)
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(
            listed(SelfServePlan::schema()),
            serde_json::json!(self_serve)
        );
        let paid: Vec<&str> = self_serve.into_iter().filter(|p| *p != "free").collect();
        assert_eq!(listed(PaidSelfServePlan::schema()), serde_json::json!(paid));
    }
}

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// Liveness
///
/// For load balancers and deploy checks; touches nothing.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "service",
    responses((status = 200, description = "The process serves requests", body = Health))
)]
pub async fn check() -> Json<Health> {
    Json(Health { status: "ok" })
}

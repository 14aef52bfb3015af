//! The baseline every figure is compared with: the least an axum server on
//! this runtime can do. It answers GET / and /api/plans with a short body.

use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "7072".into());
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/api/plans", get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}

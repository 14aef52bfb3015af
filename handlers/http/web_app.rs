//! The built web app (`web/dist`) for `handler serve`: files at `/`, and
//! index.html for the app's own routes (`/account`, `/pricing`, ...), so a
//! reload or a redirect back from checkout lands on the page. `/api/...`
//! never reaches the files: an unknown API route stays a JSON 404.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use super::error::ApiError;
use super::routes::ROUTE_PREFIX;

#[derive(Clone)]
pub struct WebApp {
    files: ServeDir,
    index: PathBuf,
}

impl WebApp {
    /// The app in `dist`, if it has been built there.
    pub fn built_in(dist: &Path) -> Option<Self> {
        let index = dist.join("index.html");
        index.is_file().then(|| Self {
            files: ServeDir::new(dist),
            index,
        })
    }

    pub async fn serve(self, req: Request) -> Response {
        let path = req.uri().path().to_owned();
        let under_api = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(ROUTE_PREFIX))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if under_api {
            return ApiError::NotFound.into_response();
        }
        // A route of the app has no file extension; a missing asset does.
        let is_route = !path.rsplit('/').next().unwrap_or("").contains('.');
        let (parts, body) = req.into_parts();
        let probe = Request::from_parts(parts.clone(), body);
        let found = infallible(self.files.oneshot(probe).await);
        let mut response = if found.status() == StatusCode::NOT_FOUND && is_route {
            let req = Request::from_parts(parts, axum::body::Body::empty());
            infallible(ServeFile::new(&self.index).oneshot(req).await).into_response()
        } else {
            found.into_response()
        };
        // Vite names built assets by content hash: they never change. The
        // page itself is revalidated, so a new build shows at once.
        let cache = if path.starts_with("/assets/") && response.status().is_success() {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        response
    }
}

fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(t) => t,
        Err(never) => match never {},
    }
}

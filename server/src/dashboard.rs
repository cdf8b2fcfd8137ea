//! The web dashboard, served at `/`: the files of `server/dashboard/assets/`, compiled into the
//! binary, so `cargo build` alone gives a server with a working dashboard and nothing is fetched
//! from elsewhere at run time. The page talks to the engine only through the API under `/v1`.
//!
//! The files need no build step (plain ES modules, see `server/dashboard/README.md`), so what
//! is committed is what is served: there is no bundle that could drift from its sources.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// `(name, content type, content)` of every file under `/assets/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/assets/api.js"),
    ),
    (
        "dag.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/assets/dag.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/assets/dom.js"),
    ),
    (
        "json.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/assets/json.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/assets/app.css"),
    ),
];

const INDEX: &str = include_str!("../dashboard/assets/index.html");

/// Only this origin's scripts, styles and connections: no inline script, no CDN, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Served from the binary: a new build must be picked up at once.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        body,
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// `GET /`: the dashboard's single page (its routes are in the URL's fragment).
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => page(content_type, body),
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such dashboard file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module the page imports is served (a file added to assets/ must be listed here).
    #[test]
    fn every_imported_module_is_served() {
        for (_, _, body) in ASSETS {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let Some(start) = line.find("\"./") else { continue };
                let name = &line[start + 3..line[start + 3..].find('"').map_or(line.len(), |e| start + 3 + e)];
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == name),
                    "{name} is imported but not served"
                );
            }
        }
        for reference in ["/assets/app.css", "/assets/app.js"] {
            assert!(INDEX.contains(reference));
        }
    }
}

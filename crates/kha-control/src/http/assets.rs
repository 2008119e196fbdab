//! The script and stylesheet, compiled into the binary (`include_str!`), so
//! the control node is one file and makes no outside requests. Pages link
//! them with `?v=<hash of the content>`, which lets browsers keep them for
//! a year: a new build with other content has another URL.

use crate::app::App;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

const CSS: &str = include_str!("../../assets/kha.css");
const JS: &str = include_str!("../../assets/kha.js");

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/assets/{file}", get(serve))
}

fn content(file: &str) -> Option<(&'static str, &'static str)> {
    match file {
        "kha.css" => Some((CSS, "text/css; charset=utf-8")),
        "kha.js" => Some((JS, "text/javascript; charset=utf-8")),
        _ => None,
    }
}

/// `/assets/<file>?v=<first 12 hex digits of its SHA-256>`.
pub fn url(file: &str) -> String {
    static HASHES: OnceLock<(String, String)> = OnceLock::new();
    let (css, js) = HASHES.get_or_init(|| {
        let h = |s: &str| hex::encode(&Sha256::digest(s.as_bytes())[..6]);
        (h(CSS), h(JS))
    });
    let v = if file == "kha.css" { css } else { js };
    format!("/assets/{file}?v={v}")
}

async fn serve(Path(file): Path<String>) -> Response {
    match content(&file) {
        Some((body, mime)) => (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

//! `/badge/{project}.svg?branch=B`: a shields-style status badge of a
//! branch's last build (the default branch without `branch`). The text
//! widths are computed from Verdana's advance widths at 11 px (the font
//! shields uses), so the badge fits its words. Always revalidated
//! (`no-cache`), answered 304 when its ETag has not changed.

use super::fmt::esc;
use super::session::Caller;
use crate::api::{self, ApiError};
use crate::app::App;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kha_core::view::BranchStatus;
use kha_core::BuildState;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/badge/{file}", get(badge))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BadgeQuery {
    branch: String,
}

/// The badge's word and colour for a branch's status.
pub fn status_word(s: Option<BranchStatus>) -> (&'static str, &'static str) {
    match s {
        Some(BranchStatus::Built(st)) => match st {
            BuildState::Passed => ("passing", "#4c1"),
            BuildState::Failed => ("failing", "#e05d44"),
            BuildState::Errored => ("errored", "#9f9f9f"),
            BuildState::Canceled => ("canceled", "#9f9f9f"),
            BuildState::Running => ("running", "#dfb317"),
            BuildState::Queued => ("queued", "#dfb317"),
        },
        _ => ("unknown", "#9f9f9f"),
    }
}

/// Width in px of `s` in Verdana 11 px (per-character advance widths,
/// rounded; other characters count as a wide letter).
pub fn text_width(s: &str) -> u32 {
    let w10: u32 = s
        .chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 30,
            'f' | 't' | 'r' | 'I' | ' ' | '(' | ')' | '[' | ']' | '/' | '-' => 45,
            'a' | 'c' | 'e' | 'g' | 'k' | 's' | 'v' | 'x' | 'y' | 'z' | 'J' => 66,
            'b' | 'd' | 'h' | 'n' | 'o' | 'p' | 'q' | 'u' | '_' => 70,
            '0'..='9' | 'F' | 'L' | 'P' | 'S' | 'T' | 'Z' | 'E' | 'K' | 'X' | 'Y' | 'B' | 'R' => 74,
            'A' | 'C' | 'V' | 'H' | 'N' | 'U' | 'D' | 'G' | 'O' | 'Q' => 80,
            'w' | 'm' | 'M' => 105,
            'W' => 120,
            _ => 80,
        })
        .sum();
    w10.div_ceil(10)
}

/// The badge: `label` on grey, `value` on `color`.
pub fn svg(label: &str, value: &str, color: &str) -> String {
    let lw = text_width(label) + 10;
    let vw = text_width(value) + 10;
    let w = lw + vw;
    let (label, value) = (esc(label), esc(value));
    let (lx, vx) = (lw * 5, lw * 10 + vw * 5);
    let (ltl, vtl) = ((lw - 10) * 10, (vw - 10) * 10);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {value}"><title>{label}: {value}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{vw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110"><text aria-hidden="true" x="{lx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{ltl}">{label}</text><text x="{lx}" y="140" transform="scale(.1)" fill="#fff" textLength="{ltl}">{label}</text><text aria-hidden="true" x="{vx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{vtl}">{value}</text><text x="{vx}" y="140" transform="scale(.1)" fill="#fff" textLength="{vtl}">{value}</text></g></svg>"##
    )
}

async fn badge(
    State(app): State<Arc<App>>,
    c: Caller,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(q): Query<BadgeQuery>,
) -> Response {
    let Some(project) = file.strip_suffix(".svg") else {
        return (StatusCode::NOT_FOUND, "badges end in .svg\n").into_response();
    };
    let (status, state) = match api::branches::status(&app, &c.who, project, &q.branch) {
        Ok(s) => (StatusCode::OK, s),
        Err(ApiError::NotFound(_)) => (StatusCode::NOT_FOUND, None),
        Err(e) => {
            tracing::warn!(error = %e, "badge failed");
            (StatusCode::INTERNAL_SERVER_ERROR, None)
        }
    };
    let (word, color) = status_word(state);
    let body = svg("build", word, color);
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(body.as_bytes())[..8]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let cache = [
        (header::CACHE_CONTROL, "no-cache, max-age=0".to_string()),
        (header::ETAG, etag),
    ];
    if fresh && status == StatusCode::OK {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        status,
        cache,
        [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_grow_with_text_and_escape() {
        assert!(text_width("passing") > text_width("queued") - 10);
        assert!(text_width("canceled") > text_width("build"));
        assert_eq!(text_width(""), 0);
        let s = svg("build", "passing", "#4c1");
        assert!(s.starts_with("<svg") && s.contains("passing") && s.contains("#4c1"));
        let s = svg("<a>", "x", "#000");
        assert!(!s.contains("<a>") && s.contains("&lt;a&gt;"));
    }
}

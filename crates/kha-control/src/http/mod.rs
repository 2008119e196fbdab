//! HTTP, and only HTTP: routes, headers and status codes. Every handler
//! parses the request, calls one `api::` service function and renders its
//! answer; rules live in `api/`.
//!
//! Rooms: webhooks (below: what a hook means is decided in `trigger/`),
//! `pages/` (the server-rendered web UI, one file per page), `api_v1` (the
//! JSON API), `sse` (the event stream and a job's log as Server-Sent
//! Events), `badge` (SVG status badges), `session` (who a request is:
//! sessions, bearer tokens, CSRF), `assets` (the embedded script and stylesheet), `error` (how an
//! [`ApiError`](crate::api::ApiError) becomes a response), `fmt` (escaping,
//! URLs, ages and durations for templates).

mod api_v1;
mod assets;
mod badge;
mod error;
mod fmt;
mod pages;
pub mod serve;
mod session;
mod sse;

use crate::app::App;
use crate::trigger::{generic, github, HookAnswer, HookStatus};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/hooks/github", post(github_hook))
        .route("/hooks/github/{project}", post(github_project_hook))
        .route("/hooks/generic/{project}", post(generic_hook))
        .merge(pages::routes())
        .merge(assets::routes())
        .merge(badge::routes())
        .nest("/api/v1", api_v1::routes().merge(sse::routes()))
        .fallback(pages::not_found_path)
        .layer(DefaultBodyLimit::max(25 * 1024 * 1024))
        .with_state(app)
}

fn respond(a: HookAnswer) -> Response {
    let code = match a.status {
        HookStatus::Ok => StatusCode::OK,
        HookStatus::Accepted => StatusCode::ACCEPTED,
        HookStatus::BadRequest => StatusCode::BAD_REQUEST,
        HookStatus::Unauthorized => StatusCode::UNAUTHORIZED,
        HookStatus::NotFound => StatusCode::NOT_FOUND,
        HookStatus::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut m = a.message;
    m.push('\n');
    (code, m).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn github_hook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    github_answer(app, None, headers, body).await
}

/// `POST /hooks/github/<project>`: only that project's secret is tried.
async fn github_project_hook(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    github_answer(app, Some(name), headers, body).await
}

/// Checking signatures hashes the whole body once per distinct secret:
/// done off the async threads.
async fn github_answer(
    app: Arc<App>,
    project: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = tokio::task::spawn_blocking(move || {
        github::handle(
            &app,
            project.as_deref(),
            header(&headers, "x-github-event"),
            header(&headers, "x-hub-signature-256"),
            &body,
        )
    })
    .await
    .unwrap_or_else(|e| HookAnswer {
        status: HookStatus::Failed,
        message: format!("the webhook handler failed: {e}"),
    });
    respond(answer)
}

/// `POST /hooks/generic/<project>` with `Authorization: Bearer <secret>`.
async fn generic_hook(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = header(&headers, "authorization")
        .strip_prefix("Bearer ")
        .unwrap_or("");
    respond(generic::handle(&app, &name, token, &q, &body))
}

#[cfg(test)]
mod tests;

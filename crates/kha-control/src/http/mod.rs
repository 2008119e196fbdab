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
        .route("/metrics", get(metrics))
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

/// `GET /metrics`: the Prometheus exposition (`crate::metrics`), behind
/// `metrics_token` when one is set, and else only to this machine (its
/// labels name every project, private ones too).
async fn metrics(
    State(app): State<Arc<App>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let token = &app.cfg.metrics_token;
    if token.is_empty() && !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "/metrics answers other machines only with metrics_token set in control.toml\n",
        )
            .into_response();
    }
    if !token.is_empty() {
        let given = header(&headers, "authorization")
            .strip_prefix("Bearer ")
            .unwrap_or("");
        if !token.matches(given) {
            return (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "/metrics needs Authorization: Bearer <metrics_token>\n",
            )
                .into_response();
        }
    }
    match app.metrics.encode() {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// Answers a webhook, counting the answer by the hook's source.
fn respond(app: &App, source: &'static str, a: HookAnswer) -> Response {
    let (code, answer) = match a.status {
        HookStatus::Ok => (StatusCode::OK, "ok"),
        HookStatus::Accepted => (StatusCode::ACCEPTED, "accepted"),
        HookStatus::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
        HookStatus::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
        HookStatus::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        HookStatus::Failed => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
    };
    app.metrics.webhook(source, answer);
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
    let a = app.clone();
    let answer = tokio::task::spawn_blocking(move || {
        github::handle(
            &a,
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
    respond(&app, "github", answer)
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
    respond(
        &app,
        "generic",
        generic::handle(&app, &name, token, &q, &body),
    )
}

#[cfg(test)]
mod tests;

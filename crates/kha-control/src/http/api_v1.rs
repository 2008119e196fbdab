//! The JSON API under `/api/v1`: the same service functions as the pages
//! and the CLI, kha-core's views as JSON. Reads are open (like the pages);
//! writes need `Authorization: Bearer <admin token>`, or the admin cookie
//! with `X-Kha-Csrf`. Errors are `{"error":{"code","message"}}` with the
//! status [`status_of`](super::error::status_of) gives.

use super::error::{json_response, JsonError};
use super::pages::{parse_id, raw_log};
use super::session;
use crate::api::{self, ApiError};
use crate::app::App;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/overview", get(overview))
        .route("/projects", get(projects))
        .route("/projects/{p}", get(project))
        .route("/projects/{p}/branches", get(branches))
        .route("/projects/{p}/pulls", get(pulls))
        .route("/projects/{p}/builds", get(builds).post(trigger))
        .route("/builds/{id}", get(build))
        .route("/builds/{id}/restart", post(restart))
        .route("/builds/{id}/cancel", post(cancel))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/log", get(log))
        .route("/builders", get(builders))
        .route("/builders/{id}/drain", post(drain))
        .route("/builders/{id}/revoke", post(revoke))
        .route("/queue", get(queue))
}

type Answer = Result<Response, JsonError>;

fn ok(v: &impl Serialize) -> Answer {
    Ok(json_response(StatusCode::OK, v))
}

fn id_of(what: &str, raw: &str) -> Result<u64, JsonError> {
    Ok(parse_id(what, raw)?)
}

async fn overview(State(app): State<Arc<App>>, h: HeaderMap) -> Answer {
    ok(&api::overview::get(&app, &session::reader(&app, &h))?)
}

async fn projects(State(app): State<Arc<App>>, h: HeaderMap) -> Answer {
    ok(&api::projects::list(&app, &session::reader(&app, &h))?)
}

async fn project(State(app): State<Arc<App>>, h: HeaderMap, Path(p): Path<String>) -> Answer {
    ok(&api::projects::get(&app, &session::reader(&app, &h), &p)?)
}

async fn branches(State(app): State<Arc<App>>, h: HeaderMap, Path(p): Path<String>) -> Answer {
    ok(&api::branches::list(&app, &session::reader(&app, &h), &p)?)
}

async fn pulls(State(app): State<Arc<App>>, h: HeaderMap, Path(p): Path<String>) -> Answer {
    ok(&api::builds::pull_requests(
        &app,
        &session::reader(&app, &h),
        &p,
    )?)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BuildsQuery {
    branch: String,
    page: String,
    per_page: String,
}

fn number(name: &str, raw: &str) -> Result<u32, JsonError> {
    if raw.is_empty() {
        return Ok(0);
    }
    raw.parse().map_err(|_| {
        JsonError(ApiError::Invalid(format!(
            "{name} must be a number, not {raw:?}"
        )))
    })
}

async fn builds(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(p): Path<String>,
    Query(q): Query<BuildsQuery>,
) -> Answer {
    let (page, per_page) = (number("page", &q.page)?, number("per_page", &q.per_page)?);
    let branch = (!q.branch.is_empty()).then_some(q.branch.as_str());
    ok(&api::builds::list(
        &app,
        &session::reader(&app, &h),
        &p,
        branch,
        page,
        per_page,
    )?)
}

async fn trigger(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(p): Path<String>,
    body: Bytes,
) -> Answer {
    let who = session::api_writer(&app, &h)?;
    let mut args: api::builds::TriggerArgs = if body.is_empty() {
        Default::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("the body is not the JSON expected: {e}")))?
    };
    args.project = p;
    let out = api::builds::trigger(&app, &who, args).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &out))
}

async fn build(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    let id = id_of("build", &id)?;
    ok(&api::builds::get(&app, &session::reader(&app, &h), id)?)
}

async fn restart(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    let who = session::api_writer(&app, &h)?;
    let id = id_of("build", &id)?;
    ok(&api::builds::restart(&app, &who, id).await?)
}

async fn cancel(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    let who = session::api_writer(&app, &h)?;
    let id = id_of("build", &id)?;
    ok(&api::builds::cancel(&app, &who, id).await?)
}

async fn job(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    let id = id_of("job", &id)?;
    ok(&api::builds::job(&app, &session::reader(&app, &h), id)?)
}

/// The raw log, as `/jobs/{id}/log.txt` serves it (with `Range`).
async fn log(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    let id = id_of("job", &id)?;
    let range = h
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(super::pages::parse_range);
    let mut r = raw_log(&app, &session::reader(&app, &h), id, range).await?;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

async fn builders(State(app): State<Arc<App>>, h: HeaderMap) -> Answer {
    ok(&api::builders::list(&app, &session::reader(&app, &h))?)
}

async fn drain(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    let who = session::api_writer(&app, &h)?;
    ok(&api::builders::drain(&app, &who, &id).await?)
}

async fn revoke(State(app): State<Arc<App>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    let who = session::api_writer(&app, &h)?;
    ok(&api::builders::revoke(&app, &who, &id).await?)
}

async fn queue(State(app): State<Arc<App>>, h: HeaderMap) -> Answer {
    ok(&api::queue::list(&app, &session::reader(&app, &h))?)
}

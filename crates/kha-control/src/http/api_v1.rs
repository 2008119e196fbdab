//! The JSON API under `/api/v1`: the same service functions as the pages
//! and the CLI, kha-core's views as JSON. The caller is who their bearer
//! token says (the admin token or a user's API token), or their session
//! cookie, which for writes must come with `X-Kha-Csrf`; without either,
//! anonymous. The service layer decides what each may do. Errors are
//! `{"error":{"code","message"}}` with the status
//! [`status_of`](super::error::status_of) gives.

use super::error::{json_response, JsonError};
use super::pages::{parse_id, raw_log};
use super::session::Caller;
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
        .route("/whoami", get(whoami))
        .route("/audit", get(audit))
        .route("/users", get(users))
        .route("/tokens", get(tokens).post(create_token))
}

type Answer = Result<Response, JsonError>;

fn ok(v: &impl Serialize) -> Answer {
    Ok(json_response(StatusCode::OK, v))
}

fn id_of(what: &str, raw: &str) -> Result<u64, JsonError> {
    Ok(parse_id(what, raw)?)
}

async fn overview(State(app): State<Arc<App>>, c: Caller) -> Answer {
    ok(&api::overview::get(&app, &c.who)?)
}

async fn projects(State(app): State<Arc<App>>, c: Caller) -> Answer {
    ok(&api::projects::list(&app, &c.who)?)
}

async fn project(State(app): State<Arc<App>>, c: Caller, Path(p): Path<String>) -> Answer {
    ok(&api::projects::get(&app, &c.who, &p)?)
}

async fn branches(State(app): State<Arc<App>>, c: Caller, Path(p): Path<String>) -> Answer {
    ok(&api::branches::list(&app, &c.who, &p)?)
}

async fn pulls(State(app): State<Arc<App>>, c: Caller, Path(p): Path<String>) -> Answer {
    ok(&api::builds::pull_requests(&app, &c.who, &p)?)
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
    c: Caller,
    Path(p): Path<String>,
    Query(q): Query<BuildsQuery>,
) -> Answer {
    let (page, per_page) = (number("page", &q.page)?, number("per_page", &q.per_page)?);
    let branch = (!q.branch.is_empty()).then_some(q.branch.as_str());
    ok(&api::builds::list(
        &app, &c.who, &p, branch, page, per_page,
    )?)
}

async fn trigger(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(p): Path<String>,
    body: Bytes,
) -> Answer {
    let who = c.api_writer(&h)?;
    let mut args: api::builds::TriggerArgs = if body.is_empty() {
        Default::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Invalid(format!("the body is not the JSON expected: {e}")))?
    };
    args.project = p;
    let out = api::builds::trigger(&app, who, args).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &out))
}

async fn build(State(app): State<Arc<App>>, c: Caller, Path(id): Path<String>) -> Answer {
    let id = id_of("build", &id)?;
    ok(&api::builds::get(&app, &c.who, id)?)
}

async fn restart(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    let id = id_of("build", &id)?;
    ok(&api::builds::restart(&app, who, id).await?)
}

async fn cancel(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    let id = id_of("build", &id)?;
    ok(&api::builds::cancel(&app, who, id).await?)
}

async fn job(State(app): State<Arc<App>>, c: Caller, Path(id): Path<String>) -> Answer {
    let id = id_of("job", &id)?;
    ok(&api::builds::job(&app, &c.who, id)?)
}

/// The raw log, as `/jobs/{id}/log.txt` serves it (with `Range`).
async fn log(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let id = id_of("job", &id)?;
    let range = h
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(super::pages::parse_range);
    let mut r = raw_log(&app, &c.who, id, range).await?;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

async fn builders(State(app): State<Arc<App>>, c: Caller) -> Answer {
    ok(&api::builders::list(&app, &c.who)?)
}

async fn drain(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    ok(&api::builders::drain(&app, who, &id).await?)
}

async fn revoke(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    ok(&api::builders::revoke(&app, who, &id).await?)
}

async fn queue(State(app): State<Arc<App>>, c: Caller) -> Answer {
    ok(&api::queue::list(&app, &c.who)?)
}

async fn whoami(State(app): State<Arc<App>>, c: Caller) -> Answer {
    ok(&api::users::whoami(&app, &c.who))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PageArgs {
    page: String,
    per_page: String,
}

async fn audit(State(app): State<Arc<App>>, c: Caller, Query(q): Query<PageArgs>) -> Answer {
    let (page, per_page) = (number("page", &q.page)?, number("per_page", &q.per_page)?);
    ok(&api::audit::list(&app, &c.who, page, per_page)?)
}

async fn users(State(app): State<Arc<App>>, c: Caller) -> Answer {
    ok(&api::users::list(&app, &c.who)?)
}

async fn tokens(State(app): State<Arc<App>>, c: Caller) -> Answer {
    ok(&api::auth::list_tokens(&app, &c.who)?)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewToken {
    name: String,
    /// When it stops working (ms since the epoch); absent or 0: never.
    expires_ms: u64,
}

/// A created token: its listing, and the token itself, this once.
#[derive(Serialize)]
struct CreatedToken {
    token: kha_core::view::ApiToken,
    secret: String,
}

async fn create_token(State(app): State<Arc<App>>, c: Caller, h: HeaderMap, body: Bytes) -> Answer {
    let who = c.api_writer(&h)?;
    let args: NewToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Invalid(format!("the body is not the JSON expected: {e}")))?;
    let expires = (args.expires_ms > 0).then_some(args.expires_ms);
    let (token, secret) = api::auth::create_token(&app, who, &args.name, expires).await?;
    let mut r = json_response(
        StatusCode::CREATED,
        &CreatedToken {
            token,
            secret: secret.into_inner(),
        },
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

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
use crate::api::builds::BuildAction;
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
        .route("/projects", get(projects).post(add_project))
        .route("/projects/{p}", get(project).delete(remove_project))
        .route("/projects/{p}/members", get(members))
        .route("/projects/{p}/settings", post(settings))
        .route("/projects/{p}/notify", get(notify))
        .route("/config", get(config))
        .route("/projects/{p}/star", post(star))
        .route("/projects/{p}/unstar", post(unstar))
        .route("/projects/{p}/branches", get(branches))
        .route("/projects/{p}/schedules", get(schedules).post(add_schedule))
        .route("/schedules/{id}", axum::routing::delete(remove_schedule))
        .route("/projects/{p}/pulls", get(pulls))
        .route("/projects/{p}/builds", get(builds).post(trigger))
        .route("/builds/{id}", get(build))
        .route("/builds/{id}/restart", post(restart))
        .route("/builds/{id}/prioritize", post(prioritize))
        .route("/builds/{id}/cancel", post(cancel))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/log", get(log))
        .route("/jobs/{id}/attempts/{n}/log", get(attempt_log))
        .route("/builders", get(builders))
        .route("/builders/{id}/drain", post(drain))
        .route("/builders/{id}/trust", post(trust))
        .route("/builders/{id}/untrust", post(untrust))
        .route("/projects/{name}/key", get(project_key))
        .route("/builders/{id}/revoke", post(revoke))
        .route("/queue", get(queue))
        .route("/whoami", get(whoami))
        .route("/audit", get(audit))
        .route("/users", get(users).post(add_user))
        .route("/users/{name}", get(user).delete(remove_user))
        .route("/users/{name}/role", post(set_role))
        .route("/users/{name}/disabled", post(set_disabled))
        .route("/tokens", get(tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route(
            "/enrolment-tokens",
            get(enrolment_tokens).post(create_enrolment_token),
        )
        .route(
            "/enrolment-tokens/{id}/revoke",
            post(revoke_enrolment_token),
        )
}

type Answer = Result<Response, JsonError>;

fn ok(v: &impl Serialize) -> Answer {
    Ok(json_response(StatusCode::OK, v))
}

fn id_of(what: &str, raw: &str) -> Result<u64, JsonError> {
    Ok(parse_id(what, raw)?)
}

/// A request's JSON body; an empty body is the type's default.
fn body<T: serde::de::DeserializeOwned + Default>(b: &Bytes) -> Result<T, ApiError> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(b)
        .map_err(|e| ApiError::Invalid(format!("the body is not the JSON expected: {e}")))
}

/// An answer that carries a secret shown this once: never cached.
fn once(status: StatusCode, v: &impl Serialize) -> Answer {
    let mut r = json_response(status, v);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

async fn add_project(State(app): State<Arc<App>>, c: Caller, h: HeaderMap, b: Bytes) -> Answer {
    let who = c.api_writer(&h)?;
    let p = api::projects::add(&app, who, body(&b)?).await?;
    once(StatusCode::CREATED, &p)
}

async fn remove_project(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(p): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    api::projects::remove(&app, who, &p).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({})))
}

async fn members(State(app): State<Arc<App>>, c: Caller, Path(p): Path<String>) -> Answer {
    ok(&api::projects::members(&app, &c.who, &p)?)
}

async fn settings(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(p): Path<String>,
    b: Bytes,
) -> Answer {
    let who = c.api_writer(&h)?;
    ok(&api::projects::update(&app, who, &p, body(&b)?).await?)
}

async fn notify(State(app): State<Arc<App>>, c: Caller, Path(p): Path<String>) -> Answer {
    ok(&api::projects::notify_settings(&app, &c.who, &p)?)
}

/// What a webhook receiver needs to check Travis-style `Signature`
/// headers, in the shape of Travis's `/config` (null: webhooks are not
/// RSA-signed).
async fn config(State(app): State<Arc<App>>) -> Answer {
    let key = app.notify.senders.webhooks.public_key_pem();
    ok(&serde_json::json!({
        "config": {"notifications": {"webhook": {"public_key": key}}}
    }))
}

async fn star(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(p): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    api::users::star(&app, who, &p, true).await?;
    ok(&serde_json::json!({"starred": true}))
}

async fn unstar(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(p): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    api::users::star(&app, who, &p, false).await?;
    ok(&serde_json::json!({"starred": false}))
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

/// The project's scheduled builds (`kha cron list PROJECT`).
async fn schedules(State(app): State<Arc<App>>, c: Caller, Path(p): Path<String>) -> Answer {
    ok(&api::schedules::list(&app, &c.who, Some(&p))?)
}

/// A new schedule of the project: `{"branch", "interval" or "cron",
/// "dont_run_if_recent_build_exists"}`.
async fn add_schedule(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(p): Path<String>,
    b: Bytes,
) -> Answer {
    let who = c.api_writer(&h)?;
    let mut new: api::schedules::NewSchedule = body(&b)?;
    new.project = p;
    let s = api::schedules::add(&app, who, new).await?;
    Ok(json_response(StatusCode::CREATED, &s))
}

async fn remove_schedule(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    let id = id_of("schedule", &id)?;
    ok(&api::schedules::remove(&app, who, id).await?)
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

async fn restart(s: State<Arc<App>>, c: Caller, h: HeaderMap, id: Path<String>) -> Answer {
    on_build(s, c, h, id, BuildAction::Restart).await
}

async fn prioritize(s: State<Arc<App>>, c: Caller, h: HeaderMap, id: Path<String>) -> Answer {
    on_build(s, c, h, id, BuildAction::Prioritize).await
}

async fn cancel(s: State<Arc<App>>, c: Caller, h: HeaderMap, id: Path<String>) -> Answer {
    on_build(s, c, h, id, BuildAction::Cancel).await
}

/// `POST /builds/{id}/restart`, `…/prioritize`, `…/cancel`.
async fn on_build(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
    action: BuildAction,
) -> Answer {
    let who = c.api_writer(&h)?;
    let id = id_of("build", &id)?;
    ok(&api::builds::act(&app, who, id, action).await?)
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

/// The kept log of an earlier attempt, whole.
async fn attempt_log(
    State(app): State<Arc<App>>,
    c: Caller,
    Path((id, n)): Path<(String, String)>,
) -> Answer {
    let id = id_of("job", &id)?;
    let n: u32 = n
        .parse()
        .map_err(|_| ApiError::NotFound(format!("job {id} has no earlier attempt {n:?}")))?;
    let (bytes, _) = api::logs::attempt(&app, &c.who, id, n).await?;
    Ok(axum::response::IntoResponse::into_response((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        bytes,
    )))
}

async fn builders(State(app): State<Arc<App>>, c: Caller) -> Answer {
    ok(&api::builders::list(&app, &c.who)?)
}

async fn trust(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    ok(&api::builders::set_trusted(&app, who, &id, true).await?)
}

async fn untrust(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    ok(&api::builders::set_trusted(&app, who, &id, false).await?)
}

/// Travis's shape (`{"key": PEM, "fingerprint": …}`), for other tools.
async fn project_key(State(app): State<Arc<App>>, c: Caller, Path(name): Path<String>) -> Answer {
    ok(&api::projects::public_key(&app, &c.who, &name).await?)
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

/// A new user; `password` is in the answer only when it was generated.
#[derive(Serialize)]
struct CreatedUser {
    user: kha_core::view::User,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

async fn add_user(State(app): State<Arc<App>>, c: Caller, h: HeaderMap, b: Bytes) -> Answer {
    let who = c.api_writer(&h)?;
    let (user, password) = api::users::add(&app, who, body(&b)?).await?;
    let password = password.map(|p| p.into_inner());
    once(StatusCode::CREATED, &CreatedUser { user, password })
}

async fn user(State(app): State<Arc<App>>, c: Caller, Path(name): Path<String>) -> Answer {
    ok(&api::users::get(&app, &c.who, &name)?)
}

async fn remove_user(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    api::users::remove(&app, who, &name).await?;
    ok(&serde_json::json!({}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RoleArgs {
    /// Absent or empty: the global role.
    project: String,
    role: kha_core::view::Role,
}

async fn set_role(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(name): Path<String>,
    b: Bytes,
) -> Answer {
    let who = c.api_writer(&h)?;
    let a: RoleArgs = body(&b)?;
    let project = (!a.project.is_empty()).then_some(a.project.as_str());
    ok(&api::users::set_role(&app, who, &name, project, a.role).await?)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DisabledArgs {
    disabled: bool,
}

async fn set_disabled(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(name): Path<String>,
    b: Bytes,
) -> Answer {
    let who = c.api_writer(&h)?;
    let a: DisabledArgs = body(&b)?;
    ok(&api::users::set_disabled(&app, who, &name, a.disabled).await?)
}

async fn revoke_token(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    api::auth::revoke_token(&app, who, &id).await?;
    ok(&serde_json::json!({}))
}

async fn enrolment_tokens(State(app): State<Arc<App>>, c: Caller) -> Answer {
    ok(&api::builders::list_tokens(&app, &c.who)?)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EnrolmentArgs {
    description: String,
}

async fn create_enrolment_token(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    b: Bytes,
) -> Answer {
    let who = c.api_writer(&h)?;
    let a: EnrolmentArgs = body(&b)?;
    once(
        StatusCode::CREATED,
        &api::builders::create_token(&app, who, &a.description).await?,
    )
}

async fn revoke_enrolment_token(
    State(app): State<Arc<App>>,
    c: Caller,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let who = c.api_writer(&h)?;
    ok(&api::builders::revoke_token(&app, who, &id).await?)
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

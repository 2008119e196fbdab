//! The web UI's server-rendered pages, one file per page, readable without
//! JavaScript. Every page extends `templates/base.html` (the contract's page
//! skeleton: `body[data-seq][data-events]`, the navigation, `main#main`);
//! askama escapes every value, so anything from a repository or a job is
//! text, never markup. Shared here: the page chrome, rendering, the error
//! and 404 pages, paging, and the build row most lists show.

mod account;
mod actions;
mod audit;
mod build;
mod builders;
mod github_signin;
pub mod job;
mod overview;
mod project;
mod queue;
mod signin;
mod users;

use super::assets;
use super::error::status_of;
use super::fmt;
use super::session::Caller;
use crate::api::{self, ApiError};
use crate::app::App;
use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kha_core::view;
use kha_core::Millis;
use std::sync::Arc;

/// Lists show this many rows a page.
pub const PER_PAGE: usize = 25;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(overview::page))
        .route("/projects/{name}", get(project::page))
        .route("/projects/{name}/star", post(actions::star))
        .route("/projects/{name}/unstar", post(actions::unstar))
        .route("/projects/{name}/trigger", post(actions::trigger))
        .route("/projects/{name}/settings", post(actions::settings))
        .route("/projects/{name}/notify", post(actions::notify))
        .route("/builds/{id}", get(build::page))
        .route("/builds/{id}/restart", post(actions::restart))
        .route("/builds/{id}/prioritize", post(actions::prioritize))
        .route("/builds/{id}/cancel", post(actions::cancel))
        .route("/jobs/{id}", get(job::page))
        .route("/jobs/{id}/log.txt", get(job::raw))
        .route("/jobs/{id}/attempts/{n}/log.txt", get(job::attempt_raw))
        .route("/builders", get(builders::page))
        .route("/builders/{id}/drain", post(actions::drain))
        .route("/builders/{id}/revoke", post(actions::revoke))
        .route("/queue", get(queue::page))
        .route("/login", get(signin::page).post(signin::login))
        .route("/logout", post(signin::logout))
        .route(
            "/setup/{token}",
            get(signin::setup_page).post(signin::setup),
        )
        .route("/auth/github", get(github_signin::start))
        .route("/auth/github/callback", get(github_signin::callback))
        .route("/account", get(account::page))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{id}/revoke", post(account::revoke_token))
        .route("/account/cli-code", post(account::cli_code))
        .route("/users", get(users::page).post(users::add))
        .route("/users/{name}/role", post(users::role))
        .route("/users/{name}/disable", post(users::disable))
        .route("/users/{name}/enable", post(users::enable))
        .route("/users/{name}/remove", post(users::remove))
        .route("/audit", get(audit::page))
}

/// What every page's layout needs.
pub struct Chrome {
    pub title: String,
    /// The newest event's sequence number when the page was rendered.
    pub seq: u64,
    /// The event stream the script follows for this page.
    pub events: String,
    /// Who is signed in, as the navigation shows it ("" signed out).
    pub user: String,
    /// Signed in as a user (not with the admin token): has an account page.
    pub has_account: bool,
    /// An admin: the navigation links the users and audit pages.
    pub admin: bool,
    /// The session's CSRF token, for the sign-out form and every other form
    /// (empty without a session).
    pub csrf: String,
    pub css: String,
    pub js: String,
    /// This page's path, percent-encoded, for the sign-in link's `next`.
    pub here: String,
    /// Which navigation link is this page's ("overview", "queue", …).
    pub section: &'static str,
    pub now: Millis,
}

impl Chrome {
    /// `events` is the query of `/api/v1/events` this page follows ("" for all).
    pub fn new(app: &App, c: &Caller, title: &str, here: &str, events: String) -> Chrome {
        Chrome {
            title: title.to_string(),
            seq: api::events::newest(app),
            events: if events.is_empty() {
                "/api/v1/events".into()
            } else {
                format!("/api/v1/events?{events}")
            },
            user: c.display_name(),
            has_account: c.who.user().is_some(),
            admin: c.who.is_admin(),
            csrf: c.csrf.clone(),
            css: assets::url("kha.css"),
            js: assets::url("kha.js"),
            section: match here {
                "/" => "overview",
                "/queue" => "queue",
                "/builders" => "builders",
                "/users" => "users",
                "/audit" => "audit",
                "/account" => "account",
                _ => "",
            },
            here: fmt::pct(here),
            now: app.clock.now(),
        }
    }
}

/// `t` as an HTML response (a 500 if the template fails, which only a bug can do).
pub fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-cache")], Html(html)).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered\n",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: String,
    message: String,
    /// Not signed in: offer the sign-in page.
    sign_in: bool,
}

/// The page for a failed request: "Not found" and what, or the error.
pub fn error_page(app: &App, c: &Caller, e: &ApiError) -> Response {
    let (status, _) = status_of(e);
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::UNAUTHORIZED => "Not signed in",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::CONFLICT => "Not now",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        _ => "Something went wrong",
    };
    let page = ErrorPage {
        chrome: Chrome::new(app, c, heading, "/", String::new()),
        heading: heading.into(),
        message: e.to_string(),
        sign_in: status == StatusCode::UNAUTHORIZED,
    };
    render(status, &page)
}

/// Any path no route knows.
pub async fn not_found_path(State(app): State<Arc<App>>, c: Caller, uri: Uri) -> Response {
    let e = ApiError::NotFound(format!("there is no page at {}", uri.path()));
    if uri.path().starts_with("/api/") {
        return super::error::JsonError(e).into_response();
    }
    error_page(&app, &c, &e)
}

/// A numeric id from a path, or the 404 the page answers instead.
pub fn parse_id(what: &str, raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no {what} {raw:?}: {what} ids are numbers")))
}

/// `?page=N` links under a list.
pub struct Pager {
    pub page: usize,
    pub pages: usize,
    pub prev: String,
    pub next: String,
}

impl Pager {
    /// `link(n)` is the URL of page `n`.
    pub fn new(
        page: usize,
        total: usize,
        per_page: usize,
        link: impl Fn(usize) -> String,
    ) -> Pager {
        let pages = total.div_ceil(per_page).max(1);
        Pager {
            page,
            pages,
            prev: if page > 1 {
                link(page - 1)
            } else {
                String::new()
            },
            next: if page < pages {
                link(page + 1)
            } else {
                String::new()
            },
        }
    }
}

/// Page `page` (1-based) of `items`, with its pager.
pub fn paged<T>(items: Vec<T>, page: usize, link: impl Fn(usize) -> String) -> (Vec<T>, Pager) {
    let page = page.max(1);
    let pager = Pager::new(page, items.len(), PER_PAGE, link);
    let rows = items
        .into_iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .collect();
    (rows, pager)
}

/// A `<time>`: text as rendered, `ms` for the script to tick.
pub struct When {
    pub ms: Millis,
    pub iso: String,
    pub text: String,
}

impl When {
    pub fn ago(now: Millis, ms: Millis) -> When {
        When {
            ms,
            iso: if ms == 0 { String::new() } else { fmt::iso(ms) },
            text: fmt::ago(now, ms),
        }
    }
}

/// A build as one row of a list.
pub struct BuildRow {
    pub id: u64,
    pub state: &'static str,
    pub project: String,
    pub branch: String,
    pub commit: String,
    pub message: String,
    pub author: String,
    pub trigger: String,
    pub created: When,
    /// The duration so far or in total ("" before it starts).
    pub duration: String,
    /// While running: when it started, for the script's ticking.
    pub running_since: Millis,
}

impl BuildRow {
    pub fn new(now: Millis, b: &view::Build) -> BuildRow {
        let running = !b.state.is_final() && b.started_ms > 0;
        let duration = match (b.started_ms, b.finished_ms) {
            (0, _) => String::new(),
            (s, 0) => fmt::duration(now.saturating_sub(s)),
            (s, f) => fmt::duration(f.saturating_sub(s)),
        };
        BuildRow {
            id: b.id,
            state: b.state.as_str(),
            project: b.project.clone(),
            branch: b.branch.clone(),
            commit: fmt::short(&b.commit),
            message: fmt::first_line(&b.message),
            author: b.author.clone(),
            trigger: trigger_of(b),
            created: When::ago(now, b.created_ms),
            duration,
            running_since: if running { b.started_ms } else { 0 },
        }
    }
}

/// What started a build, as the `#trigger` shows it.
pub fn trigger_of(b: &view::Build) -> String {
    if b.pr_number > 0 {
        return format!("PR #{}", b.pr_number);
    }
    if b.tag {
        return "tag".into();
    }
    match b.event.as_str() {
        "api" | "cli" => "CLI".into(),
        "" => "push".into(),
        other => other.replace('_', " "),
    }
}

/// `/projects/{name}` with the name escaped for a URL.
pub fn project_url(name: &str) -> String {
    format!("/projects/{}", fmt::pct(name))
}

impl BuildRow {
    pub fn url(&self) -> String {
        format!("/builds/{}", self.id)
    }

    /// The project page's history of this build's branch.
    pub fn branch_url(&self) -> String {
        format!(
            "{}?branch={}#history",
            project_url(&self.project),
            fmt::pct(&self.branch)
        )
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct PageQuery {
    /// Kept as text so `?page=x` is page 1, not a refusal.
    pub page: String,
}

impl PageQuery {
    pub fn number(&self) -> usize {
        self.page.parse().unwrap_or(1).max(1)
    }
}

pub use job::{parse_range, raw_log};

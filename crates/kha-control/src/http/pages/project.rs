//! `/projects/{name}`: branches (`#branches`), pull requests (`#pulls`), its
//! scheduled builds when it has some (`#schedules`), the
//! build history with a branch filter (`#history`, `form#filter`), the badge
//! snippet (`#badge`) and the webhook URLs (`#webhook`); who has a role on
//! it (`#members`); for a signed-in user a star button (`form.star` /
//! `form.unstar`); for its maintainers "Trigger build" (`form#trigger-build`)
//! and its settings (`form#settings`).

use super::{error_page, project_url, render, BuildRow, Chrome, Pager, When, PER_PAGE};
use crate::api::{self, ApiError};
use crate::app::App;
use crate::http::fmt;
use crate::http::session::Caller;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use kha_core::view::{ProjectRole, Role};
use serde::Deserialize;
use std::sync::Arc;

pub struct BranchRow {
    pub name: String,
    pub head: String,
    pub tag: bool,
    pub state: String,
    pub build_id: u64,
    pub updated: When,
}

/// A scheduled build as a row: how often, when next, what the last run did.
pub struct ScheduleRow {
    pub id: u64,
    pub branch: String,
    /// "daily", or "cron 0 3 * * *"; with "unless built in 24 h".
    pub how: String,
    /// ISO 8601, UTC.
    pub next: String,
    pub last: When,
    pub outcome: String,
    pub build_id: u64,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    chrome: Chrome,
    p: kha_core::view::Project,
    branches: Vec<BranchRow>,
    pulls: Vec<(u64, BuildRow)>,
    schedules: Vec<ScheduleRow>,
    history: Vec<BuildRow>,
    pager: Pager,
    filter: String,
    branch_names: Vec<String>,
    badge_md: String,
    url: String,
    badge_url: String,
    github_hook: String,
    generic_hook: String,
    members: Vec<ProjectRole>,
    /// Signed in as a user: may star it.
    can_star: bool,
    starred: bool,
    /// A maintainer of the project: the trigger and settings forms.
    maintainer: bool,
    /// Its notification channels set here (maintainers only).
    notify: Vec<(String, String)>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct HistoryQuery {
    branch: String,
    page: String,
}

pub async fn page(
    State(app): State<Arc<App>>,
    c: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    match build_page(&app, &c, &headers, &name, &q) {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&app, &c, &e),
    }
}

fn build_page(
    app: &App,
    c: &Caller,
    headers: &HeaderMap,
    name: &str,
    q: &HistoryQuery,
) -> Result<ProjectPage, ApiError> {
    let who = &c.who;
    let p = api::projects::get(app, who, name)?;
    let chrome = Chrome::new(
        app,
        c,
        &p.name,
        &project_url(&p.name),
        format!("project={}", fmt::pct(&p.name)),
    );
    let now = chrome.now;
    let branches = api::branches::list(app, who, name)?;
    let branch_names = branches.iter().map(|b| b.name.clone()).collect();
    let branches = branches
        .into_iter()
        .map(|b| BranchRow {
            state: b.state.to_string(),
            head: fmt::short(&b.head),
            tag: b.tag,
            build_id: b.last_build_id,
            updated: When::ago(now, b.updated_ms),
            name: b.name,
        })
        .collect();
    let pulls = api::builds::pull_requests(app, who, name)?
        .iter()
        .map(|b| (b.pr_number, BuildRow::new(now, b)))
        .collect();
    let schedules = api::schedules::list(app, who, Some(name))?
        .into_iter()
        .map(|s| ScheduleRow {
            id: s.id,
            how: if s.dont_run_if_recent_build_exists {
                format!("{}, unless built in 24 h", s.cadence())
            } else {
                s.cadence()
            },
            next: fmt::iso(s.next_run_ms),
            last: When::ago(now, s.last_run_ms),
            outcome: s.last_outcome,
            build_id: s.last_build_id,
            branch: s.branch,
        })
        .collect();
    let page: u32 = q.page.parse().unwrap_or(1).max(1);
    let filter = (!q.branch.is_empty()).then_some(q.branch.as_str());
    let hist = api::builds::list(app, who, name, filter, page, PER_PAGE as u32)?;
    let base = project_url(&p.name);
    let branch_q = if q.branch.is_empty() {
        String::new()
    } else {
        format!("branch={}&", fmt::pct(&q.branch))
    };
    let pager = Pager::new(page as usize, hist.total as usize, PER_PAGE, |n| {
        format!("{base}?{branch_q}page={n}#history")
    });
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok());
    let public = app.cfg.base_url(host);
    let pname = fmt::pct(&p.name);
    let members = api::projects::members(app, who, name)?;
    let maintainer = who.role_on_view(&p) >= Role::Maintainer;
    let notify = if maintainer {
        api::projects::notify_settings(app, who, name)?
            .into_iter()
            .collect()
    } else {
        vec![]
    };
    Ok(ProjectPage {
        notify,
        chrome,
        branches,
        pulls,
        schedules,
        history: hist.builds.iter().map(|b| BuildRow::new(now, b)).collect(),
        pager,
        filter: q.branch.clone(),
        branch_names,
        badge_md: format!("[![build]({public}/badge/{pname}.svg)]({public}/projects/{pname})"),
        url: project_url(&p.name),
        badge_url: format!("/badge/{pname}.svg"),
        github_hook: format!("{public}/hooks/github/{pname}"),
        generic_hook: format!("{public}/hooks/generic/{pname}"),
        members,
        can_star: who.user().is_some(),
        starred: who.user().is_some_and(|u| u.stars.contains(&p.name)),
        maintainer,
        p,
    })
}

impl BranchRow {
    pub fn history_url(&self, project: &str) -> String {
        format!(
            "{}?branch={}#history",
            project_url(project),
            fmt::pct(&self.name)
        )
    }
}

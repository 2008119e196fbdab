//! `/`: every project with its default branch's last build, the jobs
//! running now and the jobs waiting (`#projects`, `#running`, `#queued`);
//! the caller's starred projects first (`tr.starred`).

use super::{error_page, project_url};
use super::{paged, render, BuildRow, Chrome, PageQuery, Pager, When};
use crate::api;
use crate::app::App;
use crate::http::session::Caller;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

pub struct ProjectRow {
    pub name: String,
    pub url: String,
    pub branch: String,
    pub state: &'static str,
    pub build: Option<BuildRow>,
    /// The caller follows it (starred projects come first).
    pub starred: bool,
    pub private: bool,
}

pub struct JobRow {
    pub id: u64,
    pub number: String,
    pub project: String,
    pub project_url: String,
    pub branch: String,
    pub builder: String,
    pub since: When,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    chrome: Chrome,
    projects: Vec<ProjectRow>,
    pager: Pager,
    running: Vec<JobRow>,
    queued: Vec<JobRow>,
}

pub async fn page(State(app): State<Arc<App>>, c: Caller, Query(q): Query<PageQuery>) -> Response {
    let o = match api::overview::get(&app, &c.who) {
        Ok(o) => o,
        Err(e) => return error_page(&app, &c, &e),
    };
    let chrome = Chrome::new(&app, &c, "Overview", "/", String::new());
    let now = chrome.now;
    let projects = o
        .projects
        .into_iter()
        .map(|p| ProjectRow {
            url: project_url(&p.project.name),
            state: p
                .last_build
                .as_ref()
                .map_or("unknown", |b| b.state.as_str()),
            build: p.last_build.as_ref().map(|b| BuildRow::new(now, b)),
            starred: p.starred,
            private: p.project.private,
            branch: p.project.default_branch,
            name: p.project.name,
        })
        .collect();
    let (projects, pager) = paged(projects, q.number(), |n| format!("/?page={n}#projects"));
    let running = o
        .running
        .into_iter()
        .map(|a| JobRow {
            id: a.job.id,
            number: format!("{}.{}", a.build_id, a.job.number),
            project_url: project_url(&a.project),
            project: a.project,
            branch: a.branch,
            builder: a.job.builder,
            since: When::ago(now, a.job.started_ms),
            reason: String::new(),
        })
        .collect();
    let queued = o
        .queued
        .into_iter()
        .map(|q| JobRow {
            id: q.job.id,
            number: format!("{}.{}", q.build_id, q.job.number),
            project_url: project_url(&q.project),
            project: q.project,
            branch: q.branch,
            builder: String::new(),
            since: When::ago(now, q.job.started_ms),
            reason: q.reason,
        })
        .collect();
    render(
        StatusCode::OK,
        &Overview {
            chrome,
            projects,
            pager,
            running,
            queued,
        },
    )
}

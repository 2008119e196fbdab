//! `/queue`: every queued job in queue order, with why it waits (`#queue`).

use super::{error_page, paged, project_url, render, Chrome, PageQuery, Pager};
use crate::api;
use crate::app::App;
use crate::http::session::Caller;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

pub struct QueueRow {
    pub id: u64,
    pub number: String,
    pub project: String,
    pub project_url: String,
    pub branch: String,
    pub build_id: u64,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    chrome: Chrome,
    jobs: Vec<QueueRow>,
    pager: Pager,
}

pub async fn page(State(app): State<Arc<App>>, c: Caller, Query(q): Query<PageQuery>) -> Response {
    let list = match api::queue::list(&app, &c.who) {
        Ok(l) => l,
        Err(e) => return error_page(&app, &c, &e),
    };
    let rows = list
        .into_iter()
        .map(|q| QueueRow {
            id: q.job.id,
            number: format!("{}.{}", q.build_id, q.job.number),
            project_url: project_url(&q.project),
            project: q.project,
            branch: q.branch,
            build_id: q.build_id,
            reason: q.reason,
        })
        .collect();
    let (jobs, pager) = paged(rows, q.number(), |n| format!("/queue?page={n}"));
    let chrome = Chrome::new(&app, &c, "Queue", "/queue", String::new());
    render(
        StatusCode::OK,
        &QueuePage {
            chrome,
            jobs,
            pager,
        },
    )
}

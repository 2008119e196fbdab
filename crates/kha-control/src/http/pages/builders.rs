//! `/builders`: every builder with its state, slots, labels, running jobs,
//! last contact and version (`#builders`), and drain/revoke forms for the
//! admin.

use super::{error_page, paged, render, Chrome, PageQuery, Pager, When};
use crate::api;
use crate::app::App;
use crate::http::fmt;
use crate::http::session::Caller;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

pub struct BuilderRow {
    pub id: String,
    /// The id escaped for a URL path.
    pub path: String,
    pub name: String,
    pub state: &'static str,
    pub used: usize,
    pub slots: u32,
    pub labels: String,
    pub running: Vec<u64>,
    pub seen: When,
    pub version: String,
    pub can_drain: bool,
    pub can_revoke: bool,
}

#[derive(Template)]
#[template(path = "builders.html")]
struct BuildersPage {
    chrome: Chrome,
    builders: Vec<BuilderRow>,
    pager: Pager,
}

pub async fn page(State(app): State<Arc<App>>, c: Caller, Query(q): Query<PageQuery>) -> Response {
    let list = match api::builders::list(&app, &c.who) {
        Ok(l) => l,
        Err(e) => return error_page(&app, &c, &e),
    };
    let chrome = Chrome::new(&app, &c, "Builders", "/builders", String::new());
    let now = chrome.now;
    use kha_core::view::BuilderState as S;
    let rows = list
        .into_iter()
        .map(|b| BuilderRow {
            path: fmt::pct(&b.id),
            state: b.state.as_str(),
            used: b.running_jobs.len(),
            slots: b.slots,
            labels: b.labels.join(" "),
            seen: When::ago(now, b.last_seen_ms),
            can_drain: b.state == S::Connected,
            can_revoke: b.state != S::Revoked,
            running: b.running_jobs,
            version: b.version,
            name: b.name,
            id: b.id,
        })
        .collect();
    let (builders, pager) = paged(rows, q.number(), |n| format!("/builders?page={n}"));
    render(
        StatusCode::OK,
        &BuildersPage {
            chrome,
            builders,
            pager,
        },
    )
}

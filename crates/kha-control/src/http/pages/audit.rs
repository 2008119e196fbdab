//! `/audit?page=N` (admins): who did what, newest first (`#audit`, rows
//! `tr[data-seq]` with `.actor`, `.action`, `.target`, `.detail`), paged.

use super::{error_page, render, Chrome, PageQuery, Pager};
use crate::api;
use crate::app::App;
use crate::http::fmt;
use crate::http::session::Caller;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

/// Entries a page shows.
const PER_PAGE: u32 = 50;

pub struct EntryRow {
    pub seq: u64,
    pub iso: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<EntryRow>,
    total: u64,
    pager: Pager,
}

pub async fn page(State(app): State<Arc<App>>, c: Caller, Query(q): Query<PageQuery>) -> Response {
    let page = q.number().min(u32::MAX as usize) as u32;
    let log = match api::audit::list(&app, &c.who, page, PER_PAGE) {
        Ok(l) => l,
        Err(e) => return error_page(&app, &c, &e),
    };
    let pager = Pager::new(
        log.page as usize,
        log.total as usize,
        log.per_page as usize,
        |n| format!("/audit?page={n}"),
    );
    let entries = log
        .entries
        .into_iter()
        .map(|e| EntryRow {
            seq: e.seq,
            iso: fmt::iso(e.at_ms),
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
        })
        .collect();
    let page = AuditPage {
        chrome: Chrome::new(&app, &c, "Audit log", "/audit", String::new()),
        entries,
        total: log.total,
        pager,
    };
    render(StatusCode::OK, &page)
}

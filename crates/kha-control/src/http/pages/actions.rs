//! The admin's forms: restart or cancel a build, drain or revoke a builder.
//! Each checks the admin cookie and the CSRF field, calls one service
//! function and answers 303 back to the page (or an error page).

use super::error_page;
use super::parse_id;
use crate::api::{self, ApiError, Principal};
use crate::app::App;
use crate::http::{fmt, session};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    csrf: String,
}

/// Checks the poster, runs `act`, and sends the browser back to `back`.
async fn act<F, T>(app: &App, headers: &HeaderMap, csrf: &str, back: &str, act: F) -> Response
where
    F: Future<Output = Result<T, ApiError>>,
{
    if let Err(r) = session::form_writer(app, headers, csrf, back) {
        return *r;
    }
    match act.await {
        Ok(_) => Redirect::to(back).into_response(),
        Err(e) => error_page(app, headers, &e),
    }
}

pub async fn restart(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let back = format!("/builds/{}", fmt::pct(&raw));
    let fut = async {
        let id = parse_id("build", &raw)?;
        api::builds::restart(&app, &Principal::Admin, id).await
    };
    act(&app, &headers, &f.csrf, &back, fut).await
}

pub async fn cancel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let back = format!("/builds/{}", fmt::pct(&raw));
    let fut = async {
        let id = parse_id("build", &raw)?;
        api::builds::cancel(&app, &Principal::Admin, id).await
    };
    act(&app, &headers, &f.csrf, &back, fut).await
}

pub async fn drain(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let fut = api::builders::drain(&app, &Principal::Admin, &id);
    act(&app, &headers, &f.csrf, "/builders", fut).await
}

pub async fn revoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let fut = api::builders::revoke(&app, &Principal::Admin, &id);
    act(&app, &headers, &f.csrf, "/builders", fut).await
}

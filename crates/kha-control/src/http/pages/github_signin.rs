//! "Sign in with GitHub" (the OAuth web flow; `crate::github_login` speaks
//! to GitHub, `api::auth::github_user` decides who that is here):
//!
//! - `GET /auth/github?next=PATH`: a random `state` goes into a short-lived
//!   cookie (`kha_gh`, only for `/auth/github`, 10 minutes) and into the
//!   authorize URL the browser is sent to. 404 when GitHub sign-in is not
//!   configured.
//! - `GET /auth/github/callback?code&state` (or `?error=access_denied`):
//!   the state must be the cookie's, so an answer from GitHub that this
//!   browser did not ask for (a login CSRF) signs nobody in; then the code
//!   is exchanged for the identity, the identity for a kha user (created on
//!   their first sign-in), and a session starts.

use super::error_page;
use crate::api::{self, ApiError};
use crate::app::App;
use crate::auth::{hash_eq, new_token};
use crate::http::session::{self, local_path, Caller, Lifetime};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;

/// The cookie that carries the flow's state (and where to go afterwards).
const STATE_COOKIE: &str = "kha_gh";
/// The cookie is only sent to these routes.
const STATE_PATH: &str = "/auth/github";
/// A sign-in at GitHub must come back within this.
const STATE_SECS: u64 = 600;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StartQuery {
    next: String,
}

fn not_configured() -> ApiError {
    ApiError::NotFound(
        "GitHub sign-in is not configured here: sign in with your user name and password".into(),
    )
}

pub async fn start(
    State(app): State<Arc<App>>,
    c: Caller,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(gh) = app.github.as_ref() else {
        return error_page(&app, &c, &not_configured());
    };
    let state = new_token("").into_inner();
    // `next` travels hex-encoded: a cookie value may not hold every byte
    // a path can.
    let next = hex::encode(local_path(&q.next));
    let mut r = Redirect::to(&gh.authorize_url(&state)).into_response();
    let value = format!("{state}.{next}");
    session::set_cookie(
        &app,
        &mut r,
        STATE_COOKIE,
        &value,
        STATE_PATH,
        Lifetime::Secs(STATE_SECS),
    );
    r
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CallbackQuery {
    code: String,
    state: String,
    error: String,
    error_description: String,
}

/// The state and the local path saved by [`start`], if the cookie is there.
fn saved(headers: &HeaderMap) -> Option<(String, String)> {
    let (state, next) = session::cookie(headers, STATE_COOKIE)?.split_once('.')?;
    let next = String::from_utf8(hex::decode(next).ok()?).ok()?;
    Some((state.to_string(), local_path(&next).to_string()))
}

pub async fn callback(
    State(app): State<Arc<App>>,
    c: Caller,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let mut r = finish(&app, &c, &headers, &q).await;
    // One flow, one state: whatever happened, it is used up.
    session::set_cookie(&app, &mut r, STATE_COOKIE, "", STATE_PATH, Lifetime::Clear);
    r
}

async fn finish(app: &App, c: &Caller, headers: &HeaderMap, q: &CallbackQuery) -> Response {
    let Some(gh) = app.github.as_ref() else {
        return error_page(app, c, &not_configured());
    };
    if q.error == "access_denied" {
        let e = ApiError::Denied(
            "GitHub sign-in was denied: GitHub did not let kha read your account (the request was declined). Try again, or sign in with a password".into(),
        );
        return error_page(app, c, &e);
    }
    if !q.error.is_empty() {
        let e = ApiError::Invalid(format!(
            "GitHub sign-in failed: GitHub answered {} ({}); try again, or ask the admin to check the [github] settings",
            q.error, q.error_description
        ));
        return error_page(app, c, &e);
    }
    let next = match saved(headers) {
        Some((state, next)) if !q.state.is_empty() && hash_eq(&state, &q.state) => next,
        _ => {
            let e = ApiError::Invalid(
                "sign-in state mismatch: this answer from GitHub does not belong to a sign-in started in this browser (or that sign-in took more than 10 minutes); sign in again".into(),
            );
            return error_page(app, c, &e);
        }
    };
    let signed_in = async {
        let identity = gh.identity(&q.code).await?;
        let name = api::auth::github_user(app, &identity).await?;
        api::auth::start_session(app, Some(&name)).await
    };
    match signed_in.await {
        Ok((sid, _)) => {
            if let Some(old) = c.session_id() {
                api::auth::end_session(app, old).await;
            }
            let mut r = Redirect::to(&next).into_response();
            session::start(app, &mut r, sid.expose());
            r
        }
        Err(e) => error_page(app, c, &e),
    }
}

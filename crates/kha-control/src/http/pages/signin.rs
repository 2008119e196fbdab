//! Signing in and out: `/login` (a user's name and password; "Sign in with
//! GitHub" when it is configured; the admin token in a collapsed
//! break-glass section), `/logout`, and `/setup/{token}` (the first admin,
//! while nobody has an account). The forms shown before a session exists
//! are tied to the browser by the `kha_pre` double-submit cookie (see
//! `session`). Every check is the service layer's (`api::auth`).

use super::actions::CsrfForm;
use super::{error_page, render, Chrome};
use crate::api::{self, ApiError};
use crate::app::App;
use crate::http::error::status_of;
use crate::http::fmt::pct;
use crate::http::session::{self, local_path, Caller, Lifetime, PRE_COOKIE};
use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    /// The double-submit value the forms repeat.
    pre: String,
    next: String,
    next_pct: String,
    /// The name typed last time (after a failed try).
    name: String,
    error: String,
    /// GitHub sign-in is configured.
    github: bool,
    /// Show the admin token's form open (after a failed try with it).
    token_open: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NextQuery {
    next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    name: String,
    password: String,
    /// The admin token (the break-glass form).
    token: String,
    pre: String,
    next: String,
}

fn login_page(app: &App, c: &Caller, pre: String, next: &str) -> LoginPage {
    LoginPage {
        chrome: Chrome::new(app, c, "Sign in", "/login", String::new()),
        pre,
        next: next.to_string(),
        next_pct: pct(next),
        name: String::new(),
        error: String::new(),
        github: github_configured(app),
        token_open: false,
    }
}

/// Whether the login page offers "Sign in with GitHub".
fn github_configured(app: &App) -> bool {
    app.github.is_some()
}

/// Sets `kha_pre` on `r` when the browser has none yet.
fn with_pre(app: &App, mut r: Response, pre: &str, new: bool) -> Response {
    if new {
        session::set_cookie(app, &mut r, PRE_COOKIE, pre, "/", Lifetime::Browser);
    }
    r
}

pub async fn page(
    State(app): State<Arc<App>>,
    c: Caller,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let (pre, new) = session::pre_token(&headers);
    let page = login_page(&app, &c, pre.clone(), local_path(&q.next));
    with_pre(&app, render(StatusCode::OK, &page), &pre, new)
}

pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    c: Caller,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !session::pre_matches(&headers, &f.pre) {
        return error_page(&app, &c, &session::pre_refusal());
    }
    let next = local_path(&f.next).to_string();
    let with_token = !f.token.is_empty();
    let started = if with_token {
        api::auth::admin_session(&app, &f.token)
            .await
            .map(|(sid, _)| sid)
    } else {
        api::auth::password_session(&app, &f.name, &f.password, peer.ip())
            .await
            .map(|(_, sid, _)| sid)
    };
    match started {
        Ok(sid) => {
            // A browser that was signed in as someone else: that session ends.
            if let Some(old) = c.session_id() {
                api::auth::end_session(&app, old).await;
            }
            let mut r = Redirect::to(&next).into_response();
            session::start(&app, &mut r, sid.expose());
            r
        }
        Err(e) => {
            let mut page = login_page(&app, &c, f.pre, &next);
            page.error = e.to_string();
            page.name = f.name;
            page.token_open = with_token;
            render(status_of(&e).0, &page)
        }
    }
}

pub async fn logout(State(app): State<Arc<App>>, c: Caller, Form(f): Form<CsrfForm>) -> Response {
    let mut r = Redirect::to("/").into_response();
    if let Some(sid) = c.session_id() {
        if let Err(refused) = c.form_writer(&app, &f.csrf, "/") {
            return *refused;
        }
        api::auth::end_session(&app, sid).await;
    }
    session::set_cookie(&app, &mut r, session::COOKIE, "", "/", Lifetime::Clear);
    r
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    chrome: Chrome,
    token: String,
    pre: String,
    name: String,
    error: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SetupForm {
    name: String,
    password: String,
    pre: String,
}

fn stale_setup_link() -> ApiError {
    ApiError::NotFound(
        "this setup link is used or out of date: sign in, or restart kha-control for a new link"
            .into(),
    )
}

pub async fn setup_page(
    State(app): State<Arc<App>>,
    c: Caller,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    match api::auth::setup_valid(&app, &token) {
        Ok(true) => {}
        Ok(false) => return error_page(&app, &c, &stale_setup_link()),
        Err(e) => return error_page(&app, &c, &e),
    }
    let (pre, new) = session::pre_token(&headers);
    let page = SetupPage {
        chrome: Chrome::new(&app, &c, "Create the first admin", "/setup", String::new()),
        token,
        pre: pre.clone(),
        name: String::new(),
        error: String::new(),
    };
    with_pre(&app, render(StatusCode::OK, &page), &pre, new)
}

pub async fn setup(
    State(app): State<Arc<App>>,
    c: Caller,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<SetupForm>,
) -> Response {
    if !session::pre_matches(&headers, &f.pre) {
        return error_page(&app, &c, &session::pre_refusal());
    }
    let made = match api::auth::setup(&app, &token, f.name.trim(), &f.password).await {
        Ok(name) => api::auth::start_session(&app, Some(&name)).await,
        Err(e) => Err(e),
    };
    match made {
        Ok((sid, _)) => {
            let mut r = Redirect::to("/account").into_response();
            session::start(&app, &mut r, sid.expose());
            r
        }
        Err(e @ ApiError::NotFound(_)) => error_page(&app, &c, &e),
        Err(e) => {
            let page = SetupPage {
                chrome: Chrome::new(&app, &c, "Create the first admin", "/setup", String::new()),
                token,
                pre: f.pre,
                name: f.name,
                error: e.to_string(),
            };
            render(status_of(&e).0, &page)
        }
    }
}

//! Who a browser or program is, over HTTP: the admin cookie (`kha_admin`,
//! set by `/login` when the admin token is given), the CSRF token every
//! state-changing request carries, and bearer tokens for programs.
//!
//! Both the cookie's value and the CSRF token are derived from the admin
//! token's hash with HMAC-SHA256, so nothing needs storing, a new admin
//! token ends every session, and neither reveals the token. Until users
//! land (issue 10) reading is open to everybody (`Principal::Anonymous`).

use super::fmt::pct;
use super::pages::{self, Chrome};
use crate::api::{self, ApiError, Principal};
use crate::app::App;
use crate::auth::hash_eq;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::sync::Arc;

pub const COOKIE: &str = "kha_admin";

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

fn mac(app: &App, what: &str) -> String {
    // The key is the admin token's hash, which never leaves the server.
    match Hmac::<Sha256>::new_from_slice(app.admin_hash.as_bytes()) {
        Ok(mut m) => {
            m.update(what.as_bytes());
            hex::encode(m.finalize().into_bytes())
        }
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => String::new(),
    }
}

/// The CSRF token pages put in their forms (for the admin only).
pub fn csrf_token(app: &App) -> String {
    mac(app, "csrf")
}

fn session_value(app: &App) -> String {
    mac(app, "session")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request carries a valid admin cookie.
pub fn has_admin_cookie(app: &App, headers: &HeaderMap) -> bool {
    cookie(headers, COOKIE).is_some_and(|v| hash_eq(v, &session_value(app)))
}

/// Who reads a page: the admin with the cookie, else anybody.
pub fn reader(app: &App, headers: &HeaderMap) -> Principal {
    if has_admin_cookie(app, headers) {
        Principal::Admin
    } else {
        Principal::Anonymous
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Who makes a JSON API request: a bearer admin token, or the admin cookie
/// with the CSRF token in `X-Kha-Csrf` (a cookie alone could be a forged
/// cross-site request).
pub fn api_writer(app: &App, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if let Some(t) = bearer(headers) {
        return api::auth::from_bearer(app, Some(t));
    }
    if has_admin_cookie(app, headers) {
        let sent = headers
            .get("x-kha-csrf")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return if hash_eq(sent, &csrf_token(app)) {
            Ok(Principal::Admin)
        } else {
            Err(ApiError::Denied(
                "missing or wrong X-Kha-Csrf header: send the page's CSRF token with the cookie"
                    .into(),
            ))
        };
    }
    Err(ApiError::Unauthenticated(
        "no credentials: send Authorization: Bearer <admin token>".into(),
    ))
}

/// Who posts an HTML form: the admin with a valid CSRF field. Otherwise the
/// answer to send instead: to the login page without the cookie, a 403
/// page with a wrong token.
pub fn form_writer(
    app: &App,
    headers: &HeaderMap,
    csrf: &str,
    back: &str,
) -> Result<Principal, Box<Response>> {
    if !has_admin_cookie(app, headers) {
        return Err(Box::new(
            Redirect::to(&format!("/login?next={}", pct(back))).into_response(),
        ));
    }
    if !hash_eq(csrf, &csrf_token(app)) {
        return Err(Box::new(pages::error_page(
            app,
            headers,
            &ApiError::Denied(
                "this form was not sent from a kha page (missing or wrong CSRF token); reload the page and try again".into(),
            ),
        )));
    }
    Ok(Principal::Admin)
}

/// `next` if it is a path on this server, else `/` (never an open redirect).
pub fn local_path(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control());
    if ok {
        next
    } else {
        "/"
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    next: String,
    error: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NextQuery {
    next: String,
}

async fn login_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let page = LoginPage {
        chrome: Chrome::new(&app, &headers, "Log in", "/login", String::new()),
        next: local_path(&q.next).to_string(),
        error: String::new(),
    };
    pages::render(StatusCode::OK, &page)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    token: String,
    next: String,
}

async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = local_path(&f.next).to_string();
    if let Err(e) = api::auth::from_bearer(&app, Some(f.token.trim())).and_then(|p| {
        if p == Principal::Admin {
            Ok(())
        } else {
            Err(ApiError::Unauthenticated("wrong admin token".into()))
        }
    }) {
        let page = LoginPage {
            chrome: Chrome::new(&app, &headers, "Log in", "/login", String::new()),
            next,
            error: e.to_string(),
        };
        return pages::render(StatusCode::UNAUTHORIZED, &page);
    }
    let mut r = Redirect::to(&next).into_response();
    set_cookie(&app, &mut r, &session_value(&app), false);
    r
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Response {
    if let Err(r) = form_writer(&app, &headers, &f.csrf, "/") {
        return *r;
    }
    let mut r = Redirect::to("/").into_response();
    set_cookie(&app, &mut r, "", true);
    r
}

/// Sets (or, with `clear`, removes) the admin cookie: HttpOnly, so scripts
/// never see it; SameSite=Strict, so other sites cannot send it; Secure when
/// the control node is reached over https.
fn set_cookie(app: &App, r: &mut Response, value: &str, clear: bool) {
    let secure = if app.cfg.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let age = if clear { "; Max-Age=0" } else { "" };
    let c = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

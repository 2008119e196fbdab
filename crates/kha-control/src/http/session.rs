//! Who a request is, over HTTP, decided in one place: [`Caller`] (an axum
//! extractor every handler takes) gives the [`Principal`] and the CSRF token
//! its forms carry.
//!
//! - A bearer token (`Authorization: Bearer …`: the admin token or a user's
//!   `khau_…` API token) goes to `api::auth::from_bearer`. No cookie is
//!   involved, so no cross-site forgery is possible and no CSRF is asked.
//! - A browser carries the cookie `kha_session`: a server-side session's id
//!   (`api::auth`), `HttpOnly` (scripts never see it), `SameSite=Lax` (a
//!   link from another site still arrives signed in, a cross-site POST does
//!   not carry it), `Secure` when the web UI is reached over https. Its
//!   forms carry the session's CSRF token in a `csrf` field; JSON writes in
//!   the `X-Kha-Csrf` header.
//! - The sign-in forms run before any session exists: they use a
//!   double-submit cookie, `kha_pre`, whose value the form repeats, so a
//!   page on another site cannot sign a browser in to an account of its
//!   choosing.
//!
//! An unknown, expired or ended session is simply no session: the caller is
//! anonymous. Nothing here decides what a principal may do: `api::` does.

use super::error::JsonError;
use super::fmt::pct;
use super::pages;
use crate::api::{self, ApiError, Principal};
use crate::app::App;
use crate::auth::{hash_eq, new_token};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;

/// The session cookie: its value is the session id.
pub const COOKIE: &str = "kha_session";
/// The sign-in forms' double-submit cookie.
pub const PRE_COOKIE: &str = "kha_pre";

/// Who makes a request, and the CSRF token of their session. No `Debug`:
/// it holds the session id, which must never reach a log.
#[derive(Clone)]
pub struct Caller {
    pub who: Principal,
    /// The session's CSRF token; empty without a session.
    pub csrf: String,
    /// The session id from the cookie, for signing out.
    sid: Option<String>,
    /// Came with a bearer token (no cookie, so no CSRF to check).
    bearer: bool,
    /// That token, to check it again while a stream is open.
    token: Option<String>,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller {
            who: Principal::Anonymous,
            csrf: String::new(),
            sid: None,
            bearer: false,
            token: None,
        }
    }

    /// How a long-lived stream checks this caller again: the same bearer
    /// token or session, resolved anew (a revoked token, a disabled user
    /// or a signed-out session stops seeing what it no longer may).
    pub fn recheck(&self, app: &Arc<App>) -> Option<api::events::Recheck> {
        let app = app.clone();
        if let Some(t) = self.token.clone() {
            return Some(Box::new(move || api::auth::from_bearer(&app, Some(&t))));
        }
        let sid = self.sid.clone()?;
        Some(Box::new(move || {
            Ok(api::auth::session(&app, &sid).map_or(Principal::Anonymous, |s| s.principal))
        }))
    }

    /// Signed in with a session (a browser), not a bearer token.
    pub fn has_session(&self) -> bool {
        self.sid.is_some()
    }

    /// The session id, for `api::auth::end_session`.
    pub fn session_id(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// How the navigation names the caller ("" when signed out).
    pub fn display_name(&self) -> String {
        match &self.who {
            Principal::User(u) => u.name.clone(),
            Principal::Admin => "admin token".into(),
            Principal::Builder(id) => format!("builder {id}"),
            Principal::Anonymous => String::new(),
        }
    }

    /// Who posts an HTML form: the session's principal when the form's
    /// `csrf` field is the session's token (or any bearer caller).
    /// Otherwise the answer to send instead: without a session, to the
    /// sign-in page and back to `back`; with a wrong token, a 403 page.
    pub fn form_writer(
        &self,
        app: &App,
        csrf: &str,
        back: &str,
    ) -> Result<&Principal, Box<Response>> {
        if self.bearer {
            return Ok(&self.who);
        }
        if !self.has_session() {
            return Err(Box::new(
                Redirect::to(&format!("/login?next={}", pct(back))).into_response(),
            ));
        }
        if csrf.is_empty() || !hash_eq(csrf, &self.csrf) {
            return Err(Box::new(pages::error_page(app, self, &csrf_refusal())));
        }
        Ok(&self.who)
    }

    /// Who makes a JSON API write: a bearer caller, or a session whose
    /// request carries its CSRF token in `X-Kha-Csrf` (a cookie alone could
    /// be a forged cross-site request). Anyone else is anonymous, and the
    /// service layer says what they would need.
    pub fn api_writer(&self, headers: &HeaderMap) -> Result<&Principal, ApiError> {
        if self.bearer || !self.has_session() {
            return Ok(&self.who);
        }
        let sent = headers
            .get("x-kha-csrf")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !sent.is_empty() && hash_eq(sent, &self.csrf) {
            Ok(&self.who)
        } else {
            Err(ApiError::Denied(
                "missing or wrong X-Kha-Csrf header: send the page's CSRF token with the cookie, or use an API token".into(),
            ))
        }
    }
}

fn csrf_refusal() -> ApiError {
    ApiError::Denied(
        "this form was not sent from a kha page (missing or wrong CSRF token); reload the page and try again".into(),
    )
}

/// Who makes the request described by `headers`: a bearer token, else the
/// session cookie, else anonymous. A bearer token that is not valid is an
/// error (a program should hear that its token is wrong); a stale cookie is
/// not (the browser is simply signed out).
pub fn caller(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if let Some(t) = bearer(headers) {
        return Ok(Caller {
            who: api::auth::from_bearer(app, Some(t))?,
            csrf: String::new(),
            sid: None,
            bearer: true,
            token: Some(t.to_string()),
        });
    }
    let Some(sid) = cookie(headers, COOKIE).filter(|v| !v.is_empty()) else {
        return Ok(Caller::anonymous());
    };
    Ok(match api::auth::session(app, sid) {
        Some(s) => Caller {
            who: s.principal,
            csrf: s.csrf,
            sid: Some(sid.to_string()),
            bearer: false,
            token: None,
        },
        None => Caller::anonymous(),
    })
}

impl FromRequestParts<Arc<App>> for Caller {
    /// A wrong bearer token: a JSON error under `/api/`, a page elsewhere.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, Response> {
        caller(app, &parts.headers).map_err(|e| {
            if parts.uri.path().starts_with("/api/") {
                JsonError(e).into_response()
            } else {
                pages::error_page(app, &Caller::anonymous(), &e)
            }
        })
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

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The sign-in forms' double-submit value: the browser's `kha_pre` cookie
/// if it has a well-formed one, else a new one (and `true`: set it).
pub fn pre_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, PRE_COOKIE) {
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (v.to_string(), false)
        }
        _ => (new_token("").into_inner(), true),
    }
}

/// Whether a sign-in form's `pre` field matches the browser's cookie (so
/// the form came from a page of this site, in this browser).
pub fn pre_matches(headers: &HeaderMap, field: &str) -> bool {
    match cookie(headers, PRE_COOKIE) {
        Some(c) if !c.is_empty() => hash_eq(c, field),
        _ => false,
    }
}

/// The refusal of a sign-in form without a matching `kha_pre`.
pub fn pre_refusal() -> ApiError {
    ApiError::Denied(
        "this sign-in form was not sent from this site's sign-in page (or cookies are off); reload the page and try again".into(),
    )
}

/// How long a cookie lives: the browser session, a number of seconds, or
/// removed now.
#[derive(Debug, Clone, Copy)]
pub enum Lifetime {
    Browser,
    Secs(u64),
    Clear,
}

/// Adds a `Set-Cookie`: `HttpOnly` always (no script needs any of these),
/// `SameSite=Lax` (sent on a top-level navigation from another site, as
/// GitHub's redirect back is, never on its POSTs), `Secure` when the web
/// UI's public URL is https.
pub fn set_cookie(
    app: &App,
    r: &mut Response,
    name: &str,
    value: &str,
    path: &str,
    life: Lifetime,
) {
    let secure = if app.cfg.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let (value, age) = match life {
        Lifetime::Browser => (value, String::new()),
        Lifetime::Secs(s) => (value, format!("; Max-Age={s}")),
        Lifetime::Clear => ("", "; Max-Age=0".to_string()),
    };
    let c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax{secure}{age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Signs the browser in: the session cookie, lasting as long as the
/// session may (the server ends it sooner when idle).
pub fn start(app: &App, r: &mut Response, sid: &str) {
    let life = Lifetime::Secs(app.cfg.session_max_secs);
    set_cookie(app, r, COOKIE, sid, "/", life);
    // The sign-in form's value has done its job.
    set_cookie(app, r, PRE_COOKIE, "", "/", Lifetime::Clear);
}

/// `next` if it is a path on this server, else `/` (never an open redirect).
pub fn local_path(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if ok {
        next
    } else {
        "/"
    }
}

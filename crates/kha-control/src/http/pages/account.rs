//! `/account`: the signed-in user's own page: who they are and their roles
//! (`#me`), their API tokens (`#tokens`, rows `tr[data-token=ID]` with
//! `form.revoke-token`; `form#new-token` creates one and shows it once in
//! `#new-token-value`), a one-time code for `kha login --web`
//! (`form#cli-code`, shown in `#cli-code-value`), and their starred
//! projects (`#stars`). Pages with a secret on them are never stored by the
//! browser (`Cache-Control: no-store`).

use super::actions::act;
use super::actions::CsrfForm;
use super::{error_page, project_url, render, Chrome, When};
use crate::api::{self, ApiError};
use crate::app::App;
use crate::http::fmt;
use crate::http::session::Caller;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use kha_core::view;
use serde::Deserialize;
use std::sync::Arc;

pub struct TokenRow {
    pub id: String,
    pub path: String,
    pub name: String,
    pub created: When,
    /// "never", or the date.
    pub expires: String,
    pub used: When,
}

pub struct Star {
    pub name: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    /// None: signed in with the admin token, which has no account.
    user: Option<view::User>,
    tokens: Vec<TokenRow>,
    stars: Vec<Star>,
    /// Just created: its name and the token itself, shown this once.
    new_token: Option<(String, String)>,
    cli_code: String,
    /// The `kha login --web` command line for this server.
    web_url: String,
}

/// The page for `c`, or where to send them instead.
fn account_page(app: &App, c: &Caller) -> Result<AccountPage, Box<Response>> {
    let chrome = Chrome::new(app, c, "Account", "/account", String::new());
    let now = chrome.now;
    let web_url = api::users::whoami(app, &c.who).web_url;
    let Some(me) = c.who.user() else {
        if c.who.is_admin() {
            return Ok(AccountPage {
                chrome,
                user: None,
                tokens: vec![],
                stars: vec![],
                new_token: None,
                cli_code: String::new(),
                web_url,
            });
        }
        return Err(Box::new(
            Redirect::to("/login?next=%2Faccount").into_response(),
        ));
    };
    let found = api::users::get(app, &c.who, &me.name)
        .and_then(|u| Ok((u, api::auth::list_tokens(app, &c.who)?)));
    let (user, tokens) = found.map_err(|e| Box::new(error_page(app, c, &e)))?;
    // An admin's list holds everyone's tokens: this page shows their own
    // (the users page is where others' are managed).
    let tokens = tokens
        .into_iter()
        .filter(|t| t.user == user.name)
        .map(|t| TokenRow {
            path: fmt::pct(&t.id),
            expires: if t.expires_ms == 0 {
                "never".into()
            } else {
                fmt::iso(t.expires_ms)
            },
            created: When::ago(now, t.created_ms),
            used: When::ago(now, t.last_used_ms),
            name: t.name,
            id: t.id,
        })
        .collect();
    let stars = user
        .stars
        .iter()
        .map(|s| Star {
            name: s.clone(),
            url: project_url(s),
        })
        .collect();
    Ok(AccountPage {
        chrome,
        user: Some(user),
        tokens,
        stars,
        new_token: None,
        cli_code: String::new(),
        web_url,
    })
}

/// A page showing a secret: never cached, never stored.
fn secret_page(page: &AccountPage) -> Response {
    let mut r = render(StatusCode::OK, page);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub async fn page(State(app): State<Arc<App>>, c: Caller) -> Response {
    match account_page(&app, &c) {
        Ok(p) => render(StatusCode::OK, &p),
        Err(r) => *r,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewTokenForm {
    csrf: String,
    name: String,
    /// Days until it expires; empty or 0: never.
    days: String,
}

pub async fn create_token(
    State(app): State<Arc<App>>,
    c: Caller,
    Form(f): Form<NewTokenForm>,
) -> Response {
    let who = match c.form_writer(&app, &f.csrf, "/account") {
        Ok(who) => who,
        Err(r) => return *r,
    };
    let days = match f.days.trim() {
        "" => 0,
        d => match d.parse::<u64>() {
            Ok(d) => d,
            Err(_) => {
                let e = ApiError::Invalid("days must be a whole number (0: never)".into());
                return error_page(&app, &c, &e);
            }
        },
    };
    let expires = (days > 0).then(|| {
        app.clock
            .now()
            .saturating_add(days.saturating_mul(86_400_000))
    });
    let (t, secret) = match api::auth::create_token(&app, who, &f.name, expires).await {
        Ok(made) => made,
        Err(e) => return error_page(&app, &c, &e),
    };
    match account_page(&app, &c) {
        Ok(mut p) => {
            p.new_token = Some((t.name, secret.into_inner()));
            secret_page(&p)
        }
        Err(r) => *r,
    }
}

pub async fn revoke_token(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let app = &*app;
    act(app, &c, &f.csrf, "/account", |who| async move {
        api::auth::revoke_token(app, &who, &id)
            .await
            .map(|_| "/account".to_string())
    })
    .await
}

/// A code for `kha login --web`, shown on the account page.
pub async fn cli_code(State(app): State<Arc<App>>, c: Caller, Form(f): Form<CsrfForm>) -> Response {
    let who = match c.form_writer(&app, &f.csrf, "/account") {
        Ok(who) => who,
        Err(r) => return *r,
    };
    let code = match api::auth::cli_code(&app, who) {
        Ok(code) => code,
        Err(e) => return error_page(&app, &c, &e),
    };
    match account_page(&app, &c) {
        Ok(mut p) => {
            p.cli_code = code;
            secret_page(&p)
        }
        Err(r) => *r,
    }
}

//! `/users` (admins): every account (`#users`, rows `tr[data-user=NAME]`
//! with `.role`, `.roles`, `.status`), each with a role form (`form.role`:
//! a global role, or a role on one project), `form.disable` or
//! `form.enable`, and `form.remove`; `form#add-user` adds one (a generated
//! password is shown once in `#new-password`). The service layer refuses
//! anyone else; the page only renders what it answers.

use super::actions::act;
use super::actions::CsrfForm;
use super::{error_page, render, Chrome, When};
use crate::api::{self, ApiError};
use crate::app::App;
use crate::http::fmt;
use crate::http::session::Caller;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use kha_core::view::Role;
use serde::Deserialize;
use std::sync::Arc;

pub struct UserRow {
    pub name: String,
    /// The name escaped for a URL path.
    pub path: String,
    pub email: String,
    pub github: String,
    pub role: Role,
    /// "p: maintainer, q: viewer".
    pub roles: String,
    pub disabled: bool,
    pub has_password: bool,
    pub seen: When,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    /// Project names, for the per-project role field.
    projects: Vec<String>,
    /// Just added with a generated password: the user and it, shown once.
    new_password: Option<(String, String)>,
    roles: [Role; 4],
}

fn users_page(app: &App, c: &Caller) -> Result<UsersPage, ApiError> {
    let list = api::users::list(app, &c.who)?;
    let projects = api::projects::list(app, &c.who)?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let chrome = Chrome::new(app, c, "Users", "/users", String::new());
    let now = chrome.now;
    let users = list
        .into_iter()
        .map(|u| UserRow {
            path: fmt::pct(&u.name),
            roles: u
                .roles
                .iter()
                .map(|r| format!("{}: {}", r.project, r.role))
                .collect::<Vec<_>>()
                .join(", "),
            seen: When::ago(now, u.last_seen_ms),
            email: u.email,
            github: u.github_login,
            role: u.role,
            disabled: u.disabled,
            has_password: u.has_password,
            name: u.name,
        })
        .collect();
    Ok(UsersPage {
        chrome,
        users,
        projects,
        new_password: None,
        roles: [Role::None, Role::Viewer, Role::Maintainer, Role::Admin],
    })
}

pub async fn page(State(app): State<Arc<App>>, c: Caller) -> Response {
    match users_page(&app, &c) {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&app, &c, &e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AddForm {
    csrf: String,
    name: String,
    email: String,
    role: String,
    /// Empty: a generated one, shown once.
    password: String,
}

fn role_of(raw: &str) -> Result<Role, ApiError> {
    raw.parse().map_err(ApiError::Invalid)
}

pub async fn add(State(app): State<Arc<App>>, c: Caller, Form(f): Form<AddForm>) -> Response {
    let who = match c.form_writer(&app, &f.csrf, "/users") {
        Ok(who) => who,
        Err(r) => return *r,
    };
    let added = match role_of(&f.role) {
        Ok(role) => {
            let new = api::users::NewUser {
                name: f.name.trim().to_string(),
                password: f.password,
                role,
                email: f.email,
            };
            api::users::add(&app, who, new).await
        }
        Err(e) => Err(e),
    };
    match added {
        Ok((_, None)) => Redirect::to("/users").into_response(),
        Ok((u, Some(password))) => match users_page(&app, &c) {
            Ok(mut p) => {
                p.new_password = Some((u.name, password.into_inner()));
                let mut r = render(StatusCode::OK, &p);
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err(e) => error_page(&app, &c, &e),
        },
        Err(e) => error_page(&app, &c, &e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RoleForm {
    csrf: String,
    role: String,
    /// Empty: the global role.
    project: String,
}

pub async fn role(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(name): Path<String>,
    Form(f): Form<RoleForm>,
) -> Response {
    let app = &*app;
    act(app, &c, &f.csrf, "/users", |who| async move {
        let role = role_of(&f.role)?;
        let project = Some(f.project.trim()).filter(|p| !p.is_empty());
        api::users::set_role(app, &who, &name, project, role).await?;
        Ok("/users".to_string())
    })
    .await
}

pub async fn disable(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    set_disabled(&app, &c, &name, &f.csrf, true).await
}

pub async fn enable(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    set_disabled(&app, &c, &name, &f.csrf, false).await
}

async fn set_disabled(app: &App, c: &Caller, name: &str, csrf: &str, on: bool) -> Response {
    act(app, c, csrf, "/users", |who| async move {
        api::users::set_disabled(app, &who, name, on).await?;
        Ok("/users".to_string())
    })
    .await
}

pub async fn remove(
    State(app): State<Arc<App>>,
    c: Caller,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let app = &*app;
    act(app, &c, &f.csrf, "/users", |who| async move {
        api::users::remove(app, &who, &name).await?;
        Ok("/users".to_string())
    })
    .await
}

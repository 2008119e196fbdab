//! Accounts: add, list, show, remove, roles, disable, passwords, stars,
//! and "who am I". Admins manage everyone; a user reads themself, changes
//! their own password and follows projects.

use super::auth::{self, hash_password};
use super::{audit, projects, ApiError, Principal};
use crate::app::App;
use crate::store::records;
use kha_core::view::{self, Role};
use kha_core::Secret;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// What `add` needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewUser {
    pub name: String,
    /// Empty: a random one, returned once.
    pub password: String,
    /// The global role.
    pub role: Role,
    pub email: String,
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// Adds a user. The answer carries the password only if it was generated.
pub async fn add(
    app: &App,
    who: &Principal,
    new: NewUser,
) -> Result<(view::User, Option<Secret>), ApiError> {
    who.require_admin()?;
    create(app, who, new, "").await
}

/// `add` without the permission check (the setup link's first admin).
pub(super) async fn create(
    app: &App,
    who: &Principal,
    new: NewUser,
    how: &str,
) -> Result<(view::User, Option<Secret>), ApiError> {
    validate_name(&new.name)?;
    let generated = new.password.is_empty().then(random_password);
    let password = generated
        .as_ref()
        .map_or(new.password.as_str(), |s| s.expose());
    validate_password(password)?;
    let rec = records::User {
        name: new.name.clone(),
        email: new.email.trim().to_string(),
        password_hash: hash_password(password)?,
        github_id: 0,
        github_login: String::new(),
        role: new.role,
        roles: Default::default(),
        stars: Default::default(),
        disabled: false,
        created_ms: app.clock.now(),
        last_seen_ms: 0,
    };
    if !app.store.add_user(&rec)? {
        return Err(ApiError::Exists(format!(
            "user {} exists already",
            new.name
        )));
    }
    let detail = format!(
        "role {}{}{}",
        new.role,
        if how.is_empty() { "" } else { ", " },
        how
    );
    audit::record(app, who, "user.add", &new.name, &detail);
    app.store.durable().await?;
    Ok((user_view(rec), generated))
}

fn random_password() -> Secret {
    const A: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    Secret::new(
        (0..20)
            .map(|_| A[rng.random_range(0..A.len())] as char)
            .collect::<String>(),
    )
}

/// User names: 1–39 of `a-z 0-9 - _ .`, starting with a letter or digit
/// (GitHub's logins fit, lowercased).
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 39
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "user name {name:?}: use 1 to 39 of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
        )))
    }
}

/// A GitHub login as a valid user name.
pub(super) fn sanitize_name(login: &str) -> String {
    let s: String = login
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    let s = s.trim_start_matches(['-', '_', '.']).to_string();
    if s.is_empty() {
        "github-user".into()
    } else {
        s
    }
}

fn validate_password(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < MIN_PASSWORD {
        return Err(ApiError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD} characters"
        )));
    }
    if p.len() > 1024 {
        return Err(ApiError::Invalid(
            "a password may have at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

pub(super) fn user_view(u: records::User) -> view::User {
    view::User {
        has_password: !u.password_hash.is_empty(),
        name: u.name,
        email: u.email,
        github_login: u.github_login,
        role: u.role,
        roles: u
            .roles
            .into_iter()
            .map(|(project, role)| view::ProjectRole { project, role })
            .collect(),
        disabled: u.disabled,
        created_ms: u.created_ms,
        last_seen_ms: u.last_seen_ms,
        stars: u.stars.into_iter().collect(),
    }
}

pub fn list(app: &App, who: &Principal) -> Result<Vec<view::User>, ApiError> {
    who.require_admin()?;
    Ok(app.store.list_users()?.into_iter().map(user_view).collect())
}

/// A user: admins see anyone, users themselves.
pub fn get(app: &App, who: &Principal, name: &str) -> Result<view::User, ApiError> {
    if who.user().map(|u| u.name.as_str()) != Some(name) {
        who.require_admin()?;
    }
    Ok(user_view(record(app, name)?))
}

fn record(app: &App, name: &str) -> Result<records::User, ApiError> {
    app.store
        .get_user(name)?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?} (see `kha user list`)")))
}

/// Removes a user; their sessions and tokens end at once.
pub async fn remove(app: &App, who: &Principal, name: &str) -> Result<(), ApiError> {
    who.require_admin()?;
    record(app, name)?;
    // The record first: a sign-in racing this finds no user.
    app.store.remove_user(name)?;
    auth::end_everything_of(app, name)?;
    audit::record(app, who, "user.remove", name, "");
    app.store.durable().await?;
    Ok(())
}

/// Sets a user's global role (`project` None) or their role on one
/// project (`Role::None` removes it).
pub async fn set_role(
    app: &App,
    who: &Principal,
    name: &str,
    project: Option<&str>,
    role: Role,
) -> Result<view::User, ApiError> {
    who.require_admin()?;
    if let Some(p) = project {
        if role == Role::Admin {
            return Err(ApiError::Invalid(
                "admin is a global role: give it without a project".into(),
            ));
        }
        projects::record(app, p)?;
    }
    let u = app
        .store
        .update_user(name, |mut u| {
            match project {
                None => u.role = role,
                Some(p) if role == Role::None => {
                    u.roles.remove(p);
                }
                Some(p) => {
                    u.roles.insert(p.to_string(), role);
                }
            }
            Some(u)
        })?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?} (see `kha user list`)")))?;
    let detail = match project {
        None => format!("global role {role}"),
        Some(p) => format!("{role} on {p}"),
    };
    audit::record(app, who, "user.role", name, &detail);
    app.store.durable().await?;
    Ok(user_view(u))
}

/// Disables (or enables again) a user; disabling ends their sessions and
/// tokens at once.
pub async fn set_disabled(
    app: &App,
    who: &Principal,
    name: &str,
    disabled: bool,
) -> Result<view::User, ApiError> {
    who.require_admin()?;
    let u = app
        .store
        .update_user(name, |mut u| {
            u.disabled = disabled;
            Some(u)
        })?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?} (see `kha user list`)")))?;
    if disabled {
        auth::end_everything_of(app, name)?;
    }
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    audit::record(app, who, action, name, "");
    app.store.durable().await?;
    Ok(user_view(u))
}

/// Sets a password: an admin for anyone, a user for themself. When an
/// admin resets someone else's, that user's sessions and tokens end too
/// (a reset usually means the account was at risk).
pub async fn set_password(
    app: &App,
    who: &Principal,
    name: &str,
    password: &str,
) -> Result<(), ApiError> {
    if who.user().map(|u| u.name.as_str()) != Some(name) {
        who.require_admin()?;
    }
    validate_password(password)?;
    let h = hash_password(password)?;
    app.store
        .update_user(name, |mut u| {
            u.password_hash = h.clone();
            Some(u)
        })?
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?}")))?;
    if who.user().map(|u| u.name.as_str()) != Some(name) {
        auth::end_everything_of(app, name)?;
    }
    audit::record(app, who, "user.password", name, "");
    app.store.durable().await?;
    Ok(())
}

/// Who the caller is.
pub fn whoami(app: &App, who: &Principal) -> view::Whoami {
    let (name, kind, role, roles, stars) = match who {
        Principal::User(u) => (
            u.name.clone(),
            "user",
            u.role,
            u.roles
                .iter()
                .map(|(p, r)| view::ProjectRole {
                    project: p.clone(),
                    role: *r,
                })
                .collect(),
            u.stars.iter().cloned().collect(),
        ),
        Principal::Admin => (String::new(), "admin token", Role::Admin, vec![], vec![]),
        Principal::Builder(id) => (id.clone(), "builder", Role::None, vec![], vec![]),
        Principal::Anonymous => (String::new(), "anonymous", Role::None, vec![], vec![]),
    };
    view::Whoami {
        name,
        kind: kind.into(),
        role,
        roles,
        stars,
        web_url: app.web_url(),
    }
}

/// Follows (or stops following) a project the caller can see.
pub async fn star(app: &App, who: &Principal, project: &str, on: bool) -> Result<(), ApiError> {
    let Some(u) = who.user() else {
        return Err(ApiError::Unauthenticated(
            "sign in as a user to star projects".into(),
        ));
    };
    projects::visible(app, who, project)?;
    app.store.update_user(&u.name, |mut r| {
        let changed = if on {
            r.stars.insert(project.to_string())
        } else {
            r.stars.remove(project)
        };
        changed.then_some(r)
    })?;
    app.store.durable().await?;
    Ok(())
}

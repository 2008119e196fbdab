//! Projects: add (with the defaults a new project gets), list, show, remove.

use super::{views, ApiError, Principal};
use crate::app::App;
use crate::auth;
use crate::store::records::{self, Credentials, Secret};
use kha_core::view;
use serde::{Deserialize, Serialize};

/// What `add` needs; empty or 0 fields take their defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewProject {
    pub name: String,
    pub repo_url: String,
    /// Empty: "master" if the repository has it, else "main".
    pub default_branch: String,
    /// 0: the control node's default.
    pub timeout_secs: u64,
    /// Empty: "default".
    pub image: String,
    /// 0: 60 s (unless `no_poll`).
    pub poll_interval_secs: u64,
    pub no_poll: bool,
    pub build_tags: bool,
    pub cancel_superseded: bool,
    /// Empty: derived from a github.com URL.
    pub github_repo: String,
    pub credential_username: String,
    pub credential_password: String,
}

/// Adds a project; the answer carries its webhook secret, shown only here.
pub async fn add(app: &App, who: &Principal, r: NewProject) -> Result<view::Project, ApiError> {
    who.require_admin()?;
    kha_core::validate_project_name(&r.name).map_err(ApiError::Invalid)?;
    if r.repo_url.trim().is_empty() {
        return Err(ApiError::Invalid(
            "repo_url is empty: give the URL to build".into(),
        ));
    }
    let exists = || ApiError::Exists(format!("project {:?} exists already", r.name));
    if app.store.get_project(&r.name)?.is_some() {
        return Err(exists());
    }
    let credentials = (!r.credential_username.is_empty() || !r.credential_password.is_empty())
        .then(|| Credentials {
            username: r.credential_username.clone(),
            password: Secret::new(r.credential_password.clone()),
        });
    let default_branch = if r.default_branch.is_empty() {
        let (m, n, u, c) = (
            app.vcs.clone(),
            r.name.clone(),
            r.repo_url.clone(),
            credentials.clone(),
        );
        tokio::task::spawn_blocking(move || m.default_branch(&n, &u, c.as_ref()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Invalid(format!("{e}; check the URL")))?
    } else {
        r.default_branch
    };
    let p = records::Project {
        name: r.name.clone(),
        repo_url: r.repo_url.clone(),
        default_branch,
        timeout_secs: match r.timeout_secs {
            0 => app.cfg.job_timeout_secs,
            n => n,
        },
        image: if r.image.is_empty() {
            "default".into()
        } else {
            r.image
        },
        created_ms: app.clock.now(),
        poll_interval_secs: match (r.no_poll, r.poll_interval_secs) {
            (true, _) => 0,
            (false, 0) => 60,
            (false, n) => n,
        },
        build_tags: r.build_tags,
        cancel_superseded: r.cancel_superseded,
        github_repo: if r.github_repo.is_empty() {
            github_repo_of(&r.repo_url).unwrap_or_default()
        } else {
            r.github_repo
        },
        webhook_secret: auth::new_token("khaw_"),
        credentials,
    };
    if !app.store.add_project(&p)? {
        return Err(exists());
    }
    app.store.durable().await?;
    let secret = p.webhook_secret.expose().to_string();
    let mut v = views::project(p);
    v.webhook_secret = secret;
    Ok(v)
}

pub fn list(app: &App, who: &Principal) -> Result<Vec<view::Project>, ApiError> {
    who.require_reader()?;
    Ok(app
        .store
        .list_projects()?
        .into_iter()
        .map(views::project)
        .collect())
}

pub fn get(app: &App, who: &Principal, name: &str) -> Result<view::Project, ApiError> {
    who.require_reader()?;
    Ok(views::project(record(app, name)?))
}

pub async fn remove(app: &App, who: &Principal, name: &str) -> Result<(), ApiError> {
    who.require_admin()?;
    if !app.store.remove_project(name)? {
        return Err(not_found(name));
    }
    app.store.durable().await?;
    Ok(())
}

/// The stored project, or a NotFound that says how to list them.
pub(super) fn record(app: &App, name: &str) -> Result<records::Project, ApiError> {
    app.store.get_project(name)?.ok_or_else(|| not_found(name))
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no project {name:?} (see `kha project list`)"))
}

/// "owner/name" of a github.com URL (https, ssh or git form).
pub fn github_repo_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("http://github.com/"))
        .or_else(|| url.strip_prefix("git@github.com:"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))
        .or_else(|| url.strip_prefix("git://github.com/"))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    (rest.split('/').count() == 2).then(|| rest.to_string())
}

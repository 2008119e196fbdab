//! Builds: trigger one (from the CLI or the API), list a project's builds,
//! show one (or one of its jobs), the pull requests built, restart a
//! finished one, cancel one.

use super::{paging, projects, views, ApiError, Principal};
use crate::app::App;
use crate::store::records;
use crate::trigger::{self, Request, Triggered};
use kha_core::view::{self, BuildPage};
use kha_core::{BuildId, JobId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TriggerArgs {
    pub project: String,
    /// Empty: the project's default branch.
    pub branch: String,
    /// Empty: the branch's head; else a full or abbreviated commit id.
    pub commit: String,
    /// Build even if built already, skip-marked or filtered out.
    pub force: bool,
}

/// A build, and whether this call created it (false: the same commit was
/// built already and that build is returned).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerOutcome {
    pub build: view::Build,
    pub created: bool,
}

pub async fn trigger(
    app: &App,
    who: &Principal,
    r: TriggerArgs,
) -> Result<TriggerOutcome, ApiError> {
    who.require_admin()?;
    let p = projects::record(app, &r.project)?;
    let branch = if r.branch.is_empty() {
        p.default_branch.clone()
    } else {
        r.branch
    };
    let mut req = Request::new(&p.name, &branch, "api");
    req.commit = (!r.commit.is_empty()).then_some(r.commit);
    req.force = r.force;
    let (build, created) = match app.triggers.trigger(&p, &req).await? {
        Triggered::Created(b) => (b, true),
        Triggered::Existing(b) => (b, false),
        Triggered::NotBuilt { commit, why } => {
            return Err(ApiError::Precondition(format!(
                "commit {} of {branch} was not built: {}; use --force to build it anyway",
                trigger::short(&commit),
                if why == "skipped" {
                    "its message has a skip marker"
                } else {
                    "the branch filters of its .travis.yml exclude this branch"
                }
            )))
        }
    };
    Ok(TriggerOutcome {
        build: views::build(app, build)?,
        created,
    })
}

/// A project's builds (of one branch, if given), newest first.
pub fn list(
    app: &App,
    who: &Principal,
    project: &str,
    branch: Option<&str>,
    page: u32,
    per_page: u32,
) -> Result<BuildPage, ApiError> {
    who.require_reader()?;
    projects::record(app, project)?;
    let (page, per_page) = paging(page, per_page)?;
    let (builds, total) = app.store.list_builds(project, branch, page, per_page)?;
    let builds = builds
        .into_iter()
        .map(|b| views::build(app, b))
        .collect::<Result<_, _>>()?;
    Ok(BuildPage {
        builds,
        total,
        page,
        per_page,
    })
}

/// How many of a project's newest builds are searched for pull requests.
const PULLS_SCAN: usize = 1000;

/// The newest build of each pull request among the project's newest
/// builds, newest first.
pub fn pull_requests(
    app: &App,
    who: &Principal,
    project: &str,
) -> Result<Vec<view::Build>, ApiError> {
    who.require_reader()?;
    projects::record(app, project)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for id in app.store.project_build_ids(project).take(PULLS_SCAN) {
        let Some(b) = app.store.get_build(id?)? else {
            continue;
        };
        if b.pr_number > 0 && seen.insert(b.pr_number) {
            out.push(views::build(app, b)?);
        }
    }
    Ok(out)
}

pub fn get(app: &App, who: &Principal, id: BuildId) -> Result<view::Build, ApiError> {
    who.require_reader()?;
    views::build(app, record(app, id)?)
}

/// Runs every job of a finished build again.
pub async fn restart(app: &App, who: &Principal, id: BuildId) -> Result<view::Build, ApiError> {
    who.require_admin()?;
    let b = record(app, id)?;
    if !b.state.is_final() {
        return Err(ApiError::Precondition(format!(
            "build {} is {}: cancel it or wait for it before restarting",
            b.id, b.state
        )));
    }
    if !b.error.is_empty() {
        return Err(ApiError::Precondition(format!(
            "build {} could not be set up ({}); fix it and trigger a new build",
            b.id, b.error
        )));
    }
    app.sched.restart_build(&b).await?;
    views::build(app, record(app, id)?)
}

/// Cancels queued jobs at once and asks builders to stop running ones.
pub async fn cancel(app: &App, who: &Principal, id: BuildId) -> Result<view::Build, ApiError> {
    who.require_admin()?;
    let b = record(app, id)?;
    for &j in &b.jobs {
        app.sched.cancel_job(j).await?;
    }
    views::build(app, record(app, id)?)
}

/// One job, with why it waits if it is queued.
pub fn job(app: &App, who: &Principal, id: JobId) -> Result<view::Job, ApiError> {
    who.require_reader()?;
    let j = app
        .store
        .get_job(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    Ok(views::job(app, j))
}

fn record(app: &App, id: BuildId) -> Result<records::Build, ApiError> {
    app.store
        .get_build(id)?
        .ok_or_else(|| ApiError::NotFound(format!("no build {id}")))
}

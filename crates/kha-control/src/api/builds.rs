//! Builds: trigger one (from the CLI or the API), list a project's builds,
//! show one (or one of its jobs), the pull requests built, restart a
//! finished one, cancel one.

use super::{audit, paging, projects, views, ApiError, Principal};
use crate::app::App;
use crate::store::records;
use crate::trigger::{self, Request, Triggered};
use kha_core::view::{self, BuildPage, Role};
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
    let p = projects::record(app, &r.project)?;
    who.require(
        &p,
        Role::Maintainer,
        &format!("triggering a build of {}", p.name),
    )?;
    let branch = if r.branch.is_empty() {
        p.default_branch.clone()
    } else {
        r.branch
    };
    if branch.is_empty() {
        return Err(ApiError::Invalid(format!(
            "{} has no default branch yet (its repository was empty when it was added): name the branch to build",
            p.name
        )));
    }
    let mut req = Request::new(&p.name, &branch, "api");
    req.commit = (!r.commit.is_empty()).then_some(r.commit);
    req.force = r.force;
    if let Principal::User(u) = who {
        req.sender = u.name.clone();
    }
    let outcome = app.triggers.trigger(&p, &req).await?;
    if let Triggered::Created(b) = &outcome {
        let detail = format!("{} {}", b.branch, trigger::short(&b.commit));
        audit::record(
            app,
            who,
            "build.trigger",
            &format!("{}#{}", p.name, b.id),
            &detail,
        );
        app.store.durable().await?;
    }
    let (build, created) = match outcome {
        Triggered::Created(b) => (b, true),
        Triggered::Existing(b) => (b, false),
        Triggered::NotBuilt { commit, why } => {
            return Err(ApiError::Precondition(format!(
                "commit {} of {branch} was not built: {}; use --force to build it anyway",
                trigger::short(&commit),
                match why {
                    "skipped" => "its message has a skip marker",
                    "condition" => "the `if:` condition of its .travis.yml is false for this build",
                    _ => "the branch filters of its .travis.yml exclude this branch",
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
    projects::visible(app, who, project)?;
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
    projects::visible(app, who, project)?;
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
    views::build(app, record(app, who, id, Role::Viewer, "")?)
}

/// What a build's buttons, and the JSON API's POSTs on a build, do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildAction {
    Restart,
    Prioritize,
    Cancel,
}

/// Does `action` to build `id` as `who`.
pub async fn act(
    app: &App,
    who: &Principal,
    id: BuildId,
    action: BuildAction,
) -> Result<view::Build, ApiError> {
    match action {
        BuildAction::Restart => restart(app, who, id).await,
        BuildAction::Prioritize => prioritize(app, who, id).await,
        BuildAction::Cancel => cancel(app, who, id).await,
    }
}

/// Runs every job of a finished build again.
pub async fn restart(app: &App, who: &Principal, id: BuildId) -> Result<view::Build, ApiError> {
    let b = record(app, who, id, Role::Maintainer, "restarting")?;
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
    audit::record(
        app,
        who,
        "build.restart",
        &format!("{}#{}", b.project, b.id),
        "",
    );
    app.store.durable().await?;
    views::build(app, record(app, who, id, Role::Viewer, "")?)
}

/// Runs a build's waiting jobs next: ahead of the other jobs of its
/// project, and ahead of the other projects' turns.
pub async fn prioritize(app: &App, who: &Principal, id: BuildId) -> Result<view::Build, ApiError> {
    let b = record(app, who, id, Role::Maintainer, "prioritizing")?;
    if b.state.is_final() {
        return Err(ApiError::Precondition(format!(
            "build {} is {}: nothing of it waits",
            b.id, b.state
        )));
    }
    let now = app.sched.clock.now();
    let mut moved = Vec::new();
    for &j in &b.jobs {
        let r = app.store.transition(j, now, |job| {
            if !job.state.is_pending() {
                return Err(crate::store::StoreError::Rejected(format!(
                    "job {} is {}",
                    job.id, job.state
                )));
            }
            job.priority = kha_core::priority::NEXT;
            Ok((
                crate::store::LeaseEffect::Keep,
                crate::store::QueueEffect::Keep,
            ))
        });
        match r {
            Ok(_) => moved.push(j),
            // Running or over already: it has nothing to wait for.
            Err(crate::store::StoreError::Rejected(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    app.store.durable().await?;
    app.sched.reprioritize(&moved, kha_core::priority::NEXT);
    audit::record(
        app,
        who,
        "build.prioritize",
        &format!("{}#{}", b.project, b.id),
        &format!("{} jobs", moved.len()),
    );
    views::build(app, record(app, who, id, Role::Viewer, "")?)
}

/// Cancels queued jobs at once and asks builders to stop running ones.
pub async fn cancel(app: &App, who: &Principal, id: BuildId) -> Result<view::Build, ApiError> {
    let b = record(app, who, id, Role::Maintainer, "canceling")?;
    for &j in &b.jobs {
        app.sched.cancel_job(j).await?;
    }
    audit::record(
        app,
        who,
        "build.cancel",
        &format!("{}#{}", b.project, b.id),
        "",
    );
    app.store.durable().await?;
    views::build(app, record(app, who, id, Role::Viewer, "")?)
}

/// One job, with why it waits if it is queued.
pub fn job(app: &App, who: &Principal, id: JobId) -> Result<view::Job, ApiError> {
    Ok(views::job(app, job_record(app, who, id)?))
}

/// A job the caller may read; NotFound (as if missing) for a job of a
/// project they cannot see.
pub(super) fn job_record(app: &App, who: &Principal, id: JobId) -> Result<records::Job, ApiError> {
    let missing = || ApiError::NotFound(format!("no job {id}"));
    let j = app.store.get_job(id)?.ok_or_else(missing)?;
    match app.store.get_project(&j.project)? {
        Some(p) if who.can_see(&p) => Ok(j),
        _ if who.is_admin() => Ok(j),
        _ => Err(missing()),
    }
}

/// A build, if the caller has `need` on its project (`doing` names what
/// for the refusal: "restarting"). A build of a project the caller cannot
/// see is not found, as if missing.
fn record(
    app: &App,
    who: &Principal,
    id: BuildId,
    need: Role,
    doing: &str,
) -> Result<records::Build, ApiError> {
    let missing = || ApiError::NotFound(format!("no build {id}"));
    let b = app.store.get_build(id)?.ok_or_else(missing)?;
    let Some(p) = app.store.get_project(&b.project)? else {
        // The project was removed: only an admin still reads its builds.
        return if who.is_admin() {
            Ok(b)
        } else {
            Err(missing())
        };
    };
    if !who.can_see(&p) {
        return Err(missing());
    }
    who.require(&p, need, &format!("{doing} build {id}"))?;
    Ok(b)
}

//! Scheduled builds (Travis's cron, `kha cron`): add one to a project's
//! branch (maintainers, like the project's other settings), list them
//! (whoever sees the project), remove one (maintainers). They run in
//! `trigger::cron`.

use super::{audit, projects, ApiError, Principal, Visibility};
use crate::app::App;
use crate::store::records;
use kha_core::schedule::Cadence;
use kha_core::view::{self, Role};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewSchedule {
    pub project: String,
    pub branch: String,
    /// "daily", "weekly" or "monthly"; or empty, with `cron`.
    pub interval: String,
    /// Five fields (minute hour day-of-month month day-of-week), UTC.
    pub cron: String,
    pub dont_run_if_recent_build_exists: bool,
}

pub fn view(s: records::Schedule) -> view::Schedule {
    view::Schedule {
        id: s.id,
        project: s.project,
        branch: s.branch,
        interval: s.interval,
        cron: s.cron,
        dont_run_if_recent_build_exists: s.dont_run_if_recent_build_exists,
        created_ms: s.created_ms,
        next_run_ms: s.next_run_ms,
        last_run_ms: s.last_run_ms,
        last_outcome: s.last_outcome,
        last_build_id: s.last_build,
    }
}

pub async fn add(app: &App, who: &Principal, r: NewSchedule) -> Result<view::Schedule, ApiError> {
    let p = projects::record(app, &r.project)?;
    who.require(
        &p,
        Role::Maintainer,
        &format!("scheduling builds of {}", p.name),
    )?;
    kha_core::validate_ref_name(&r.branch).map_err(ApiError::Invalid)?;
    let cadence = Cadence::new(&r.interval, &r.cron).map_err(ApiError::Invalid)?;
    let now = app.clock.now();
    let mut s = records::Schedule {
        id: 0,
        project: p.name.clone(),
        branch: r.branch,
        interval: r.interval.trim().to_string(),
        cron: r.cron.trim().to_string(),
        dont_run_if_recent_build_exists: r.dont_run_if_recent_build_exists,
        created_ms: now,
        next_run_ms: cadence.first_run(now),
        last_run_ms: 0,
        last_outcome: String::new(),
        last_build: 0,
    };
    app.store.add_schedule(&mut s)?;
    let s = view(s);
    audit::record(
        app,
        who,
        "cron.add",
        &format!("{}#cron{}", p.name, s.id),
        &format!(
            "{} {}{}",
            s.branch,
            s.cadence(),
            if s.dont_run_if_recent_build_exists {
                " dont_run_if_recent_build_exists"
            } else {
                ""
            }
        ),
    );
    app.store.durable().await?;
    Ok(s)
}

/// A project's schedules, or (no project) those of every project the
/// caller sees; oldest first.
pub fn list(
    app: &App,
    who: &Principal,
    project: Option<&str>,
) -> Result<Vec<view::Schedule>, ApiError> {
    if let Some(name) = project {
        projects::visible(app, who, name)?;
    }
    let mut seen = Visibility::new(app, who);
    let mut out = Vec::new();
    for s in app.store.list_schedules()? {
        if project.is_some_and(|p| p != s.project) || !seen.project(&s.project)? {
            continue;
        }
        out.push(view(s));
    }
    Ok(out)
}

pub async fn remove(app: &App, who: &Principal, id: u64) -> Result<view::Schedule, ApiError> {
    let missing = || ApiError::NotFound(format!("no schedule {id} (see `kha cron list`)"));
    let s = app.store.get_schedule(id)?.ok_or_else(missing)?;
    match app.store.get_project(&s.project)? {
        // A schedule the caller may not see is missing to them.
        Some(p) if !who.can_see(&p) => return Err(missing()),
        Some(p) => who.require(
            &p,
            Role::Maintainer,
            &format!("removing a schedule of {}", p.name),
        )?,
        None => who.require_admin()?,
    }
    let s = app.store.remove_schedule(id)?.ok_or_else(missing)?;
    audit::record(
        app,
        who,
        "cron.remove",
        &format!("{}#cron{}", s.project, s.id),
        &s.branch,
    );
    app.store.durable().await?;
    Ok(view(s))
}

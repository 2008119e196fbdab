//! `/builds/{id}`: the build's state (`#build[data-state]`), its commit
//! (`#commit`), what started it (`#trigger`), its jobs grouped by stage
//! (`#jobs`, allowed failures apart in `#jobs-allowed`), the `.travis.yml`
//! warnings (`#warnings`), the priority of its waiting jobs (`#priority`),
//! and restart, run next and cancel forms for its maintainers.

use super::{error_page, parse_id, project_url, render, trigger_of, BuildRow, Chrome};
use crate::api::{self, ApiError};
use crate::app::App;
use crate::http::fmt;
use crate::http::session::Caller;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use kha_core::view::{self, Role};
use kha_core::Millis;
use std::sync::Arc;

pub struct JobRow {
    pub id: u64,
    pub number: String,
    pub name: String,
    pub matrix: String,
    pub state: &'static str,
    pub duration: String,
    pub running_since: Millis,
    pub builder: String,
    pub detail: String,
    pub allow_failure: bool,
}

pub struct Stage {
    pub name: String,
    /// `waiting` while none of its jobs may run yet, else the build rule's
    /// word over its jobs.
    pub state: &'static str,
    pub jobs: Vec<JobRow>,
}

#[derive(Template)]
#[template(path = "build.html")]
struct BuildPage {
    chrome: Chrome,
    b: view::Build,
    row: BuildRow,
    project_url: String,
    commit_url: String,
    /// `r42` for a Subversion revision.
    commit: String,
    trigger: String,
    stages: Vec<Stage>,
    allowed: Vec<JobRow>,
    can_restart: bool,
    can_cancel: bool,
    /// The caller is a maintainer of the project: the buttons are theirs.
    maintainer: bool,
    /// How soon its waiting jobs run (empty when none waits): "run next"
    /// once a maintainer has asked for it.
    priority: &'static str,
}

/// A waiting job's priority as the build page words it.
fn priority_shown(name: &str) -> &'static str {
    match name {
        "next" => "run next",
        "default-branch" => "default branch",
        "low" => "low (pull request)",
        _ => "normal",
    }
}

pub fn job_row(now: Millis, b: &view::Build, j: &view::Job) -> JobRow {
    let running = !j.state.is_final() && j.started_ms > 0;
    JobRow {
        id: j.id,
        number: format!("{}.{}", b.id, j.number),
        name: j.name.clone(),
        matrix: j
            .matrix
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        state: j.state.as_str(),
        duration: match (j.started_ms, j.finished_ms) {
            (0, _) => String::new(),
            (s, 0) => fmt::duration(now.saturating_sub(s)),
            (s, f) => fmt::duration(f.saturating_sub(s)),
        },
        running_since: if running { j.started_ms } else { 0 },
        builder: j.builder.clone(),
        detail: j.detail.clone(),
        allow_failure: j.allow_failure,
    }
}

pub async fn page(State(app): State<Arc<App>>, c: Caller, Path(raw): Path<String>) -> Response {
    match build_page(&app, &c, &raw) {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => error_page(&app, &c, &e),
    }
}

fn build_page(app: &App, c: &Caller, raw: &str) -> Result<BuildPage, ApiError> {
    let id = parse_id("build", raw)?;
    let b = api::builds::get(app, &c.who, id)?;
    let p = api::projects::get(app, &c.who, &b.project)?;
    let chrome = Chrome::new(
        app,
        c,
        &format!("Build #{} of {}", b.id, b.project),
        &format!("/builds/{id}"),
        format!("build={id}"),
    );
    let now = chrome.now;
    let mut stages: Vec<Stage> = b
        .stages
        .iter()
        .map(|name| Stage {
            name: name.clone(),
            state: "",
            jobs: vec![],
        })
        .collect();
    let mut members: Vec<Vec<(kha_core::JobState, bool)>> = vec![vec![]; stages.len()];
    let mut allowed = vec![];
    for j in &b.jobs {
        let row = job_row(now, &b, j);
        // With stages, an allowed failure shows in its stage (it runs
        // with it); without, apart.
        if j.allow_failure && b.stages.is_empty() {
            allowed.push(row);
            continue;
        }
        let i = if b.stages.is_empty() {
            stages.iter().position(|s| s.name == j.stage)
        } else {
            Some(kha_core::stages::stage_index(&b.stages, &j.stage)).filter(|&i| i < stages.len())
        };
        let i = i.unwrap_or_else(|| {
            stages.push(Stage {
                name: j.stage.clone(),
                state: "",
                jobs: vec![],
            });
            members.push(vec![]);
            stages.len() - 1
        });
        stages[i].jobs.push(row);
        members[i].push((j.state, j.allow_failure));
    }
    for (s, m) in stages.iter_mut().zip(&members) {
        s.state = kha_core::stages::stage_state(m, b.fast_finish);
    }
    stages.retain(|s| !s.jobs.is_empty());
    // GitHub knows git commits only.
    let commit_url = if p.github_repo.is_empty() || p.vcs != kha_core::spec::VcsKind::Git {
        String::new()
    } else {
        format!(
            "https://github.com/{}/commit/{}",
            p.github_repo,
            fmt::pct(&b.commit)
        )
    };
    let priority = b
        .jobs
        .iter()
        .find(|j| j.state == kha_core::JobState::Queued)
        .map_or("", |j| priority_shown(&j.priority));
    Ok(BuildPage {
        priority,
        row: BuildRow::new(now, &b),
        project_url: project_url(&b.project),
        commit_url,
        commit: kha_core::spec::display_commit(&b.commit),
        trigger: trigger_of(&b),
        stages,
        allowed,
        can_restart: b.state.is_final() && b.error.is_empty(),
        can_cancel: !b.state.is_final(),
        maintainer: c.who.role_on_view(&p) >= Role::Maintainer,
        chrome,
        b,
    })
}

//! Records (what sled keeps) to views (what callers see): secrets and
//! internals stay behind, live facts (a running job's log length, why a
//! queued job waits, whether a builder is connected) are filled in.

use super::ApiError;
use crate::app::App;
use crate::store::records;
use kha_core::view::{self, BuilderState, MatrixValue};
use kha_core::JobState;

pub fn project(p: records::Project) -> view::Project {
    view::Project {
        has_credentials: p.credentials.is_some(),
        name: p.name,
        repo_url: p.repo_url,
        default_branch: p.default_branch,
        timeout_secs: p.timeout_secs,
        image: p.image,
        created_ms: p.created_ms,
        poll_interval_secs: p.poll_interval_secs,
        build_tags: p.build_tags,
        cancel_superseded: p.cancel_superseded,
        github_repo: p.github_repo,
        webhook_secret: String::new(),
        private: p.private,
        vcs: p.vcs,
        module: p.module,
        layout: p.layout,
        share_secrets_with_forks: p.share_secrets_with_forks,
        job_limits: p.job_limits,
        max_running_jobs: p.max_running_jobs,
        one_build_per_branch: p.one_build_per_branch,
        log_keep_builds: p.log_keep_builds,
        log_max_age_days: p.log_max_age_days,
    }
}

pub fn build(app: &App, b: records::Build) -> Result<view::Build, ApiError> {
    let mut records = Vec::with_capacity(b.jobs.len());
    for &id in &b.jobs {
        if let Some(j) = app.store.get_job(id)? {
            records.push(j);
        }
    }
    // Why its queued jobs wait, asked once for all of them.
    let waiting: Vec<_> = records
        .iter()
        .filter(|j| asks_why(j))
        .map(|j| j.id)
        .collect();
    let mut whys = app.sched.why_waiting_many(&waiting).into_iter();
    let jobs: Vec<view::Job> = records
        .into_iter()
        .map(|j| {
            let why = if asks_why(&j) {
                whys.next().flatten()
            } else {
                None
            };
            job_view(app, j, why)
        })
        .collect();
    let started_ms = jobs
        .iter()
        .map(|j| j.started_ms)
        .filter(|&t| t > 0)
        .min()
        .unwrap_or(0);
    Ok(view::Build {
        started_ms,
        author: b.author,
        tag: b.tag,
        id: b.id,
        project: b.project,
        branch: b.branch,
        commit: b.commit,
        message: b.message,
        state: b.state,
        created_ms: b.created_ms,
        finished_ms: b.finished_ms,
        jobs,
        warnings: b.warnings,
        error: b.error,
        stages: b.stages,
        pr_number: b.pr_number,
        event: b.event,
        fast_finish: b.fast_finish,
        deliveries: app
            .store
            .build_deliveries(b.id)?
            .into_iter()
            .map(|d| view::Delivery {
                id: d.id,
                channel: d.target.channel(),
                target: d.target.describe(),
                event: d.notice.event,
                state: d.state.as_str().into(),
                attempts: d.attempts,
                answer: d.answer,
                created_ms: d.created_ms,
                updated_ms: d.updated_ms,
                next_ms: d.next_ms,
            })
            .collect(),
    })
}

pub fn job(app: &App, j: records::Job) -> view::Job {
    let why = if asks_why(&j) {
        app.sched.why_waiting(j.id)
    } else {
        None
    };
    job_view(app, j, why)
}

/// A queued job without a reason of its own: the view says why it waits.
fn asks_why(j: &records::Job) -> bool {
    j.state == JobState::Queued && j.detail.is_empty()
}

/// The view of a job, with why it waits when it is queued (`why`, from the
/// scheduler).
fn job_view(app: &App, j: records::Job, why: Option<String>) -> view::Job {
    let mut detail = j.detail;
    if let Some(why) = why.filter(|w| !w.is_empty()) {
        detail = format!("waiting: {why}");
    }
    let log_len = if j.state.is_final() {
        j.log_len
    } else {
        app.logs.len(j.id)
    };
    // Only a job run more than once can have them: no look at the disk
    // for the others.
    let earlier_logs = if j.attempts > 1 {
        app.logs
            .attempts(j.id)
            .into_iter()
            .map(|(attempt, bytes)| view::AttemptLog { attempt, bytes })
            .collect()
    } else {
        vec![]
    };
    view::Job {
        earlier_logs,
        priority: kha_core::priority::name(j.priority).into(),
        id: j.id,
        build_id: j.build,
        number: j.number,
        state: j.state,
        epoch: j.epoch,
        attempts: j.attempts,
        builder: j.builder,
        started_ms: j.started_ms,
        finished_ms: j.finished_ms,
        log_len,
        // Encrypted entries as Travis shows them, not in their stored form.
        env: j
            .spec
            .env
            .iter()
            .map(|l| kha_core::travis::secure::shown(l).to_string())
            .collect(),
        allow_failure: j.allow_failure,
        detail,
        requires: j.requires.to_vec(),
        matrix: j
            .matrix
            .into_iter()
            .map(|(k, v)| MatrixValue::new(k, v))
            .collect(),
        name: j.name,
        stage: j.stage,
    }
}

/// The branch of a job's build ("" if the build is gone).
pub fn branch_of(app: &App, j: &records::Job) -> Result<String, ApiError> {
    Ok(app
        .store
        .get_build(j.build)?
        .map(|b| b.branch)
        .unwrap_or_default())
}

pub fn builder(app: &App, b: records::Builder) -> view::Builder {
    let live = app.sched.sessions_view();
    let s = live.get(&b.id);
    let state = match (b.revoked, s) {
        (true, _) => BuilderState::Revoked,
        (false, Some(s)) if s.draining || b.draining => BuilderState::Draining,
        (false, Some(_)) => BuilderState::Connected,
        (false, None) => BuilderState::Offline,
    };
    view::Builder {
        state,
        labels: s.map(|s| s.labels.clone()).unwrap_or(b.labels),
        slots: s.map(|s| s.slots).unwrap_or(b.slots),
        running_jobs: s.map(|s| s.running.clone()).unwrap_or_default(),
        last_seen_ms: if s.is_some() {
            app.clock.now()
        } else {
            b.last_seen_ms
        },
        version: b.version,
        trusted: b.trusted,
        id: b.id,
        name: b.name,
    }
}

pub fn token(t: records::EnrolmentToken) -> view::EnrolmentToken {
    view::EnrolmentToken {
        id: t.id,
        token: String::new(),
        description: t.description,
        created_ms: t.created_ms,
        revoked: t.revoked,
    }
}

//! Turning "build this project at this branch or commit" into a build: read
//! `.travis.yml` at the commit from the project's mirror, expand it, and
//! write the build and its jobs in one transaction. A configuration that
//! cannot be read gives an errored build whose log says why.

use crate::scheduler::{SchedError, Scheduler};
use crate::store::records::{Build, Job, JobSpec, Project};
use crate::vcs::{Mirrors, VcsError};
use kha_core::{travis, BuildState, JobState, Labels};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Vcs(#[from] VcsError),
    #[error(transparent)]
    Sched(#[from] SchedError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub struct Triggered {
    pub build: Build,
    pub created: bool,
}

pub async fn trigger(
    sched: &Arc<Scheduler>,
    mirrors: &Arc<Mirrors>,
    project: &Project,
    branch: &str,
    commit: Option<&str>,
    force: bool,
) -> Result<Triggered, TriggerError> {
    let (m, p, b, c) = (
        mirrors.clone(),
        project.clone(),
        branch.to_string(),
        commit.map(str::to_string),
    );
    let resolved =
        tokio::task::spawn_blocking(move || m.resolve(&p.name, &p.repo_url, &b, c.as_deref()))
            .await
            .map_err(|e| VcsError::Fetch {
                url: project.repo_url.clone(),
                msg: e.to_string(),
            })??;
    if !force {
        if let Some(id) = sched
            .store
            .find_dedup(&project.name, branch, &resolved.commit)?
        {
            if let Some(build) = sched.store.get_build(id)? {
                return Ok(Triggered {
                    build,
                    created: false,
                });
            }
        }
    }
    let now = sched.clock.now();
    let build_id = sched.store.next_id()?;
    let mut build = Build {
        id: build_id,
        project: project.name.clone(),
        branch: branch.to_string(),
        commit: resolved.commit.clone(),
        message: resolved.message.clone(),
        state: BuildState::Queued,
        created_ms: now,
        finished_ms: 0,
        jobs: vec![],
        warnings: vec![],
        error: String::new(),
    };
    let plans = match &resolved.travis_yml {
        None => Err(format!(
            "no .travis.yml in commit {}: add one to say how to build this project",
            short(&resolved.commit)
        )),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Err(_) => Err(".travis.yml is not valid UTF-8".to_string()),
            Ok(text) => travis::parse(text)
                .and_then(|cfg| {
                    build.warnings = cfg.warnings.clone();
                    travis::expand(&cfg, sched.cfg.max_jobs_per_build)
                })
                .map_err(|e| format!(".travis.yml: {e}")),
        },
    };
    let base = JobSpec {
        repo_url: project.repo_url.clone(),
        branch: branch.to_string(),
        commit: resolved.commit.clone(),
        phases: vec![],
        env: vec![],
        timeout_secs: project.timeout_secs,
        image: project.image.clone(),
    };
    let mut jobs = Vec::new();
    let new_job =
        |id, number, state, requires, allow_failure, detail: String, spec: JobSpec, queue_key| {
            Job {
                id,
                build: build_id,
                number,
                project: project.name.clone(),
                state,
                epoch: 0,
                attempts: 0,
                builder: String::new(),
                started_ms: 0,
                finished_ms: if state.is_final() { now } else { 0 },
                cancel_requested: false,
                allow_failure,
                requires,
                detail,
                log_len: 0,
                log_sha256: String::new(),
                queue_key,
                spec,
            }
        };
    match plans {
        Err(msg) => {
            build.state = BuildState::Errored;
            build.finished_ms = now;
            build.error = msg.clone();
            let id = sched.store.next_id()?;
            let text = format!("kha: cannot set this build up\n{msg}\n");
            sched
                .logs
                .write_all(id, text.as_bytes())
                .map_err(SchedError::from)?;
            let mut job = new_job(
                id,
                1,
                JobState::Errored,
                Labels::default(),
                false,
                msg,
                base,
                0,
            );
            job.log_len = text.len() as u64;
            jobs.push(job);
        }
        Ok(plans) => {
            for plan in plans {
                let id = sched.store.next_id()?;
                let mut requires = plan.requires.clone();
                if requires.get("image").is_none() {
                    requires.insert("image", project.image.clone());
                }
                let mut spec = base.clone();
                spec.env = plan.env.clone();
                spec.phases = travis::PHASES
                    .iter()
                    .filter_map(|p| plan.phases.get(p).map(|c| (p.to_string(), c.clone())))
                    .filter(|(_, c)| !c.is_empty())
                    .collect();
                if let Some(img) = requires.get("image") {
                    spec.image = img.to_string();
                }
                let key = sched.normal_key()?;
                jobs.push(new_job(
                    id,
                    plan.number,
                    JobState::Queued,
                    requires,
                    plan.allow_failure,
                    String::new(),
                    spec,
                    key,
                ));
            }
        }
    }
    build.jobs = jobs.iter().map(|j| j.id).collect();
    sched.store.create_build(&build, &jobs)?;
    sched.store.durable().await?;
    sched.enqueue(&jobs);
    tracing::info!(build_id, project = %project.name, branch, commit = %resolved.commit, jobs = jobs.len(), state = %build.state, "build created");
    Ok(Triggered {
        build,
        created: true,
    })
}

pub fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

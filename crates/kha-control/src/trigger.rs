//! Turning "build this project at this branch or commit" into a build, for
//! every way a build can start (CLI, polling, webhooks): fetch the project's
//! mirror, read `.travis.yml` at the commit, honour `[ci skip]` and the
//! branch filters, expand the matrix, and write the build and its jobs in
//! one transaction. A configuration that cannot be read gives an errored
//! build whose log says why.
//!
//! The same project, branch and commit is built once, however many ways it
//! is seen at the same moment: the check and the write run under one lock
//! per project.

use crate::scheduler::{SchedError, Scheduler};
use crate::store::records::{Branch, Build, Job, JobSpec, Project};
use crate::vcs::{Mirrors, Resolved, VcsError};
use kha_core::{travis, BuildState, JobState, Labels};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Vcs(#[from] VcsError),
    #[error(transparent)]
    Sched(#[from] SchedError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Request {
    pub project: String,
    /// Branch, tag, or `pull/N` for a pull request.
    pub branch: String,
    /// A commit id or revision; `None`: the branch's head.
    pub commit: Option<String>,
    /// Build even if built already, skip-marked or filtered out.
    pub force: bool,
    /// "api", "poll", "push", "pull_request", "generic".
    pub event: String,
    pub pr_number: u64,
    pub tag: bool,
    /// Fetch the mirror first (the poller has just fetched).
    pub fetch: bool,
}

impl Request {
    pub fn new(project: &str, branch: &str, event: &str) -> Request {
        Request {
            project: project.into(),
            branch: branch.into(),
            commit: None,
            force: false,
            event: event.into(),
            pr_number: 0,
            tag: false,
            fetch: true,
        }
    }
}

#[derive(Debug)]
pub enum Triggered {
    Created(Build),
    /// This project, branch and commit was built already.
    Existing(Build),
    /// Not built: "skipped" (a skip marker) or "filtered" (branch filters).
    NotBuilt {
        commit: String,
        why: &'static str,
    },
}

pub struct Triggerer {
    pub sched: Arc<Scheduler>,
    pub mirrors: Arc<Mirrors>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Triggerer {
    pub fn new(sched: Arc<Scheduler>, mirrors: Arc<Mirrors>) -> Triggerer {
        Triggerer {
            sched,
            mirrors,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock_for(&self, project: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(project.to_string()).or_default().clone()
    }

    pub async fn trigger(
        &self,
        project: &Project,
        req: &Request,
    ) -> Result<Triggered, TriggerError> {
        let (m, p, r) = (self.mirrors.clone(), project.clone(), req.clone());
        let resolved = tokio::task::spawn_blocking(move || {
            if r.fetch {
                m.resolve(
                    &p.name,
                    &p.repo_url,
                    &r.branch,
                    r.commit.as_deref(),
                    p.credentials.as_ref(),
                )
            } else {
                m.resolve_local(&p.name, &r.branch, r.commit.as_deref())
            }
        })
        .await
        .map_err(|e| VcsError::Fetch {
            url: project.repo_url.clone(),
            msg: e.to_string(),
        })??;
        let lock = self.lock_for(&project.name);
        let _guard = lock.lock().await;
        let sched = &self.sched;
        if !req.force {
            if let Some(id) =
                sched
                    .store
                    .find_dedup(&project.name, &req.branch, &resolved.commit)?
            {
                if let Some(build) = sched.store.get_build(id)? {
                    return Ok(Triggered::Existing(build));
                }
            }
            if travis::should_skip(&resolved.full_message) {
                self.note_branch(project, req, &resolved.commit, 0, "skipped")?;
                tracing::info!(project = %project.name, branch = %req.branch, commit = %resolved.commit, "skip marker: not built");
                return Ok(Triggered::NotBuilt {
                    commit: resolved.commit,
                    why: "skipped",
                });
            }
        }
        let build = self.create(project, req, &resolved).await?;
        match build {
            Err(why) => Ok(Triggered::NotBuilt {
                commit: resolved.commit,
                why,
            }),
            Ok(build) => Ok(Triggered::Created(build)),
        }
    }

    /// Records a branch's new head and what came of it.
    fn note_branch(
        &self,
        project: &Project,
        req: &Request,
        commit: &str,
        build: u64,
        not_built: &str,
    ) -> Result<(), TriggerError> {
        if req.pr_number > 0 {
            return Ok(());
        }
        let store = &self.sched.store;
        let old = store.get_branch(&project.name, &req.branch)?;
        store.put_branch(
            &project.name,
            &Branch {
                name: req.branch.clone(),
                head: commit.to_string(),
                tag: req.tag,
                last_build: if build > 0 {
                    build
                } else {
                    old.map_or(0, |o| o.last_build)
                },
                not_built: not_built.to_string(),
                deleted: false,
                updated_ms: self.sched.clock.now(),
            },
        )?;
        Ok(())
    }

    /// Creates the build (or says why not: filtered out).
    async fn create(
        &self,
        project: &Project,
        req: &Request,
        resolved: &Resolved,
    ) -> Result<Result<Build, &'static str>, TriggerError> {
        let sched = &self.sched;
        let now = sched.clock.now();
        let build_id = sched.store.next_id()?;
        let mut build = Build {
            id: build_id,
            project: project.name.clone(),
            branch: req.branch.clone(),
            commit: resolved.commit.clone(),
            message: resolved.message.clone(),
            state: BuildState::Queued,
            created_ms: now,
            finished_ms: 0,
            jobs: vec![],
            warnings: vec![],
            error: String::new(),
            pr_number: req.pr_number,
            event: req.event.clone(),
            fast_finish: false,
        };
        let plans = match &resolved.travis_yml {
            None => Err(format!(
                "no .travis.yml in commit {}: add one to say how to build this project",
                short(&resolved.commit)
            )),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Err(_) => Err(".travis.yml is not valid UTF-8".to_string()),
                Ok(text) => match travis::parse(text) {
                    Err(e) => Err(format!(".travis.yml: {e}")),
                    Ok(cfg) => {
                        // Travis applies branch filters to pushes, not to
                        // pull requests.
                        if !req.force
                            && req.pr_number == 0
                            && !travis::branch_allowed(&cfg, &req.branch, req.tag)
                        {
                            self.note_branch(project, req, &resolved.commit, 0, "filtered")?;
                            return Ok(Err("filtered"));
                        }
                        let opts = travis::ExpandOptions {
                            max_jobs: sched.cfg.max_jobs_per_build,
                            repo: travis::RepoFacts::from_root_files(resolved.root_files.iter()),
                            branch: Some(req.branch.clone()),
                        };
                        match travis::expand_with(&cfg, &opts) {
                            Ok(x) => {
                                build.warnings = cfg.warnings.clone();
                                build
                                    .warnings
                                    .extend(x.warnings.iter().map(|w| w.to_string()));
                                build.fast_finish = x.fast_finish;
                                Ok(x.jobs)
                            }
                            Err(e) => Err(format!(".travis.yml: {e}")),
                        }
                    }
                },
            },
        };
        let base = JobSpec {
            repo_url: project.repo_url.clone(),
            branch: req.branch.clone(),
            commit: resolved.commit.clone(),
            phases: vec![],
            env: vec![],
            timeout_secs: project.timeout_secs,
            image: project.image.clone(),
        };
        let new_job = |id,
                       number,
                       state: JobState,
                       requires,
                       allow_failure,
                       detail: String,
                       spec: JobSpec,
                       queue_key| Job {
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
            matrix: vec![],
            name: String::new(),
            queue_key,
            spec,
        };
        let mut jobs = Vec::new();
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
                // A job that no builder kha knows could run is said so now;
                // it stays queued for a builder that may yet join.
                let known: Vec<Labels> = sched
                    .store
                    .list_builders()?
                    .into_iter()
                    .filter(|b| !b.revoked && !b.labels.is_empty())
                    .filter_map(|b| Labels::parse(b.labels.iter().map(String::as_str)).ok())
                    .collect();
                let mut with_image = plans.clone();
                for p in &mut with_image {
                    if p.requires.get("image").is_none() {
                        p.requires.insert("image", project.image.clone());
                    }
                }
                for u in travis::unrunnable(&with_image, &known) {
                    let missing: Vec<String> =
                        u.missing.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    build.warnings.push(format!(
                        "job {build_id}.{} can run on no builder kha knows: none has {}",
                        u.number,
                        missing.join(", ")
                    ));
                }
                for plan in plans {
                    let id = sched.store.next_id()?;
                    let mut requires = plan.requires.clone();
                    if requires.get("image").is_none() {
                        requires.insert("image", project.image.clone());
                    }
                    let mut spec = base.clone();
                    // Travis's own variables first (TRAVIS_OS_NAME, CC, …),
                    // then the file's.
                    spec.env = plan
                        .builtin_env
                        .iter()
                        .map(|(k, v)| format!("{k}={}", sh_quote(v)))
                        .chain(plan.env.iter().cloned())
                        .collect();
                    spec.phases = travis::PHASES
                        .iter()
                        .filter_map(|p| plan.phases.get(p).map(|c| (p.to_string(), c.clone())))
                        .filter(|(_, c)| !c.is_empty())
                        .collect();
                    if let Some(img) = requires.get("image") {
                        spec.image = img.to_string();
                    }
                    let key = sched.normal_key()?;
                    let mut job = new_job(
                        id,
                        plan.number,
                        JobState::Queued,
                        requires,
                        plan.allow_failure,
                        String::new(),
                        spec,
                        key,
                    );
                    job.matrix = plan.matrix.clone();
                    job.name = plan.name.clone().unwrap_or_default();
                    jobs.push(job);
                }
            }
        }
        build.jobs = jobs.iter().map(|j| j.id).collect();
        sched.store.create_build(&build, &jobs)?;
        self.note_branch(project, req, &resolved.commit, build_id, "")?;
        sched.store.durable().await?;
        sched.enqueue(&jobs);
        tracing::info!(build_id, project = %project.name, branch = %req.branch, commit = %resolved.commit, event = %req.event, jobs = jobs.len(), state = %build.state, "build created");
        if project.cancel_superseded {
            self.cancel_superseded(project, &build).await;
        }
        Ok(Ok(build))
    }

    /// Cancels the branch's older builds that have not started yet.
    async fn cancel_superseded(&self, project: &Project, newer: &Build) {
        let store = &self.sched.store;
        for id in store.project_build_ids(&project.name).take(200) {
            let Ok(id) = id else { break };
            if id >= newer.id {
                continue;
            }
            let Ok(Some(b)) = store.get_build(id) else {
                continue;
            };
            if b.branch != newer.branch
                || b.pr_number != newer.pr_number
                || b.state != BuildState::Queued
            {
                continue;
            }
            tracing::info!(
                build_id = id,
                newer = newer.id,
                "canceling a superseded queued build"
            );
            for j in b.jobs {
                let _ = self.sched.cancel_job(j).await;
            }
        }
    }

    /// Cancels the still-queued builds of a pull request (it was closed).
    pub async fn cancel_pull_request(&self, project: &Project, number: u64) -> usize {
        let store = &self.sched.store;
        let mut n = 0;
        for id in store.project_build_ids(&project.name).take(500) {
            let Ok(id) = id else { break };
            let Ok(Some(b)) = store.get_build(id) else {
                continue;
            };
            if b.pr_number == number && b.state == BuildState::Queued {
                for j in b.jobs {
                    let _ = self.sched.cancel_job(j).await;
                }
                n += 1;
            }
        }
        n
    }

    /// Marks a branch deleted on the remote.
    pub fn branch_deleted(&self, project: &str, name: &str) -> Result<(), TriggerError> {
        let store = &self.sched.store;
        if let Some(mut b) = store.get_branch(project, name)? {
            if !b.deleted {
                b.deleted = true;
                b.updated_ms = self.sched.clock.now();
                store.put_branch(project, &b)?;
                tracing::info!(project, branch = name, "branch deleted");
            }
        }
        Ok(())
    }
}

/// Quotes a value for POSIX sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

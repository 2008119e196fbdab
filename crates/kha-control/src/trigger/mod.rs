//! Every way into a build: the CLI and API (`api::builds::trigger`),
//! polling (`poll`), GitHub's webhooks (`github`) and the generic hook
//! (`generic`) all end in [`Triggerer::trigger`]: fetch the project's
//! mirror, resolve the commit, honour `[ci skip]`, and create the build
//! (`build`: `.travis.yml` at the commit, branch filters, expansion, the
//! build and its jobs in one transaction).
//!
//! The same project, branch and commit is built once, however many ways it
//! is seen at the same moment: the check and the write run under one lock
//! per project.

mod build;
pub mod cron;
mod failed;
pub mod generic;
pub mod github;
pub mod poll;

use crate::app::App;
use crate::notify::hooks::Hooks;
use crate::scheduler::{SchedError, Scheduler};
use crate::store::records::{Branch, Build, Project};
use crate::vcs::{Systems, VcsError};
use kha_core::{travis, BuildState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Vcs(#[from] VcsError),
    #[error(transparent)]
    Sched(#[from] SchedError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A name or commit that no build may be made of (see [`Request::check`]).
    #[error("{0}")]
    Invalid(String),
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
    /// "api", "poll", "push", "pull_request", "generic", "cron".
    pub event: String,
    pub pr_number: u64,
    pub tag: bool,
    /// Fetch the mirror first (the poller has just fetched).
    pub fetch: bool,
    /// The pull request's head (repository, branch, commit), for a pull
    /// request build.
    pub pull_request: Option<travis::PullRequest>,
    /// Who started it: a push's or pull request's GitHub sender, the kha
    /// user of an API build.
    pub sender: String,
    /// The commit the branch was at before this push (or a pull request's
    /// base), for `TRAVIS_COMMIT_RANGE`; empty when unknown.
    pub before: String,
}

impl Request {
    /// A pull request from another repository (a fork, as the webhook
    /// decided: [`travis::is_fork`]): its build does not get the encrypted
    /// variables unless the project shares them.
    pub fn fork(&self) -> bool {
        self.pull_request.as_ref().is_some_and(|pr| pr.fork)
    }

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
            pull_request: None,
            sender: String::new(),
            before: String::new(),
        }
    }

    /// Refuses names that are not a branch's, tag's or commit's, before
    /// they reach a store key, a version-control client, a log line or a
    /// job's environment (`kha_core::validate_ref_name`).
    pub fn check(&self) -> Result<(), String> {
        kha_core::validate_ref_name(&self.branch)?;
        if let Some(c) = &self.commit {
            kha_core::validate_commit_name(c)?;
        }
        if let Some(pr) = &self.pull_request {
            if !pr.head_branch.is_empty() {
                kha_core::validate_ref_name(&pr.head_branch)?;
            }
        }
        Ok(())
    }

    /// Travis's event type: polling and the generic hook count as pushes.
    pub fn event_type(&self) -> travis::EventType {
        match self.event.as_str() {
            _ if self.pr_number > 0 => travis::EventType::PullRequest,
            "api" => travis::EventType::Api,
            "cron" => travis::EventType::Cron,
            _ => travis::EventType::Push,
        }
    }

    /// A scheduled build (`cron`) builds the branch's head whether or not
    /// it was built already, and skip markers do not apply to it (as on
    /// Travis); branch filters and the root `if:` still do (`if: type !=
    /// cron` is how a `.travis.yml` opts out).
    pub fn scheduled(&self) -> bool {
        self.event_type() == travis::EventType::Cron
    }

    /// The name a build is de-duplicated under: the branch, or for a pull
    /// request `:pr/N` (`:` cannot be in a git ref, so no branch has it).
    /// A pull request build and a branch build of one commit differ (their
    /// environments do).
    pub fn dedup_name(&self) -> String {
        crate::store::records::dedup_name(&self.branch, self.pr_number)
    }
}

#[derive(Debug)]
pub enum Triggered {
    Created(Build),
    /// This project, branch and commit was built already.
    Existing(Build),
    /// Not built: "skipped" (a skip marker), "filtered" (branch filters)
    /// or "condition" (the `.travis.yml`'s root `if:` is false).
    NotBuilt {
        commit: String,
        why: &'static str,
    },
}

pub struct Triggerer {
    pub sched: Arc<Scheduler>,
    pub vcs: Arc<Systems>,
    /// The pre-build hook, asked before each build is created.
    hooks: Hooks,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Triggerer {
    pub fn new(sched: Arc<Scheduler>, vcs: Arc<Systems>) -> Triggerer {
        Triggerer {
            hooks: Hooks::new(&sched.cfg.notify),
            sched,
            vcs,
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
        req.check().map_err(TriggerError::Invalid)?;
        let (m, p, r) = (self.vcs.for_project(project), project.clone(), req.clone());
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
        if !req.force && !req.scheduled() {
            if let Some(id) =
                sched
                    .store
                    .find_dedup(&project.name, &req.dedup_name(), &resolved.commit)?
            {
                // Builds stored before pull requests had their own key
                // share the base branch's: only the same kind counts.
                if let Some(build) = sched
                    .store
                    .get_build(id)?
                    .filter(|b| b.pr_number == req.pr_number)
                {
                    // The branch follows the push even when nothing new
                    // is built (it may have been deleted and pushed back).
                    self.note_branch(project, req, &resolved.commit, build.id, "")?;
                    sched.store.durable().await?;
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
    pub(crate) fn note_branch(
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
        if !req.tag {
            self.adopt_default_branch(&project.name, &req.branch)?;
        }
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
            self.sched.clock.now(),
        )?;
        Ok(())
    }

    /// A project added while its repository was empty has no default
    /// branch: the first branch pushed becomes it.
    fn adopt_default_branch(&self, project: &str, branch: &str) -> Result<(), TriggerError> {
        let store = &self.sched.store;
        if let Some(mut p) = store.get_project(project)? {
            if p.default_branch.is_empty() {
                p.default_branch = branch.to_string();
                store.put_project(&p)?;
                info!(
                    project,
                    branch, "the first branch pushed is the default branch"
                );
            }
        }
        Ok(())
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
                if let Err(e) = self.sched.cancel_job(j).await {
                    warn!(job_id = j, error = %e, "cannot cancel a superseded job");
                }
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
                    if let Err(e) = self.sched.cancel_job(j).await {
                        warn!(job_id = j, error = %e, "cannot cancel a superseded job");
                    }
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
                store.put_branch(project, &b, b.updated_ms)?;
                tracing::info!(project, branch = name, "branch deleted");
            }
        }
        Ok(())
    }
}

/// What a hook's sender is told: a status and one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAnswer {
    pub status: HookStatus,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookStatus {
    /// Understood; nothing to build.
    Ok,
    /// A build is being made.
    Accepted,
    BadRequest,
    Unauthorized,
    NotFound,
    Failed,
}

pub(crate) fn answer(status: HookStatus, message: impl Into<String>) -> HookAnswer {
    HookAnswer {
        status,
        message: message.into(),
    }
}

/// Builds in the background: the hook is answered at once, with
/// `accepted`, or refused when the request names no branch or commit that
/// can be built. The task is tracked, so a shutdown waits for the build to
/// be recorded.
pub fn spawn_build(app: &Arc<App>, project: Project, req: Request, accepted: String) -> HookAnswer {
    if let Err(why) = req.check() {
        return answer(HookStatus::BadRequest, why);
    }
    let triggers = app.triggers.clone();
    app.spawn("webhook-build", async move {
        match triggers.trigger(&project, &req).await {
            Ok(Triggered::Created(b)) => {
                info!(project = %project.name, build_id = b.id, event = %req.event, "webhook build")
            }
            Ok(other) => {
                info!(project = %project.name, event = %req.event, result = ?other_kind(&other), "webhook: nothing new to build")
            }
            // A commit that cannot be fetched is said where people look:
            // an errored build with the reason.
            Err(TriggerError::Vcs(e)) => {
                if let Err(e2) = triggers.record_failure(&project, &req, &e.to_string()).await {
                    warn!(project = %project.name, branch = %req.branch, error = %e, also = %e2, "webhook build failed and could not be recorded")
                }
            }
            Err(e) => {
                warn!(project = %project.name, branch = %req.branch, error = %e, "webhook build failed")
            }
        }
    });
    answer(HookStatus::Accepted, accepted)
}

fn other_kind(t: &Triggered) -> &'static str {
    match t {
        Triggered::Created(_) => "created",
        Triggered::Existing(_) => "already built",
        Triggered::NotBuilt { why, .. } => why,
    }
}

/// A git commit id abbreviated; a Subversion revision as `r42`; a CVS
/// timestamp whole, as cutting it would change it.
pub fn short(commit: &str) -> String {
    kha_core::spec::short_commit(commit, 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kha_core::travis::EventType;

    #[test]
    fn event_types_and_dedup_names() {
        // (event, pr number, Travis's event type, dedup name)
        for (event, pr, ty, name) in [
            ("push", 0, EventType::Push, "master"),
            ("poll", 0, EventType::Push, "master"),
            ("generic", 0, EventType::Push, "master"),
            ("api", 0, EventType::Api, "master"),
            ("cron", 0, EventType::Cron, "master"),
            ("pull_request", 2, EventType::PullRequest, ":pr/2"),
        ] {
            let mut r = Request::new("p", "master", event);
            r.pr_number = pr;
            assert_eq!(
                (r.event_type(), r.dedup_name().as_str()),
                (ty, name),
                "{event}"
            );
        }
    }
}

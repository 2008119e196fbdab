//! `kha.admin.v1.AdminService`: what the `kha` CLI calls.

use crate::auth::{self, bearer, hash, hash_eq};
use crate::scheduler::Scheduler;
use crate::store::records;
use crate::store::StoreError;
use crate::trigger::{self, Request as TriggerRequest, TriggerError, Triggered, Triggerer};
use crate::vcs::{Mirrors, VcsError};
use kha_core::{validate_project_name, JobState};
use kha_proto::admin::admin_service_server::AdminService;
use kha_proto::admin::*;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub struct AdminSvc {
    pub sched: Arc<Scheduler>,
    pub mirrors: Arc<Mirrors>,
    pub triggers: Arc<Triggerer>,
    /// SHA-256 of the admin token.
    pub admin_hash: String,
    pub shutdown: CancellationToken,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl From<TriggerError> for Status {
    fn from(e: TriggerError) -> Status {
        match &e {
            TriggerError::Vcs(VcsError::NoBranch(_) | VcsError::NoCommit(_)) => {
                Status::not_found(e.to_string())
            }
            TriggerError::Vcs(VcsError::Fetch { .. }) => Status::unavailable(e.to_string()),
            _ => Status::internal(e.to_string()),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        match e {
            StoreError::Rejected(m) => Status::failed_precondition(m),
            e => Status::internal(e.to_string()),
        }
    }
}

impl AdminSvc {
    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        match bearer(req.metadata()) {
            Some(t) if hash_eq(&hash(t), &self.admin_hash) => Ok(()),
            Some(_) => Err(Status::unauthenticated("wrong admin token")),
            None => Err(Status::unauthenticated(
                "no admin token: pass --token, set KHA_TOKEN, or run where the control node's admin.token is readable",
            )),
        }
    }

    fn project(&self, name: &str) -> Result<records::Project, Status> {
        self.sched.store.get_project(name)?.ok_or_else(|| {
            Status::not_found(format!("no project {name:?} (see `kha project list`)"))
        })
    }

    fn build_view(&self, b: records::Build) -> Result<Build, Status> {
        let mut jobs = Vec::new();
        for &id in &b.jobs {
            if let Some(j) = self.sched.store.get_job(id)? {
                jobs.push(self.job_view(j));
            }
        }
        Ok(Build {
            id: b.id,
            project: b.project,
            branch: b.branch,
            commit: b.commit,
            message: b.message,
            state: b.state.to_string(),
            created_ms: b.created_ms,
            finished_ms: b.finished_ms,
            jobs,
            warnings: b.warnings,
            error: b.error,
            pr_number: b.pr_number,
            event: b.event,
            fast_finish: b.fast_finish,
        })
    }

    fn job_view(&self, j: records::Job) -> Job {
        let mut detail = j.detail.clone();
        if j.state == JobState::Queued && detail.is_empty() {
            if let Some(why) = self.sched.unmatched(j.id) {
                detail = why;
            }
        }
        let log_len = if j.state.is_final() {
            j.log_len
        } else {
            self.sched.logs.len(j.id)
        };
        Job {
            id: j.id,
            build_id: j.build,
            number: j.number,
            state: j.state.to_string(),
            epoch: j.epoch,
            attempts: j.attempts,
            builder: j.builder,
            started_ms: j.started_ms,
            finished_ms: j.finished_ms,
            log_len,
            env: j.spec.env,
            allow_failure: j.allow_failure,
            detail,
            requires: j.requires.to_vec(),
            matrix: j.matrix.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            name: j.name,
        }
    }

    fn get_build_rec(&self, id: u64) -> Result<records::Build, Status> {
        self.sched
            .store
            .get_build(id)?
            .ok_or_else(|| Status::not_found(format!("no build {id}")))
    }

    /// Changes a builder's record and makes it durable.
    async fn update_builder(
        &self,
        id: &str,
        f: impl FnOnce(&mut records::Builder),
    ) -> Result<records::Builder, Status> {
        let mut b = self
            .sched
            .store
            .get_builder(id)?
            .ok_or_else(|| Status::not_found(format!("no builder {id}")))?;
        f(&mut b);
        self.sched.store.put_builder(&b)?;
        self.sched.store.durable().await?;
        Ok(b)
    }

    fn builder_view(&self, b: records::Builder) -> Builder {
        let live = self.sched.sessions_view();
        let s = live.get(&b.id);
        Builder {
            connected: s.is_some(),
            draining: b.draining || s.is_some_and(|s| s.draining),
            revoked: b.revoked,
            labels: s.map(|s| s.labels.clone()).unwrap_or(b.labels),
            slots: s.map(|s| s.slots).unwrap_or(b.slots),
            running_jobs: s.map(|s| s.running.clone()).unwrap_or_default(),
            last_seen_ms: if s.is_some() {
                self.sched.clock.now()
            } else {
                b.last_seen_ms
            },
            version: b.version,
            id: b.id,
            name: b.name,
        }
    }
}

fn project_view(p: records::Project) -> Project {
    Project {
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
    }
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

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AdminService for AdminSvc {
    async fn add_project(
        &self,
        req: Request<AddProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        self.check(&req)?;
        let r = req.into_inner();
        validate_project_name(&r.name).map_err(Status::invalid_argument)?;
        if r.repo_url.trim().is_empty() {
            return Err(Status::invalid_argument(
                "repo_url is empty: give the git URL to build",
            ));
        }
        if self.sched.store.get_project(&r.name)?.is_some() {
            return Err(Status::already_exists(format!(
                "project {:?} exists already",
                r.name
            )));
        }
        let credentials = (!r.credential_username.is_empty() || !r.credential_password.is_empty())
            .then(|| records::Credentials {
                username: r.credential_username.clone(),
                password: records::Secret(r.credential_password.clone()),
            });
        let default_branch = if r.default_branch.is_empty() {
            let (m, n, u, c) = (
                self.mirrors.clone(),
                r.name.clone(),
                r.repo_url.clone(),
                credentials.clone(),
            );
            tokio::task::spawn_blocking(move || m.default_branch(&n, &u, c.as_ref()))
                .await
                .map_err(internal)?
                .map_err(|e| Status::invalid_argument(format!("{e}; check the URL")))?
        } else {
            r.default_branch
        };
        let p = records::Project {
            name: r.name.clone(),
            repo_url: r.repo_url.clone(),
            default_branch,
            timeout_secs: if r.timeout_secs == 0 {
                self.sched.cfg.job_timeout_secs
            } else {
                r.timeout_secs
            },
            image: if r.image.is_empty() {
                "default".into()
            } else {
                r.image
            },
            created_ms: self.sched.clock.now(),
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
            webhook_secret: records::Secret(auth::new_token("khaw_").0),
            credentials,
        };
        if !self.sched.store.add_project(&p)? {
            return Err(Status::already_exists(format!(
                "project {:?} exists already",
                r.name
            )));
        }
        self.sched.store.durable().await?;
        let secret = p.webhook_secret.0.clone();
        let mut view = project_view(p);
        view.webhook_secret = secret;
        Ok(Response::new(view))
    }

    async fn list_projects(
        &self,
        req: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        self.check(&req)?;
        let projects = self
            .sched
            .store
            .list_projects()?
            .into_iter()
            .map(project_view)
            .collect();
        Ok(Response::new(ListProjectsResponse { projects }))
    }

    async fn get_project(
        &self,
        req: Request<GetProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        self.check(&req)?;
        Ok(Response::new(project_view(
            self.project(&req.into_inner().name)?,
        )))
    }

    async fn remove_project(
        &self,
        req: Request<RemoveProjectRequest>,
    ) -> Result<Response<RemoveProjectResponse>, Status> {
        self.check(&req)?;
        let name = req.into_inner().name;
        if !self.sched.store.remove_project(&name)? {
            return Err(Status::not_found(format!("no project {name:?}")));
        }
        self.sched.store.durable().await?;
        Ok(Response::new(RemoveProjectResponse {}))
    }

    async fn trigger_build(
        &self,
        req: Request<TriggerBuildRequest>,
    ) -> Result<Response<TriggerBuildResponse>, Status> {
        self.check(&req)?;
        let r = req.into_inner();
        let p = self.project(&r.project)?;
        let branch = if r.branch.is_empty() {
            p.default_branch.clone()
        } else {
            r.branch
        };
        let mut req = TriggerRequest::new(&p.name, &branch, "api");
        req.commit = (!r.commit.is_empty()).then_some(r.commit);
        req.force = r.force;
        let (build, created) = match self.triggers.trigger(&p, &req).await? {
            Triggered::Created(b) => (b, true),
            Triggered::Existing(b) => (b, false),
            Triggered::NotBuilt { commit, why } => {
                return Err(Status::failed_precondition(format!(
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
        Ok(Response::new(TriggerBuildResponse {
            build: Some(self.build_view(build)?),
            created,
        }))
    }

    async fn list_branches(
        &self,
        req: Request<ListBranchesRequest>,
    ) -> Result<Response<ListBranchesResponse>, Status> {
        self.check(&req)?;
        let project = req.into_inner().project;
        self.project(&project)?;
        let mut branches = Vec::new();
        for b in self.sched.store.list_branches(&project)? {
            let state = if b.deleted {
                "deleted".to_string()
            } else if !b.not_built.is_empty() {
                b.not_built.clone()
            } else {
                match self.sched.store.get_build(b.last_build)? {
                    Some(build) => build.state.to_string(),
                    None => "-".into(),
                }
            };
            branches.push(Branch {
                name: b.name,
                head: b.head,
                last_build_id: b.last_build,
                state,
                deleted: b.deleted,
                updated_ms: b.updated_ms,
                tag: b.tag,
            });
        }
        Ok(Response::new(ListBranchesResponse { branches }))
    }

    async fn list_builds(
        &self,
        req: Request<ListBuildsRequest>,
    ) -> Result<Response<ListBuildsResponse>, Status> {
        self.check(&req)?;
        let r = req.into_inner();
        self.project(&r.project)?;
        let per_page = match r.per_page {
            0 => 25,
            n if n > 100 => return Err(Status::invalid_argument("per_page is at most 100")),
            n => n,
        };
        let (builds, total) = self.sched.store.list_builds(
            &r.project,
            (!r.branch.is_empty()).then_some(r.branch.as_str()),
            r.page.max(1),
            per_page,
        )?;
        let builds = builds
            .into_iter()
            .map(|b| self.build_view(b))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(ListBuildsResponse { builds, total }))
    }

    async fn get_build(&self, req: Request<GetBuildRequest>) -> Result<Response<Build>, Status> {
        self.check(&req)?;
        let b = self.get_build_rec(req.into_inner().build_id)?;
        Ok(Response::new(self.build_view(b)?))
    }

    async fn restart_build(
        &self,
        req: Request<GetBuildRequest>,
    ) -> Result<Response<Build>, Status> {
        self.check(&req)?;
        let b = self.get_build_rec(req.into_inner().build_id)?;
        if !b.state.is_final() {
            return Err(Status::failed_precondition(format!(
                "build {} is {}: cancel it or wait for it before restarting",
                b.id, b.state
            )));
        }
        if !b.error.is_empty() {
            return Err(Status::failed_precondition(format!(
                "build {} could not be set up ({}); fix it and trigger a new build",
                b.id, b.error
            )));
        }
        self.sched.restart_build(&b).await?;
        Ok(Response::new(self.build_view(self.get_build_rec(b.id)?)?))
    }

    async fn cancel_build(&self, req: Request<GetBuildRequest>) -> Result<Response<Build>, Status> {
        self.check(&req)?;
        let b = self.get_build_rec(req.into_inner().build_id)?;
        for &j in &b.jobs {
            self.sched.cancel_job(j).await?;
        }
        Ok(Response::new(self.build_view(self.get_build_rec(b.id)?)?))
    }

    type FollowLogStream = Out<LogData>;

    async fn follow_log(
        &self,
        req: Request<FollowLogRequest>,
    ) -> Result<Response<Self::FollowLogStream>, Status> {
        self.check(&req)?;
        let r = req.into_inner();
        if self.sched.store.get_job(r.job_id)?.is_none() {
            return Err(Status::not_found(format!("no job {}", r.job_id)));
        }
        let (tx, rx) = mpsc::channel(8);
        let sched = self.sched.clone();
        let shutdown = self.shutdown.clone();
        crate::task::spawn("follow-log", async move {
            let job = r.job_id;
            let mut pos = r.offset;
            let mut watch = sched.logs.subscribe(job);
            loop {
                let (committed, mut done) = *watch.borrow_and_update();
                // The job may have ended before we subscribed.
                let state = match sched.store.get_job(job) {
                    Ok(Some(j)) => j.state,
                    _ => JobState::Errored,
                };
                if state.is_final() {
                    done = true;
                }
                let end = if done { sched.logs.len(job) } else { committed };
                while pos < end {
                    let data = match sched
                        .logs
                        .read(job, pos, (end - pos).min(256 * 1024) as usize)
                        .await
                    {
                        Ok(d) if !d.is_empty() => d,
                        _ => break,
                    };
                    let n = data.len() as u64;
                    if tx
                        .send(Ok(LogData {
                            offset: pos,
                            data,
                            done: false,
                            state: String::new(),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    pos += n;
                }
                if done || !r.follow {
                    let state = if state.is_final() || !r.follow {
                        state.to_string()
                    } else {
                        String::new()
                    };
                    let _ = tx
                        .send(Ok(LogData {
                            offset: pos,
                            data: vec![],
                            done: true,
                            state,
                        }))
                        .await;
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    changed = watch.changed() => {
                        if changed.is_err() {
                            // The log's live state went away: the job ended.
                            watch = sched.logs.subscribe(job);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_builders(
        &self,
        req: Request<ListBuildersRequest>,
    ) -> Result<Response<ListBuildersResponse>, Status> {
        self.check(&req)?;
        let builders = self
            .sched
            .store
            .list_builders()?
            .into_iter()
            .map(|b| self.builder_view(b))
            .collect();
        Ok(Response::new(ListBuildersResponse { builders }))
    }

    async fn drain_builder(
        &self,
        req: Request<BuilderRequest>,
    ) -> Result<Response<Builder>, Status> {
        self.check(&req)?;
        let id = req.into_inner().builder_id;
        let b = self.update_builder(&id, |b| b.draining = true).await?;
        self.sched.set_draining(&id, true);
        Ok(Response::new(self.builder_view(b)))
    }

    async fn revoke_builder(
        &self,
        req: Request<BuilderRequest>,
    ) -> Result<Response<Builder>, Status> {
        self.check(&req)?;
        let id = req.into_inner().builder_id;
        let b = self.update_builder(&id, |b| b.revoked = true).await?;
        self.sched
            .evict(&id, "this builder was revoked by an admin");
        Ok(Response::new(self.builder_view(b)))
    }

    async fn create_enrolment_token(
        &self,
        req: Request<CreateEnrolmentTokenRequest>,
    ) -> Result<Response<kha_proto::admin::EnrolmentToken>, Status> {
        self.check(&req)?;
        let token = auth::new_token("khaet_");
        let rec = records::EnrolmentToken {
            id: auth::new_id("t-"),
            token_sha256: hash(&token.0),
            description: req.into_inner().description,
            created_ms: self.sched.clock.now(),
            revoked: false,
        };
        self.sched.store.put_token(&rec)?;
        self.sched.store.durable().await?;
        Ok(Response::new(kha_proto::admin::EnrolmentToken {
            id: rec.id,
            token: token.0,
            description: rec.description,
            created_ms: rec.created_ms,
            revoked: false,
        }))
    }

    async fn revoke_enrolment_token(
        &self,
        req: Request<RevokeEnrolmentTokenRequest>,
    ) -> Result<Response<kha_proto::admin::EnrolmentToken>, Status> {
        self.check(&req)?;
        let id = req.into_inner().id;
        let mut t = self
            .sched
            .store
            .list_tokens()?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no enrolment token {id} (see `kha builder token list`)"
                ))
            })?;
        t.revoked = true;
        self.sched.store.put_token(&t)?;
        self.sched.store.durable().await?;
        Ok(Response::new(token_view(t)))
    }

    async fn list_enrolment_tokens(
        &self,
        req: Request<ListEnrolmentTokensRequest>,
    ) -> Result<Response<ListEnrolmentTokensResponse>, Status> {
        self.check(&req)?;
        let tokens = self
            .sched
            .store
            .list_tokens()?
            .into_iter()
            .map(token_view)
            .collect();
        Ok(Response::new(ListEnrolmentTokensResponse { tokens }))
    }
}

fn token_view(t: records::EnrolmentToken) -> kha_proto::admin::EnrolmentToken {
    kha_proto::admin::EnrolmentToken {
        id: t.id,
        token: String::new(),
        description: t.description,
        created_ms: t.created_ms,
        revoked: t.revoked,
    }
}

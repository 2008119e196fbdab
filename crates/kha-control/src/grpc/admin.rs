//! `kha.admin.v1.AdminService`: what the `kha` CLI calls. A thin adapter
//! over the service layer (`api`): each call authenticates (the bearer
//! token through `api::auth::from_bearer`; none is anonymous, not an
//! error), converts the request, calls one service function, and encodes
//! its view.

use crate::api::{self, ApiError, Principal};
use crate::app::App;
use crate::auth::bearer;
use kha_core::event::{EventFilter, EventKind};
use kha_proto::admin::admin_service_server::AdminService;
use kha_proto::admin::*;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub struct AdminSvc {
    pub app: Arc<App>,
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let m = e.to_string();
        match e {
            ApiError::NotFound(_) => Status::not_found(m),
            ApiError::Invalid(_) => Status::invalid_argument(m),
            ApiError::Exists(_) => Status::already_exists(m),
            ApiError::Precondition(_) => Status::failed_precondition(m),
            ApiError::Unauthenticated(_) => Status::unauthenticated(m),
            ApiError::Denied(_) => Status::permission_denied(m),
            ApiError::TooMany(_) => Status::resource_exhausted(m),
            ApiError::Unavailable(_) => Status::unavailable(m),
            ApiError::Pruned { .. } => Status::out_of_range(m),
            ApiError::Internal(_) => Status::internal(m),
        }
    }
}

impl AdminSvc {
    fn who<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        Ok(api::auth::from_bearer(&self.app, bearer(req.metadata()))?)
    }
}

/// The client's address, for sign-in rate limits. tonic knows it for TCP
/// and TLS listeners (all the control node has); were it missing, every
/// such caller would share one limit, which errs on the safe side.
fn client_ip<T>(req: &Request<T>) -> IpAddr {
    req.remote_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

/// A new token as the wire carries it: the token itself only here.
fn new_token((info, token): (kha_core::view::ApiToken, kha_core::Secret)) -> NewApiToken {
    NewApiToken {
        info: Some(info.into()),
        token: token.into_inner(),
    }
}

fn role(r: i32, field: &str) -> Result<kha_core::view::Role, Status> {
    kha_proto::users::role_arg(r, field).map_err(Status::invalid_argument)
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AdminService for AdminSvc {
    async fn add_project(
        &self,
        req: Request<AddProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let new = api::projects::NewProject {
            name: r.name,
            repo_url: r.repo_url,
            default_branch: r.default_branch,
            timeout_secs: r.timeout_secs,
            image: r.image,
            poll_interval_secs: r.poll_interval_secs,
            no_poll: r.no_poll,
            build_tags: r.build_tags,
            cancel_superseded: r.cancel_superseded,
            github_repo: r.github_repo,
            credential_username: r.credential_username,
            credential_password: r.credential_password,
            private: r.private,
            vcs: r.vcs,
            module: r.module,
            layout: r.layout,
        };
        let p = api::projects::add(&self.app, &who, new).await?;
        Ok(Response::new(p.into()))
    }

    async fn list_projects(
        &self,
        req: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        let who = self.who(&req)?;
        let projects = api::projects::list(&self.app, &who)?;
        Ok(Response::new(ListProjectsResponse {
            projects: projects.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_project(
        &self,
        req: Request<GetProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let who = self.who(&req)?;
        let p = api::projects::get(&self.app, &who, &req.into_inner().name)?;
        Ok(Response::new(p.into()))
    }

    async fn remove_project(
        &self,
        req: Request<RemoveProjectRequest>,
    ) -> Result<Response<RemoveProjectResponse>, Status> {
        let who = self.who(&req)?;
        api::projects::remove(&self.app, &who, &req.into_inner().name).await?;
        Ok(Response::new(RemoveProjectResponse {}))
    }

    async fn list_branches(
        &self,
        req: Request<ListBranchesRequest>,
    ) -> Result<Response<ListBranchesResponse>, Status> {
        let who = self.who(&req)?;
        let branches = api::branches::list(&self.app, &who, &req.into_inner().project)?;
        Ok(Response::new(ListBranchesResponse {
            branches: branches.into_iter().map(Into::into).collect(),
        }))
    }

    async fn list_caches(
        &self,
        req: Request<ListCachesRequest>,
    ) -> Result<Response<ListCachesResponse>, Status> {
        let who = self.who(&req)?;
        let caches = api::caches::list(&self.app, &who, &req.into_inner().project)?;
        Ok(Response::new(ListCachesResponse {
            caches: caches
                .into_iter()
                .map(|a| CacheEntry {
                    branch: a.group,
                    slug: a.slug,
                    size: a.size,
                    created_ms: a.created_ms,
                    used_ms: a.used_ms,
                })
                .collect(),
        }))
    }

    async fn clear_caches(
        &self,
        req: Request<ClearCachesRequest>,
    ) -> Result<Response<ClearCachesResponse>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let branch = Some(r.branch.as_str()).filter(|b| !b.is_empty());
        let (removed, bytes) = api::caches::clear(&self.app, &who, &r.project, branch).await?;
        Ok(Response::new(ClearCachesResponse {
            removed: removed as u64,
            bytes,
        }))
    }

    async fn trigger_build(
        &self,
        req: Request<TriggerBuildRequest>,
    ) -> Result<Response<TriggerBuildResponse>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let args = api::builds::TriggerArgs {
            project: r.project,
            branch: r.branch,
            commit: r.commit,
            force: r.force,
        };
        let t = api::builds::trigger(&self.app, &who, args).await?;
        Ok(Response::new(TriggerBuildResponse {
            build: Some(t.build.into()),
            created: t.created,
        }))
    }

    async fn list_builds(
        &self,
        req: Request<ListBuildsRequest>,
    ) -> Result<Response<ListBuildsResponse>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let branch = (!r.branch.is_empty()).then_some(r.branch.as_str());
        let page = api::builds::list(&self.app, &who, &r.project, branch, r.page, r.per_page)?;
        Ok(Response::new(ListBuildsResponse {
            builds: page.builds.into_iter().map(Into::into).collect(),
            total: page.total,
            page: page.page,
            per_page: page.per_page,
        }))
    }

    async fn get_build(&self, req: Request<GetBuildRequest>) -> Result<Response<Build>, Status> {
        let who = self.who(&req)?;
        let b = api::builds::get(&self.app, &who, req.into_inner().build_id)?;
        Ok(Response::new(b.into()))
    }

    async fn restart_build(
        &self,
        req: Request<GetBuildRequest>,
    ) -> Result<Response<Build>, Status> {
        let who = self.who(&req)?;
        let b = api::builds::restart(&self.app, &who, req.into_inner().build_id).await?;
        Ok(Response::new(b.into()))
    }

    async fn cancel_build(&self, req: Request<GetBuildRequest>) -> Result<Response<Build>, Status> {
        let who = self.who(&req)?;
        let b = api::builds::cancel(&self.app, &who, req.into_inner().build_id).await?;
        Ok(Response::new(b.into()))
    }

    async fn prioritize_build(
        &self,
        req: Request<GetBuildRequest>,
    ) -> Result<Response<Build>, Status> {
        let who = self.who(&req)?;
        let b = api::builds::prioritize(&self.app, &who, req.into_inner().build_id).await?;
        Ok(Response::new(b.into()))
    }

    type FollowLogStream = Out<LogData>;

    async fn follow_log(
        &self,
        req: Request<FollowLogRequest>,
    ) -> Result<Response<Self::FollowLogStream>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        if r.attempt > 0 {
            let (data, state) = api::logs::attempt(&self.app, &who, r.job_id, r.attempt).await?;
            let mut d = LogData {
                offset: 0,
                data,
                done: true,
                state: 0,
            };
            d.set_state(state.into());
            let one: Self::FollowLogStream = Box::pin(tokio_stream::once(Ok(d)));
            return Ok(Response::new(one));
        }
        let mut pieces = api::logs::follow(&self.app, &who, r.job_id, r.offset, r.follow)?;
        let (tx, rx) = mpsc::channel(8);
        self.app.spawn("follow-log-grpc", async move {
            while let Some(p) = pieces.recv().await {
                let msg = p.map_err(Status::from).map(|p| {
                    let mut d = LogData {
                        offset: p.offset,
                        data: p.data,
                        done: p.done,
                        state: 0,
                    };
                    if let Some(s) = p.state {
                        d.set_state(s.into());
                    }
                    d
                });
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_builders(
        &self,
        req: Request<ListBuildersRequest>,
    ) -> Result<Response<ListBuildersResponse>, Status> {
        let who = self.who(&req)?;
        let builders = api::builders::list(&self.app, &who)?;
        Ok(Response::new(ListBuildersResponse {
            builders: builders.into_iter().map(Into::into).collect(),
        }))
    }

    async fn set_builder_trusted(
        &self,
        req: Request<SetBuilderTrustedRequest>,
    ) -> Result<Response<Builder>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let b = api::builders::set_trusted(&self.app, &who, &r.builder_id, r.trusted).await?;
        Ok(Response::new(b.into()))
    }

    async fn get_project_key(
        &self,
        req: Request<GetProjectKeyRequest>,
    ) -> Result<Response<ProjectKey>, Status> {
        let who = self.who(&req)?;
        let k = api::projects::public_key(&self.app, &who, &req.into_inner().project).await?;
        Ok(Response::new(ProjectKey {
            key: k.key,
            fingerprint: k.fingerprint,
        }))
    }

    async fn backup(
        &self,
        req: Request<BackupRequest>,
    ) -> Result<Response<BackupResponse>, Status> {
        let who = self.who(&req)?;
        let t = api::backup::take(&self.app, &who, &req.into_inner().dir).await?;
        Ok(Response::new(BackupResponse {
            records: t.records,
            logs: t.logs,
            log_bytes: t.log_bytes,
            bytes: t.bytes,
            paused_ms: t.paused_ms,
        }))
    }

    async fn collect_logs(
        &self,
        req: Request<CollectLogsRequest>,
    ) -> Result<Response<CollectLogsResponse>, Status> {
        let who = self.who(&req)?;
        let (lines, logs, bytes) =
            api::backup::collect_logs(&self.app, &who, req.into_inner().dry_run).await?;
        Ok(Response::new(CollectLogsResponse { lines, logs, bytes }))
    }

    async fn add_schedule(
        &self,
        req: Request<AddScheduleRequest>,
    ) -> Result<Response<Schedule>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let new = api::schedules::NewSchedule {
            project: r.project,
            branch: r.branch,
            interval: r.interval,
            cron: r.cron,
            dont_run_if_recent_build_exists: r.dont_run_if_recent_build_exists,
        };
        let s = api::schedules::add(&self.app, &who, new).await?;
        Ok(Response::new(s.into()))
    }

    async fn list_schedules(
        &self,
        req: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        let who = self.who(&req)?;
        let project = req.into_inner().project;
        let project = Some(project.as_str()).filter(|p| !p.is_empty());
        let schedules = api::schedules::list(&self.app, &who, project)?;
        Ok(Response::new(ListSchedulesResponse {
            schedules: schedules.into_iter().map(Into::into).collect(),
        }))
    }

    async fn remove_schedule(
        &self,
        req: Request<RemoveScheduleRequest>,
    ) -> Result<Response<Schedule>, Status> {
        let who = self.who(&req)?;
        let s = api::schedules::remove(&self.app, &who, req.into_inner().id).await?;
        Ok(Response::new(s.into()))
    }

    async fn drain_builder(
        &self,
        req: Request<BuilderRequest>,
    ) -> Result<Response<Builder>, Status> {
        let who = self.who(&req)?;
        let b = api::builders::drain(&self.app, &who, &req.into_inner().builder_id).await?;
        Ok(Response::new(b.into()))
    }

    async fn revoke_builder(
        &self,
        req: Request<BuilderRequest>,
    ) -> Result<Response<Builder>, Status> {
        let who = self.who(&req)?;
        let b = api::builders::revoke(&self.app, &who, &req.into_inner().builder_id).await?;
        Ok(Response::new(b.into()))
    }

    async fn create_enrolment_token(
        &self,
        req: Request<CreateEnrolmentTokenRequest>,
    ) -> Result<Response<EnrolmentToken>, Status> {
        let who = self.who(&req)?;
        let t = api::builders::create_token(&self.app, &who, &req.into_inner().description).await?;
        Ok(Response::new(t.into()))
    }

    async fn revoke_enrolment_token(
        &self,
        req: Request<RevokeEnrolmentTokenRequest>,
    ) -> Result<Response<EnrolmentToken>, Status> {
        let who = self.who(&req)?;
        let t = api::builders::revoke_token(&self.app, &who, &req.into_inner().id).await?;
        Ok(Response::new(t.into()))
    }

    async fn list_enrolment_tokens(
        &self,
        req: Request<ListEnrolmentTokensRequest>,
    ) -> Result<Response<ListEnrolmentTokensResponse>, Status> {
        let who = self.who(&req)?;
        let tokens = api::builders::list_tokens(&self.app, &who)?;
        Ok(Response::new(ListEnrolmentTokensResponse {
            tokens: tokens.into_iter().map(Into::into).collect(),
        }))
    }

    type WatchEventsStream = Out<Event>;

    async fn watch_events(
        &self,
        req: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let who = self.who(&req)?;
        let req_md = req.metadata().clone();
        let r = req.into_inner();
        let kinds = r
            .kinds()
            .map(|k| EventKind::try_from(k).map_err(|e| Status::invalid_argument(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let args = api::events::WatchArgs {
            from: r.from,
            tail: r.tail,
            follow: r.follow,
            filter: EventFilter {
                project: (!r.project.is_empty()).then_some(r.project),
                build_id: (r.build_id > 0).then_some(r.build_id),
                job_id: (r.job_id > 0).then_some(r.job_id),
                kinds,
            },
        };
        let mut stream = api::events::watch(&self.app, &who, args)?;
        let (app, token) = (self.app.clone(), bearer(&req_md).map(String::from));
        stream.recheck_with(Box::new(move || {
            api::auth::from_bearer(&app, token.as_deref())
        }));
        let (tx, rx) = mpsc::channel(64);
        let shutdown = self.app.shutdown.clone();
        self.app.spawn("watch-events", async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    n = stream.next() => n,
                };
                let msg = match next {
                    Ok(Some(e)) => Ok(e.into()),
                    Ok(None) => return,
                    Err(e) => Err(Status::from(e)),
                };
                let end = msg.is_err();
                if tx.send(msg).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn login(&self, req: Request<LoginRequest>) -> Result<Response<NewApiToken>, Status> {
        let addr = client_ip(&req);
        let r = req.into_inner();
        let t = api::auth::login(&self.app, &r.user, &r.password, addr, &r.token_name).await?;
        Ok(Response::new(new_token(t)))
    }

    async fn redeem_cli_code(
        &self,
        req: Request<RedeemCliCodeRequest>,
    ) -> Result<Response<NewApiToken>, Status> {
        let r = req.into_inner();
        let t = api::auth::redeem_cli_code(&self.app, &r.code, &r.token_name).await?;
        Ok(Response::new(new_token(t)))
    }

    async fn whoami(&self, req: Request<WhoamiRequest>) -> Result<Response<Whoami>, Status> {
        let who = self.who(&req)?;
        Ok(Response::new(api::users::whoami(&self.app, &who).into()))
    }

    async fn add_user(
        &self,
        req: Request<AddUserRequest>,
    ) -> Result<Response<AddUserResponse>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let new = api::users::NewUser {
            role: match r.role {
                0 => kha_core::view::Role::None,
                n => role(n, "role")?,
            },
            name: r.name,
            password: r.password,
            email: r.email,
        };
        let (u, generated) = api::users::add(&self.app, &who, new).await?;
        Ok(Response::new(AddUserResponse {
            user: Some(u.into()),
            generated_password: generated.map(|s| s.into_inner()).unwrap_or_default(),
        }))
    }

    async fn list_users(
        &self,
        req: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let who = self.who(&req)?;
        let users = api::users::list(&self.app, &who)?;
        Ok(Response::new(ListUsersResponse {
            users: users.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_user(&self, req: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let who = self.who(&req)?;
        let u = api::users::get(&self.app, &who, &req.into_inner().name)?;
        Ok(Response::new(u.into()))
    }

    async fn remove_user(
        &self,
        req: Request<RemoveUserRequest>,
    ) -> Result<Response<RemoveUserResponse>, Status> {
        let who = self.who(&req)?;
        api::users::remove(&self.app, &who, &req.into_inner().name).await?;
        Ok(Response::new(RemoveUserResponse {}))
    }

    async fn set_role(&self, req: Request<SetRoleRequest>) -> Result<Response<User>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let project = (!r.project.is_empty()).then_some(r.project.as_str());
        let u =
            api::users::set_role(&self.app, &who, &r.user, project, role(r.role, "role")?).await?;
        Ok(Response::new(u.into()))
    }

    async fn set_user_disabled(
        &self,
        req: Request<SetUserDisabledRequest>,
    ) -> Result<Response<User>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let u = api::users::set_disabled(&self.app, &who, &r.user, r.disabled).await?;
        Ok(Response::new(u.into()))
    }

    async fn set_password(
        &self,
        req: Request<SetPasswordRequest>,
    ) -> Result<Response<SetPasswordResponse>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        api::users::set_password(&self.app, &who, &r.user, &r.password).await?;
        Ok(Response::new(SetPasswordResponse {}))
    }

    async fn create_token(
        &self,
        req: Request<CreateTokenRequest>,
    ) -> Result<Response<NewApiToken>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let expires = (r.expires_ms > 0).then_some(r.expires_ms);
        let t = api::auth::create_token(&self.app, &who, &r.name, expires).await?;
        Ok(Response::new(new_token(t)))
    }

    async fn list_tokens(
        &self,
        req: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let who = self.who(&req)?;
        let tokens = api::auth::list_tokens(&self.app, &who)?;
        Ok(Response::new(ListTokensResponse {
            tokens: tokens.into_iter().map(Into::into).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let who = self.who(&req)?;
        api::auth::revoke_token(&self.app, &who, &req.into_inner().id).await?;
        Ok(Response::new(RevokeTokenResponse {}))
    }

    async fn list_audit(
        &self,
        req: Request<ListAuditRequest>,
    ) -> Result<Response<AuditPage>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let page = api::audit::list(&self.app, &who, r.page, r.per_page)?;
        Ok(Response::new(page.into()))
    }

    async fn update_project(
        &self,
        req: Request<UpdateProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let u = api::projects::ProjectUpdate {
            private: r.private,
            default_branch: r.default_branch,
            timeout_secs: r.timeout_secs,
            poll_interval_secs: r.poll_interval_secs,
            build_tags: r.build_tags,
            cancel_superseded: r.cancel_superseded,
            share_secrets_with_forks: r.share_secrets_with_forks,
            job_memory_mib: r.job_memory_mib,
            job_pids: r.job_pids,
            job_cpu_millis: r.job_cpu_millis,
            job_network: r.job_network,
            max_running_jobs: r.max_running_jobs,
            one_build_per_branch: r.one_build_per_branch,
            log_keep_builds: r.log_keep_builds,
            log_max_age_days: r.log_max_age_days,
            notify: (!r.notify_channel.is_empty()).then_some(api::projects::NotifyChange {
                channel: r.notify_channel,
                value: r.notify_value,
            }),
        };
        let p = api::projects::update(&self.app, &who, &r.name, u).await?;
        Ok(Response::new(p.into()))
    }

    async fn get_notify(
        &self,
        req: Request<GetNotifyRequest>,
    ) -> Result<Response<NotifySettings>, Status> {
        let who = self.who(&req)?;
        let channels = api::projects::notify_settings(&self.app, &who, &req.into_inner().project)?;
        Ok(Response::new(NotifySettings {
            channels: channels.into_iter().collect(),
        }))
    }

    async fn star(&self, req: Request<StarRequest>) -> Result<Response<StarResponse>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        api::users::star(&self.app, &who, &r.project, r.on).await?;
        Ok(Response::new(StarResponse {}))
    }

    async fn list_members(
        &self,
        req: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        let who = self.who(&req)?;
        let members = api::projects::members(&self.app, &who, &req.into_inner().project)?;
        Ok(Response::new(ListMembersResponse {
            members: members.into_iter().map(Into::into).collect(),
        }))
    }
}

#[cfg(test)]
mod tests;

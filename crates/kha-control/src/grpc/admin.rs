//! `kha.admin.v1.AdminService`: what the `kha` CLI calls. A thin adapter
//! over the service layer (`api`): each call authenticates, converts the
//! request, calls one service function, and encodes its view.

use crate::api::{self, ApiError, Principal};
use crate::app::App;
use crate::auth::bearer;
use kha_core::event::{EventFilter, EventKind};
use kha_proto::admin::admin_service_server::AdminService;
use kha_proto::admin::*;
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

    type FollowLogStream = Out<LogData>;

    async fn follow_log(
        &self,
        req: Request<FollowLogRequest>,
    ) -> Result<Response<Self::FollowLogStream>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
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
}

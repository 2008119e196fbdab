//! Creating a build from a resolved commit: `.travis.yml` at that commit,
//! the branch filters, matrix expansion with the repository's root files,
//! each job's spec and requirements, and the build and its jobs written in
//! one transaction. A configuration that cannot be read, or a build the
//! pre-build hook refuses (`notify::hooks`), gives an errored build whose
//! log says why.

use super::{short, Request, TriggerError, Triggerer};
use crate::notify::{decide, JobFacts, Notice, NOTICE_VERSION};
use crate::scheduler::SchedError;
use crate::store::records::{Build, Job, JobSpec, Project};
use crate::vcs::Resolved;
use kha_core::{travis, BuildState, JobState, Labels};

impl Triggerer {
    /// Creates the build (or says why not: filtered out).
    pub(super) async fn create(
        &self,
        project: &Project,
        req: &Request,
        resolved: &Resolved,
    ) -> Result<Result<Build, &'static str>, TriggerError> {
        let sched = &self.sched;
        let now = sched.clock.now();
        let build_id = sched.store.next_build_id()?;
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
            author: resolved.author.clone(),
            tag: req.tag,
            author_email: resolved.author_email.clone(),
            committer: resolved.committer.clone(),
            committer_email: resolved.committer_email.clone(),
            previous_state: previous_state(sched, project, req),
            notifications: None,
            context: Some(context(project, req, resolved)),
            stages: vec![],
        };
        let mut cfg_cache = travis::CacheConfig::default();
        let ctx = build.context.clone().unwrap_or_default();
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
                        build.notifications = Some(cfg.notifications.clone());
                        cfg_cache = cfg.cache.clone();
                        // Travis applies branch filters to pushes, not to
                        // pull requests.
                        if !req.force
                            && req.pr_number == 0
                            && !travis::branch_allowed(&cfg, &req.branch, req.tag)
                        {
                            self.note_branch(project, req, &resolved.commit, 0, "filtered")?;
                            return Ok(Err("filtered"));
                        }
                        // The root `if:` (Travis: the request is rejected,
                        // no build); the branch shows as filtered.
                        let (runs, why) = travis::build_runs(&cfg, &ctx);
                        if !req.force && !runs {
                            let condition = cfg.condition.as_ref().map(|c| c.text.as_str());
                            tracing::info!(project = %project.name, branch = %req.branch, commit = %resolved.commit, condition, problem = ?why.map(|w| w.to_string()), "the .travis.yml `if:` is false: not built");
                            self.note_branch(project, req, &resolved.commit, 0, "filtered")?;
                            return Ok(Err("condition"));
                        }
                        let opts = travis::ExpandOptions {
                            max_jobs: sched.cfg.max_jobs_per_build,
                            repo: travis::RepoFacts::from_root_files(resolved.root_files.iter()),
                            branch: Some(req.branch.clone()),
                            context: ctx.clone(),
                        };
                        match travis::expand_with(&cfg, &opts) {
                            Ok(x) => {
                                build.warnings = cfg.warnings.clone();
                                build
                                    .warnings
                                    .extend(x.warnings.iter().map(|w| w.to_string()));
                                build.fast_finish = x.fast_finish;
                                build.notifications = Some(x.notifications);
                                build.stages = x.stages.clone();
                                Ok(x.jobs)
                            }
                            Err(e) => Err(format!(".travis.yml: {e}")),
                        }
                    }
                },
            },
        };
        // A build that could be set up may still be refused by the
        // control node's pre-build hook: it is then created errored, with
        // the hook's word as the reason, like a configuration that cannot
        // be read.
        let mut refused = None;
        let plans = match plans {
            Ok(plans) => match self
                .hooks
                .pre_build(&self.requested(project, &build, &plans))
                .await
            {
                Ok(()) => Ok(plans),
                Err(why) => {
                    tracing::info!(build_id, project = %project.name, branch = %req.branch, reason = %why, "the pre-build hook refused the build");
                    refused = Some(why.clone());
                    Err(format!("refused by the pre-build hook: {why}"))
                }
            },
            Err(e) => Err(e),
        };
        let base = JobSpec {
            repo_url: project.repo_url.clone(),
            branch: req.branch.clone(),
            commit: resolved.commit.clone(),
            phases: vec![],
            env: vec![],
            timeout_secs: project.timeout_secs,
            limits: project.job_limits,
            image: project.image.clone(),
            vcs: project.vcs,
            secure_env: Default::default(),
            // Subversion checks out the branch's path; CVS, the module.
            module: match project.vcs {
                kha_core::spec::VcsKind::Svn => resolved.path.clone(),
                _ => project.module.clone(),
            },
            cache: None,
            vars: vec![],
            language: String::new(),
        };
        let priority = kha_core::priority::for_build(
            req.pr_number > 0,
            !req.tag && req.branch == project.default_branch,
        );
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
            stage: String::new(),
            queue_key,
            priority,
            spec,
        };
        let mut jobs = Vec::new();
        match plans {
            Err(msg) => {
                build.state = BuildState::Errored;
                build.finished_ms = now;
                build.error = msg.clone();
                let id = sched.store.next_job_id()?;
                let text = match &refused {
                    Some(why) => format!("kha: the pre-build hook refused this build\n{why}\n"),
                    None => format!("kha: cannot set this build up\n{msg}\n"),
                };
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
                let mut checked = crate::secrets::Checked::new();
                for plan in plans {
                    let id = sched.store.next_job_id()?;
                    let mut requires = plan.requires.clone();
                    if requires.get("image").is_none() {
                        requires.insert("image", project.image.clone());
                    }
                    let mut spec = base.clone();
                    // Encrypted entries stay only where the build may see
                    // them and they decrypt (else dropped with a warning).
                    let (env, secure_env, warnings) = crate::secrets::build_env(
                        &sched.keys,
                        project,
                        req,
                        &plan.env,
                        &mut checked,
                    );
                    build.warnings.extend(
                        warnings
                            .into_iter()
                            .map(|w| format!("job {build_id}.{}: {w}", plan.number)),
                    );
                    spec.secure_env = secure_env;
                    // Travis's own variables first (TRAVIS_OS_NAME, CC, …),
                    // then the file's.
                    spec.env = plan
                        .builtin_env
                        .iter()
                        .map(|(k, v)| format!("{k}={}", kha_core::shell::quote(v)))
                        .chain(env)
                        .collect();
                    spec.phases = travis::PHASES
                        .iter()
                        .filter_map(|p| plan.phases.get(p).map(|c| (p.to_string(), c.clone())))
                        .filter(|(_, c)| !c.is_empty())
                        .collect();
                    if let Some(img) = requires.get("image") {
                        spec.image = img.to_string();
                    }
                    spec.cache =
                        travis::job_cache(&cfg_cache, &plan, sched.cfg.cache.max_archive_bytes);
                    // A job that sees decrypted secrets caches apart: its
                    // archive could hold them (`cargo login` writes the
                    // token under ~/.cargo), and a job without them (a
                    // fork's pull request, or any job an untrusted builder
                    // may take) must never restore it.
                    if let Some(c) = spec.cache.as_mut() {
                        if spec
                            .env
                            .iter()
                            .any(|l| travis::secure::ciphertext(l).is_some())
                        {
                            c.slug.push_str("--secure");
                        }
                    }
                    // Travis's variables of the build and the job are
                    // computed when the job is offered (`job_spec`).
                    spec.language = plan.language.clone();
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
                    job.stage = plan.stage.clone().unwrap_or_default();
                    jobs.push(job);
                }
            }
        }
        build.jobs = jobs.iter().map(|j| j.id).collect();
        sched.store.create_build(&mut build, &mut jobs, now)?;
        self.note_branch(project, req, &resolved.commit, build_id, "")?;
        sched.store.durable().await?;
        sched.enqueue(&jobs);
        tracing::info!(build_id, project = %project.name, branch = %req.branch, commit = %resolved.commit, event = %req.event, jobs = jobs.len(), state = %build.state, "build created");
        if project.cancel_superseded {
            self.cancel_superseded(project, &build).await;
        }
        Ok(Ok(build))
    }
}

impl Triggerer {
    /// The build about to be created, as the pre-build hook is told it
    /// (`build_requested`; its jobs have no ids yet).
    fn requested(&self, project: &Project, build: &Build, plans: &[travis::JobPlan]) -> Notice {
        let web_url = self.sched.cfg.base_url(None);
        let mut facts = decide::facts(&web_url, project, build, &[]);
        facts.jobs = plans
            .iter()
            .map(|p| JobFacts {
                number: format!("{}.{}", build.id, p.number),
                state: JobState::Queued.to_string(),
                allow_failure: p.allow_failure,
                name: p.name.clone().unwrap_or_default(),
                stage: p.stage.clone().unwrap_or_default(),
                matrix: p.matrix.clone(),
                ..Default::default()
            })
            .collect();
        Notice {
            version: NOTICE_VERSION,
            event: "build_requested".into(),
            build: facts,
            job: None,
        }
    }
}

/// The build's facts as Travis's conditions and variables see them.
fn context(project: &Project, req: &Request, resolved: &Resolved) -> travis::BuildContext {
    let repo = if !project.github_repo.is_empty() {
        project.github_repo.clone()
    } else {
        travis::vars::github_slug(&project.repo_url).unwrap_or_else(|| project.name.clone())
    };
    let pull_request = (req.pr_number > 0).then(|| {
        let mut pr = req.pull_request.clone().unwrap_or_default();
        pr.number = req.pr_number;
        pr
    });
    travis::BuildContext {
        event: req.event_type(),
        repo,
        branch: req.branch.clone(),
        tag: req.tag.then(|| req.branch.clone()),
        commit: resolved.commit.clone(),
        commit_message: resolved.full_message.clone(),
        commit_range: travis::vars::commit_range(&req.before, &resolved.commit),
        sender: req.sender.clone(),
        pull_request,
    }
}

/// The state of the newest finished push or API build on the request's
/// branch (Travis's `previous_state`; pull-request builds and other
/// branches do not count). Looks back at most 1,000 builds.
fn previous_state(
    sched: &crate::scheduler::Scheduler,
    project: &Project,
    req: &Request,
) -> Option<BuildState> {
    for id in sched.store.project_build_ids(&project.name).take(1000) {
        let b = sched.store.get_build(id.ok()?).ok()??;
        if b.branch == req.branch && b.pr_number == 0 && b.state.is_final() {
            return Some(b.state);
        }
    }
    None
}

//! A trigger that could not even resolve its commit (the fetch failed, the
//! commit is not in the repository) leaves a visible trace: an errored
//! build whose one job's log says why, like a `.travis.yml` that cannot be
//! read. It is not remembered as the commit's build, so a later delivery
//! of the same push builds it once the cause is fixed.

use super::{Request, TriggerError, Triggerer};
use crate::scheduler::SchedError;
use crate::store::records::{Build, Job, JobSpec, Project};
use kha_core::{BuildState, JobState, Labels};

impl Triggerer {
    /// Records an errored build of `req` saying `why`.
    pub async fn record_failure(
        &self,
        project: &Project,
        req: &Request,
        why: &str,
    ) -> Result<Build, TriggerError> {
        let sched = &self.sched;
        let now = sched.clock.now();
        let commit = req.commit.clone().unwrap_or_default();
        let build_id = sched.store.next_build_id()?;
        let job_id = sched.store.next_job_id()?;
        let msg = format!("cannot fetch the commit to build: {why}");
        let mut build = Build {
            id: build_id,
            stages: vec![],
            project: project.name.clone(),
            branch: req.branch.clone(),
            commit: commit.clone(),
            message: String::new(),
            state: BuildState::Errored,
            created_ms: now,
            finished_ms: now,
            jobs: vec![job_id],
            warnings: vec![],
            error: msg.clone(),
            pr_number: req.pr_number,
            event: req.event.clone(),
            fast_finish: false,
            author: String::new(),
            tag: req.tag,
            author_email: String::new(),
            committer: String::new(),
            committer_email: String::new(),
            previous_state: None,
            notifications: None,
            context: None,
        };
        let text = format!("kha: cannot set this build up\n{msg}\n");
        sched
            .logs
            .write_all(job_id, text.as_bytes())
            .map_err(SchedError::from)?;
        let job = Job {
            id: job_id,
            build: build_id,
            number: 1,
            project: project.name.clone(),
            state: JobState::Errored,
            epoch: 0,
            attempts: 0,
            builder: String::new(),
            started_ms: 0,
            finished_ms: now,
            cancel_requested: false,
            allow_failure: false,
            requires: Labels::default(),
            detail: msg,
            log_len: text.len() as u64,
            log_sha256: String::new(),
            matrix: vec![],
            name: String::new(),
            stage: String::new(),
            queue_key: 0,
            priority: kha_core::priority::NORMAL,
            spec: JobSpec {
                repo_url: project.repo_url.clone(),
                branch: req.branch.clone(),
                commit: commit.clone(),
                vcs: project.vcs,
                ..JobSpec::default()
            },
        };
        sched.store.create_build(&mut build, &mut [job], now)?;
        sched
            .store
            .forget_dedup(&project.name, &req.dedup_name(), &commit)?;
        sched.store.durable().await?;
        tracing::warn!(build_id, project = %project.name, branch = %req.branch, commit = %commit, reason = %why, "errored build: the commit could not be fetched");
        Ok(build)
    }
}

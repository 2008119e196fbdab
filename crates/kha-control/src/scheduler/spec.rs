//! What a job is offered with: the wire form of its record, with
//! Travis's variables computed from its build's context.

use crate::store::records::Job;
use kha_core::travis::BuildContext;
use kha_proto::agent;

/// Travis's variables of the job: those its record kept (written before
/// they were computed here), else its build's and its own.
fn job_vars(job: &Job, ctx: &BuildContext, base_url: &str) -> Vec<(String, String)> {
    if !job.spec.vars.is_empty() {
        return job.spec.vars.clone();
    }
    kha_core::travis::vars::job_vars(
        ctx,
        &kha_core::travis::vars::JobFacts {
            build_id: job.build,
            number: job.number,
            job_id: job.id,
            name: job.name.clone(),
            stage: job.stage.clone(),
            language: job.spec.language.clone(),
            base_url: base_url.to_string(),
        },
    )
}

/// Does the job have encrypted variables (so that only a trusted builder
/// may run it)?
pub fn needs_secrets(job: &Job) -> bool {
    job.spec
        .env
        .iter()
        .any(|l| kha_core::travis::secure::ciphertext(l).is_some())
}

/// The wire form of what a builder needs to run a job. Encrypted env
/// entries are not in it: they come decrypted in `Granted`. Travis's
/// variables come from the build's context (`ctx`) and the job, or from the
/// job record when it was written with them.
pub fn job_spec(job: &Job, ctx: &BuildContext, base_url: &str) -> agent::JobSpec {
    let env = job
        .spec
        .env
        .iter()
        .filter(|l| kha_core::travis::secure::ciphertext(l).is_none())
        .cloned()
        .collect();
    let mut spec = agent::JobSpec {
        build_id: job.build,
        number: job.number,
        project: job.project.clone(),
        repo_url: job.spec.repo_url.clone(),
        branch: job.spec.branch.clone(),
        commit: job.spec.commit.clone(),
        env,
        timeout_secs: job.spec.timeout_secs,
        limits: kha_proto::convert::limits_to_wire(job.spec.limits),
        image: job.spec.image.clone(),
        vcs: job.spec.vcs.wire_name().into(),
        module: job.spec.module.clone(),
        requires: job.requires.to_vec(),
        cache: job.spec.cache.clone().map(Into::into),
        vars: job_vars(job, ctx, base_url)
            .into_iter()
            .map(|(name, value)| agent::Var { name, value })
            .collect(),
        ..Default::default()
    };
    let mut phases = kha_core::travis::Phases::default();
    for (name, cmds) in &job.spec.phases {
        if let Some(slot) = phases.get_mut(name) {
            *slot = cmds.clone();
        }
    }
    spec.set_phases(phases);
    spec.set_secure_env(match job.spec.secure_env {
        kha_core::spec::SecureEnv::Available => agent::SecureEnv::Unspecified,
        kha_core::spec::SecureEnv::Withheld => agent::SecureEnv::Withheld,
        kha_core::spec::SecureEnv::Removed => agent::SecureEnv::Removed,
    });
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use kha_core::travis::vars::{self, JobFacts};
    use kha_core::travis::{EventType, PullRequest};

    fn vars_of(spec: &agent::JobSpec) -> Vec<(String, String)> {
        spec.vars
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect()
    }

    fn pull_request() -> BuildContext {
        BuildContext {
            event: EventType::PullRequest,
            repo: "o/r".into(),
            branch: "main".into(),
            commit: "c0ffee".into(),
            commit_message: "Fix it\n\nat last\n".into(),
            pull_request: Some(PullRequest {
                number: 7,
                head_repo: "f/r".into(),
                head_branch: "fix".into(),
                head_sha: "beef".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_job_is_offered_with_its_builds_variables_and_its_own() {
        let mut job = Job::for_test(41, 40, 2, "p");
        job.name = "lint".into();
        job.stage = "test".into();
        job.spec.language = "rust".into();
        let ctx = pull_request();
        let spec = job_spec(&job, &ctx, "https://ci.example.org/");
        let want = vars::job_vars(
            &ctx,
            &JobFacts {
                build_id: 40,
                number: 2,
                job_id: 41,
                name: "lint".into(),
                stage: "test".into(),
                language: "rust".into(),
                base_url: "https://ci.example.org/".into(),
            },
        );
        assert_eq!(vars_of(&spec), want);
        let get = |k: &str| want.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("TRAVIS_JOB_NUMBER"), Some("40.2"));
        assert_eq!(get("TRAVIS_PULL_REQUEST"), Some("7"));
        assert_eq!(get("TRAVIS_COMMIT_MESSAGE"), Some("Fix it\n\nat last"));
        assert_eq!(get("TRAVIS_LANGUAGE"), Some("rust"));
        assert_eq!(
            get("TRAVIS_JOB_WEB_URL"),
            Some("https://ci.example.org/jobs/41")
        );
    }

    #[test]
    fn a_record_written_with_its_variables_is_offered_with_them() {
        let mut job = Job::for_test(41, 40, 1, "p");
        let kept = vec![("TRAVIS_BRANCH".to_string(), "then".to_string())];
        job.spec.vars = kept.clone();
        let spec = job_spec(&job, &pull_request(), "");
        assert_eq!(vars_of(&spec), kept);
    }
}

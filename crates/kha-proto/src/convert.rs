//! Conversions between wire types and kha-core types.

use crate::agent::{self, Outcome};
use kha_core::travis::Phases;
use kha_core::JobOutcome;

impl From<JobOutcome> for Outcome {
    fn from(o: JobOutcome) -> Self {
        match o {
            JobOutcome::Passed => Outcome::Passed,
            JobOutcome::Failed => Outcome::Failed,
            JobOutcome::Errored => Outcome::Errored,
            JobOutcome::Canceled => Outcome::Canceled,
            JobOutcome::TimedOut => Outcome::TimedOut,
            JobOutcome::Infrastructure => Outcome::Infrastructure,
        }
    }
}

impl TryFrom<Outcome> for JobOutcome {
    type Error = &'static str;
    fn try_from(o: Outcome) -> Result<Self, Self::Error> {
        Ok(match o {
            Outcome::Passed => JobOutcome::Passed,
            Outcome::Failed => JobOutcome::Failed,
            Outcome::Errored => JobOutcome::Errored,
            Outcome::Canceled => JobOutcome::Canceled,
            Outcome::TimedOut => JobOutcome::TimedOut,
            Outcome::Infrastructure => JobOutcome::Infrastructure,
            Outcome::Unspecified => return Err("outcome is unspecified"),
        })
    }
}

impl From<kha_core::JobSpec> for agent::JobSpec {
    fn from(s: kha_core::JobSpec) -> Self {
        let mut wire = agent::JobSpec {
            build_id: s.build_id,
            number: s.number,
            project: s.project,
            repo_url: s.repo_url,
            branch: s.branch,
            commit: s.commit,
            env: s.env,
            timeout_secs: s.timeout_secs,
            image: s.image,
            vcs: s.vcs.wire_name().into(),
            module: s.module,
            requires: s.requires,
            vars: s
                .vars
                .into_iter()
                .map(|(name, value)| agent::Var { name, value })
                .collect(),
            cache: s.cache.map(Into::into),
            limits: limits_to_wire(s.limits),
            ..Default::default()
        };
        // Available is the wire's default (0), as peers from before
        // secrets send it, so an empty spec stays empty.
        wire.set_secure_env(match s.secure_env {
            kha_core::spec::SecureEnv::Available => agent::SecureEnv::Unspecified,
            kha_core::spec::SecureEnv::Withheld => agent::SecureEnv::Withheld,
            kha_core::spec::SecureEnv::Removed => agent::SecureEnv::Removed,
        });
        wire.set_phases(s.phases);
        wire
    }
}

/// A spec naming a version control system this side does not know is
/// refused, never run as git.
impl TryFrom<agent::JobSpec> for kha_core::JobSpec {
    type Error = String;
    fn try_from(w: agent::JobSpec) -> Result<Self, String> {
        let secure_env = match w.secure_env() {
            agent::SecureEnv::Unspecified | agent::SecureEnv::Available => {
                kha_core::spec::SecureEnv::Available
            }
            agent::SecureEnv::Withheld => kha_core::spec::SecureEnv::Withheld,
            agent::SecureEnv::Removed => kha_core::spec::SecureEnv::Removed,
        };
        Ok(kha_core::JobSpec {
            secure_env,
            phases: w.phases(),
            build_id: w.build_id,
            number: w.number,
            project: w.project,
            repo_url: w.repo_url,
            branch: w.branch,
            commit: w.commit,
            env: w.env,
            timeout_secs: w.timeout_secs,
            vcs: w.vcs.parse()?,
            image: w.image,
            module: w.module,
            requires: w.requires,
            vars: w.vars.into_iter().map(|v| (v.name, v.value)).collect(),
            cache: w.cache.map(Into::into),
            limits: w
                .limits
                .map(|l| kha_core::limits::JobLimits {
                    memory_mib: l.memory_mib,
                    pids: l.pids,
                    cpu_millis: l.cpu_millis,
                    network: l.network,
                })
                .unwrap_or_default(),
        })
    }
}

/// A job's limits on the wire: absent when the project asks for nothing.
pub fn limits_to_wire(l: kha_core::limits::JobLimits) -> Option<agent::JobLimits> {
    (!l.is_default()).then_some(agent::JobLimits {
        memory_mib: l.memory_mib,
        pids: l.pids,
        cpu_millis: l.cpu_millis,
        network: l.network,
    })
}

impl From<kha_core::cache::CacheSpec> for agent::CacheSpec {
    fn from(c: kha_core::cache::CacheSpec) -> Self {
        agent::CacheSpec {
            directories: c.directories,
            before_cache: c.before_cache,
            setup: c.setup,
            prune: c.prune,
            slug: c.slug,
            max_archive_bytes: c.max_archive_bytes,
        }
    }
}

impl From<agent::CacheSpec> for kha_core::cache::CacheSpec {
    fn from(c: agent::CacheSpec) -> Self {
        kha_core::cache::CacheSpec {
            directories: c.directories,
            before_cache: c.before_cache,
            setup: c.setup,
            prune: c.prune,
            slug: c.slug,
            max_archive_bytes: c.max_archive_bytes,
        }
    }
}

impl agent::JobSpec {
    /// The phases carried by a job spec.
    pub fn phases(&self) -> Phases {
        Phases {
            before_install: self.before_install.clone(),
            install: self.install.clone(),
            before_script: self.before_script.clone(),
            script: self.script.clone(),
            after_success: self.after_success.clone(),
            after_failure: self.after_failure.clone(),
            after_script: self.after_script.clone(),
        }
    }

    /// Fills the phase fields from kha-core's phases.
    pub fn set_phases(&mut self, p: Phases) {
        self.before_install = p.before_install;
        self.install = p.install;
        self.before_script = p.before_script;
        self.script = p.script;
        self.after_success = p.after_success;
        self.after_failure = p.after_failure;
        self.after_script = p.after_script;
    }
}

impl agent::FinishRefusal {
    /// The typed refusal a FinishJob error carries in its details, if any.
    pub fn of(status: &tonic::Status) -> Option<agent::FinishRefusal> {
        if status.details().is_empty() {
            return None;
        }
        <agent::FinishRefusal as prost::Message>::decode(status.details()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        for o in [
            JobOutcome::Passed,
            JobOutcome::Failed,
            JobOutcome::Errored,
            JobOutcome::Canceled,
            JobOutcome::TimedOut,
            JobOutcome::Infrastructure,
        ] {
            assert_eq!(JobOutcome::try_from(Outcome::from(o)), Ok(o));
        }
        assert!(JobOutcome::try_from(Outcome::Unspecified).is_err());
    }

    #[test]
    fn job_specs_round_trip() {
        let spec = kha_core::JobSpec {
            build_id: 12,
            number: 3,
            project: "demo".into(),
            repo_url: "https://example.invalid/demo.git".into(),
            branch: "main".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            phases: Phases {
                before_install: vec!["a".into()],
                install: vec!["b".into(), "b2".into()],
                before_script: vec!["c".into()],
                script: vec!["d".into()],
                after_success: vec!["e".into()],
                after_failure: vec!["f".into()],
                after_script: vec!["g".into()],
            },
            env: vec!["A=1 B=\"two words\"".into()],
            vars: vec![("TRAVIS_EVENT_TYPE".into(), "push".into())],
            secure_env: kha_core::spec::SecureEnv::Removed,
            limits: kha_core::limits::JobLimits {
                memory_mib: 512,
                pids: 100,
                cpu_millis: 500,
                network: true,
            },
            timeout_secs: 600,
            image: "erlang-26".into(),
            vcs: kha_core::spec::VcsKind::Cvs,
            module: "mod".into(),
            requires: vec!["otp_release=27".into()],
            cache: Some(kha_core::cache::CacheSpec {
                directories: vec!["$HOME/.cargo".into(), "target".into()],
                before_cache: vec!["rm -f x".into()],
                setup: vec!["export A=1".into()],
                prune: vec!["$HOME/.cargo/registry/src".into()],
                slug: "cache-linux-ab--rust-stable".into(),
                max_archive_bytes: 7,
            }),
        };
        let wire = agent::JobSpec::from(spec.clone());
        assert_eq!(wire.install, ["b", "b2"]);
        assert_eq!(wire.after_script, ["g"]);
        assert_eq!(wire.image, "erlang-26");
        assert_eq!((wire.vcs.as_str(), wire.module.as_str()), ("cvs", "mod"));
        let back = |w: &agent::JobSpec| kha_core::JobSpec::try_from(w.clone()).unwrap();
        assert_eq!(back(&wire), spec);
        assert_eq!(agent::JobSpec::from(back(&wire)), wire);
        let empty = agent::JobSpec::default();
        assert_eq!(agent::JobSpec::from(back(&empty)), empty);
        let hg = agent::JobSpec {
            vcs: "hg".into(),
            ..agent::JobSpec::default()
        };
        assert!(kha_core::JobSpec::try_from(hg).is_err());
    }
}

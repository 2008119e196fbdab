//! What a builder needs to run one job: the domain form of the wire's
//! `JobSpec` (`kha-proto` converts between the two), so the builder's job
//! runner, driver and workspace never see a prost type.

use crate::travis::Phases;
use crate::BuildId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The image a job runs in when its spec names none.
pub const DEFAULT_IMAGE: &str = "default";

/// One job's work: which commit of which repository, the phases' commands,
/// the environment lines, and its limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub build_id: BuildId,
    /// The job's number within its build (`build.number`, e.g. `12.1`).
    pub number: u32,
    pub project: String,
    pub repo_url: String,
    pub branch: String,
    /// The revision to check out (a git commit id).
    pub commit: String,
    #[serde(with = "PhasesDef")]
    pub phases: Phases,
    /// Shell assignment lines (`A=1 B="two words"`), exported in order.
    pub env: Vec<String>,
    /// 0: the default ([`crate::limits::DEFAULT_JOB_TIMEOUT_SECS`]).
    pub timeout_secs: u64,
    /// Empty: [`DEFAULT_IMAGE`].
    pub image: String,
}

impl JobSpec {
    /// The image to run in, the default when none is named.
    pub fn image(&self) -> &str {
        if self.image.is_empty() {
            DEFAULT_IMAGE
        } else {
            &self.image
        }
    }

    /// How long the job may run.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(match self.timeout_secs {
            0 => crate::limits::DEFAULT_JOB_TIMEOUT_SECS,
            t => t,
        })
    }
}

/// serde's view of [`Phases`] (a `.travis.yml` model type without serde of
/// its own), field for field.
#[derive(Serialize, Deserialize)]
#[serde(remote = "Phases")]
struct PhasesDef {
    before_install: Vec<String>,
    install: Vec<String>,
    before_script: Vec<String>,
    script: Vec<String>,
    after_success: Vec<String>,
    after_failure: Vec<String>,
    after_script: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_serde() {
        let mut spec = JobSpec {
            build_id: 12,
            number: 1,
            commit: "abc".into(),
            ..JobSpec::default()
        };
        spec.phases.script = vec!["make test".into()];
        assert_eq!(spec.image(), "default");
        assert_eq!(spec.timeout(), Duration::from_secs(3_600));
        spec.image = "erlang-26".into();
        spec.timeout_secs = 5;
        assert_eq!(spec.image(), "erlang-26");
        assert_eq!(spec.timeout(), Duration::from_secs(5));
        let text = serde_yaml::to_string(&spec).unwrap();
        assert!(text.contains("script:\n  - make test"), "{text}");
        let back: JobSpec = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, spec);
    }
}

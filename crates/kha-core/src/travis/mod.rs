//! The `.travis.yml` model: reading the file people already have, and
//! expanding it into the jobs Travis would have run.
//!
//! - [`parse`] reads the text into a typed, normalised [`Config`]. Every key
//!   form Travis accepts is folded into one shape; keys kha does not act on
//!   are kept and reported in [`Config::warnings`] (with line and column in
//!   [`Config::diagnostics`]); only text that is not YAML, or not a mapping,
//!   is an error.
//! - [`expand`] / [`expand_with`] turn a config into [`JobPlan`]s: the
//!   build matrix, includes, excludes, allowed failures, stages, order and
//!   numbering as Travis does them, language defaults for `install` and
//!   `script`, and the labels a builder needs to run each job. Expansion is
//!   bounded ([`DEFAULT_MAX_JOBS`], configurable).
//! - [`should_skip`] reads skip markers in a commit message and
//!   [`branch_allowed`] applies `branches: only/except`.
//! - [`lint`] does all of it for `kha lint` and renders the result.
//! - [`unrunnable`] names the jobs no connected builder could ever take.
//!
//! Everything here is pure: no I/O. What the defaults need to know about the
//! repository comes in as [`RepoFacts`].
//!
//! Where each rule comes from is cited next to it: the Travis docs
//! (docs.travis-ci.com, pages named by title) first, and where they are
//! silent or stale, Travis's own config parser (travis-yml) or older core
//! (travis-core).

mod branches;
mod cache;
pub mod cond;
mod config;
mod context;
mod diag;
mod langs;
mod lenient;
mod lint;
mod matrix;
mod notify;
pub mod secure;
mod skip;
pub mod vars;
mod yaml;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod gate_tests {
    use super::*;

    #[test]
    fn duplicate_keys_warn_as_on_travis() {
        let cfg = parse(
            "script: a
script: b
",
        )
        .unwrap();
        assert_eq!(cfg.phases.script, ["b"]);
        assert!(
            cfg.warnings.iter().any(|w| w.contains("line 2")),
            "{:?}",
            cfg.warnings
        );
    }
}

#[cfg(test)]
mod table_tests;

pub use branches::{BranchFilter, BranchPattern};
pub use cache::{job_cache, CacheConfig};
pub use config::{branch_allowed, Config, GitSettings, JobSpec, MatchSpec, StageSpec};
pub use context::{is_fork, BuildContext, EventType, PullRequest};
pub use diag::Diagnostic;
pub use langs::{builder_arch, RepoFacts, CONSULTED_FILES};
pub use lint::{lint, lint_with, LintReport};
pub use matrix::{
    build_runs, expand_with, root_data, Dropped, ExpandOptions, Expansion, DEFAULT_MAX_JOBS,
    MAX_COMBINATIONS,
};
pub use notify::{check_override, Channel, Frequency, Notifications, Outcome};
pub use skip::should_skip;
pub use yaml::{Pos, Value};

use crate::Labels;
use std::fmt;

/// The job phases, in the order they run. A failing command in the first
/// three errors the job and stops it; in `script` it fails the job, and the
/// later `script` commands still run; the `after_*` phases never change the
/// result (Travis docs: Customizing the Build, "Breaking the Build").
pub const PHASES: [&str; 7] = [
    "before_install",
    "install",
    "before_script",
    "script",
    "after_success",
    "after_failure",
    "after_script",
];

/// What a failing command in a phase does to the job (Travis docs:
/// Customizing the Build, "Breaking the Build").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The job is errored and stops at once.
    Error,
    /// The job is failed; the phase's later commands still run.
    Fail,
    /// The job's result does not change.
    Ignore,
}

/// How a failure in `phase` counts, or None for an unknown phase.
pub fn phase_on_failure(phase: &str) -> Option<OnFailure> {
    Some(match phase {
        "before_install" | "install" | "before_script" => OnFailure::Error,
        "script" => OnFailure::Fail,
        "after_success" | "after_failure" | "after_script" => OnFailure::Ignore,
        _ => return None,
    })
}

/// The commands of each phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Phases {
    pub before_install: Vec<String>,
    pub install: Vec<String>,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_success: Vec<String>,
    pub after_failure: Vec<String>,
    pub after_script: Vec<String>,
}

impl Phases {
    pub fn get(&self, name: &str) -> Option<&Vec<String>> {
        Some(match name {
            "before_install" => &self.before_install,
            "install" => &self.install,
            "before_script" => &self.before_script,
            "script" => &self.script,
            "after_success" => &self.after_success,
            "after_failure" => &self.after_failure,
            "after_script" => &self.after_script,
            _ => return None,
        })
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Vec<String>> {
        Some(match name {
            "before_install" => &mut self.before_install,
            "install" => &mut self.install,
            "before_script" => &mut self.before_script,
            "script" => &mut self.script,
            "after_success" => &mut self.after_success,
            "after_failure" => &mut self.after_failure,
            "after_script" => &mut self.after_script,
            _ => return None,
        })
    }
}

/// A `.travis.yml` that could not be read, with where the trouble is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<yaml::YamlError> for ConfigError {
    fn from(e: yaml::YamlError) -> ConfigError {
        ConfigError {
            line: e.pos.map(|p| p.line),
            column: e.pos.map(|p| p.column),
            message: e.message,
        }
    }
}

/// One job a config expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    /// 1-based position in the build (`12.1`, `12.2`, …).
    pub number: u32,
    /// Commands, with the language's defaults for `install` and `script`
    /// when the file gives none.
    pub phases: Phases,
    /// Shell assignment lines as written in the file, exported in order:
    /// `env.global` first, then the job's own.
    pub env: Vec<String>,
    /// The matrix values that make this job differ from its siblings.
    pub matrix: Vec<(String, String)>,
    /// What a builder needs to run it: `os`, `arch` when the file sets it,
    /// and runtime versions (`otp_release=26.0`, `rust=stable`, …).
    pub requires: Labels,
    pub allow_failure: bool,
    /// `name` of a job from `jobs.include`.
    pub name: Option<String>,
    /// Build stage, when the config uses stages.
    pub stage: Option<String>,
    pub language: String,
    /// Variables Travis itself exports for this job (`TRAVIS_OS_NAME`,
    /// `TRAVIS_OTP_RELEASE`, `CC`, …), to export before [`JobPlan::env`].
    pub builtin_env: Vec<(String, String)>,
}

/// Parses `.travis.yml` text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    // serde_yaml is the parser of record: what it rejects is an error, at
    // the line and column it names. The positioned tree below is what the
    // reader walks, since serde_yaml's values carry no positions.
    // Duplicate keys are the one thing it refuses that Travis accepts (the
    // later value wins); the reader below warns about them instead.
    let gate = serde_yaml::from_str::<serde_yaml::Value>(text)
        .map(|_| ())
        .or_else(|e| {
            if e.to_string().starts_with("duplicate entry") {
                Ok(())
            } else {
                Err(e)
            }
        });
    if let Err(e) = gate {
        // Where both reject the file, the positioned reader's error points
        // at the start of the trouble (e.g. an unterminated quote's line).
        if let Err(mine) = yaml::load(text) {
            return Err(mine.into());
        }
        let loc = e.location();
        return Err(ConfigError {
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: format!("invalid YAML: {e}"),
        });
    }
    let loaded = yaml::load(text)?;
    config::read(&loaded.root, loaded.warnings)
}

/// Expands a config into its jobs; refuses more than `max_jobs`. Language
/// defaults that depend on the repository's files are rendered as shell
/// conditionals; [`expand_with`] takes [`RepoFacts`] to resolve them.
pub fn expand(cfg: &Config, max_jobs: usize) -> Result<Vec<JobPlan>, ConfigError> {
    let opts = ExpandOptions {
        max_jobs,
        ..ExpandOptions::default()
    };
    expand_with(cfg, &opts).map(|e| e.jobs)
}

/// A job no builder can run, and what the closest builder lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrunnable {
    pub number: u32,
    /// Labels missing from the builder that comes closest (all of the job's
    /// requirements when there is no builder).
    pub missing: Vec<(String, String)>,
}

impl fmt::Display for Unrunnable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let missing: Vec<String> = self
            .missing
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        write!(
            f,
            "job {} can run on no builder: none has {}",
            self.number,
            missing.join(", ")
        )
    }
}

/// The jobs that none of `builders` (their labels) satisfies, so the
/// control node can report them instead of leaving them queued.
pub fn unrunnable(jobs: &[JobPlan], builders: &[Labels]) -> Vec<Unrunnable> {
    jobs.iter()
        .filter(|j| !builders.iter().any(|b| b.satisfies(&j.requires)))
        .map(|j| {
            let closest = builders
                .iter()
                .map(|b| b.missing(&j.requires))
                .min_by_key(Vec::len)
                .unwrap_or_else(|| {
                    j.requires
                        .0
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect()
                });
            Unrunnable {
                number: j.number,
                missing: closest
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_as_string_or_list() {
        let cfg = parse("script: make test\ninstall:\n  - a\n  - b\n").unwrap();
        assert_eq!(cfg.phases.script, vec!["make test"]);
        assert_eq!(cfg.phases.install, vec!["a", "b"]);
    }

    #[test]
    fn env_list_gives_a_job_each() {
        let cfg = parse("script: x\nenv:\n  - A=1\n  - A=2 B=3\n").unwrap();
        let jobs = expand(&cfg, 10).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1].number, 2);
        assert_eq!(jobs[1].env, vec!["A=2 B=3"]);
        assert!(expand(&cfg, 1).is_err());
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("script:\n  - ok\n bad: [\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
        assert!(e.to_string().starts_with("line "), "{e}");
        assert!(parse("").is_err());
        assert!(parse("- a\n- b\n").is_err());
    }

    #[test]
    fn unknown_keys_warn() {
        let cfg = parse("script: x\ndeploy: {provider: s3}\n").unwrap();
        assert_eq!(cfg.warnings.len(), 1);
    }

    #[test]
    fn phase_semantics() {
        assert_eq!(phase_on_failure("install"), Some(OnFailure::Error));
        assert_eq!(phase_on_failure("script"), Some(OnFailure::Fail));
        assert_eq!(phase_on_failure("after_script"), Some(OnFailure::Ignore));
        assert_eq!(phase_on_failure("deploy"), None);
        assert!(PHASES.iter().all(|p| phase_on_failure(p).is_some()));
    }

    #[test]
    fn unrunnable_jobs_are_named() {
        let cfg = parse("language: erlang\notp_release: [26.0, 25.3]\n").unwrap();
        let jobs = expand(&cfg, 10).unwrap();
        let b26 = Labels::parse(["os=linux", "otp_release=26.0"]).unwrap();
        let un = unrunnable(&jobs, &[b26]);
        assert_eq!(un.len(), 1);
        assert_eq!(un[0].number, 2);
        assert_eq!(
            un[0].missing,
            vec![("otp_release".to_string(), "25.3".to_string())]
        );
        assert!(un[0].to_string().contains("otp_release=25.3"));
        assert_eq!(unrunnable(&jobs, &[]).len(), 2);
    }
}

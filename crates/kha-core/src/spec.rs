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
    /// The revision to check out: a git commit id, a Subversion revision
    /// number, a CVS timestamp.
    pub commit: String,
    #[serde(with = "PhasesDef")]
    pub phases: Phases,
    /// Shell assignment lines (`A=1 B="two words"`), exported in order.
    pub env: Vec<String>,
    /// 0: the default ([`crate::limits::DEFAULT_JOB_TIMEOUT_SECS`]).
    pub timeout_secs: u64,
    /// Empty: [`DEFAULT_IMAGE`].
    pub image: String,
    /// The version control system `repo_url` names.
    #[serde(default)]
    pub vcs: VcsKind,
    /// What to check out inside the repository: Subversion, the branch's
    /// path (`trunk`, `branches/x`); CVS, the module. Empty for git.
    #[serde(default)]
    pub module: String,
    /// The job's requirement labels (`arch=aarch64`, `otp_release=27`,
    /// `image=default`): what the builder picks its image and toolchains by.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Variables the control node sets (Travis's `TRAVIS_*` that come from
    /// the build), names and literal values, exported before `env`.
    #[serde(default)]
    pub vars: Vec<(String, String)>,
    /// What the job caches between builds (`cache:`); None: nothing.
    #[serde(default)]
    pub cache: Option<crate::cache::CacheSpec>,
    /// Whether the job may see encrypted variables (which come with the
    /// grant, never in the spec).
    #[serde(default)]
    pub secure_env: SecureEnv,
    /// What the project asks of the builder's limits.
    #[serde(default)]
    pub limits: crate::limits::JobLimits,
}

/// Whether a job may see its build's encrypted variables (`secure:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecureEnv {
    /// It may (`TRAVIS_SECURE_ENV_VARS=true`).
    #[default]
    Available,
    /// A pull request from a fork, with no encrypted variables to remove.
    Withheld,
    /// A pull request from a fork whose encrypted variables were removed:
    /// the log says so.
    Removed,
}

/// What the log says when a fork's pull request loses its encrypted
/// variables (Travis's words).
pub const SECURE_ENV_REMOVED_NOTICE: &str =
    "Encrypted environment variables have been removed for security reasons.";

/// A version control system a project's code lives in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VcsKind {
    #[default]
    Git,
    /// Subversion: `commit` is a revision number.
    Svn,
    /// CVS: `commit` is a timestamp the checkout is pinned to.
    Cvs,
}

impl VcsKind {
    pub const ALL: [VcsKind; 3] = [VcsKind::Git, VcsKind::Svn, VcsKind::Cvs];

    pub fn as_str(self) -> &'static str {
        match self {
            VcsKind::Git => "git",
            VcsKind::Svn => "svn",
            VcsKind::Cvs => "cvs",
        }
    }
}

impl VcsKind {
    /// Its name on the wire: git is the empty default, as peers from
    /// before Subversion and CVS send it.
    pub fn wire_name(self) -> &'static str {
        match self {
            VcsKind::Git => "",
            k => k.as_str(),
        }
    }
}

impl std::fmt::Display for VcsKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VcsKind {
    type Err = String;

    /// `""` is git, as older records and peers say nothing.
    fn from_str(s: &str) -> Result<VcsKind, String> {
        match s {
            "" | "git" => Ok(VcsKind::Git),
            "svn" | "subversion" => Ok(VcsKind::Svn),
            "cvs" => Ok(VcsKind::Cvs),
            other => Err(format!(
                "unknown version control system {other:?}: use git, svn or cvs"
            )),
        }
    }
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

    #[test]
    fn vcs_kinds() {
        for k in VcsKind::ALL {
            assert_eq!(k.as_str().parse::<VcsKind>(), Ok(k));
        }
        assert_eq!("".parse::<VcsKind>(), Ok(VcsKind::Git));
        assert!("hg"
            .parse::<VcsKind>()
            .unwrap_err()
            .contains("git, svn or cvs"));
    }
}

/// Is `commit` a Subversion revision number (rather than a git commit id,
/// which has letters in all but a vanishing few cases, or a CVS timestamp)?
pub fn is_revision(commit: &str) -> bool {
    (1..=10).contains(&commit.len()) && commit.bytes().all(|b| b.is_ascii_digit())
}

/// How a commit is shown in full: `r42` for a Subversion revision, else
/// as it is.
pub fn display_commit(commit: &str) -> String {
    if is_revision(commit) {
        format!("r{commit}")
    } else {
        commit.to_string()
    }
}

/// How a commit is shown in short: `r42` for a Subversion revision, a git
/// id's first `len` characters, anything else (a CVS timestamp) whole, as
/// cutting it would change it.
pub fn short_commit(commit: &str, len: usize) -> String {
    if is_revision(commit) {
        format!("r{commit}")
    } else if commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        commit.chars().take(len).collect()
    } else {
        commit.to_string()
    }
}

/// A path inside a repository as it goes into a Subversion URL: the
/// characters a URL gives a meaning (`%`, `?`, `#`, and space) escaped, so
/// a branch named `z%41` is that branch and not `zA`. svn escapes the rest
/// itself.
pub fn svn_url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            ' ' => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod commit_tests {
    use super::*;

    #[test]
    fn commits_are_shown_by_kind() {
        for (commit, full, short) in [
            ("42", "r42", "r42"),
            ("1", "r1", "r1"),
            (
                "0123456789abcdef0123456789abcdef01234567",
                "0123456789abcdef0123456789abcdef01234567",
                "01234567",
            ),
            ("20261203T033931Z", "20261203T033931Z", "20261203T033931Z"),
            (
                "2026-12-03 04:05:06 +0000",
                "2026-12-03 04:05:06 +0000",
                "2026-12-03 04:05:06 +0000",
            ),
            ("", "", ""),
        ] {
            assert_eq!(display_commit(commit), full, "{commit}");
            assert_eq!(short_commit(commit, 8), short, "{commit}");
        }
    }

    #[test]
    fn svn_paths_in_urls() {
        for (path, url) in [
            ("trunk", "trunk"),
            ("branches/z%41", "branches/z%2541"),
            ("branches/a b?c#d", "branches/a%20b%3Fc%23d"),
            ("branches/ü@1", "branches/ü@1"),
        ] {
            assert_eq!(svn_url_path(path), url, "{path}");
        }
    }
}

//! The typed, normalised model of a `.travis.yml`: [`Config`] and the
//! specs it holds (`jobs.include`, `exclude`/`allow_failures`, `stages`,
//! `git`).
//!
//! Every form Travis accepts for a key is folded into one shape by the
//! readers below (a string or a list for commands and versions; `env` as a
//! string, a list, a list of lists, `{global, matrix}` or `{global, jobs}`;
//! `matrix:` or `jobs:`), so expansion never looks at YAML again. Like
//! Travis's config parser, a value of the wrong type is dropped with a
//! message rather than refusing the whole file; unlike it, kha keeps every
//! key it does not act on and says so.
//!
//! - `read`: the root mapping, `stages` and `git`;
//! - `env`: `env` in all its forms;
//! - `jobs`: `matrix:`/`jobs:` (include, exclude, allow_failures);
//! - `values`: the value readers they share (commands, scalars, matrix
//!   values, flags, conditions, kept keys).

mod env;
mod jobs;
mod read;
mod values;

pub(crate) use read::read;

use super::branches::BranchFilter;
use super::cond::Condition;
use super::diag::Diagnostic;
use super::langs;
use super::notify::Notifications;
use super::yaml::{Pos, Value};
use super::Phases;
use std::collections::BTreeSet;

/// One entry of `jobs.include`, as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobSpec {
    pub pos: Pos,
    pub language: Option<String>,
    pub name: Option<String>,
    pub stage: Option<String>,
    /// Matrix keys with this job's value, canonical names (`ruby` → `rvm`).
    pub axes: Vec<(String, String)>,
    /// The job's own env lines, if it sets `env`.
    pub env: Option<Vec<String>>,
    /// Commands this job sets; a phase left empty inherits the root's.
    pub phases: Phases,
    /// Phases set to `skip`: no commands, and no language default.
    pub skipped_phases: BTreeSet<String>,
    /// `if:`: the job is dropped when it is false.
    pub condition: Option<Condition>,
    /// Keys kha keeps without acting on them (`services`, `addons`, …).
    pub kept: Vec<(String, Value)>,
}

/// An entry of `jobs.exclude` or `jobs.allow_failures`: the keys a job must
/// match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatchSpec {
    pub pos: Pos,
    /// Canonical key and wanted value; `env` holds its lines as a list.
    pub keys: Vec<(String, Value)>,
    /// `if:`: the entry applies to the jobs for which it holds.
    pub condition: Option<Condition>,
}

/// An entry of `stages:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    pub name: String,
    /// `if:`: the stage and its jobs are dropped when it is false for
    /// every one of its jobs.
    pub condition: Option<Condition>,
}

/// `git:` settings the builder applies when it checks the commit out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSettings {
    /// Clone depth; None clones the whole history (`depth: false`).
    pub depth: Option<u32>,
    pub submodules: bool,
    pub quiet: bool,
}

impl Default for GitSettings {
    /// Travis docs: Customizing the Build, "Git Clone Depth" (50) and "Git
    /// Submodules" (cloned by default).
    fn default() -> GitSettings {
        GitSettings {
            depth: Some(50),
            submodules: true,
            quiet: false,
        }
    }
}

/// A parsed `.travis.yml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// `language` as written, canonicalised when kha knows it; None means
    /// Travis's default, ruby.
    pub language: Option<String>,
    /// Root-level commands.
    pub phases: Phases,
    /// Root phases set to `skip`.
    pub skipped_phases: BTreeSet<String>,
    /// One entry per env matrix row, its lines joined by spaces (the shell
    /// reads `A=1 B=2` as two assignments). Kept for callers of the first
    /// API; [`Config::env_jobs`] is the structured form.
    pub env_matrix: Vec<String>,
    /// `env.jobs` (or `env.matrix`, or a plain `env` list): one entry per
    /// job, each a list of shell assignment lines.
    pub env_jobs: Vec<Vec<String>>,
    /// `env.global`: lines exported in every job, before the job's own.
    pub env_global: Vec<String>,
    /// Root matrix keys with their values, canonical names.
    pub axes: Vec<(String, Vec<String>)>,
    pub include: Vec<JobSpec>,
    pub exclude: Vec<MatchSpec>,
    pub allow_failures: Vec<MatchSpec>,
    /// `jobs.fast_finish`: the build's result is known once the jobs not
    /// allowed to fail are done.
    pub fast_finish: bool,
    pub stages: Vec<StageSpec>,
    pub branches: BranchFilter,
    pub notifications: Notifications,
    pub git: GitSettings,
    /// `cache:` and `before_cache:`.
    pub cache: super::cache::CacheConfig,
    pub gobuild_args: Option<String>,
    pub bundler_args: Option<String>,
    /// Root `if:`: when false, the build is not created.
    pub condition: Option<Condition>,
    /// Root keys kha keeps without acting on them.
    pub kept: Vec<(String, Value)>,
    /// Everything worth telling about the file, with positions.
    pub diagnostics: Vec<Diagnostic>,
    /// [`Config::diagnostics`] as display strings (`line L, column C: …`).
    pub warnings: Vec<String>,
}

impl Config {
    /// Values of a root matrix key.
    pub fn axis(&self, key: &str) -> Option<&[String]> {
        self.axes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// The language jobs default to.
    pub fn language_or_default(&self) -> &str {
        self.language.as_deref().unwrap_or(langs::DEFAULT_LANGUAGE)
    }
}

/// Whether `cfg` builds pushes to `name`.
pub fn branch_allowed(cfg: &Config, name: &str, is_tag: bool) -> bool {
    cfg.branches.allows(name, is_tag)
}

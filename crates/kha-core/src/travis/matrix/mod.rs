//! Matrix expansion: a [`Config`] into the jobs of one build, in the order
//! and with the numbers Travis gives them.
//!
//! The steps are those of Travis's config parser, travis-yml
//! (`Travis::Yml::Matrix#jobs`, then `Configs#expand_stages`,
//! `#allow_failures`, `#reorder_jobs`, `#unique_jobs`), and the rules are
//! the ones the Travis docs state (Build Matrix; Build Stages;
//! Environment Variables):
//!
//! 1. The cross product of the root's matrix keys (language versions,
//!    `os`, `arch`, `dist`, …, then `env.jobs`), the first key varying
//!    slowest. Keys the language does not use are ignored.
//! 2. `jobs.include` entries are added after it; if the product is a single
//!    job made of single values, the includes replace it ("Explicitly
//!    included jobs with only one element in the build matrix"). With
//!    neither, the build has one job.
//! 3. Every job takes the root's other keys (`script`, …) unless it sets
//!    its own, and an included job takes the first value of each root
//!    matrix key it does not set ("Explicitly included jobs inherit the
//!    first value in the array"), including the first `env.jobs` entry.
//! 4. `env.global` is exported in every job, before the job's own env.
//! 5. `jobs.exclude` drops the jobs matching all of an entry's keys; `env`
//!    must match exactly, after the global env is set aside.
//! 6. Duplicate jobs are dropped ("Job Uniqueness and Duplicate Jobs").
//! 7. Stages: a job without `stage` takes the previous job's, the first
//!    `test`; stage order is `stages:` then first appearance.
//! 8. `jobs.allow_failures` marks the jobs matching all of an entry's keys
//!    (see `matching::allow_failure_matches` for how `env` matches).
//! 9. Jobs are ordered by stage, then as listed, and numbered from 1.
//!    Allowed failures keep their place and number: travis-core's
//!    `Build::Matrix#expand_matrix` numbers jobs `"#{number}.#{ix + 1}"`
//!    in expansion order and `matrix_allow_failures` only sets the flag
//!    (the web UI then lists them apart). travis-yml's `Configs::Reorder`
//!    (2019 on) also sorted them last within their stage; kha keeps
//!    travis-core's order, which a file's job numbers were written against.

mod conditions;
mod job;
mod matching;
mod plan;

use super::config::Config;
use super::diag::Diagnostic;
use super::langs::{self, RepoFacts};
use super::yaml::Pos;
use super::{ConfigError, JobPlan};
pub use conditions::{build_runs, root_data, Dropped};
use conditions::{describe, filter_stages, job_data, Checker};
use job::{include_job, Job};
use matching::{allow_failure_matches, exclude_matches};
use plan::plan;
use std::collections::{BTreeSet, HashSet};

/// Travis's own limit (Travis docs: Build Matrix, "Build matrixes are
/// currently limited to a maximum of 200 jobs").
pub const DEFAULT_MAX_JOBS: usize = 200;

/// Combinations considered before `exclude` at most, whatever the job
/// limit: the cost of expansion is bounded before any work is done.
pub const MAX_COMBINATIONS: usize = 10_000;

/// What expansion needs besides the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandOptions {
    /// Refuse configs that expand to more jobs than this.
    pub max_jobs: usize,
    /// Root files of the repository, for language defaults.
    pub repo: RepoFacts,
    /// The branch being built, for `allow_failures` entries with `branch`.
    pub branch: Option<String>,
    /// What the build was started by: what `if:` conditions evaluate
    /// against.
    pub context: crate::travis::BuildContext,
}

impl Default for ExpandOptions {
    fn default() -> ExpandOptions {
        ExpandOptions {
            max_jobs: DEFAULT_MAX_JOBS,
            repo: RepoFacts::unknown(),
            branch: None,
            context: crate::travis::BuildContext::default(),
        }
    }
}

/// The jobs of a build, with what expansion found worth saying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub jobs: Vec<JobPlan>,
    pub warnings: Vec<Diagnostic>,
    /// The config's `jobs.fast_finish`.
    pub fast_finish: bool,
    /// Stage names in order; empty when the config uses no stages.
    pub stages: Vec<String>,
    /// Jobs and stages whose `if:` is false for the build's context.
    pub dropped: Vec<Dropped>,
    /// The config's notifications less those whose `if:` is false.
    pub notifications: crate::travis::Notifications,
}

/// Root env entries: the structured ones, or the old one-line-per-job
/// field when a caller filled only that.
fn env_entries(cfg: &Config) -> Vec<Vec<String>> {
    if !cfg.env_jobs.is_empty() {
        return cfg.env_jobs.clone();
    }
    cfg.env_matrix
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| vec![l.clone()])
        .collect()
}

/// Expands `cfg` into its jobs.
pub fn expand_with(cfg: &Config, opts: &ExpandOptions) -> Result<Expansion, ConfigError> {
    let mut warnings = Vec::new();
    let root_lang = cfg.language_or_default().to_string();

    // 1. Matrix keys the root's language uses, in Travis's order.
    let mut keys: Vec<(&str, &[String])> = cfg
        .axes
        .iter()
        .filter(|(k, v)| !v.is_empty() && langs::language_expands(&root_lang, k))
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    keys.sort_by_key(|(k, _)| langs::axis_index(k).unwrap_or(usize::MAX));
    let entries = env_entries(cfg);
    let mut radices: Vec<usize> = keys.iter().map(|(_, v)| v.len()).collect();
    if !entries.is_empty() {
        radices.push(entries.len());
    }
    let combinations = if radices.is_empty() {
        0
    } else {
        radices
            .iter()
            .try_fold(1usize, |acc, n| acc.checked_mul(*n))
            .unwrap_or(usize::MAX)
    };
    let work_limit = opts.max_jobs.max(MAX_COMBINATIONS);
    if combinations > work_limit || cfg.include.len() > work_limit {
        return Err(too_many(
            cfg,
            &keys,
            entries.len(),
            combinations,
            opts.max_jobs,
        ));
    }

    let shared = Job {
        language: root_lang.clone(),
        axes: Vec::new(),
        own_env: Vec::new(),
        phases: cfg.phases.clone(),
        skipped: cfg.skipped_phases.clone(),
        name: None,
        stage: None,
        condition: None,
        // Root keys kha keeps (services, addons, …) are part of every job,
        // for exclude matching and uniqueness, as in travis-yml's
        // `with_shared`; private `_` keys and nested settings are not.
        kept: cfg
            .kept
            .iter()
            .filter(|(k, _)| !k.starts_with('_') && !k.contains('.'))
            .cloned()
            .collect(),
        allow_failure: false,
    };

    let mut jobs: Vec<(Job, Option<Pos>)> = Vec::new();
    for index in 0..combinations {
        // Mixed radix, last key fastest (Ruby's Array#product).
        let mut rest = index;
        let mut picks = vec![0usize; radices.len()];
        for (slot, radix) in picks.iter_mut().zip(&radices).rev() {
            *slot = rest % radix;
            rest /= radix;
        }
        let mut job = shared.clone();
        for ((k, values), pick) in keys.iter().zip(&picks) {
            if let Some(v) = values.get(*pick) {
                job.axes.push((k.to_string(), v.clone()));
            }
        }
        if !entries.is_empty() {
            if let Some(e) = picks.last().and_then(|p| entries.get(*p)) {
                job.own_env = e.clone();
            }
        }
        jobs.push((job, None));
    }

    // 2. Includes.
    let single = jobs.len() == 1
        && !cfg.include.is_empty()
        && jobs.first().is_some_and(|(j, _)| j.own_env.len() <= 1);
    if single {
        jobs.clear();
    }
    for inc in &cfg.include {
        jobs.push((
            include_job(&shared, inc, &keys, entries.first()),
            Some(inc.pos),
        ));
    }
    if jobs.is_empty() {
        jobs.push((shared.clone(), None));
    }

    // Keys a job's language or os does not use are dropped (travis-yml
    // `without_unsupported`): an included node_js job does not inherit the
    // root's `python`, an osx job has no `arch`.
    for (job, _) in &mut jobs {
        let (lang, os) = (job.language.clone(), job.os().to_string());
        job.axes
            .retain(|(k, _)| langs::language_expands(&lang, k) && langs::os_supports(&os, k));
        job.axes
            .sort_by_key(|(k, _)| langs::axis_index(k).unwrap_or(usize::MAX));
    }

    // 5. Exclude (an entry with `if:` only where it holds).
    let ctx = &opts.context;
    let mut check = Checker::default();
    let mut excluded_by = vec![0usize; cfg.exclude.len()];
    jobs.retain(|(job, _)| {
        let hit = cfg.exclude.iter().position(|m| {
            exclude_matches(m, job) && check.holds(m.condition.as_ref(), &job_data(cfg, ctx, job))
        });
        if let Some(i) = hit {
            if let Some(n) = excluded_by.get_mut(i) {
                *n += 1;
            }
        }
        hit.is_none()
    });
    for (m, n) in cfg.exclude.iter().zip(&excluded_by) {
        if *n == 0 {
            warnings.push(Diagnostic::at(
                m.pos,
                "this `jobs.exclude` entry matches no job; check its keys and values (env must match exactly)",
            ));
        }
    }

    // 6. Duplicates, then the jobs whose `if:` is false.
    dedup(&mut jobs, &mut warnings);
    let mut dropped = Vec::new();
    jobs.retain(|(job, _)| {
        let keep = check.holds(job.condition.as_ref(), &job_data(cfg, ctx, job));
        if !keep {
            if let Some(c) = &job.condition {
                dropped.push(Dropped {
                    what: describe(job),
                    condition: c.clone(),
                });
            }
        }
        keep
    });

    // 7. Stages, less those whose `if:` holds for none of their jobs.
    let mut stages = assign_stages(cfg, &mut jobs);
    filter_stages(cfg, ctx, &mut jobs, &mut stages, &mut check, &mut dropped);

    // 8. Allowed failures.
    let root_keys: BTreeSet<&str> = keys
        .iter()
        .map(|(k, _)| *k)
        .chain((!entries.is_empty()).then_some("env"))
        .collect();
    for m in &cfg.allow_failures {
        let mut hits = 0;
        for (job, _) in &mut jobs {
            let hit = {
                let j: &Job = job;
                allow_failure_matches(
                    m,
                    &cfg.env_global,
                    opts.branch.as_deref(),
                    &j.own_env,
                    &|k| j.attr(k),
                )
            };
            if hit && check.holds(m.condition.as_ref(), &job_data(cfg, ctx, job)) {
                job.allow_failure = true;
            }
            if hit {
                hits += 1;
            }
        }
        let off_matrix: Vec<&str> = m
            .keys
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !root_keys.contains(k) && *k != "branch")
            .collect();
        if hits == 0 {
            let why = if m.keys.iter().any(|(k, _)| k == "branch") && opts.branch.is_none() {
                " (it names a branch, and no branch was given)"
            } else {
                ""
            };
            warnings.push(Diagnostic::at(
                m.pos,
                format!("this `jobs.allow_failures` entry matches no job{why}; check its keys and values"),
            ));
        } else if !off_matrix.is_empty() {
            warnings.push(Diagnostic::at(
                m.pos,
                format!(
                    "this `jobs.allow_failures` entry uses {} which the root matrix does not expand; Travis's docs say such entries match nothing, but Travis's config parser (travis-yml) matched them as kha does, against each job's own keys",
                    off_matrix.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }

    // 9. Order: stage, then as listed (a stable sort); allowed failures
    // keep their place.
    let stage_index = |job: &Job| -> usize {
        job.stage
            .as_deref()
            .and_then(|s| stages.iter().position(|n| n.eq_ignore_ascii_case(s)))
            .unwrap_or(0)
    };
    jobs.sort_by_key(|(job, _)| stage_index(job));
    dedup(&mut jobs, &mut warnings);

    if jobs.len() > opts.max_jobs {
        return Err(too_many(
            cfg,
            &keys,
            entries.len(),
            jobs.len(),
            opts.max_jobs,
        ));
    }

    let mut plans = Vec::with_capacity(jobs.len());
    for (i, (job, _)) in jobs.into_iter().enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        plans.push(plan(cfg, opts, job, number, &mut warnings));
    }
    let notifications = cfg
        .notifications
        .filtered(&root_data(cfg, ctx), &mut check.warnings);
    warnings.extend(check.warnings);
    Ok(Expansion {
        jobs: plans,
        warnings,
        fast_finish: cfg.fast_finish,
        stages,
        dropped,
        notifications,
    })
}

fn too_many(
    cfg: &Config,
    keys: &[(&str, &[String])],
    env_entries: usize,
    n: usize,
    limit: usize,
) -> ConfigError {
    let mut dims: Vec<String> = keys
        .iter()
        .map(|(k, v)| format!("{} {k}", v.len()))
        .collect();
    if env_entries > 0 {
        dims.push(format!("{env_entries} env"));
    }
    let mut how = dims.join(" × ");
    if !cfg.include.is_empty() {
        if !how.is_empty() {
            how.push_str(" + ");
        }
        how.push_str(&format!("{} included", cfg.include.len()));
    }
    let n = if n == usize::MAX {
        "more than 2^64".to_string()
    } else {
        n.to_string()
    };
    ConfigError {
        line: None,
        column: None,
        message: format!(
            "the build matrix expands to {n} jobs ({how}), more than the limit of {limit}; remove values, add `jobs.exclude` entries, or raise the limit"
        ),
    }
}

/// Drops later duplicates; Travis drops them too (Travis docs: Build
/// Matrix, "Job Uniqueness and Duplicate Jobs"), kha says so.
fn dedup(jobs: &mut Vec<(Job, Option<Pos>)>, warnings: &mut Vec<Diagnostic>) {
    let mut kept: Vec<(Job, Option<Pos>)> = Vec::with_capacity(jobs.len());
    let mut seen: HashSet<Job> = HashSet::with_capacity(jobs.len());
    for (job, pos) in jobs.drain(..) {
        if !seen.insert(job.clone()) {
            // Matrix rows that collapse (an `arch` dropped on osx) are
            // dropped quietly, as Travis does; an include is worth a word.
            if let Some(p) = pos {
                warnings.push(Diagnostic::at(
                    p,
                    "this job duplicates another one and is dropped, as Travis does (give it a `name` to keep it)",
                ));
            }
            continue;
        }
        kept.push((job, pos));
    }
    *jobs = kept;
}

/// travis-yml `Configs::Stages`: sets every job's stage and returns the
/// stage names in order (empty when the config uses no stages): `stages:`
/// first, then others as jobs first name them; stages without jobs are
/// dropped.
fn assign_stages(cfg: &Config, jobs: &mut [(Job, Option<Pos>)]) -> Vec<String> {
    let uses_stages = !cfg.stages.is_empty() || jobs.iter().any(|(j, _)| j.stage.is_some());
    if !uses_stages {
        return Vec::new();
    }
    let default = cfg
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .chain(jobs.iter().filter_map(|(j, _)| j.stage.as_deref()))
        .find(|n| n.eq_ignore_ascii_case("test"))
        .unwrap_or("test")
        .to_string();
    // A job without a stage is in the previous job's.
    let mut current = default;
    for (job, _) in jobs.iter_mut() {
        match &job.stage {
            Some(s) => current = s.clone(),
            None => job.stage = Some(current.clone()),
        }
    }
    let mut names: Vec<String> = Vec::new();
    for n in cfg
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .chain(jobs.iter().filter_map(|(j, _)| j.stage.as_deref()))
    {
        let used = jobs.iter().any(|(j, _)| {
            j.stage
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(n))
        });
        if used && !names.iter().any(|o| o.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    names
}

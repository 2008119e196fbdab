//! The plan of one expanded job: its commands with the language's
//! defaults, its env, the labels a builder needs, and the variables Travis
//! exports for it.

use super::job::Job;
use super::ExpandOptions;
use crate::travis::diag::Diagnostic;
use crate::travis::langs;
use crate::travis::{Config, JobPlan};
use crate::Labels;

/// The plan of one job: commands with defaults, env, labels.
pub(super) fn plan(
    cfg: &Config,
    opts: &ExpandOptions,
    job: Job,
    number: u32,
    warnings: &mut Vec<Diagnostic>,
) -> JobPlan {
    let mut phases = job.phases.clone();
    let axis = |k: &str| job.axis(k).map(str::to_string);
    let defaults = langs::defaults(
        &langs::JobFacts {
            language: &job.language,
            axis: &axis,
            gobuild_args: cfg.gobuild_args.as_deref(),
            bundler_args: cfg.bundler_args.as_deref(),
        },
        &opts.repo,
    );
    if phases.install.is_empty() && !job.skipped.contains("install") {
        phases.install = defaults.install;
    }
    if phases.script.is_empty() && !job.skipped.contains("script") {
        phases.script = defaults.script;
        if phases.script.is_empty() && !defaults.known {
            warnings.push(Diagnostic::general(format!(
                "job {number}: kha has no default `script` for language `{}`; the job runs no tests until `script` is given",
                job.language
            )));
        } else if phases.script.first().map(String::as_str) == Some(langs::PYTHON_NO_SCRIPT) {
            warnings.push(Diagnostic::general(format!(
                "job {number}: Python has no default `script`; like Travis, the job fails until `script` is given"
            )));
        }
    }

    let mut env: Vec<String> = Vec::new();
    for line in cfg.env_global.iter().chain(&job.own_env) {
        if !env.contains(line) {
            env.push(line.clone());
        }
    }

    let mut matrix: Vec<(String, String)> = job.axes.clone();
    if !job.own_env.is_empty() {
        let shown: Vec<&str> = job
            .own_env
            .iter()
            .map(|l| crate::travis::secure::shown(l))
            .collect();
        matrix.push(("env".into(), shown.join(" ")));
    }
    if let Some(n) = &job.name {
        matrix.push(("name".into(), n.clone()));
    }

    let mut requires = Labels::default();
    requires.insert("os", job.os());
    for (k, v) in &job.axes {
        match k.as_str() {
            "os" => {}
            "arch" => requires.insert("arch", langs::builder_arch(v)),
            _ => {
                if langs::axis_info(k).is_some_and(|a| a.capability) {
                    requires.insert(k.clone(), v.clone());
                }
            }
        }
    }
    // Travis docs: Building a Rust Project, "By default, we download and
    // install the latest stable Rust release".
    if job.language == "rust" && job.axis("rust").is_none() {
        requires.insert("rust", "stable");
    }

    let mut values = job.axes.clone();
    if job.axis("os").is_none() {
        values.insert(0, ("os".into(), job.os().to_string()));
    }
    let mut builtin_env = langs::builtin_env(&job.language, &values);
    if job.language == "rust" && job.axis("rust").is_none() {
        builtin_env.push(("TRAVIS_RUST_VERSION".into(), "stable".into()));
    }
    builtin_env.push(("TRAVIS_ALLOW_FAILURE".into(), job.allow_failure.to_string()));

    JobPlan {
        number,
        phases,
        env,
        matrix,
        requires,
        allow_failure: job.allow_failure,
        name: job.name,
        stage: job.stage,
        language: job.language,
        builtin_env,
    }
}

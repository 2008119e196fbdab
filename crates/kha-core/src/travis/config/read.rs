//! Reading the positioned YAML tree's root into a [`Config`]: one key at a
//! time, handing `env`, `matrix`/`jobs`, `branches` and `notifications` to
//! their readers, plus `stages` and `git`. Every reader reports into one
//! [`Diagnostics`], which becomes the config's diagnostics, warnings and
//! kept keys at the end.

use super::values::{
    axis_values, commands, condition, flag, kept, language, one_or_many, phase, scalar, Commands,
};
use super::{env, jobs, Config, StageSpec};
use crate::travis::branches::BranchFilter;
use crate::travis::diag::{Diagnostic, Diagnostics};
use crate::travis::langs;
use crate::travis::notify::Notifications;
use crate::travis::yaml::{Entry, Kind, Node, Pos};
use crate::travis::ConfigError;

/// Reads a YAML tree into a config; only a root that is not a mapping is an
/// error, everything else degrades to diagnostics.
pub(crate) fn read(root: &Node, yaml_warnings: Vec<(Pos, String)>) -> Result<Config, ConfigError> {
    let entries = match &root.kind {
        Kind::Map(e) => e,
        _ if root.is_null() => {
            return Err(ConfigError {
                line: None,
                column: None,
                message: ".travis.yml is empty".into(),
            })
        }
        _ => {
            return Err(Diagnostic::at(
                root.pos,
                format!(
                    ".travis.yml must be a mapping of keys (like `language: erlang`), not {}",
                    root.describe()
                ),
            )
            .into())
        }
    };
    let mut cfg = Config::default();
    let mut d = Diagnostics::default();
    for (pos, msg) in yaml_warnings {
        d.warn(pos, msg);
    }
    // `matrix` and `jobs` are one key under two names; given both, Travis
    // uses `matrix` ("both matrix and jobs given, matrix overwrites jobs").
    let has_matrix = entries.iter().any(|e| e.key == "matrix");
    for e in entries {
        read_root_entry(&mut cfg, &mut d, e, has_matrix);
    }
    // A matrix key the language does not use is dropped, as Travis does
    // (travis-yml's "matrix key unsupported by language" spec); say so,
    // unless an included job of another language uses it.
    let root_lang = cfg.language_or_default().to_string();
    for e in entries {
        let Some(axis) = langs::canonical_axis(&e.key) else {
            continue;
        };
        let used = langs::language_expands(&root_lang, axis)
            || cfg.include.iter().any(|j| {
                j.language
                    .as_deref()
                    .is_some_and(|l| langs::language_expands(l, axis))
            });
        if !used {
            let lang = if cfg.language.is_some() {
                format!("`{root_lang}`")
            } else {
                format!("`{root_lang}` (the default when `language` is absent)")
            };
            d.warn(
                e.key_pos,
                format!(
                    "`{}` is not a matrix key of language {lang}; ignored, as Travis does",
                    e.key
                ),
            );
        }
    }
    if let Some(e) = entries.iter().find(|e| e.key == "cache") {
        let mut langs: Vec<&str> = vec![root_lang.as_str()];
        langs.extend(cfg.include.iter().filter_map(|j| j.language.as_deref()));
        for w in crate::travis::cache::unused_shortcuts(&cfg.cache, &langs) {
            d.warn(e.key_pos, w);
        }
    }
    cfg.env_matrix = cfg.env_jobs.iter().map(|lines| lines.join(" ")).collect();
    let (diagnostics, kept) = d.into_parts();
    cfg.warnings = diagnostics.iter().map(Diagnostic::to_string).collect();
    cfg.diagnostics = diagnostics;
    cfg.kept = kept;
    Ok(cfg)
}

fn read_root_entry(cfg: &mut Config, d: &mut Diagnostics, e: &Entry, has_matrix: bool) {
    if phase(d, e, &mut cfg.phases, &mut cfg.skipped_phases) {
        return;
    }
    let key = e.key.as_str();
    let v = &e.value;
    if let Some(axis) = langs::canonical_axis(key) {
        let values = axis_values(d, axis, e);
        if !values.is_empty() {
            cfg.axes.retain(|(k, _)| k != axis);
            cfg.axes.push((axis.to_string(), values));
        }
        return;
    }
    match key {
        "language" => cfg.language = language(d, e),
        "env" => env::read_root_env(cfg, d, e),
        "matrix" | "jobs" => {
            if key == "jobs" && has_matrix {
                d.warn(
                    e.key_pos,
                    "both `matrix` and `jobs` are given; like Travis, kha uses `matrix` and ignores `jobs`",
                );
            } else {
                jobs::read_matrix(cfg, d, e);
            }
        }
        "branches" => cfg.branches = BranchFilter::read(d, e),
        "notifications" => cfg.notifications = Notifications::read(d, e),
        "git" => read_git(cfg, d, e),
        "cache" => crate::travis::cache::read_cache(d, e, &mut cfg.cache),
        "before_cache" => {
            if let Commands::Run(c) = commands(d, e) {
                cfg.cache.before_cache = c;
            }
        }
        "stages" => read_stages(cfg, d, e),
        "gobuild_args" => cfg.gobuild_args = scalar(d, e),
        "bundler_args" => cfg.bundler_args = scalar(d, e),
        "if" => cfg.condition = condition(d, e),
        "name" | "stage" | "allow_failure" => d.warn(
            e.key_pos,
            format!("`{key}` only means something inside `jobs.include`; ignored here"),
        ),
        _ if key.starts_with('_') => {
            // Private keys, for YAML anchors: Travis docs ("Using YAML as a
            // build configuration language") recommend the `_` prefix.
            d.keep(key.to_string(), v.to_value());
        }
        _ => {
            let (k, value) = kept(d, e, "");
            d.keep(k, value);
        }
    }
}

/// `stages:` (Travis docs: Build Stages): names, or `{name, if}`.
fn read_stages(cfg: &mut Config, d: &mut Diagnostics, e: &Entry) {
    for it in one_or_many(&e.value) {
        let stage = match &it.kind {
            Kind::Scalar { text, .. } if !it.is_null() => Some(StageSpec {
                name: text.clone(),
                condition: None,
            }),
            Kind::Map(_) => {
                let name = it
                    .get("name")
                    .and_then(|x| x.value.scalar())
                    .map(str::to_string);
                let condition = it.get("if").and_then(|x| condition(d, x));
                name.map(|name| StageSpec { name, condition })
            }
            _ => None,
        };
        match stage {
            Some(s) => cfg.stages.push(s),
            None => d.warn(
                it.pos,
                "a stage is a name or a mapping with `name`; ignored",
            ),
        }
    }
}

/// `git:` (Travis docs: Customizing the Build, "Git Clone Depth", "Git
/// Submodules", "Git Clone Quiet").
fn read_git(cfg: &mut Config, d: &mut Diagnostics, e: &Entry) {
    let Some(entries) = e.value.entries() else {
        if !e.value.is_null() {
            d.warn(e.value.pos, "`git` must be a mapping; ignored");
        }
        return;
    };
    for x in entries {
        match x.key.as_str() {
            "depth" => match (x.value.as_bool(), x.value.scalar().map(str::parse::<u32>)) {
                (Some(false), _) => cfg.git.depth = None,
                (_, Some(Ok(n))) if n > 0 => cfg.git.depth = Some(n),
                _ => d.warn(
                    x.value.pos,
                    "`git.depth` must be a positive number or false; the default (50) is used",
                ),
            },
            "submodules" => {
                if let Some(b) = flag(d, &x.value, "git.submodules") {
                    cfg.git.submodules = b;
                }
            }
            "quiet" => {
                if let Some(b) = flag(d, &x.value, "git.quiet") {
                    cfg.git.quiet = b;
                }
            }
            other => {
                d.warn(
                    x.key_pos,
                    format!("`git.{other}` is not supported yet and is ignored"),
                );
                d.keep(format!("git.{other}"), x.value.to_value());
            }
        }
    }
}

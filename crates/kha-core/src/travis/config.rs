//! Reading the positioned YAML tree into a typed, normalised [`Config`].
//!
//! Every form Travis accepts for a key is folded into one shape here (a
//! string or a list for commands and versions; `env` as a string, a list,
//! a list of lists, `{global, matrix}` or `{global, jobs}`; `matrix:` or
//! `jobs:`), so expansion never looks at YAML again. Like Travis's config
//! parser, a value of the wrong type is dropped with a message rather than
//! refusing the whole file; unlike it, kha keeps every key it does not act
//! on and says so.

use super::branches::BranchFilter;
use super::langs;
use super::notify::Notifications;
use super::yaml::{Entry, Kind, Node, Pos, Value};
use super::{ConfigError, Phases, PHASES};
use std::collections::BTreeSet;
use std::fmt;

/// A note about the file, with where it points.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    pub fn at(pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line: Some(pos.line),
            column: Some(pos.column),
            message: message.into(),
        }
    }

    pub fn general(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl From<Diagnostic> for ConfigError {
    fn from(d: Diagnostic) -> ConfigError {
        ConfigError {
            line: d.line,
            column: d.column,
            message: d.message,
        }
    }
}

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
    /// `if:` condition; kha does not evaluate conditions (warned).
    pub condition: Option<String>,
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
    pub condition: Option<String>,
}

/// An entry of `stages:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    pub name: String,
    pub condition: Option<String>,
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
    pub gobuild_args: Option<String>,
    pub bundler_args: Option<String>,
    /// Root `if:` (conditional builds); not evaluated by kha (warned).
    pub condition: Option<String>,
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

    pub(crate) fn warn(&mut self, d: Diagnostic) {
        self.warnings.push(d.to_string());
        self.diagnostics.push(d);
    }
}

/// Root keys kha keeps and reports without acting on them, with why.
fn kept_reason(key: &str) -> Option<&'static str> {
    Some(match key {
        "services" => "kha does not start services yet; install and start them in `before_install`",
        "addons" => "kha does not run Travis addons (apt packages, hosts, …) yet; do the same in `before_install`",
        "cache" => "kha keeps no caches between builds yet",
        "before_cache" => "kha keeps no caches, so `before_cache` never runs",
        "deploy" | "before_deploy" | "after_deploy" => "kha does not deploy yet",
        "sudo" => "`sudo` is deprecated and ignored (Travis ignores it too)",
        "group" | "stack" => "kha picks builders by labels, not by Travis image groups",
        "import" => "kha does not import other config files yet",
        "version" | "conditions" => "kha does not evaluate config version conditions",
        "filter_secrets" | "trace" => "this is a Travis-internal switch",
        "go_import_path" => "kha builds Go projects in the checkout, not in a GOPATH",
        "virtualenv" => "kha does not create Python virtualenvs",
        _ => return None,
    })
}

/// Reads a YAML tree into a config; only a root that is not a mapping is an
/// error, everything else degrades to diagnostics.
pub fn read(root: &Node, yaml_warnings: Vec<(Pos, String)>) -> Result<Config, ConfigError> {
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
    for (pos, msg) in yaml_warnings {
        cfg.warn(Diagnostic::at(pos, msg));
    }
    // `matrix` and `jobs` are one key under two names; given both, Travis
    // uses `matrix` ("both matrix and jobs given, matrix overwrites jobs").
    let has_matrix = entries.iter().any(|e| e.key == "matrix");
    for e in entries {
        read_root_entry(&mut cfg, e, has_matrix);
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
            cfg.warn(Diagnostic::at(
                e.key_pos,
                format!(
                    "`{}` is not a matrix key of language {lang}; ignored, as Travis does",
                    e.key
                ),
            ));
        }
    }
    cfg.env_matrix = cfg.env_jobs.iter().map(|lines| lines.join(" ")).collect();
    Ok(cfg)
}

fn read_root_entry(cfg: &mut Config, e: &Entry, has_matrix: bool) {
    let key = e.key.as_str();
    let v = &e.value;
    if let Some(phase) = PHASES.iter().find(|p| **p == key) {
        match commands(cfg, e) {
            Commands::Absent => {}
            Commands::Skip => {
                cfg.skipped_phases.insert(phase.to_string());
            }
            Commands::Run(c) => {
                if let Some(slot) = cfg.phases.get_mut(phase) {
                    *slot = c;
                }
            }
        }
        return;
    }
    if let Some(axis) = langs::canonical_axis(key) {
        let values = axis_values(cfg, axis, e);
        if !values.is_empty() {
            cfg.axes.retain(|(k, _)| k != axis);
            cfg.axes.push((axis.to_string(), values));
        }
        return;
    }
    match key {
        "language" => cfg.language = language(cfg, e),
        "env" => read_root_env(cfg, e),
        "matrix" | "jobs" => {
            if key == "jobs" && has_matrix {
                cfg.warn(Diagnostic::at(
                    e.key_pos,
                    "both `matrix` and `jobs` are given; like Travis, kha uses `matrix` and ignores `jobs`",
                ));
            } else {
                read_matrix(cfg, e);
            }
        }
        "branches" => cfg.branches = BranchFilter::read(cfg, e),
        "notifications" => cfg.notifications = Notifications::read(cfg, e),
        "git" => read_git(cfg, e),
        "stages" => read_stages(cfg, e),
        "gobuild_args" => cfg.gobuild_args = scalar(cfg, e),
        "bundler_args" => cfg.bundler_args = scalar(cfg, e),
        "if" => {
            cfg.condition = scalar(cfg, e);
            cfg.warn(Diagnostic::at(
                e.key_pos,
                "kha does not evaluate `if:` conditions yet; every build is created",
            ));
        }
        "name" | "stage" | "allow_failure" => cfg.warn(Diagnostic::at(
            e.key_pos,
            format!("`{key}` only means something inside `jobs.include`; ignored here"),
        )),
        _ if key.starts_with('_') => {
            // Private keys, for YAML anchors: Travis docs ("Using YAML as a
            // build configuration language") recommend the `_` prefix.
            cfg.kept.push((key.to_string(), v.to_value()));
        }
        _ => {
            let why = kept_reason(key).map_or_else(
                || format!("unknown key `{key}`: kept, but kha does not act on it"),
                |why| format!("`{key}` is not supported yet and is ignored: {why}"),
            );
            cfg.warn(Diagnostic::at(e.key_pos, why));
            cfg.kept.push((key.to_string(), v.to_value()));
        }
    }
}

enum Commands {
    Absent,
    Skip,
    Run(Vec<String>),
}

/// A phase's commands: a string, a list of strings, `true`, or `skip`
/// (Travis docs: Customizing the Build / Job Lifecycle, "Skipping the
/// Installation Phase").
fn commands(cfg: &mut Config, e: &Entry) -> Commands {
    let v = &e.value;
    if v.is_null() {
        return Commands::Absent;
    }
    if let Some(b) = v.as_bool() {
        if !b {
            cfg.warn(Diagnostic::at(
                v.pos,
                format!("`{}: false` runs the command `false`, which fails; write `{}: skip` to skip it", e.key, e.key),
            ));
        }
        return Commands::Run(vec![b.to_string()]);
    }
    match &v.kind {
        Kind::Scalar { text, plain } => {
            if *plain && text == "skip" {
                Commands::Skip
            } else {
                Commands::Run(vec![text.clone()])
            }
        }
        Kind::Seq(items) => {
            let mut out = Vec::new();
            for it in items {
                match &it.kind {
                    Kind::Scalar { text, .. } if !it.is_null() => out.push(text.clone()),
                    Kind::Scalar { .. } => {}
                    Kind::Map(_) => cfg.warn(Diagnostic::at(
                        it.pos,
                        format!(
                            "this `{}` command reads as a mapping (a command containing `: ` must be quoted); it is left out",
                            e.key
                        ),
                    )),
                    Kind::Seq(_) => cfg.warn(Diagnostic::at(
                        it.pos,
                        format!("a `{}` command must be a string, not a list; it is left out", e.key),
                    )),
                }
            }
            if out.is_empty() {
                Commands::Absent
            } else {
                Commands::Run(out)
            }
        }
        Kind::Map(_) => {
            cfg.warn(Diagnostic::at(
                v.pos,
                format!(
                    "`{}` must be a command or a list of commands, not a mapping (a command containing `: ` must be quoted); it is ignored",
                    e.key
                ),
            ));
            Commands::Absent
        }
    }
}

fn scalar(cfg: &mut Config, e: &Entry) -> Option<String> {
    if e.value.is_null() {
        return None;
    }
    match e.value.scalar() {
        Some(s) => Some(s.to_string()),
        None => {
            cfg.warn(Diagnostic::at(
                e.value.pos,
                format!(
                    "`{}` must be a string, not {}; ignored",
                    e.key,
                    e.value.describe()
                ),
            ));
            None
        }
    }
}

/// Travis takes the first value when a single one is expected
/// (travis-yml: "unexpected sequence, using the first value").
fn single(cfg: &mut Config, e: &Entry) -> Option<String> {
    match &e.value.kind {
        Kind::Seq(items) => {
            let first = items.iter().find_map(|n| n.scalar().map(str::to_string));
            if items.len() > 1 {
                cfg.warn(Diagnostic::at(
                    e.value.pos,
                    format!(
                        "`{}` takes one value here; using the first ({})",
                        e.key,
                        first.as_deref().unwrap_or("none")
                    ),
                ));
            }
            first
        }
        _ => scalar(cfg, e),
    }
}

fn language(cfg: &mut Config, e: &Entry) -> Option<String> {
    let name = single(cfg, e)?;
    match langs::canonical_language(&name) {
        Some(l) => Some(l.to_string()),
        None => {
            cfg.warn(Diagnostic::at(
                e.value.pos,
                format!("unknown language `{name}`: kha has no defaults or matrix keys for it"),
            ));
            Some(name.trim().to_ascii_lowercase())
        }
    }
}

/// Normalises a matrix value the way travis-yml's schema does for `os`
/// (downcased, `mac`/`macos` aliases) and `arch`.
fn normalise_axis_value(axis: &str, v: &str) -> String {
    match axis {
        "os" => {
            let lower = v.trim().to_ascii_lowercase();
            match lower.as_str() {
                "mac" | "macos" | "ios" => "osx".into(),
                _ => lower,
            }
        }
        "arch" => langs::canonical_arch(v),
        _ => v.to_string(),
    }
}

fn axis_values(cfg: &mut Config, axis: &str, e: &Entry) -> Vec<String> {
    let v = &e.value;
    let mut out = Vec::new();
    match &v.kind {
        _ if v.is_null() => {}
        Kind::Scalar { text, .. } => out.push(normalise_axis_value(axis, text)),
        Kind::Seq(items) => {
            for it in items {
                match it.scalar() {
                    Some(s) => out.push(normalise_axis_value(axis, s)),
                    None if it.is_null() => {}
                    None => cfg.warn(Diagnostic::at(
                        it.pos,
                        format!(
                            "a `{}` value must be a string, not {}; left out",
                            e.key,
                            it.describe()
                        ),
                    )),
                }
            }
        }
        Kind::Map(_) => cfg.warn(Diagnostic::at(
            v.pos,
            format!(
                "`{}` must be a value or a list of values, not a mapping; ignored",
                e.key
            ),
        )),
    }
    // Duplicate values would make duplicate jobs, which Travis drops.
    let mut seen = BTreeSet::new();
    out.retain(|x| seen.insert(x.clone()));
    out
}

/// Is `name` a shell variable name?
fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `NAME=value` for a variable given as a mapping (`- NAME: value`). Travis
/// writes such pairs unquoted (`"#{k}=#{v}"` in travis-core); kha quotes a
/// value that would otherwise split, in double quotes so `$VAR` still
/// expands as it did on Travis.
pub(crate) fn assignment(name: &str, value: &str) -> String {
    let safe = value.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '_' | '-' | '.' | '/' | ':' | ',' | '=' | '@' | '%' | '+' | '$' | '{' | '}' | '~'
            )
    });
    if safe {
        format!("{name}={value}")
    } else {
        let mut q = String::with_capacity(value.len() + 2);
        for c in value.chars() {
            if matches!(c, '"' | '\\' | '`') {
                q.push('\\');
            }
            q.push(c);
        }
        format!("{name}=\"{q}\"")
    }
}

/// Lines of one env entry: a string, a `NAME: value` mapping, or a list of
/// those (an entry given as a list exports all its items in one job).
fn env_lines(cfg: &mut Config, node: &Node, depth: usize, out: &mut Vec<String>) {
    match &node.kind {
        _ if node.is_null() => {}
        Kind::Scalar { text, .. } => {
            let t = text.trim();
            if !t.is_empty() {
                out.push(t.to_string());
            }
        }
        Kind::Map(entries) => {
            for e in entries {
                if e.key == "secure" {
                    cfg.warn(Diagnostic::at(
                        e.key_pos,
                        "encrypted variable (`secure:`): kha cannot decrypt Travis-encrypted values; set it as a project secret in kha instead. It is left out",
                    ));
                    continue;
                }
                if !is_var_name(&e.key) {
                    cfg.warn(Diagnostic::at(
                        e.key_pos,
                        format!("`{}` is not a valid variable name; left out", e.key),
                    ));
                    continue;
                }
                let value = if e.value.is_null() {
                    Some(String::new())
                } else {
                    e.value.scalar().map(str::to_string)
                };
                match value {
                    Some(v) => out.push(assignment(&e.key, &v)),
                    None => cfg.warn(Diagnostic::at(
                        e.value.pos,
                        format!(
                            "the value of `{}` must be a string, not {}; left out",
                            e.key,
                            e.value.describe()
                        ),
                    )),
                }
            }
        }
        Kind::Seq(items) => {
            if depth > 0 {
                cfg.warn(Diagnostic::at(
                    node.pos,
                    "env lists nest at most two levels deep; this list is left out",
                ));
                return;
            }
            for it in items {
                env_lines(cfg, it, depth + 1, out);
            }
        }
    }
}

/// Entries of an env matrix: a string is one job, a list gives one job per
/// item (Travis docs: Environment Variables, "Defining Multiple Variables
/// per Item"; a mapping without `global`/`jobs` is one job, per
/// travis-yml's "env.jobs one hash" spec).
fn env_entries(cfg: &mut Config, node: &Node) -> Vec<Vec<String>> {
    let mut entries = Vec::new();
    match &node.kind {
        _ if node.is_null() => {}
        Kind::Seq(items) => {
            for it in items {
                let mut lines = Vec::new();
                env_lines(cfg, it, 0, &mut lines);
                if !lines.is_empty() {
                    entries.push(lines);
                }
            }
        }
        _ => {
            let mut lines = Vec::new();
            env_lines(cfg, node, 0, &mut lines);
            if !lines.is_empty() {
                entries.push(lines);
            }
        }
    }
    entries
}

/// Root `env` (Travis docs: Environment Variables, "Global Variables":
/// `env.global` in every job, `env.matrix`, newer name `env.jobs`, one job
/// per entry).
fn read_root_env(cfg: &mut Config, e: &Entry) {
    let v = &e.value;
    let Kind::Map(entries) = &v.kind else {
        cfg.env_jobs = env_entries(cfg, v);
        return;
    };
    let special = |k: &str| matches!(k, "global" | "matrix" | "jobs");
    if !entries.iter().any(|x| special(&x.key)) {
        cfg.env_jobs = env_entries(cfg, v);
        return;
    }
    let has_jobs = entries.iter().any(|x| x.key == "jobs");
    for x in entries {
        match x.key.as_str() {
            "global" => {
                let mut lines = Vec::new();
                env_lines(cfg, &x.value, 0, &mut lines);
                cfg.env_global = lines;
            }
            "matrix" if has_jobs => cfg.warn(Diagnostic::at(
                x.key_pos,
                "`env.matrix` is the old name of `env.jobs`; both are given, `env.jobs` is used",
            )),
            "matrix" | "jobs" => cfg.env_jobs = env_entries(cfg, &x.value),
            other => cfg.warn(Diagnostic::at(
                x.key_pos,
                format!("`env.{other}` is neither `global` nor `jobs`; ignored"),
            )),
        }
    }
}

/// `matrix:` / `jobs:` (Travis docs: Build Matrix). A list is taken as
/// `include` (travis-yml's schema prefixes `jobs` with `include`).
fn read_matrix(cfg: &mut Config, e: &Entry) {
    let v = &e.value;
    match &v.kind {
        _ if v.is_null() => {}
        Kind::Seq(_) => cfg.include = read_includes(cfg, v),
        Kind::Map(entries) => {
            for x in entries {
                match x.key.as_str() {
                    "include" => cfg.include = read_includes(cfg, &x.value),
                    "exclude" => cfg.exclude = read_matches(cfg, &x.value, "exclude"),
                    "allow_failures" => {
                        cfg.allow_failures = read_matches(cfg, &x.value, "allow_failures")
                    }
                    "fast_finish" => match x.value.as_bool() {
                        Some(b) => cfg.fast_finish = b,
                        None => cfg.warn(Diagnostic::at(
                            x.value.pos,
                            "`fast_finish` must be true or false; ignored",
                        )),
                    },
                    other => cfg.warn(Diagnostic::at(
                        x.key_pos,
                        format!("unknown key `{}.{other}`; ignored", e.key),
                    )),
                }
            }
        }
        Kind::Scalar { .. } => cfg.warn(Diagnostic::at(
            v.pos,
            format!(
                "`{}` must be a mapping (include, exclude, allow_failures, fast_finish); ignored",
                e.key
            ),
        )),
    }
}

fn read_includes(cfg: &mut Config, v: &Node) -> Vec<JobSpec> {
    let items: Vec<&Node> = match &v.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ if v.is_null() => vec![],
        _ => vec![v],
    };
    let mut out = Vec::new();
    for it in items {
        match &it.kind {
            // An empty entry is a job with everything inherited (Travis
            // docs: Build Matrix, "add a blank job entry").
            _ if it.is_null() => out.push(JobSpec {
                pos: it.pos,
                ..JobSpec::default()
            }),
            Kind::Map(entries) => out.push(read_job(cfg, it.pos, entries)),
            _ => cfg.warn(Diagnostic::at(
                it.pos,
                format!(
                    "a `jobs.include` entry must be a mapping, not {}; ignored",
                    it.describe()
                ),
            )),
        }
    }
    out
}

fn read_job(cfg: &mut Config, pos: Pos, entries: &[Entry]) -> JobSpec {
    let mut job = JobSpec {
        pos,
        ..JobSpec::default()
    };
    for e in entries {
        let key = e.key.as_str();
        if let Some(phase) = PHASES.iter().find(|p| **p == key) {
            match commands(cfg, e) {
                Commands::Absent => {}
                Commands::Skip => {
                    job.skipped_phases.insert(phase.to_string());
                }
                Commands::Run(c) => {
                    if let Some(slot) = job.phases.get_mut(phase) {
                        *slot = c;
                    }
                }
            }
            continue;
        }
        if let Some(axis) = langs::canonical_axis(key) {
            if let Some(value) = single(cfg, e) {
                let value = normalise_axis_value(axis, &value);
                job.axes.retain(|(k, _)| k != axis);
                job.axes.push((axis.to_string(), value));
            }
            continue;
        }
        match key {
            "language" => job.language = language(cfg, e),
            "name" => job.name = scalar(cfg, e),
            "stage" => job.stage = scalar(cfg, e),
            "env" => {
                let mut lines = Vec::new();
                env_lines(cfg, &e.value, 0, &mut lines);
                job.env = Some(lines);
            }
            "if" => {
                job.condition = scalar(cfg, e);
                cfg.warn(Diagnostic::at(
                    e.key_pos,
                    "kha does not evaluate `if:` conditions yet; this job is always created",
                ));
            }
            _ if key.starts_with('_') => job.kept.push((key.to_string(), e.value.to_value())),
            _ => {
                let why = kept_reason(key).map_or_else(
                    || format!("unknown key `{key}` in a job: kept, but kha does not act on it"),
                    |why| format!("`{key}` is not supported yet and is ignored: {why}"),
                );
                cfg.warn(Diagnostic::at(e.key_pos, why));
                job.kept.push((key.to_string(), e.value.to_value()));
            }
        }
    }
    job
}

fn read_matches(cfg: &mut Config, v: &Node, what: &str) -> Vec<MatchSpec> {
    let items: Vec<&Node> = match &v.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ if v.is_null() => vec![],
        _ => vec![v],
    };
    let mut out = Vec::new();
    for it in items {
        let Kind::Map(entries) = &it.kind else {
            if !it.is_null() {
                cfg.warn(Diagnostic::at(
                    it.pos,
                    format!(
                        "a `jobs.{what}` entry must be a mapping, not {}; ignored",
                        it.describe()
                    ),
                ));
            }
            continue;
        };
        let mut m = MatchSpec {
            pos: it.pos,
            ..MatchSpec::default()
        };
        for e in entries {
            let key = langs::canonical_axis(&e.key).unwrap_or(e.key.as_str());
            match key {
                "if" => {
                    m.condition = scalar(cfg, e);
                    cfg.warn(Diagnostic::at(
                        e.key_pos,
                        format!("kha does not evaluate `if:` conditions yet; this `{what}` entry applies always"),
                    ));
                }
                "env" => {
                    let mut lines = Vec::new();
                    env_lines(cfg, &e.value, 0, &mut lines);
                    m.keys.push((
                        "env".into(),
                        Value::Seq(lines.into_iter().map(Value::Str).collect()),
                    ));
                }
                _ => {
                    let value = match e.value.to_value() {
                        Value::Str(s) => Value::Str(normalise_axis_value(key, &s)),
                        other => other,
                    };
                    m.keys.push((key.to_string(), value));
                }
            }
        }
        out.push(m);
    }
    out
}

/// `stages:` (Travis docs: Build Stages): names, or `{name, if}`.
fn read_stages(cfg: &mut Config, e: &Entry) {
    let items: Vec<&Node> = match &e.value.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ if e.value.is_null() => vec![],
        _ => vec![&e.value],
    };
    for it in items {
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
                let condition = it
                    .get("if")
                    .and_then(|x| x.value.scalar())
                    .map(str::to_string);
                if condition.is_some() {
                    cfg.warn(Diagnostic::at(
                        it.pos,
                        "kha does not evaluate `if:` conditions on stages yet; the stage always runs",
                    ));
                }
                name.map(|name| StageSpec { name, condition })
            }
            _ => None,
        };
        match stage {
            Some(s) => cfg.stages.push(s),
            None => cfg.warn(Diagnostic::at(
                it.pos,
                "a stage is a name or a mapping with `name`; ignored",
            )),
        }
    }
}

/// `git:` (Travis docs: Customizing the Build, "Git Clone Depth", "Git
/// Submodules", "Git Clone Quiet").
fn read_git(cfg: &mut Config, e: &Entry) {
    let Some(entries) = e.value.entries() else {
        if !e.value.is_null() {
            cfg.warn(Diagnostic::at(
                e.value.pos,
                "`git` must be a mapping; ignored",
            ));
        }
        return;
    };
    for x in entries {
        match x.key.as_str() {
            "depth" => match (x.value.as_bool(), x.value.scalar().map(str::parse::<u32>)) {
                (Some(false), _) => cfg.git.depth = None,
                (_, Some(Ok(n))) if n > 0 => cfg.git.depth = Some(n),
                _ => cfg.warn(Diagnostic::at(
                    x.value.pos,
                    "`git.depth` must be a positive number or false; the default (50) is used",
                )),
            },
            "submodules" | "quiet" => match x.value.as_bool() {
                Some(b) if x.key == "submodules" => cfg.git.submodules = b,
                Some(b) => cfg.git.quiet = b,
                None => cfg.warn(Diagnostic::at(
                    x.value.pos,
                    format!("`git.{}` must be true or false; ignored", x.key),
                )),
            },
            other => {
                cfg.warn(Diagnostic::at(
                    x.key_pos,
                    format!("`git.{other}` is not supported yet and is ignored"),
                ));
                cfg.kept.push((format!("git.{other}"), x.value.to_value()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_quote_only_when_needed() {
        assert_eq!(assignment("A", "b"), "A=b");
        assert_eq!(assignment("P", "$PATH:/x"), "P=$PATH:/x");
        assert_eq!(assignment("A", "x y"), "A=\"x y\"");
        assert_eq!(assignment("A", "say \"hi\""), "A=\"say \\\"hi\\\"\"");
        assert_eq!(assignment("A", ""), "A=");
    }

    #[test]
    fn var_names() {
        assert!(is_var_name("RUST_BACKTRACE"));
        assert!(is_var_name("_x1"));
        assert!(!is_var_name("1x"));
        assert!(!is_var_name("a-b"));
        assert!(!is_var_name(""));
    }
}

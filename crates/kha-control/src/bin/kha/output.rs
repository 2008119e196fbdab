//! Everything `kha` prints: the `out!` macro, aligned tables, ages and
//! durations, and the one JSON shape of each concept (project, build, job,
//! branch, builder, enrolment token, lint result) that every command
//! printing it uses.
//!
//! A matrix value is the string `"key=value"` everywhere (`build show`,
//! `lint`): the text the tables show, in the order Travis multiplies the
//! keys.

use crate::wire::BuilderState;
use kha_proto::admin::{Branch, Build, Builder, EnrolmentToken, Job, Project};
use serde::Serialize;

/// `println!` that ends quietly when stdout is closed (`kha … | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// Prints rows as aligned columns.
pub fn table(head: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        out!("{}", s.join("  ").trim_end());
    };
    line(head.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long ago a wall-clock time in ms was ("5m ago"); "-" for never.
pub fn ago(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let now = match now_ms() {
        0 => ms,
        n => n,
    };
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// The time from `start` to `end` in seconds; "-" if it never started.
pub fn duration(start: u64, end: u64) -> String {
    if start == 0 || end < start {
        return "-".into();
    }
    let ms = end - start;
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// A commit hash cut to ten characters.
pub fn short(c: &str) -> &str {
    c.get(..10).unwrap_or(c)
}

/// One matrix value as JSON and the tables show it.
pub fn matrix_value(key: &str, value: &str) -> String {
    format!("{key}={value}")
}

/// Prints `v` as pretty JSON, keys sorted.
pub fn print_json(v: &impl Serialize) {
    match serde_json::to_value(v).and_then(|v| serde_json::to_string_pretty(&v)) {
        Ok(s) => out!("{s}"),
        Err(e) => eprintln!("kha: cannot encode the output as JSON: {e}"),
    }
}

#[derive(Serialize)]
pub struct ProjectJson<'a> {
    name: &'a str,
    repo_url: &'a str,
    default_branch: &'a str,
    timeout_secs: u64,
    image: &'a str,
    created_ms: u64,
    poll_interval_secs: u64,
    build_tags: bool,
    cancel_superseded: bool,
    github_repo: &'a str,
    has_credentials: bool,
}

pub fn project(p: &Project) -> ProjectJson<'_> {
    ProjectJson {
        name: &p.name,
        repo_url: &p.repo_url,
        default_branch: &p.default_branch,
        timeout_secs: p.timeout_secs,
        image: &p.image,
        created_ms: p.created_ms,
        poll_interval_secs: p.poll_interval_secs,
        build_tags: p.build_tags,
        cancel_superseded: p.cancel_superseded,
        github_repo: &p.github_repo,
        has_credentials: p.has_credentials,
    }
}

/// A project just added, with its webhook secret (shown only then).
#[derive(Serialize)]
pub struct NewProjectJson<'a> {
    #[serde(flatten)]
    project: ProjectJson<'a>,
    webhook_secret: &'a str,
}

pub fn new_project(p: &Project) -> NewProjectJson<'_> {
    NewProjectJson {
        project: project(p),
        webhook_secret: &p.webhook_secret,
    }
}

#[derive(Serialize)]
pub struct JobJson<'a> {
    id: u64,
    build_id: u64,
    number: u32,
    state: &'a str,
    epoch: u64,
    attempts: u32,
    builder: &'a str,
    started_ms: u64,
    finished_ms: u64,
    log_len: u64,
    env: &'a [String],
    allow_failure: bool,
    detail: &'a str,
    requires: &'a [String],
    /// `"key=value"` strings, as the control node sends them.
    matrix: &'a [String],
    name: &'a str,
}

pub fn job(j: &Job) -> JobJson<'_> {
    JobJson {
        id: j.id,
        build_id: j.build_id,
        number: j.number,
        state: &j.state,
        epoch: j.epoch,
        attempts: j.attempts,
        builder: &j.builder,
        started_ms: j.started_ms,
        finished_ms: j.finished_ms,
        log_len: j.log_len,
        env: &j.env,
        allow_failure: j.allow_failure,
        detail: &j.detail,
        requires: &j.requires,
        matrix: &j.matrix,
        name: &j.name,
    }
}

#[derive(Serialize)]
pub struct BuildJson<'a> {
    id: u64,
    project: &'a str,
    branch: &'a str,
    commit: &'a str,
    message: &'a str,
    state: &'a str,
    created_ms: u64,
    finished_ms: u64,
    warnings: &'a [String],
    error: &'a str,
    pr_number: u64,
    event: &'a str,
    fast_finish: bool,
    jobs: Vec<JobJson<'a>>,
}

pub fn build(b: &Build) -> BuildJson<'_> {
    BuildJson {
        id: b.id,
        project: &b.project,
        branch: &b.branch,
        commit: &b.commit,
        message: &b.message,
        state: &b.state,
        created_ms: b.created_ms,
        finished_ms: b.finished_ms,
        warnings: &b.warnings,
        error: &b.error,
        pr_number: b.pr_number,
        event: &b.event,
        fast_finish: b.fast_finish,
        jobs: b.jobs.iter().map(job).collect(),
    }
}

/// A build from `build trigger`: `created` is false when the commit was
/// built already and no new build was made.
#[derive(Serialize)]
pub struct TriggeredJson<'a> {
    #[serde(flatten)]
    build: BuildJson<'a>,
    created: bool,
}

pub fn triggered(b: &Build, created: bool) -> TriggeredJson<'_> {
    TriggeredJson {
        build: build(b),
        created,
    }
}

/// One page of `build list`.
#[derive(Serialize)]
pub struct BuildPageJson<'a> {
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
    pub builds: Vec<BuildJson<'a>>,
}

#[derive(Serialize)]
pub struct BranchJson<'a> {
    name: &'a str,
    head: &'a str,
    last_build_id: u64,
    state: &'a str,
    deleted: bool,
    updated_ms: u64,
    tag: bool,
}

pub fn branch(b: &Branch) -> BranchJson<'_> {
    BranchJson {
        name: &b.name,
        head: &b.head,
        last_build_id: b.last_build_id,
        state: &b.state,
        deleted: b.deleted,
        updated_ms: b.updated_ms,
        tag: b.tag,
    }
}

#[derive(Serialize)]
pub struct BuilderJson<'a> {
    id: &'a str,
    name: &'a str,
    /// What `builder list` shows in its STATE column.
    state: BuilderState,
    connected: bool,
    draining: bool,
    revoked: bool,
    labels: &'a [String],
    slots: u32,
    running_jobs: &'a [u64],
    last_seen_ms: u64,
    version: &'a str,
}

pub fn builder(b: &Builder) -> BuilderJson<'_> {
    BuilderJson {
        id: &b.id,
        name: &b.name,
        state: BuilderState::of(b),
        connected: b.connected,
        draining: b.draining,
        revoked: b.revoked,
        labels: &b.labels,
        slots: b.slots,
        running_jobs: &b.running_jobs,
        last_seen_ms: b.last_seen_ms,
        version: &b.version,
    }
}

#[derive(Serialize)]
pub struct TokenJson<'a> {
    id: &'a str,
    /// The secret itself: sent only when the token is created.
    #[serde(skip_serializing_if = "str::is_empty")]
    token: &'a str,
    description: &'a str,
    created_ms: u64,
    revoked: bool,
}

pub fn token(t: &EnrolmentToken) -> TokenJson<'_> {
    TokenJson {
        id: &t.id,
        token: &t.token,
        description: &t.description,
        created_ms: t.created_ms,
        revoked: t.revoked,
    }
}

#[derive(Serialize)]
pub struct DiagnosticJson<'a> {
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
}

fn diagnostic(d: &kha_core::travis::Diagnostic) -> DiagnosticJson<'_> {
    DiagnosticJson {
        line: d.line,
        column: d.column,
        message: &d.message,
    }
}

#[derive(Serialize)]
pub struct LintJobJson<'a> {
    number: u32,
    name: Option<&'a str>,
    stage: Option<&'a str>,
    language: &'a str,
    /// `"key=value"` strings, like a build's jobs.
    matrix: Vec<String>,
    env: &'a [String],
    allow_failure: bool,
    requires: Vec<String>,
    install: &'a [String],
    script: &'a [String],
}

#[derive(Serialize)]
pub struct LintJson<'a> {
    ok: bool,
    errors: Vec<DiagnosticJson<'a>>,
    warnings: Vec<DiagnosticJson<'a>>,
    fast_finish: bool,
    stages: &'a [String],
    jobs: Vec<LintJobJson<'a>>,
}

pub fn lint(r: &kha_core::travis::LintReport) -> LintJson<'_> {
    LintJson {
        ok: r.is_ok(),
        errors: r.errors.iter().map(diagnostic).collect(),
        warnings: r.warnings.iter().map(diagnostic).collect(),
        fast_finish: r.fast_finish,
        stages: &r.stages,
        jobs: r
            .jobs
            .iter()
            .map(|j| LintJobJson {
                number: j.number,
                name: j.name.as_deref(),
                stage: j.stage.as_deref(),
                language: &j.language,
                matrix: j.matrix.iter().map(|(k, v)| matrix_value(k, v)).collect(),
                env: &j.env,
                allow_failure: j.allow_failure,
                requires: j.requires.to_vec(),
                install: &j.phases.install,
                script: &j.phases.script,
            })
            .collect(),
    }
}

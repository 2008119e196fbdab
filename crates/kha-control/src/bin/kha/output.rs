//! Everything `kha` prints: the `out!` macro, aligned tables, ages,
//! times and durations, and JSON. Projects, builds, jobs, branches,
//! builders, users, tokens, the audit log and events print as kha-core's
//! views (`kha_core::view`, `event`): the one shape of each concept, the
//! same the service layer returns. A matrix
//! value is `{"key": …, "value": …}` everywhere (`build show`, `lint`), in
//! the order Travis multiplies the keys.

use kha_core::view;
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

/// A wall-clock time as ISO 8601 UTC; "-" for never.
pub fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    kha_core::time::iso8601(ms)
}

/// When a token expires: "never", or the time (with "expired" once past).
pub fn expiry(ms: u64) -> String {
    match ms {
        0 => "never".into(),
        ms if ms <= now_ms() => format!("expired {}", when(ms)),
        ms => when(ms),
    }
}

/// A project member for `--json`: the user and their effective role.
#[derive(Serialize)]
pub struct Member<'a> {
    pub user: &'a str,
    pub role: view::Role,
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

/// A git commit id cut to ten characters; a Subversion revision as `r42`;
/// a CVS timestamp whole.
pub fn short(c: &str) -> String {
    kha_core::spec::short_commit(c, 10)
}

/// Prints `v` as pretty JSON, keys sorted.
pub fn print_json(v: &impl Serialize) {
    match serde_json::to_value(v).and_then(|v| serde_json::to_string_pretty(&v)) {
        Ok(s) => out!("{s}"),
        Err(e) => eprintln!("kha: cannot encode the output as JSON: {e}"),
    }
}

/// Prints `v` as one line of JSON (a stream of events); false once stdout
/// is closed.
pub fn print_json_line(v: &impl Serialize) -> bool {
    match serde_json::to_string(v) {
        Ok(s) => line(&s),
        Err(e) => {
            eprintln!("kha: cannot encode the output as JSON: {e}");
            true
        }
    }
}

/// Prints one line and flushes it (for streams); false once stdout is
/// closed.
pub fn line(s: &str) -> bool {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}").is_ok() && out.flush().is_ok()
}

/// A build from `build trigger`: `created` is false when the commit was
/// built already and no new build was made.
#[derive(Serialize)]
pub struct Triggered<'a> {
    #[serde(flatten)]
    pub build: &'a view::Build,
    pub created: bool,
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
    /// Key/value pairs, as a build's jobs show them.
    matrix: Vec<view::MatrixValue>,
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
    /// False when the root `if:` is false for the context.
    builds: bool,
    /// Jobs and stages an `if:` drops in the context.
    dropped: Vec<DroppedJson<'a>>,
}

#[derive(Serialize)]
pub struct DroppedJson<'a> {
    what: &'a str,
    condition: &'a str,
    line: usize,
    column: usize,
}

pub fn lint(r: &kha_core::travis::LintReport) -> LintJson<'_> {
    LintJson {
        ok: r.is_ok(),
        errors: r.errors.iter().map(diagnostic).collect(),
        warnings: r.warnings.iter().map(diagnostic).collect(),
        fast_finish: r.fast_finish,
        stages: &r.stages,
        builds: r.not_built.is_none(),
        dropped: r
            .dropped
            .iter()
            .map(|d| DroppedJson {
                what: &d.what,
                condition: &d.condition.text,
                line: d.condition.pos.line,
                column: d.condition.pos.column,
            })
            .collect(),
        jobs: r
            .jobs
            .iter()
            .map(|j| LintJobJson {
                number: j.number,
                name: j.name.as_deref(),
                stage: j.stage.as_deref(),
                language: &j.language,
                matrix: j
                    .matrix
                    .iter()
                    .map(|(k, v)| view::MatrixValue::new(k, v))
                    .collect(),
                env: &j.env,
                allow_failure: j.allow_failure,
                requires: j.requires.to_vec(),
                install: &j.phases.install,
                script: &j.phases.script,
            })
            .collect(),
    }
}

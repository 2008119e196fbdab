//! `kha lint`'s engine: parse, expand, and say everything worth saying
//! about a `.travis.yml`, with line and column, without running anything.

use super::cond::Condition;
use super::diag::Diagnostic;
use super::matrix::{build_runs, expand_with, Dropped, ExpandOptions};
use super::{parse, JobPlan};
use std::fmt;

/// What kha makes of a `.travis.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintReport {
    /// Why no build can be made from the file; empty when one can.
    pub errors: Vec<Diagnostic>,
    /// What kha ignores, guesses or does differently, sorted by position.
    pub warnings: Vec<Diagnostic>,
    /// The jobs a build of this file would have.
    pub jobs: Vec<JobPlan>,
    pub fast_finish: bool,
    /// Stage names in order, when the file uses stages.
    pub stages: Vec<String>,
    /// The root `if:` when it is false for the context: no build.
    pub not_built: Option<Condition>,
    /// Jobs and stages an `if:` drops in the context.
    pub dropped: Vec<Dropped>,
}

impl LintReport {
    /// True when a build can be made (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The report as text for a terminal.
    pub fn render(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for LintReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        if !self.is_ok() {
            return Ok(());
        }
        if let Some(c) = &self.not_built {
            return writeln!(
                f,
                "no build: the root `if: {}` (line {}, column {}) is false for this context",
                c.text.trim(),
                c.pos.line,
                c.pos.column
            );
        }
        let n = self.jobs.len();
        write!(f, "{n} job{}", if n == 1 { "" } else { "s" })?;
        if !self.stages.is_empty() {
            write!(f, " in stages {}", self.stages.join(", "))?;
        }
        if self.fast_finish {
            f.write_str(" (fast_finish)")?;
        }
        writeln!(f, ":")?;
        for j in &self.jobs {
            write!(f, "  {}.", j.number)?;
            if let Some(s) = &j.stage {
                write!(f, " [{s}]")?;
            }
            write!(f, " {}", j.language)?;
            for (k, v) in &j.matrix {
                write!(f, " {k}={v}")?;
            }
            if j.allow_failure {
                f.write_str(" (allowed to fail)")?;
            }
            writeln!(f, "  needs {}", j.requires)?;
        }
        if !self.dropped.is_empty() {
            writeln!(f, "dropped by `if:` in this context:")?;
            for d in &self.dropped {
                writeln!(
                    f,
                    "  {}: if: {} (line {}, column {})",
                    d.what,
                    d.condition.text.trim(),
                    d.condition.pos.line,
                    d.condition.pos.column
                )?;
            }
        }
        Ok(())
    }
}

/// Lints `text` with the default job limit and no knowledge of the
/// repository's files.
pub fn lint(text: &str) -> LintReport {
    lint_with(text, &ExpandOptions::default())
}

/// Lints `text` with `opts` (job limit, repository files, branch, and the
/// context conditions are evaluated in).
pub fn lint_with(text: &str, opts: &ExpandOptions) -> LintReport {
    let mut report = LintReport {
        errors: Vec::new(),
        warnings: Vec::new(),
        jobs: Vec::new(),
        fast_finish: false,
        stages: Vec::new(),
        not_built: None,
        dropped: Vec::new(),
    };
    let cfg = match parse(text) {
        Ok(cfg) => cfg,
        Err(e) => {
            report.errors.push(Diagnostic {
                line: e.line,
                column: e.column,
                message: e.message,
            });
            return report;
        }
    };
    report.warnings = cfg.diagnostics.clone();
    if cfg.language.is_none() {
        report.warnings.push(Diagnostic::general(
            "no `language`: like Travis, kha uses ruby (`bundle install`, `rake`); say `language: minimal` for none",
        ));
    }
    let (runs, why) = build_runs(&cfg, &opts.context);
    report.warnings.extend(why);
    if !runs {
        report.not_built = cfg.condition.clone();
    }
    match expand_with(&cfg, opts) {
        Err(e) => report.errors.push(Diagnostic {
            line: e.line,
            column: e.column,
            message: e.message,
        }),
        Ok(exp) => {
            report.warnings.extend(exp.warnings);
            for j in &exp.jobs {
                if let Some(os) = j.requires.get("os").filter(|os| *os != "linux") {
                    report.warnings.push(Diagnostic::general(format!(
                        "job {} needs os={os}: kha builders run Linux, so it waits for a builder labelled os={os}",
                        j.number
                    )));
                }
            }
            if let Some(dist) = cfg.axis("dist") {
                report.warnings.push(Diagnostic::general(format!(
                    "`dist: {}` is not enforced: kha runs jobs in its builders' images",
                    dist.join(", ")
                )));
            }
            report.fast_finish = exp.fast_finish;
            report.stages = exp.stages;
            report.dropped = exp.dropped;
            if report.not_built.is_none() {
                report.jobs = exp.jobs;
            }
        }
    }
    // Positioned warnings in file order, general ones after.
    report
        .warnings
        .sort_by_key(|d| (d.line.is_none(), d.line, d.column));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_errors_with_positions() {
        let r = lint("language: erlang\nscript: [a\n");
        assert!(!r.is_ok());
        let text = r.render();
        assert!(text.starts_with("error: line "), "{text}");
        let r = lint("script:\n  - ok\n bad: [\n");
        assert!(
            r.render()
                .starts_with("error: line 3, column 2: invalid YAML"),
            "{}",
            r.render()
        );
    }

    #[test]
    fn renders_jobs_and_warnings() {
        let r = lint(
            "language: erlang\notp_release: [22.3, 23.0]\ndeploy: {provider: s3}\njobs:\n  allow_failures:\n    - otp_release: 23.0\n",
        );
        assert!(r.is_ok(), "{}", r.render());
        let text = r.render();
        assert!(
            text.contains("warning: line 3, column 1: `deploy` is not supported yet"),
            "{text}"
        );
        assert!(text.contains("2 jobs:"), "{text}");
        assert!(
            text.contains(
                "  2. erlang otp_release=23.0 (allowed to fail)  needs os=linux,otp_release=23.0"
            ),
            "{text}"
        );
    }

    #[test]
    fn renders_what_conditions_drop() {
        use crate::travis::{BuildContext, EventType};
        let text = "language: shell\nstages:\n  - test\n  - name: deploy\n    if: branch = master\njobs:\n  include:\n    - name: unit\n    - name: docs\n      if: type = cron\n    - stage: deploy\n      name: ship\n";
        let opts = |event, branch: &str| ExpandOptions {
            context: BuildContext {
                event,
                branch: branch.into(),
                ..BuildContext::default()
            },
            ..ExpandOptions::default()
        };
        let r = lint_with(text, &opts(EventType::PullRequest, "dev"));
        let out = r.render();
        assert!(
            out.contains("1 job in stages test:\n  1. [test] shell"),
            "{out}"
        );
        assert!(
            out.contains("  job \"docs\": if: type = cron (line 10, column 11)"),
            "{out}"
        );
        assert!(
            out.contains("  stage deploy: if: branch = master (line 5, column 9)"),
            "{out}"
        );
        let r = lint_with(text, &opts(EventType::Cron, "master"));
        assert_eq!(r.jobs.len(), 3, "{}", r.render());
        assert!(r.dropped.is_empty());
        let r = lint_with(
            "language: shell\nif: tag IS present\n",
            &opts(EventType::Push, "dev"),
        );
        assert!(r.is_ok());
        assert!(r.jobs.is_empty());
        assert!(
            r.render()
                .starts_with("no build: the root `if: tag IS present` (line 2, column 5)"),
            "{}",
            r.render()
        );
    }
}

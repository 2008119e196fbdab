//! Where `if:` applies, as travis-yml applies it:
//! - the root `if:` decides whether the build is created at all
//!   ([`build_runs`]; travis-yml's request filtering);
//! - `jobs.include[].if` drops the job, after `exclude` and duplicates
//!   (`Travis::Yml::Matrix#filter`), and `jobs.exclude[].if` makes an entry
//!   apply only to the jobs it holds for (`#excluded?`);
//! - `stages[].if` drops a stage and its jobs unless it holds for at least
//!   one of them (`Configs::Stages#accept?`);
//! - `jobs.allow_failures[].if` lets only the matching jobs it holds for
//!   fail (`Configs::AllowFailures#accept?`).
//!
//! A job's condition sees the build's attributes with the job's own
//! `language`, `os`, `dist` (and `sudo`, `group`) over them, and `env()`
//! the job's env, global lines first (travis-yml merges the job's config
//! over the build's data). Jobs are numbered after the drops, densely, as
//! Travis numbers the jobs it creates.

use super::job::Job;
use crate::travis::cond::{Condition, Data, Value};
use crate::travis::config::Config;
use crate::travis::context::BuildContext;
use crate::travis::diag::Diagnostic;
use crate::travis::langs;
use crate::travis::yaml;

/// A job or stage an `if:` dropped, for `kha lint --expand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// `stage deploy`, `job "Docs"` or `job os=osx rvm=2.7`.
    pub what: String,
    pub condition: Condition,
}

/// Evaluates conditions and keeps one warning per broken condition.
#[derive(Default)]
pub(super) struct Checker {
    pub(super) warnings: Vec<Diagnostic>,
}

impl Checker {
    pub(super) fn holds(&mut self, c: Option<&Condition>, data: &Data) -> bool {
        let Some(c) = c else {
            return true;
        };
        let (ok, w) = c.check(data);
        if let Some(w) = w {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        ok
    }
}

/// A kept scalar as a condition value (`sudo: true` reads as "true",
/// which evaluation casts); lists and mappings are not values conditions
/// can compare.
fn text(v: &yaml::Value) -> Value {
    match v {
        yaml::Value::Str(s) => Value::Str(s.clone()),
        _ => Value::Nil,
    }
}

fn kept<'a>(kept: &'a [(String, yaml::Value)], key: &str) -> Option<&'a yaml::Value> {
    kept.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// What a job's `if:` (and its stage's, exclude's and allow_failures')
/// is evaluated against.
pub(super) fn job_data(cfg: &Config, ctx: &BuildContext, job: &Job) -> Data {
    let mut d = Data::from_context(ctx);
    d.set("language", Value::Str(job.language.clone()));
    d.set("os", Value::Str(job.os().to_string()));
    if let Some(dist) = job.axis("dist") {
        d.set("dist", Value::Str(dist.to_string()));
    }
    for key in ["sudo", "group"] {
        if let Some(v) = kept(&job.kept, key) {
            d.set(key, text(v));
        }
    }
    d.add_env_lines(cfg.env_global.iter().chain(&job.own_env));
    d
}

/// What the root `if:` and notifications' conditions are evaluated
/// against: the build's attributes, the root's `language`, `os` and `dist`
/// (their first value), and `env()` over `env.global` and then every
/// `env.jobs` entry (the whole file's env, merged, a later value winning).
pub fn root_data(cfg: &Config, ctx: &BuildContext) -> Data {
    let mut d = Data::from_context(ctx);
    d.set(
        "language",
        Value::Str(cfg.language_or_default().to_string()),
    );
    let first = |k: &str| cfg.axis(k).and_then(|v| v.first()).cloned();
    d.set(
        "os",
        Value::Str(first("os").unwrap_or_else(|| langs::DEFAULT_OS.to_string())),
    );
    if let Some(dist) = first("dist") {
        d.set("dist", Value::Str(dist));
    }
    for key in ["sudo", "group"] {
        if let Some(v) = kept(&cfg.kept, key) {
            d.set(key, text(v));
        }
    }
    d.add_env_lines(cfg.env_global.iter().chain(cfg.env_jobs.iter().flatten()));
    d
}

/// Whether a build of `cfg` is created for `ctx` (the root `if:`), with a
/// warning when the condition does not parse or evaluate (it is then
/// false, and the build is not created, as on Travis).
pub fn build_runs(cfg: &Config, ctx: &BuildContext) -> (bool, Option<Diagnostic>) {
    match &cfg.condition {
        None => (true, None),
        Some(c) => c.check(&root_data(cfg, ctx)),
    }
}

/// How a dropped job is named: its `name`, else its matrix values.
pub(super) fn describe(job: &Job) -> String {
    if let Some(n) = &job.name {
        return format!("job {n:?}");
    }
    let mut parts: Vec<String> = vec![job.language.clone()];
    parts.extend(job.axes.iter().map(|(k, v)| format!("{k}={v}")));
    if !job.own_env.is_empty() {
        parts.push(format!("env={}", job.own_env.join(" ")));
    }
    format!("job {}", parts.join(" "))
}

/// Stage filtering (travis-yml `Configs::Stages#filter_stages`): a stage
/// with an `if:` stays when the condition holds for at least one of its
/// jobs; the jobs of a dropped stage go with it. `stages` holds the names
/// in order; both lists are filtered in place.
pub(super) fn filter_stages(
    cfg: &Config,
    ctx: &BuildContext,
    jobs: &mut Vec<(Job, Option<yaml::Pos>)>,
    stages: &mut Vec<String>,
    check: &mut Checker,
    dropped: &mut Vec<Dropped>,
) {
    let on = |job: &Job, name: &str| {
        job.stage
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(name))
    };
    let mut gone: Vec<String> = Vec::new();
    for name in stages.iter() {
        let Some(cond) = cfg
            .stages
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
            .and_then(|s| s.condition.as_ref())
        else {
            continue;
        };
        let keep = jobs
            .iter()
            .filter(|(j, _)| on(j, name))
            .any(|(j, _)| check.holds(Some(cond), &job_data(cfg, ctx, j)));
        if !keep {
            dropped.push(Dropped {
                what: format!("stage {name}"),
                condition: cond.clone(),
            });
            gone.push(name.clone());
        }
    }
    stages.retain(|n| !gone.contains(n));
    jobs.retain(|(j, _)| !gone.iter().any(|g| on(j, g)));
}

#[cfg(test)]
mod tests {
    use crate::travis::{
        build_runs, expand_with, parse, BuildContext, EventType, ExpandOptions, PullRequest,
    };

    fn ctx(event: EventType, branch: &str) -> BuildContext {
        BuildContext {
            event,
            repo: "o/r".into(),
            branch: branch.into(),
            ..BuildContext::default()
        }
    }

    /// (job numbers with their names or env) for `yml` in `ctx`.
    fn jobs(yml: &str, ctx: BuildContext) -> (Vec<String>, Vec<String>, Vec<String>) {
        let cfg = parse(yml).unwrap_or_else(|e| panic!("{e}"));
        let opts = ExpandOptions {
            context: ctx,
            ..ExpandOptions::default()
        };
        let x = expand_with(&cfg, &opts).unwrap_or_else(|e| panic!("{e}"));
        let jobs = x
            .jobs
            .iter()
            .map(|j| {
                let what = j.name.clone().unwrap_or_else(|| j.env.join(" "));
                let af = if j.allow_failure { " (af)" } else { "" };
                match &j.stage {
                    Some(s) => format!("{}:{s}:{what}{af}", j.number),
                    None => format!("{}:{what}{af}", j.number),
                }
            })
            .collect();
        let dropped = x.dropped.iter().map(|d| d.what.clone()).collect();
        let warnings = x.warnings.iter().map(|w| w.to_string()).collect();
        (jobs, dropped, warnings)
    }

    const INCLUDES: &str = "language: shell
jobs:
  include:
    - name: a
    - name: b
      if: branch = master
    - name: c
      if: type = pull_request
    - name: d
";

    #[test]
    fn included_jobs_are_dropped_and_the_rest_renumbered() {
        let (j, d, w) = jobs(INCLUDES, ctx(EventType::Push, "master"));
        assert_eq!(j, ["1:a", "2:b", "3:d"]);
        assert_eq!(d, [r#"job "c""#]);
        assert!(w.is_empty(), "{w:?}");
        let (j, d, _) = jobs(INCLUDES, ctx(EventType::PullRequest, "dev"));
        assert_eq!(j, ["1:a", "2:c", "3:d"]);
        assert_eq!(d, [r#"job "b""#]);
    }

    #[test]
    fn a_job_condition_sees_its_own_os_language_and_env() {
        let yml = "language: shell
env:
  global: [G=1]
jobs:
  include:
    - {name: mac, os: osx, if: os = osx}
    - {name: lin, if: os = osx}
    - {name: py, language: python, if: language = python}
    - {name: e1, env: X=yes, if: env(X) = yes AND env(G) = 1}
    - {name: e2, env: X=no, if: env(X) = yes}
    - {name: flag, env: RUN=true, if: env(RUN) IS true}
";
        let (j, d, _) = jobs(yml, ctx(EventType::Push, "master"));
        assert_eq!(j, ["1:mac", "2:py", "3:e1", "4:flag"]);
        assert_eq!(d, [r#"job "lin""#, r#"job "e2""#]);
    }

    #[test]
    fn stages_are_dropped_with_their_jobs() {
        let yml = "language: shell
stages:
  - test
  - name: deploy
    if: branch = master AND type = push
  - name: mac
    if: os = osx
jobs:
  include:
    - {name: t1}
    - {stage: deploy, name: d1}
    - {stage: mac, name: m1}
    - {name: m2, os: osx}
";
        let (j, d, _) = jobs(yml, ctx(EventType::Push, "master"));
        assert_eq!(j, ["1:test:t1", "2:deploy:d1", "3:mac:m1", "4:mac:m2"]);
        assert!(d.is_empty(), "{d:?}");
        let (j, d, _) = jobs(yml, ctx(EventType::PullRequest, "master"));
        assert_eq!(j, ["1:test:t1", "2:mac:m1", "3:mac:m2"]);
        assert_eq!(d, ["stage deploy"]);
        let yml = yml.replace("    - {name: m2, os: osx}\n", "");
        let (j, d, _) = jobs(&yml, ctx(EventType::PullRequest, "master"));
        assert_eq!(j, ["1:test:t1"]);
        assert_eq!(d, ["stage deploy", "stage mac"]);
    }

    #[test]
    fn exclude_and_allow_failures_apply_where_their_condition_holds() {
        let yml = "language: shell
env: [A=1, A=2, A=3]
jobs:
  exclude:
    - env: A=2
      if: branch = master
  allow_failures:
    - env: A=3
      if: type = pull_request
";
        let (j, _, w) = jobs(yml, ctx(EventType::Push, "master"));
        assert_eq!(j, ["1:A=1", "2:A=3"]);
        assert!(w.is_empty(), "{w:?}");
        let (j, _, _) = jobs(yml, ctx(EventType::PullRequest, "dev"));
        assert_eq!(j, ["1:A=1", "2:A=2", "3:A=3 (af)"]);
    }

    #[test]
    fn a_broken_condition_drops_the_job_and_says_where() {
        let yml = "language: shell
jobs:
  include:
    - name: ok
    - name: broken
      if: $TRAVIS_BRANCH = master
";
        let (j, d, w) = jobs(yml, ctx(EventType::Push, "master"));
        assert_eq!(j, ["1:ok"]);
        assert_eq!(d, [r#"job "broken""#]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("line 6, column 11: "), "{}", w[0]);
        assert!(
            w[0].contains("dollar") && w[0].contains("offset 0"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn the_root_condition_decides_whether_there_is_a_build() {
        let cfg = parse("language: shell\nif: type != pull_request OR fork = false\n").unwrap();
        let mut c = ctx(EventType::PullRequest, "master");
        c.pull_request = Some(PullRequest {
            number: 1,
            head_repo: "o/r".into(),
            ..PullRequest::default()
        });
        assert_eq!(build_runs(&cfg, &c), (true, None));
        c.pull_request = Some(PullRequest {
            number: 1,
            head_repo: "someone/r".into(),
            fork: true,
            ..PullRequest::default()
        });
        assert_eq!(build_runs(&cfg, &c), (false, None));
        let cfg = parse("language: shell\nif: branch = (\n").unwrap();
        let (runs, w) = build_runs(&cfg, &c);
        assert!(!runs);
        assert!(w.is_some_and(|w| w.line == Some(2)));
        let cfg = parse("language: shell\nenv: {global: [DEPLOY=1]}\nif: env(DEPLOY) = 1 AND language = shell\n").unwrap();
        assert!(build_runs(&cfg, &c).0);
    }

    #[test]
    fn notifications_with_false_conditions_are_removed() {
        let yml = "language: shell
notifications:
  irc:
    channels: [irc.example.org#a]
    if: branch = master
  webhooks:
    - {urls: [http://x/1], if: type = cron}
    - {urls: [http://x/2]}
  email:
    recipients: [a@example.org]
    if: branch = master
";
        let cfg = parse(yml).unwrap();
        let opts = ExpandOptions {
            context: ctx(EventType::Push, "dev"),
            ..ExpandOptions::default()
        };
        let x = expand_with(&cfg, &opts).unwrap();
        assert!(x.notifications.irc.is_empty());
        assert_eq!(x.notifications.webhooks.len(), 1);
        assert_eq!(x.notifications.webhooks[0].recipients, ["http://x/2"]);
        // As on Travis, an email section removed means the default email.
        assert_eq!(x.notifications.email.len(), 1);
        assert!(x.notifications.email[0].recipients.is_empty());
        let opts = ExpandOptions {
            context: ctx(EventType::Push, "master"),
            ..ExpandOptions::default()
        };
        let x = expand_with(&cfg, &opts).unwrap();
        assert_eq!(x.notifications.irc.len(), 1);
        assert_eq!(x.notifications.email[0].recipients, ["a@example.org"]);
        assert!(
            cfg.warnings.iter().all(|w| !w.contains("`if`")),
            "{:?}",
            cfg.warnings
        );
    }
}

//! `matrix:` / `jobs:` (Travis docs: Build Matrix): the jobs a config adds
//! (`include`), drops (`exclude`) and lets fail (`allow_failures`), and
//! `fast_finish`. A list is taken as `include` (travis-yml's schema
//! prefixes `jobs` with `include`).

use super::values::{
    condition, flag, kept, language, normalise_axis_value, one_or_many, phase, scalar, single,
};
use super::{env, Config, JobSpec, MatchSpec};
use crate::travis::diag::Diagnostics;
use crate::travis::langs;
use crate::travis::yaml::{Entry, Kind, Node, Pos, Value};

pub(super) fn read_matrix(cfg: &mut Config, d: &mut Diagnostics, e: &Entry) {
    let v = &e.value;
    match &v.kind {
        _ if v.is_null() => {}
        Kind::Seq(_) => cfg.include = read_includes(d, v),
        Kind::Map(entries) => {
            for x in entries {
                match x.key.as_str() {
                    "include" => cfg.include = read_includes(d, &x.value),
                    "exclude" => cfg.exclude = read_matches(d, &x.value, "exclude"),
                    "allow_failures" => {
                        cfg.allow_failures = read_matches(d, &x.value, "allow_failures")
                    }
                    "fast_finish" => {
                        if let Some(b) = flag(d, &x.value, "fast_finish") {
                            cfg.fast_finish = b;
                        }
                    }
                    other => d.warn(
                        x.key_pos,
                        format!("unknown key `{}.{other}`; ignored", e.key),
                    ),
                }
            }
        }
        Kind::Scalar { .. } => d.warn(
            v.pos,
            format!(
                "`{}` must be a mapping (include, exclude, allow_failures, fast_finish); ignored",
                e.key
            ),
        ),
    }
}

fn read_includes(d: &mut Diagnostics, v: &Node) -> Vec<JobSpec> {
    let mut out = Vec::new();
    for it in one_or_many(v) {
        match &it.kind {
            // An empty entry is a job with everything inherited (Travis
            // docs: Build Matrix, "add a blank job entry").
            _ if it.is_null() => out.push(JobSpec {
                pos: it.pos,
                ..JobSpec::default()
            }),
            Kind::Map(entries) => out.push(read_job(d, it.pos, entries)),
            _ => d.warn(
                it.pos,
                format!(
                    "a `jobs.include` entry must be a mapping, not {}; ignored",
                    it.describe()
                ),
            ),
        }
    }
    out
}

fn read_job(d: &mut Diagnostics, pos: Pos, entries: &[Entry]) -> JobSpec {
    let mut job = JobSpec {
        pos,
        ..JobSpec::default()
    };
    for e in entries {
        if phase(d, e, &mut job.phases, &mut job.skipped_phases) {
            continue;
        }
        let key = e.key.as_str();
        if let Some(axis) = langs::canonical_axis(key) {
            if let Some(value) = single(d, e) {
                let value = normalise_axis_value(axis, &value);
                job.axes.retain(|(k, _)| k != axis);
                job.axes.push((axis.to_string(), value));
            }
            continue;
        }
        match key {
            "language" => job.language = language(d, e),
            "name" => job.name = scalar(d, e),
            "stage" => job.stage = scalar(d, e),
            "env" => job.env = Some(env::lines(d, &e.value)),
            "if" => job.condition = condition(d, e),
            _ if key.starts_with('_') => job.kept.push((key.to_string(), e.value.to_value())),
            _ => job.kept.push(kept(d, e, " in a job")),
        }
    }
    job
}

fn read_matches(d: &mut Diagnostics, v: &Node, what: &str) -> Vec<MatchSpec> {
    let mut out = Vec::new();
    for it in one_or_many(v) {
        let Kind::Map(entries) = &it.kind else {
            if !it.is_null() {
                d.warn(
                    it.pos,
                    format!(
                        "a `jobs.{what}` entry must be a mapping, not {}; ignored",
                        it.describe()
                    ),
                );
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
                "if" => m.condition = condition(d, e),
                "env" => {
                    let lines = env::lines(d, &e.value);
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

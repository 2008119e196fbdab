//! A job as the matrix sees it: the merged config that makes it unique
//! (two jobs with equal [`Job`]s are duplicates), and how an included job
//! is merged over the root's keys.

use crate::travis::cond::Condition;
use crate::travis::config::JobSpec;
use crate::travis::langs;
use crate::travis::yaml::Value;
use crate::travis::{Phases, PHASES};
use std::collections::BTreeSet;

/// A job as the matrix sees it: the merged config that makes it unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Job {
    pub(super) language: String,
    /// Matrix keys with values, canonical order; `os` absent means linux.
    pub(super) axes: Vec<(String, String)>,
    /// The job's own env lines (global not included).
    pub(super) own_env: Vec<String>,
    pub(super) phases: Phases,
    pub(super) skipped: BTreeSet<String>,
    pub(super) name: Option<String>,
    pub(super) stage: Option<String>,
    pub(super) condition: Option<Condition>,
    pub(super) kept: Vec<(String, Value)>,
    pub(super) allow_failure: bool,
}

impl Job {
    pub(super) fn axis(&self, key: &str) -> Option<&str> {
        self.axes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn os(&self) -> &str {
        self.axis("os").unwrap_or(langs::DEFAULT_OS)
    }

    /// The job's value of `key`, as a YAML value, for `exclude` and
    /// `allow_failures` matching (travis-yml compares `job[key]`).
    pub(super) fn attr(&self, key: &str) -> Option<Value> {
        if key == "os" {
            return Some(Value::Str(self.os().to_string()));
        }
        if let Some(v) = self.axis(key) {
            return Some(Value::Str(v.to_string()));
        }
        match key {
            "language" => Some(Value::Str(self.language.clone())),
            "name" => self.name.clone().map(Value::Str),
            "stage" => self.stage.clone().map(Value::Str),
            _ => {
                if let Some(cmds) = self.phases.get(key) {
                    return (!cmds.is_empty())
                        .then(|| Value::Seq(cmds.iter().cloned().map(Value::Str).collect()));
                }
                self.kept
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            }
        }
    }
}

/// An included job: its own keys over the root's (travis-yml
/// `with_shared`), plus the first value of each root matrix key it does
/// not set (`with_global`) and the first root env entry when it has no
/// `env` (`with_first_env`).
pub(super) fn include_job(
    shared: &Job,
    inc: &JobSpec,
    keys: &[(&str, &[String])],
    first_env: Option<&Vec<String>>,
) -> Job {
    let mut job = shared.clone();
    if let Some(l) = &inc.language {
        job.language = l.clone();
    }
    for phase in PHASES {
        let own = inc.phases.get(phase).filter(|c| !c.is_empty());
        if let (Some(own), Some(slot)) = (own, job.phases.get_mut(phase)) {
            *slot = own.clone();
            job.skipped.remove(phase);
        }
        if inc.skipped_phases.contains(phase) {
            if let Some(slot) = job.phases.get_mut(phase) {
                slot.clear();
            }
            job.skipped.insert(phase.to_string());
        }
    }
    job.axes = inc.axes.clone();
    for (k, values) in keys {
        if !job.axes.iter().any(|(have, _)| have == k) {
            if let Some(first) = values.first() {
                job.axes.push((k.to_string(), first.clone()));
            }
        }
    }
    job.own_env = match (&inc.env, first_env) {
        (Some(own), _) => own.clone(),
        (None, Some(first)) => first.clone(),
        (None, None) => Vec::new(),
    };
    job.name = inc.name.clone();
    job.stage = inc.stage.clone();
    job.condition = inc.condition.clone();
    for (k, v) in &inc.kept {
        match job.kept.iter_mut().find(|(have, _)| have == k) {
            Some(slot) => slot.1 = v.clone(),
            None => job.kept.push((k.clone(), v.clone())),
        }
    }
    job
}

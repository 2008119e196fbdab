//! The `.travis.yml` model: parsing into a typed config, and expansion into
//! the jobs of a build.
//!
//! This is the subset the distributed core needs: the phase keys and `env`
//! (a string, or a list giving one job per entry). Errors name the line and
//! column.

use crate::Labels;
use serde_yaml::Value;
use std::fmt;

/// The job phases, in the order they run.
pub const PHASES: [&str; 7] = [
    "before_install",
    "install",
    "before_script",
    "script",
    "after_success",
    "after_failure",
    "after_script",
];

/// The commands of each phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phases {
    pub before_install: Vec<String>,
    pub install: Vec<String>,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_success: Vec<String>,
    pub after_failure: Vec<String>,
    pub after_script: Vec<String>,
}

impl Phases {
    pub fn get(&self, name: &str) -> Option<&Vec<String>> {
        Some(match name {
            "before_install" => &self.before_install,
            "install" => &self.install,
            "before_script" => &self.before_script,
            "script" => &self.script,
            "after_success" => &self.after_success,
            "after_failure" => &self.after_failure,
            "after_script" => &self.after_script,
            _ => return None,
        })
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Vec<String>> {
        Some(match name {
            "before_install" => &mut self.before_install,
            "install" => &mut self.install,
            "before_script" => &mut self.before_script,
            "script" => &mut self.script,
            "after_success" => &mut self.after_success,
            "after_failure" => &mut self.after_failure,
            "after_script" => &mut self.after_script,
            _ => return None,
        })
    }
}

/// A `.travis.yml` that could not be read, with where the trouble is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn msg(message: impl Into<String>) -> Self {
        ConfigError {
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

/// A parsed `.travis.yml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub language: Option<String>,
    pub phases: Phases,
    /// One entry per job; each is a line of shell assignments (`A=1 B="x y"`).
    pub env_matrix: Vec<String>,
    /// Keys present but not acted on, as messages to show in the build.
    pub warnings: Vec<String>,
}

/// One job a config expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    /// 1-based position in the build (`12.1`, `12.2`, …).
    pub number: u32,
    pub phases: Phases,
    /// Shell assignments exported before the first phase, in order.
    pub env: Vec<String>,
    /// The matrix values that make this job differ from its siblings.
    pub matrix: Vec<(String, String)>,
    /// What a builder needs to run it.
    pub requires: Labels,
    pub allow_failure: bool,
}

/// Parses `.travis.yml` text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location();
        ConfigError {
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message: e.to_string(),
        }
    })?;
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Err(ConfigError::msg(".travis.yml is empty")),
        _ => return Err(ConfigError::msg(".travis.yml must be a mapping of keys")),
    };
    let mut cfg = Config::default();
    for (k, v) in map {
        let Some(key) = k.as_str() else {
            return Err(ConfigError::msg(format!("key {k:?} is not a string")));
        };
        if let Some(slot) = cfg.phases.get_mut(key) {
            *slot = string_list(key, &v)?;
            continue;
        }
        match key {
            "language" => cfg.language = v.as_str().map(str::to_string),
            "env" => cfg.env_matrix = string_list("env", &v)?,
            other => cfg
                .warnings
                .push(format!("key `{other}` is not supported yet and was ignored")),
        }
    }
    Ok(cfg)
}

fn string_list(key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
    let one = |v: &Value| -> Result<String, ConfigError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(ConfigError::msg(format!(
                "`{key}` must be a string or a list of strings"
            ))),
        }
    };
    match v {
        Value::Null => Ok(vec![]),
        Value::Sequence(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// Expands a config into its jobs; refuses more than `max_jobs`.
pub fn expand(cfg: &Config, max_jobs: usize) -> Result<Vec<JobPlan>, ConfigError> {
    let envs: Vec<Option<&String>> = if cfg.env_matrix.is_empty() {
        vec![None]
    } else {
        cfg.env_matrix.iter().map(Some).collect()
    };
    if envs.len() > max_jobs {
        return Err(ConfigError::msg(format!(
            "the config expands to {} jobs, more than the limit of {max_jobs}",
            envs.len()
        )));
    }
    let mut requires = Labels::default();
    requires.insert("os", "linux");
    Ok(envs
        .into_iter()
        .enumerate()
        .map(|(i, env)| JobPlan {
            number: i as u32 + 1,
            phases: cfg.phases.clone(),
            env: env.cloned().into_iter().collect(),
            matrix: env
                .map(|e| vec![("env".to_string(), e.clone())])
                .unwrap_or_default(),
            requires: requires.clone(),
            allow_failure: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_as_string_or_list() {
        let cfg = parse("script: make test\ninstall:\n  - a\n  - b\n").unwrap();
        assert_eq!(cfg.phases.script, vec!["make test"]);
        assert_eq!(cfg.phases.install, vec!["a", "b"]);
    }

    #[test]
    fn env_list_gives_a_job_each() {
        let cfg = parse("script: x\nenv:\n  - A=1\n  - A=2 B=3\n").unwrap();
        let jobs = expand(&cfg, 10).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1].number, 2);
        assert_eq!(jobs[1].env, vec!["A=2 B=3"]);
        assert!(expand(&cfg, 1).is_err());
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("script:\n  - ok\n bad: [\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
        assert!(e.to_string().starts_with("line "), "{e}");
        assert!(parse("").is_err());
        assert!(parse("- a\n- b\n").is_err());
    }

    #[test]
    fn unknown_keys_warn() {
        let cfg = parse("script: x\ndeploy: {provider: s3}\n").unwrap();
        assert_eq!(cfg.warnings.len(), 1);
    }
}

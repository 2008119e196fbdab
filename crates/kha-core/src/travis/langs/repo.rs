//! What the control node knows of the repository at the built commit, and
//! the conditions language defaults put on it.
//!
//! The defaults depend on files in the repository ("rebar3 when the project
//! uses it", "make when there is a Makefile"). Pure code cannot look, so the
//! caller passes [`RepoFacts`]: the names at the repository root, which the
//! control node reads from the git tree. When it passes
//! [`RepoFacts::unknown`], the defaults are rendered as the same shell
//! conditionals Travis's own build script generator (travis-build) emits,
//! and the decision is taken on the builder.

use std::collections::BTreeSet;

/// What the control node knows of the repository at the built commit: the
/// names of the entries at its root. Only the names in [`CONSULTED_FILES`]
/// matter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoFacts {
    root: Option<BTreeSet<String>>,
}

/// The root entries the language defaults look at.
pub const CONSULTED_FILES: &[&str] = &[
    "rebar.config",
    "Rebar.config",
    "rebar.lock",
    "rebar",
    "rebar3",
    "GNUmakefile",
    "makefile",
    "Makefile",
    "BSDmakefile",
    "requirements.txt",
    "package.json",
    "yarn.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "Gemfile",
    "Gemfile.lock",
];

impl RepoFacts {
    /// Nothing known: defaults become shell conditionals run on the builder.
    pub fn unknown() -> RepoFacts {
        RepoFacts { root: None }
    }

    /// The names of the entries at the repository's root.
    pub fn from_root_files<I, S>(names: I) -> RepoFacts
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RepoFacts {
            root: Some(names.into_iter().map(|s| s.as_ref().to_string()).collect()),
        }
    }

    pub fn is_known(&self) -> bool {
        self.root.is_some()
    }

    /// Whether the root has `name`; None when nothing is known.
    pub fn has(&self, name: &str) -> Option<bool> {
        self.root.as_ref().map(|r| r.contains(name))
    }
}

/// A condition on the repository's root files.
#[derive(Debug, Clone)]
pub(super) enum Cond {
    Always,
    File(&'static str),
    Any(Vec<Cond>),
    All(Vec<Cond>),
}

impl Cond {
    fn eval(&self, facts: &RepoFacts) -> bool {
        match self {
            Cond::Always => true,
            Cond::File(f) => facts.has(f).unwrap_or(false),
            Cond::Any(cs) => cs.iter().any(|c| c.eval(facts)),
            Cond::All(cs) => cs.iter().all(|c| c.eval(facts)),
        }
    }

    /// POSIX sh test; file names here are constants, never config text.
    fn render(&self, nested: bool) -> String {
        match self {
            Cond::Always => "true".into(),
            Cond::File(f) => format!("[ -f {f} ]"),
            Cond::Any(cs) | Cond::All(cs) => {
                let op = if matches!(self, Cond::Any(_)) {
                    " || "
                } else {
                    " && "
                };
                let inner: Vec<String> = cs.iter().map(|c| c.render(true)).collect();
                if nested {
                    format!("{{ {}; }}", inner.join(op))
                } else {
                    inner.join(op)
                }
            }
        }
    }
}

/// First matching rule wins; no match means no commands.
pub(super) struct Rule {
    when: Cond,
    run: Vec<String>,
}

pub(super) fn rule(when: Cond, run: &[&str]) -> Rule {
    Rule {
        when,
        run: run.iter().map(|s| s.to_string()).collect(),
    }
}

/// Resolves rules against what is known of the repository.
pub(super) fn resolve(rules: &[Rule], facts: &RepoFacts) -> Vec<String> {
    if facts.is_known()
        || rules
            .first()
            .is_some_and(|r| matches!(r.when, Cond::Always))
    {
        return rules
            .iter()
            .find(|r| r.when.eval(facts))
            .map(|r| r.run.clone())
            .unwrap_or_default();
    }
    // Unknown: one `if … elif … else … fi` command, as travis-build emits.
    let mut out = String::new();
    let mut closed = false;
    for (i, r) in rules.iter().enumerate() {
        let body = if r.run.is_empty() {
            "true".to_string()
        } else {
            r.run.join("; ")
        };
        match (&r.when, i) {
            (Cond::Always, _) => {
                out.push_str(&format!("else {body}; fi"));
                closed = true;
                break;
            }
            (c, 0) => out.push_str(&format!("if {}; then {body}; ", c.render(false))),
            (c, _) => out.push_str(&format!("elif {}; then {body}; ", c.render(false))),
        }
    }
    if out.is_empty() {
        return vec![];
    }
    if !closed {
        out.push_str("fi");
    }
    vec![out]
}

//! Travis's condition language (`if:` on builds, stages, jobs,
//! `jobs.exclude`, `jobs.allow_failures` and notifications), version 1,
//! the one Travis evaluated by default (Travis docs: Conditions;
//! travis-yml `helper/condition.rb` always asks for `v1`).
//!
//! - `parse`: the text into an [`Expr`], with Travis's grammar, precedence
//!   and quirks (parse.rs says which).
//! - `eval`: an [`Expr`] against [`Data`], with Ruby's values: `nil`,
//!   booleans and strings, Ruby truthiness, the "true"/"false" cast, Ruby
//!   regex matching (eval.rs).
//! - [`Data`]: the attributes (`type`, `branch`, …) of one build, from a
//!   [`BuildContext`], plus a job's `language`/`os`/`dist`/… and the
//!   `.travis.yml` env that `env(NAME)` reads.
//! - [`Condition`]: an `if:` as written, with where it is in the file;
//!   [`Condition::check`] is what expansion calls: a condition that does not
//!   parse or evaluate is false, as on Travis, and says why and where.

mod eval;
mod parse;

#[cfg(test)]
mod spec_tests;

pub use eval::{eval, Value};
pub use parse::parse;

use super::context::BuildContext;
use super::diag::Diagnostic;
use super::yaml::Pos;
use std::collections::BTreeMap;
use std::fmt;

/// The attributes the language knows, in parser.rb's `VAR` order (the
/// first that matches wins, so the order is part of the grammar).
pub(crate) const VARS: [&str; 15] = [
    "type",
    "repo",
    "head_repo",
    "os",
    "dist",
    "group",
    "sudo",
    "language",
    "sender",
    "fork",
    "branch",
    "head_branch",
    "tag",
    "commit_message",
    "draft",
];

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `=`, `==` or (negated) `!=`.
    Eq {
        negated: bool,
        lft: Box<Expr>,
        rgt: Box<Expr>,
    },
    /// `=~`, `~=` or (negated) `!~`; `at` is the regex's offset.
    Match {
        negated: bool,
        lft: Box<Expr>,
        rx: Rx,
        at: usize,
    },
    /// `IN` or `NOT IN`; `list` is None when no parenthesis followed (an
    /// error when evaluated, as on Travis).
    In {
        negated: bool,
        lft: Box<Expr>,
        list: Option<Vec<Expr>>,
        at: usize,
    },
    /// `IS` or `IS NOT`.
    Is {
        negated: bool,
        lft: Box<Expr>,
        pred: Pred,
    },
    Var(&'static str),
    Val(String),
    Call {
        func: Func,
        args: Vec<Expr>,
        at: usize,
    },
}

/// The right side of a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rx {
    Lit(String),
    Call(Box<Expr>),
    /// Nothing a regex could be read from (an error when evaluated).
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pred {
    Present,
    Blank,
    True,
    False,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Env,
    Concat,
}

impl Expr {
    /// The expression as travis-conditions' s-expressions (`[:eq, [:var,
    /// :type], [:val, "foo"]]`), so Travis's parser spec can be checked
    /// as written.
    pub fn sexp(&self) -> String {
        fn list(items: &[Expr]) -> String {
            let inner: Vec<String> = items.iter().map(Expr::sexp).collect();
            format!("[{}]", inner.join(", "))
        }
        match self {
            Expr::Or(a, b) => format!("[:or, {}, {}]", a.sexp(), b.sexp()),
            Expr::And(a, b) => format!("[:and, {}, {}]", a.sexp(), b.sexp()),
            Expr::Not(a) => format!("[:not, {}]", a.sexp()),
            Expr::Eq { negated, lft, rgt } => format!(
                "[:{}, {}, {}]",
                if *negated { "not_eq" } else { "eq" },
                lft.sexp(),
                rgt.sexp()
            ),
            Expr::Match {
                negated, lft, rx, ..
            } => {
                let rx = match rx {
                    Rx::Lit(s) => format!("[:reg, {s:?}]"),
                    Rx::Call(c) => format!("[:reg, {}]", c.sexp()),
                    Rx::Missing => "nil".into(),
                };
                format!(
                    "[:{}, {}, {rx}]",
                    if *negated { "not_match" } else { "match" },
                    lft.sexp()
                )
            }
            Expr::In {
                negated,
                lft,
                list: l,
                ..
            } => format!(
                "[:{}, {}, {}]",
                if *negated { "not_in" } else { "in" },
                lft.sexp(),
                l.as_deref().map_or("nil".into(), list)
            ),
            Expr::Is { negated, lft, pred } => format!(
                "[:{}, {}, :{}]",
                if *negated { "is_not" } else { "is" },
                lft.sexp(),
                match pred {
                    Pred::Present => "present",
                    Pred::Blank => "blank",
                    Pred::True => "true",
                    Pred::False => "false",
                }
            ),
            Expr::Var(v) => format!("[:var, :{v}]"),
            Expr::Val(s) => format!("[:val, {s:?}]"),
            Expr::Call { func, args, .. } => format!(
                "[:call, :{}, {}]",
                match func {
                    Func::Env => "env",
                    Func::Concat => "concat",
                },
                list(args)
            ),
        }
    }
}

/// A condition that does not parse or evaluate, and where in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Byte offset in the condition as written.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for Error {}

/// What a condition is evaluated against: the build's attributes and the
/// `.travis.yml` env (`env(NAME)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Data {
    vars: BTreeMap<&'static str, Value>,
    env: BTreeMap<String, Value>,
}

impl Data {
    /// The build's attributes (Travis docs: Conditions, "Integration"):
    /// `branch` is a pull request's base branch and a tag build's tag,
    /// `head_repo`/`head_branch` are set for pull requests only, and what is
    /// unknown is nil.
    pub fn from_context(ctx: &BuildContext) -> Data {
        let mut d = Data::default();
        let text = |s: &str| {
            if s.is_empty() {
                Value::Nil
            } else {
                Value::Str(s.to_string())
            }
        };
        d.set("type", Value::Str(ctx.event.as_str().to_string()));
        d.set("repo", text(&ctx.repo));
        d.set("branch", text(&ctx.branch));
        d.set("tag", ctx.tag.as_deref().map_or(Value::Nil, text));
        d.set("commit_message", Value::Str(ctx.commit_message.clone()));
        d.set("sender", text(&ctx.sender));
        d.set("fork", Value::Bool(ctx.fork()));
        if let Some(pr) = &ctx.pull_request {
            d.set("head_repo", text(&pr.head_repo));
            d.set("head_branch", text(&pr.head_branch));
            d.set("draft", Value::Bool(pr.draft));
        }
        d
    }

    /// Sets an attribute; names other than the language's are ignored.
    pub fn set(&mut self, name: &str, value: Value) {
        if let Some(v) = VARS.iter().find(|v| **v == name) {
            self.vars.insert(v, value);
        }
    }

    pub fn var(&self, name: &str) -> Value {
        self.vars.get(name).cloned().unwrap_or(Value::Nil)
    }

    /// Adds `NAME=value` lines as `env(NAME)` sees them (travis-conditions
    /// `data.rb`): several assignments per line, outer quotes taken off,
    /// "true"/"false" cast to booleans, a later value winning. A line that
    /// is not all assignments is ignored, as Travis ignores it.
    pub fn add_env_lines<'a>(&mut self, lines: impl IntoIterator<Item = &'a String>) {
        for line in lines {
            if let Some(pairs) = assignments(line) {
                for (k, v) in pairs {
                    self.env.insert(k, eval::cast(Value::Str(unquote(&v))));
                }
            }
        }
    }

    pub fn env(&self, name: &str) -> Value {
        self.env.get(name).cloned().unwrap_or(Value::Nil)
    }
}

/// A line's `NAME=value` words, split as the shell splits them (quotes
/// kept in the value), or None when a word is not an assignment.
fn assignments(line: &str) -> Option<Vec<(String, String)>> {
    crate::shell::words(line)
        .into_iter()
        .map(|w| {
            let (k, v) = w.split_once('=')?;
            crate::travis::secure::is_var_name(k).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// data.rb `unquote`: `/^(["'])(.*)\1$/`.
fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// An `if:` as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Condition {
    pub text: String,
    /// Where the condition's value starts in the file.
    pub pos: Pos,
}

impl Condition {
    pub fn new(text: impl Into<String>, pos: Pos) -> Condition {
        Condition {
            text: text.into(),
            pos,
        }
    }

    /// Whether the condition holds for `data`: an expression that does not
    /// parse or evaluate is false, with a warning naming the `if:`'s line
    /// and column and the offset in the expression.
    pub fn check(&self, data: &Data) -> (bool, Option<Diagnostic>) {
        match parse(&self.text).and_then(|e| eval(&e, data)) {
            Ok(b) => (b, None),
            Err(e) => (
                false,
                Some(Diagnostic::at(
                    self.pos,
                    format!(
                        "the condition `{}` is taken as false, as Travis does: {} (at offset {} of the condition)",
                        self.text.trim(),
                        e.message,
                        e.offset
                    ),
                )),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::travis::context::{EventType, PullRequest};

    #[test]
    fn env_lines_as_travis_reads_them() {
        let mut d = Data::default();
        d.add_env_lines(&[
            "A=1 B=\"x y\" C='z'".to_string(),
            "D=true".into(),
            "not an assignment".into(),
            "A=2".into(),
        ]);
        assert_eq!(d.env("A"), Value::Str("2".into()));
        assert_eq!(d.env("B"), Value::Str("x y".into()));
        assert_eq!(d.env("C"), Value::Str("z".into()));
        assert_eq!(d.env("D"), Value::Bool(true));
        assert_eq!(d.env("E"), Value::Nil);
    }

    #[test]
    fn context_attributes() {
        let ctx = BuildContext {
            event: EventType::PullRequest,
            repo: "o/r".into(),
            branch: "main".into(),
            pull_request: Some(PullRequest {
                number: 3,
                head_repo: "f/r".into(),
                head_branch: "topic".into(),
                fork: true,
                ..PullRequest::default()
            }),
            ..BuildContext::default()
        };
        let d = Data::from_context(&ctx);
        assert_eq!(d.var("type"), Value::Str("pull_request".into()));
        assert_eq!(d.var("fork"), Value::Bool(true));
        assert_eq!(d.var("head_branch"), Value::Str("topic".into()));
        assert_eq!(d.var("tag"), Value::Nil);
        assert_eq!(d.var("sender"), Value::Nil);
    }

    #[test]
    fn broken_conditions_are_false_and_say_where() {
        let c = Condition::new("branch = master AND", Pos { line: 4, column: 5 });
        let (ok, w) = c.check(&Data::default());
        assert!(!ok);
        let w = w.map(|w| w.to_string()).unwrap_or_default();
        assert!(w.starts_with("line 4, column 5: "), "{w}");
        assert!(w.contains("offset 19"), "{w}");
        let (ok, w) = Condition::new("tag =~ /(/", Pos::default()).check(&Data::default());
        assert!(!ok && w.is_some());
    }
}

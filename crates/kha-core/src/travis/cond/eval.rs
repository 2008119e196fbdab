//! Evaluating a condition as travis-conditions' `v1/eval.rb` does, with
//! Ruby's values: every value is nil, a boolean or a string; only nil and
//! false are falsy (so `""` and `"0"` are true as whole conditions);
//! every evaluated value is cast, the strings "true" and "false" (any
//! case) becoming booleans, so `fork = false` and `env(X) = true` compare
//! as people expect.
//!
//! Regexes follow Ruby's semantics as far as a Rust engine can: an
//! unanchored search, `^` and `$` at line ends (Ruby's default, `(?m)`
//! here), and look-around and back-references through `fancy-regex`, since
//! real conditions use `(?!…)`. `\d`, `\w` and `\s` match Unicode classes
//! where Ruby's match ASCII only; a match that exceeds fancy-regex's
//! backtracking limit is an error, so false.

use super::{Data, Error, Expr, Func, Pred, Rx};

/// A Ruby value as conditions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Nil,
    Bool(bool),
    Str(String),
}

impl Value {
    fn truthy(&self) -> bool {
        !matches!(self, Value::Nil | Value::Bool(false))
    }

    /// Ruby's `to_s`.
    fn to_text(&self) -> String {
        match self {
            Value::Nil => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
}

/// eval.rb's `cast`: "true"/"false" in any case become booleans.
pub(crate) fn cast(v: Value) -> Value {
    match &v {
        Value::Str(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        Value::Str(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ => v,
    }
}

/// Evaluates `expr` against `data`: true or false, or why it cannot be
/// evaluated.
pub fn eval(expr: &Expr, data: &Data) -> Result<bool, Error> {
    Ok(value(expr, data)?.truthy())
}

fn value(expr: &Expr, data: &Data) -> Result<Value, Error> {
    let b = |x: bool| Ok(Value::Bool(x));
    let v = match expr {
        Expr::Or(a, c) => {
            let l = value(a, data)?;
            if l.truthy() {
                l
            } else {
                value(c, data)?
            }
        }
        Expr::And(a, c) => {
            let l = value(a, data)?;
            if l.truthy() {
                value(c, data)?
            } else {
                l
            }
        }
        Expr::Not(a) => return b(!value(a, data)?.truthy()),
        Expr::Eq { negated, lft, rgt } => {
            let eq = value(lft, data)? == value(rgt, data)?;
            return b(eq != *negated);
        }
        Expr::Match {
            negated,
            lft,
            rx,
            at,
        } => {
            let l = value(lft, data)?;
            let re = regex(rx, *at, data)?;
            let hit = match &l {
                // Ruby's `nil =~ re` (and Object#=~ on booleans) is nil.
                Value::Str(s) => re.is_match(s).map_err(|e| Error {
                    offset: *at,
                    message: format!("the regular expression could not be matched: {e}"),
                })?,
                _ => false,
            };
            return b(hit != *negated);
        }
        Expr::In {
            negated,
            lft,
            list,
            at,
        } => {
            let Some(list) = list else {
                return Err(Error {
                    offset: *at,
                    message: "IN needs a list in parentheses, like `branch IN (master, dev)`"
                        .into(),
                });
            };
            let items = list
                .iter()
                .map(|i| value(i, data))
                .collect::<Result<Vec<_>, _>>()?;
            let l = value(lft, data)?;
            return b(items.contains(&l) != *negated);
        }
        Expr::Is { negated, lft, pred } => {
            let l = value(lft, data)?;
            // Present: not nil, not false, not empty (the reference notes
            // of travis-conditions' eval.rb).
            let present = match &l {
                Value::Nil | Value::Bool(false) => false,
                Value::Bool(true) => true,
                Value::Str(s) => !s.is_empty(),
            };
            let r = match pred {
                Pred::Present => present,
                Pred::Blank => !present,
                Pred::True => l.truthy(),
                Pred::False => !l.truthy(),
            };
            return b(r != *negated);
        }
        Expr::Var(name) => data.var(name),
        Expr::Val(s) => Value::Str(s.clone()),
        Expr::Call { func, args, at } => {
            let args = args
                .iter()
                .map(|a| value(a, data))
                .collect::<Result<Vec<_>, _>>()?;
            match func {
                Func::Concat => Value::Str(args.iter().map(Value::to_text).collect()),
                Func::Env => match args.as_slice() {
                    [] | [Value::Nil] => Value::Nil,
                    [name] => data.env(&name.to_text()),
                    _ => {
                        return Err(Error {
                            offset: *at,
                            message: format!(
                                "env() takes one name, not {} (wrong number of arguments)",
                                args.len()
                            ),
                        })
                    }
                },
            }
        }
    };
    Ok(cast(v))
}

fn regex(rx: &Rx, at: usize, data: &Data) -> Result<fancy_regex::Regex, Error> {
    let err = |message: String| Error {
        offset: at,
        message,
    };
    let src = match rx {
        Rx::Lit(s) => s.clone(),
        Rx::Call(c) => match value(c, data)? {
            Value::Str(s) => s,
            other => {
                return Err(err(format!(
                    "a regular expression must be a string, not {}",
                    match other {
                        Value::Nil => "nil".to_string(),
                        v => v.to_text(),
                    }
                )))
            }
        },
        Rx::Missing => return Err(err("expected a regular expression".into())),
    };
    fancy_regex::Regex::new(&format!("(?m){src}"))
        .map_err(|e| err(format!("invalid regular expression /{src}/: {e}")))
}

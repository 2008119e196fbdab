//! What reading a `.travis.yml` has to say: [`Diagnostic`], a note with
//! where it points, and [`Diagnostics`], the sink every reader (the root
//! and `jobs` readers, `branches`, `notifications`) pushes into.
//!
//! The readers depend on this module and on the YAML tree only, never on
//! each other: the config reader assembles the [`Diagnostics`] it collected
//! into `Config::diagnostics`, `Config::warnings` and `Config::kept` once
//! every key is read.

use super::yaml::{Pos, Value};
use super::ConfigError;
use std::fmt;

/// A note about the file, with where it points.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    pub fn at(pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line: Some(pos.line),
            column: Some(pos.column),
            message: message.into(),
        }
    }

    pub fn general(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl From<Diagnostic> for ConfigError {
    fn from(d: Diagnostic) -> ConfigError {
        ConfigError {
            line: d.line,
            column: d.column,
            message: d.message,
        }
    }
}

/// Everything the readers report while reading one file, in the order
/// they report it.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    notes: Vec<Diagnostic>,
    kept: Vec<(String, Value)>,
}

impl Diagnostics {
    /// A note at `pos`.
    pub(crate) fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.notes.push(Diagnostic::at(pos, message));
    }

    /// A root-level key (or `parent.key`) kha keeps without acting on it;
    /// the reader warns about it separately.
    pub(crate) fn keep(&mut self, key: String, value: Value) {
        self.kept.push((key, value));
    }

    /// The notes and the kept keys, in the order they were reported.
    pub(crate) fn into_parts(self) -> (Vec<Diagnostic>, Vec<(String, Value)>) {
        (self.notes, self.kept)
    }
}

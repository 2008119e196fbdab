//! The value readers the root and `jobs` readers share: a phase's
//! commands, a string, one value where Travis wants one, a language, a
//! matrix key's values, a flag, an `if:` condition, and the keys kha keeps
//! without acting on them. Each reports what it drops to [`Diagnostics`].

use crate::travis::cond::Condition;
use crate::travis::diag::Diagnostics;
use crate::travis::langs;
use crate::travis::yaml::{Entry, Kind, Node, Value};
use crate::travis::{Phases, PHASES};
use std::collections::BTreeSet;

pub(super) enum Commands {
    Absent,
    Skip,
    Run(Vec<String>),
}

/// Reads `e` into `phases` (or `skipped`, for `skip`) when its key is a
/// phase; false when it is not one.
pub(super) fn phase(
    d: &mut Diagnostics,
    e: &Entry,
    phases: &mut Phases,
    skipped: &mut BTreeSet<String>,
) -> bool {
    let Some(phase) = PHASES.iter().find(|p| **p == e.key) else {
        return false;
    };
    match commands(d, e) {
        Commands::Absent => {}
        Commands::Skip => {
            skipped.insert(phase.to_string());
        }
        Commands::Run(c) => {
            if let Some(slot) = phases.get_mut(phase) {
                *slot = c;
            }
        }
    }
    true
}

/// A phase's commands: a string, a list of strings, `true`, or `skip`
/// (Travis docs: Customizing the Build / Job Lifecycle, "Skipping the
/// Installation Phase").
pub(super) fn commands(d: &mut Diagnostics, e: &Entry) -> Commands {
    let v = &e.value;
    if v.is_null() {
        return Commands::Absent;
    }
    if let Some(b) = v.as_bool() {
        if !b {
            d.warn(
                v.pos,
                format!("`{}: false` runs the command `false`, which fails; write `{}: skip` to skip it", e.key, e.key),
            );
        }
        return Commands::Run(vec![b.to_string()]);
    }
    match &v.kind {
        Kind::Scalar { text, plain } => {
            if *plain && text == "skip" {
                Commands::Skip
            } else {
                Commands::Run(vec![text.clone()])
            }
        }
        Kind::Seq(items) => {
            let mut out = Vec::new();
            for it in items {
                match &it.kind {
                    Kind::Scalar { text, .. } if !it.is_null() => out.push(text.clone()),
                    Kind::Scalar { .. } => {}
                    Kind::Map(_) => d.warn(
                        it.pos,
                        format!(
                            "this `{}` command reads as a mapping (a command containing `: ` must be quoted); it is left out",
                            e.key
                        ),
                    ),
                    Kind::Seq(_) => d.warn(
                        it.pos,
                        format!("a `{}` command must be a string, not a list; it is left out", e.key),
                    ),
                }
            }
            if out.is_empty() {
                Commands::Absent
            } else {
                Commands::Run(out)
            }
        }
        Kind::Map(_) => {
            d.warn(
                v.pos,
                format!(
                    "`{}` must be a command or a list of commands, not a mapping (a command containing `: ` must be quoted); it is ignored",
                    e.key
                ),
            );
            Commands::Absent
        }
    }
}

pub(super) fn scalar(d: &mut Diagnostics, e: &Entry) -> Option<String> {
    if e.value.is_null() {
        return None;
    }
    match e.value.scalar() {
        Some(s) => Some(s.to_string()),
        None => {
            d.warn(
                e.value.pos,
                format!(
                    "`{}` must be a string, not {}; ignored",
                    e.key,
                    e.value.describe()
                ),
            );
            None
        }
    }
}

/// Travis takes the first value when a single one is expected
/// (travis-yml: "unexpected sequence, using the first value").
pub(super) fn single(d: &mut Diagnostics, e: &Entry) -> Option<String> {
    match &e.value.kind {
        Kind::Seq(items) => {
            let first = items.iter().find_map(|n| n.scalar().map(str::to_string));
            if items.len() > 1 {
                d.warn(
                    e.value.pos,
                    format!(
                        "`{}` takes one value here; using the first ({})",
                        e.key,
                        first.as_deref().unwrap_or("none")
                    ),
                );
            }
            first
        }
        _ => scalar(d, e),
    }
}

pub(super) fn language(d: &mut Diagnostics, e: &Entry) -> Option<String> {
    let name = single(d, e)?;
    match langs::canonical_language(&name) {
        Some(l) => Some(l.to_string()),
        None => {
            d.warn(
                e.value.pos,
                format!("unknown language `{name}`: kha has no defaults or matrix keys for it"),
            );
            Some(name.trim().to_ascii_lowercase())
        }
    }
}

/// Normalises a matrix value the way travis-yml's schema does for `os`
/// (downcased, `mac`/`macos` aliases) and `arch`.
pub(super) fn normalise_axis_value(axis: &str, v: &str) -> String {
    match axis {
        "os" => {
            let lower = v.trim().to_ascii_lowercase();
            match lower.as_str() {
                "mac" | "macos" | "ios" => "osx".into(),
                _ => lower,
            }
        }
        "arch" => langs::canonical_arch(v),
        _ => v.to_string(),
    }
}

pub(super) fn axis_values(d: &mut Diagnostics, axis: &str, e: &Entry) -> Vec<String> {
    let v = &e.value;
    let mut out = Vec::new();
    match &v.kind {
        _ if v.is_null() => {}
        Kind::Scalar { text, .. } => out.push(normalise_axis_value(axis, text)),
        Kind::Seq(items) => {
            for it in items {
                match it.scalar() {
                    Some(s) => out.push(normalise_axis_value(axis, s)),
                    None if it.is_null() => {}
                    None => d.warn(
                        it.pos,
                        format!(
                            "a `{}` value must be a string, not {}; left out",
                            e.key,
                            it.describe()
                        ),
                    ),
                }
            }
        }
        Kind::Map(_) => d.warn(
            v.pos,
            format!(
                "`{}` must be a value or a list of values, not a mapping; ignored",
                e.key
            ),
        ),
    }
    // Duplicate values would make duplicate jobs, which Travis drops.
    let mut seen = BTreeSet::new();
    out.retain(|x| seen.insert(x.clone()));
    out
}

/// A true/false setting called `name` in messages; anything else is
/// reported and ignored.
pub(super) fn flag(d: &mut Diagnostics, node: &Node, name: &str) -> Option<bool> {
    let b = node.as_bool();
    if b.is_none() {
        d.warn(node.pos, format!("`{name}` must be true or false; ignored"));
    }
    b
}

/// The entries of a key that takes one entry or a list of them.
pub(super) fn one_or_many(node: &Node) -> Vec<&Node> {
    match &node.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ if node.is_null() => vec![],
        _ => vec![node],
    }
}

/// An `if:` condition with where its value is, for warnings that point
/// at it when it does not parse or evaluate.
pub(super) fn condition(d: &mut Diagnostics, e: &Entry) -> Option<Condition> {
    scalar(d, e).map(|text| Condition::new(text, e.value.pos))
}

/// Root keys kha keeps and reports without acting on them, with why.
fn kept_reason(key: &str) -> Option<&'static str> {
    Some(match key {
        "services" => "kha does not start services yet; install and start them in `before_install`",
        "addons" => "kha does not run Travis addons (apt packages, hosts, …) yet; do the same in `before_install`",
        "deploy" | "before_deploy" | "after_deploy" => "kha does not deploy yet",
        "sudo" => "`sudo` is deprecated and ignored (Travis ignores it too)",
        "group" | "stack" => "kha picks builders by labels, not by Travis image groups",
        "import" => "kha does not import other config files yet",
        "version" | "conditions" => "kha evaluates conditions as Travis's v1, its default; other versions are not supported",
        "filter_secrets" | "trace" => "this is a Travis-internal switch",
        "go_import_path" => "kha builds Go projects in the checkout, not in a GOPATH",
        "virtualenv" => "kha does not create Python virtualenvs",
        _ => return None,
    })
}

/// A key kha keeps without acting on it: says why (or that it is unknown
/// `place`, e.g. " in a job") and returns it to keep.
pub(super) fn kept(d: &mut Diagnostics, e: &Entry, place: &str) -> (String, Value) {
    let key = e.key.as_str();
    let why = kept_reason(key).map_or_else(
        || format!("unknown key `{key}`{place}: kept, but kha does not act on it"),
        |why| format!("`{key}` is not supported yet and is ignored: {why}"),
    );
    d.warn(e.key_pos, why);
    (key.to_string(), e.value.to_value())
}

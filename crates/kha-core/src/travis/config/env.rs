//! `env` in every form Travis accepts: a string, a list, a list of lists,
//! `NAME: value` mappings, `{global, matrix}` or `{global, jobs}`, read
//! into shell assignment lines.

use super::values::one_or_many;
use super::Config;
use crate::travis::diag::Diagnostics;
use crate::travis::yaml::{Entry, Kind, Node};

use crate::travis::secure::{self, is_var_name};

/// `NAME=value` for a variable given as a mapping (`- NAME: value`). Travis
/// writes such pairs unquoted (`"#{k}=#{v}"` in travis-core); kha quotes a
/// value that would otherwise split, in double quotes so `$VAR` still
/// expands as it did on Travis.
pub(crate) fn assignment(name: &str, value: &str) -> String {
    let safe = value.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '_' | '-' | '.' | '/' | ':' | ',' | '=' | '@' | '%' | '+' | '$' | '{' | '}' | '~'
            )
    });
    if safe {
        format!("{name}={value}")
    } else {
        let mut q = String::with_capacity(value.len() + 2);
        for c in value.chars() {
            if matches!(c, '"' | '\\' | '`') {
                q.push('\\');
            }
            q.push(c);
        }
        format!("{name}=\"{q}\"")
    }
}

/// The lines of one env entry (one job's, or `env.global`).
pub(super) fn lines(d: &mut Diagnostics, node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    env_lines(d, node, 0, &mut out);
    out
}

/// Lines of one env entry: a string, a `NAME: value` mapping, or a list of
/// those (an entry given as a list exports all its items in one job).
fn env_lines(d: &mut Diagnostics, node: &Node, depth: usize, out: &mut Vec<String>) {
    match &node.kind {
        _ if node.is_null() => {}
        Kind::Scalar { text, .. } => {
            let t = text.trim();
            // A NUL marks encrypted entries (`secure::SECURE_PREFIX`); no
            // shell line holds one.
            if t.contains('\0') {
                d.warn(node.pos, "an env line with a NUL byte; left out");
            } else if !t.is_empty() {
                out.push(t.to_string());
            }
        }
        Kind::Map(entries) => {
            for e in entries {
                if e.key == "secure" {
                    // `- secure: "…"`: the ciphertext of `NAME=value`,
                    // decrypted on the control node for builds that may
                    // see it.
                    match e.value.scalar() {
                        Some(c) if !c.trim().is_empty() => out.push(secure::env_line(c)),
                        _ => d.warn(
                            e.value.pos,
                            "`secure:` must be the encrypted value as a string (`kha encrypt` prints it); left out",
                        ),
                    }
                    continue;
                }
                if !is_var_name(&e.key) {
                    d.warn(
                        e.key_pos,
                        format!("`{}` is not a valid variable name; left out", e.key),
                    );
                    continue;
                }
                // `FOO: {secure: "…"}`: an encrypted value of FOO alone.
                if let Some(c) = e.value.get("secure").map(|x| &x.value) {
                    match c.scalar() {
                        Some(c) if !c.trim().is_empty() => {
                            out.push(secure::named_env_line(&e.key, c))
                        }
                        _ => d.warn(
                            c.pos,
                            "`secure:` must be the encrypted value as a string; left out",
                        ),
                    }
                    continue;
                }
                let value = if e.value.is_null() {
                    Some(String::new())
                } else {
                    e.value.scalar().map(str::to_string)
                };
                match value {
                    Some(v) => out.push(assignment(&e.key, &v)),
                    None => d.warn(
                        e.value.pos,
                        format!(
                            "the value of `{}` must be a string, not {}; left out",
                            e.key,
                            e.value.describe()
                        ),
                    ),
                }
            }
        }
        Kind::Seq(items) => {
            if depth > 0 {
                d.warn(
                    node.pos,
                    "env lists nest at most two levels deep; this list is left out",
                );
                return;
            }
            for it in items {
                env_lines(d, it, depth + 1, out);
            }
        }
    }
}

/// Entries of an env matrix: a string is one job, a list gives one job per
/// item (Travis docs: Environment Variables, "Defining Multiple Variables
/// per Item"; a mapping without `global`/`jobs` is one job, per
/// travis-yml's "env.jobs one hash" spec).
fn env_entries(d: &mut Diagnostics, node: &Node) -> Vec<Vec<String>> {
    one_or_many(node)
        .into_iter()
        .map(|it| lines(d, it))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Root `env` (Travis docs: Environment Variables, "Global Variables":
/// `env.global` in every job, `env.matrix`, newer name `env.jobs`, one job
/// per entry).
pub(super) fn read_root_env(cfg: &mut Config, d: &mut Diagnostics, e: &Entry) {
    let v = &e.value;
    let Kind::Map(entries) = &v.kind else {
        cfg.env_jobs = env_entries(d, v);
        return;
    };
    let special = |k: &str| matches!(k, "global" | "matrix" | "jobs");
    if !entries.iter().any(|x| special(&x.key)) {
        cfg.env_jobs = env_entries(d, v);
        return;
    }
    let has_jobs = entries.iter().any(|x| x.key == "jobs");
    for x in entries {
        match x.key.as_str() {
            "global" => cfg.env_global = lines(d, &x.value),
            "matrix" if has_jobs => d.warn(
                x.key_pos,
                "`env.matrix` is the old name of `env.jobs`; both are given, `env.jobs` is used",
            ),
            "matrix" | "jobs" => cfg.env_jobs = env_entries(d, &x.value),
            other => d.warn(
                x.key_pos,
                format!("`env.{other}` is neither `global` nor `jobs`; ignored"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_quote_only_when_needed() {
        assert_eq!(assignment("A", "b"), "A=b");
        assert_eq!(assignment("P", "$PATH:/x"), "P=$PATH:/x");
        assert_eq!(assignment("A", "x y"), "A=\"x y\"");
        assert_eq!(assignment("A", "say \"hi\""), "A=\"say \\\"hi\\\"\"");
        assert_eq!(assignment("A", ""), "A=");
    }

    #[test]
    fn var_names() {
        assert!(is_var_name("RUST_BACKTRACE"));
        assert!(is_var_name("_x1"));
        assert!(!is_var_name("1x"));
        assert!(!is_var_name("a-b"));
        assert!(!is_var_name(""));
    }

    #[test]
    fn secure_entries_stay_in_place() {
        let s = |c: &str| secure::env_line(c);
        let cfg = crate::travis::parse(
            "env:\n  global:\n    - A=1\n    - secure: \"QUJD\n        REVG\"\n    - TOKEN:\n        secure: WFla\n  jobs:\n    - secure: T05F\n    - [B=2, {secure: VFdP}]\n",
        )
        .unwrap();
        assert_eq!(
            cfg.env_global,
            [
                "A=1".to_string(),
                s("QUJDREVG"),
                secure::named_env_line("TOKEN", "WFla")
            ]
        );
        assert_eq!(secure::variable(&cfg.env_global[2]), Some("TOKEN"));
        assert_eq!(secure::ciphertext(&cfg.env_global[2]), Some("WFla"));
        assert_eq!(secure::variable(&cfg.env_global[1]), None);
        assert_eq!(
            cfg.env_jobs,
            [vec![s("T05F")], vec!["B=2".to_string(), s("VFdP")]]
        );
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let cfg = crate::travis::parse("env:\n  - secure: [x]\n  - \"A=\\0\"\n").unwrap();
        assert!(cfg.env_jobs.is_empty());
        assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
    }
}

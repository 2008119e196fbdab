//! Encrypted values (`secure:`), as Travis writes them: the Base64 of an
//! RSA PKCS#1 v1.5 ciphertext made with the project's public key (Travis
//! docs: Encryption keys). The reader keeps them encrypted; only the control
//! node decrypts them, for builds that may see them.
//!
//! In an env list a `secure:` entry stays where it was written, as one
//! line in [`SECURE_PREFIX`]`BASE64` form, so the matrix code (which jobs,
//! which order, `exclude` matching) treats it as any other line and the
//! order of definitions is kept. The prefix starts with a NUL byte, which no
//! plain line can hold (the reader drops plain lines with one), so the two
//! never mix up.

/// How an encrypted env entry is held among env lines.
pub const SECURE_PREFIX: &str = "\0secure:";

/// What an encrypted entry is shown as (job lists, matrix values).
pub const SHOWN_AS: &str = "[secure]";

/// The env line of an encrypted entry.
pub fn env_line(ciphertext_b64: &str) -> String {
    let compact: String = ciphertext_b64
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    format!("{SECURE_PREFIX}{compact}")
}

/// The env line of an encrypted value of `name` alone (`NAME: {secure:
/// "…"}`: the plaintext is the value, as travis-yml reads a map entry):
/// `NAME:` before the ciphertext, which Base64 never holds.
pub fn named_env_line(name: &str, ciphertext_b64: &str) -> String {
    let line = env_line(ciphertext_b64);
    format!("{SECURE_PREFIX}{name}:{}", &line[SECURE_PREFIX.len()..])
}

/// The ciphertext of an encrypted env line; `None` for a plain line.
pub fn ciphertext(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(SECURE_PREFIX)?;
    Some(rest.split_once(':').map_or(rest, |(_, c)| c))
}

/// The variable an encrypted line is the value of (the `NAME: {secure:
/// "…"}` form); `None` for a plain line or an encrypted `NAME=value`.
pub fn variable(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(SECURE_PREFIX)?;
    rest.split_once(':').map(|(n, _)| n)
}

/// A line as people are shown it: encrypted entries as `[secure]`.
pub fn shown(line: &str) -> &str {
    if ciphertext(line).is_some() {
        SHOWN_AS
    } else {
        line
    }
}

/// Is this a shell variable name?
pub fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Why a decrypted value is not an assignment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("it is not NAME=value")]
    NotAssignment,
    #[error("it has an unterminated quote")]
    Unterminated,
}

/// The variables of a decrypted env entry: `NAME=value`, several separated
/// by blanks (`A=1 B="two words"`), as travis-build's `Env::Var.parse`
/// reads them, with each value's quotes removed (nothing is expanded).
pub fn parse_assignments(text: &str) -> Result<Vec<(String, String)>, AssignmentError> {
    Ok(assignments(text)?
        .into_iter()
        .map(|(name, value, _)| (name, value))
        .collect())
}

/// As [`parse_assignments`], each value as written (quotes kept): the
/// shell word travis-build puts after `export NAME=`, which the job's
/// shell evaluates, so `URL=https://$TOKEN@host` and the escapes Travis's
/// docs ask for work as they did there.
pub fn parse_assignments_raw(text: &str) -> Result<Vec<(String, String)>, AssignmentError> {
    Ok(assignments(text)?
        .into_iter()
        .map(|(name, _, raw)| (name, raw))
        .collect())
}

/// The literal value of one shell word as written (quotes removed), what
/// a job prints of it and the builder masks; the word itself when it does
/// not parse.
pub fn literal(raw: &str) -> String {
    match assignments(&format!("X={raw}")) {
        Ok(v) if v.len() == 1 => v.into_iter().next().map(|(_, l, _)| l).unwrap_or_default(),
        _ => raw.to_string(),
    }
}

/// Name, literal value and the value as written, of each assignment.
type Assignment = (String, String, String);

fn assignments(text: &str) -> Result<Vec<Assignment>, AssignmentError> {
    let mut out = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while chars.peek().is_some() {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next() != Some('=') || !is_var_name(&name) {
            return Err(AssignmentError::NotAssignment);
        }
        let mut value = String::new();
        let mut raw = String::new();
        {
            let mut chars = Recording {
                inner: &mut chars,
                raw: &mut raw,
            };
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                match c {
                    '\'' => loop {
                        match chars.next() {
                            Some('\'') => break,
                            Some(c) => value.push(c),
                            None => return Err(AssignmentError::Unterminated),
                        }
                    },
                    '"' => loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(c @ ('"' | '\\' | '$' | '`')) => value.push(c),
                                Some(c) => {
                                    value.push('\\');
                                    value.push(c);
                                }
                                None => return Err(AssignmentError::Unterminated),
                            },
                            Some(c) => value.push(c),
                            None => return Err(AssignmentError::Unterminated),
                        }
                    },
                    '\\' => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    c => value.push(c),
                }
            }
        }
        out.push((name, value, raw));
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    }
    if out.is_empty() {
        return Err(AssignmentError::NotAssignment);
    }
    Ok(out)
}

/// A peekable character iterator that records what it yields: the value
/// as written, beside the value read.
struct Recording<'a, I: Iterator<Item = char>> {
    inner: &'a mut std::iter::Peekable<I>,
    raw: &'a mut String,
}

impl<I: Iterator<Item = char>> Recording<'_, I> {
    fn peek(&mut self) -> Option<&char> {
        self.inner.peek()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.inner.next()?;
        self.raw.push(c);
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let l = env_line("QUJD\n  REVG ");
        assert_eq!(ciphertext(&l), Some("QUJDREVG"));
        assert_eq!(shown(&l), "[secure]");
        assert_eq!(ciphertext("A=1"), None);
        assert_eq!(shown("A=1"), "A=1");
    }

    #[test]
    fn assignments() {
        let ok = |s: &str| parse_assignments(s).unwrap();
        let v = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ok("TOKEN=abc"), v(&[("TOKEN", "abc")]));
        assert_eq!(ok("  A=1   B=2 "), v(&[("A", "1"), ("B", "2")]));
        assert_eq!(ok("A=\"two words\""), v(&[("A", "two words")]));
        assert_eq!(ok("A='it''s' B="), v(&[("A", "its"), ("B", "")]));
        assert_eq!(
            ok(r#"A="q\"uote\\" B=$HOME"#),
            v(&[("A", "q\"uote\\"), ("B", "$HOME")])
        );
        assert_eq!(
            ok("URL=https://x/?a=b&c=d"),
            v(&[("URL", "https://x/?a=b&c=d")])
        );
        assert_eq!(parse_assignments(""), Err(AssignmentError::NotAssignment));
        assert_eq!(
            parse_assignments("just a value"),
            Err(AssignmentError::NotAssignment)
        );
        assert_eq!(
            parse_assignments("1A=x"),
            Err(AssignmentError::NotAssignment)
        );
        assert_eq!(
            parse_assignments("A=\"open"),
            Err(AssignmentError::Unterminated)
        );
        // As written, for the job's shell; and back to the literal.
        let raw = parse_assignments_raw(r#"A="two words" URL=https://$T@h B='it''s'"#).unwrap();
        assert_eq!(
            raw,
            v(&[
                ("A", "\"two words\""),
                ("URL", "https://$T@h"),
                ("B", "'it''s'")
            ])
        );
        assert_eq!(literal("\"two words\""), "two words");
        assert_eq!(literal("'it''s'"), "its");
        assert_eq!(literal("https://$T@h"), "https://$T@h");
        assert_eq!(literal("\"open"), "\"open");
    }
}

//! What libyaml accepts and saphyr-parser refuses, made acceptable to
//! saphyr without changing what the file means.
//!
//! Travis read `.travis.yml` with Ruby's Psych, that is libyaml (serde_yaml,
//! kha's parser of record, is a translation of the same C code). libyaml's
//! `yaml_parser_scan_flow_scalar` (src/scanner.c) checks a quoted scalar's
//! continuation lines for document markers (`---`, `...` in column 0) and
//! the end of the stream only: their indentation, tabs included, is never
//! checked, and their leading blanks are skipped. saphyr-parser follows
//! YAML 1.2 strictly and refuses a continuation line indented less than the
//! enclosing block ("invalid indentation in quoted scalar", or "tab cannot
//! be used as indentation" when the line starts with a tab). Real files do
//! this: an encrypted `secure: "…"` value wrapped by an editor.
//!
//! Since those leading blanks are skipped (folded into one space, or
//! dropped after an escaped line break), inserting spaces at the start of
//! such a line changes no value. [`indent_quoted`] does that for the one
//! scalar saphyr stopped at, and [`Shifts`] maps the positions saphyr
//! reports on the re-indented lines back to the file's own columns.

use super::yaml::{self, Failed, Loaded, Pos, YamlError};
use std::collections::BTreeMap;

/// Characters of re-reading that re-indenting quoted scalars may cost
/// (each re-indented scalar means reading the file again from the start):
/// a file of thousands of wrapped values is refused in about a second,
/// with a message, rather than read for minutes. Real files have a few.
const LENIENCY_BUDGET: usize = 1 << 23;

/// Reads `text` into a positioned tree; where saphyr refuses a quoted
/// scalar libyaml accepts, re-indents it and reads again.
pub(super) fn load(text: &str) -> Result<Loaded, YamlError> {
    let mut shifts = Shifts::default();
    let mut rewritten: Option<String> = None;
    let mut retries = (LENIENCY_BUDGET / text.len().max(1)).max(16);
    loop {
        let current = rewritten.as_deref().unwrap_or(text);
        let (e, last_end) = match yaml::load_once(current, &shifts) {
            Ok(loaded) => return Ok(loaded),
            Err(Failed::Scan { error, last_end }) => (error, last_end),
            Err(Failed::Tree(e)) => return Err(e),
        };
        let mark = e.marker();
        // Where the quoted scalar saphyr refused starts: the error names
        // it, or (for a tab) it follows the last event read.
        let start = match e.info() {
            "invalid indentation in quoted scalar" => Some(mark.index()),
            "tab cannot be used as indentation" => quote_after(current, last_end),
            _ => None,
        };
        if start.is_some() && retries == 0 {
            let mut err = scan_error(current, &e, &shifts);
            err.message.push_str(
                "; kha reads such wrapped values as Travis did, but not this many in one file: indent the continuation lines",
            );
            return Err(err);
        }
        match start.and_then(|s| indent_quoted(current, s, &mut shifts)) {
            Some(t) => {
                retries -= 1;
                rewritten = Some(t);
            }
            None => return Err(scan_error(current, &e, &shifts)),
        }
    }
}

/// saphyr's error, positioned on the file: a tab that indents is pointed
/// at itself (saphyr points past it, or at the scalar it ends).
fn scan_error(text: &str, e: &saphyr_parser::ScanError, shifts: &Shifts) -> YamlError {
    let m = e.marker();
    let mut pos = shifts.pos(m.line(), m.col());
    let info = e.info();
    let tab = match info {
        "tabs disallowed within this context (block indentation)" => tab_in_indent(text, m.line()),
        "while scanning a plain scalar, found a tab" => {
            tab_in_indent(text, m.line().saturating_add(1))
        }
        _ => None,
    };
    let message = match tab {
        Some(at) => {
            pos = shifts.pos(at.line, at.column - 1);
            "invalid YAML: a tab indents this line; YAML indents with spaces only".to_string()
        }
        None => format!("invalid YAML: {info}"),
    };
    YamlError {
        pos: Some(pos),
        message,
    }
}

/// Columns inserted at the start of lines (1-based line numbers; inserting
/// spaces never changes line numbers).
#[derive(Debug, Default)]
pub(super) struct Shifts(BTreeMap<usize, usize>);

impl Shifts {
    /// The file's position for saphyr's 1-based `line` and 0-based `col`.
    pub(super) fn pos(&self, line: usize, col: usize) -> Pos {
        let shift = self.0.get(&line).copied().unwrap_or(0);
        Pos {
            line,
            column: col.saturating_sub(shift).saturating_add(1),
        }
    }
}

/// `text` with the continuation lines of the quoted scalar whose opening
/// quote is the `start`-th character indented at least to the quote's
/// column, or None when there is no such scalar or no line needed it.
/// Lines that begin with a document marker are left alone: libyaml refuses
/// those, and so must kha.
pub(super) fn indent_quoted(text: &str, start: usize, shifts: &mut Shifts) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let quote = *chars.get(start)?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let line_start = chars[..start]
        .iter()
        .rposition(|&c| c == '\n')
        .map_or(0, |i| i + 1);
    let first_line = 1 + chars[..start].iter().filter(|&&c| c == '\n').count();
    let need = start - line_start;

    // Where each continuation line starts, up to the closing quote.
    let mut starts = Vec::new();
    let mut i = start + 1;
    loop {
        match (chars.get(i)?, chars.get(i + 1)) {
            // An escaped line break: the break still starts a line.
            ('\\', Some('\n' | '\r')) if quote == '"' => i += 1,
            ('\\', _) if quote == '"' => i += 2,
            ('\'', Some('\'')) if quote == '\'' => i += 2,
            (&c, _) if c == quote => break,
            ('\n', _) => {
                starts.push(i + 1);
                i += 1;
            }
            _ => i += 1,
        }
    }

    let mut out = String::with_capacity(text.len() + starts.len() * need);
    let mut from = 0;
    let mut changed = false;
    for (n, &ls) in starts.iter().enumerate() {
        let spaces = chars[ls..].iter().take_while(|&&c| c == ' ').count();
        if spaces >= need || is_document_marker(&chars[ls..]) {
            continue;
        }
        out.extend(&chars[from..ls]);
        out.extend(std::iter::repeat_n(' ', need - spaces));
        *shifts.0.entry(first_line + n + 1).or_insert(0) += need - spaces;
        from = ls;
        changed = true;
    }
    out.extend(&chars[from..]);
    changed.then_some(out)
}

fn is_document_marker(line: &[char]) -> bool {
    matches!(line, ['-', '-', '-', rest @ ..] | ['.', '.', '.', rest @ ..]
        if matches!(rest.first(), None | Some(' ' | '\t' | '\n' | '\r')))
}

/// The first quote at or after the `from`-th character that is not in a
/// comment: where the scalar saphyr was reading when it stopped starts,
/// given where its last event ended (only blanks, comments and indicators
/// lie between two nodes).
pub(super) fn quote_after(text: &str, from: usize) -> Option<usize> {
    let mut comment = false;
    let mut prev_blank = true;
    for (i, c) in text.chars().enumerate().skip(from) {
        match c {
            '\n' => comment = false,
            '#' if prev_blank => comment = true,
            '"' | '\'' if !comment => return Some(i),
            _ => {}
        }
        prev_blank = c.is_whitespace();
    }
    None
}

/// Where the first tab that indents a line with content is, from line
/// `from_line` on: what a "tab used as indentation" message points at.
pub(super) fn tab_in_indent(text: &str, from_line: usize) -> Option<Pos> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find_map(|(n, line)| {
            let blanks = line.chars().take_while(|&c| c == ' ' || c == '\t').count();
            if blanks == line.chars().count() {
                return None;
            }
            let tab = line.chars().take(blanks).position(|c| c == '\t')?;
            Some(Pos {
                line: n + 1,
                column: tab + 1,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::super::yaml::{load, Value};
    use super::*;

    fn secure(text: &str) -> Option<String> {
        let root = load(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
            .root;
        let global = &root.get("env")?.value.get("global")?.value;
        let item = &global.items()?[0];
        Some(item.get("secure")?.value.scalar()?.to_string())
    }

    /// Each shape is accepted by libyaml (serde_yaml) with the same value.
    #[test]
    fn quoted_continuations_as_libyaml() {
        let cases = [
            // Less indented than the list item's mapping.
            ("env:\n  global:\n    - secure: \"abc\n  def\"\n", "abc def"),
            (
                "env:\n  global:\n    - secure: \"abc\n def\n ghi\"\nscript: x\n",
                "abc def ghi",
            ),
            // Column 0, single quotes, a blank line (a kept line break).
            (
                "env:\n  global:\n    - secure: 'abc\ndef\n\nghi'\n",
                "abc def\nghi",
            ),
            // A tab indents the continuation.
            (
                "env:\n  global:\n    - secure: \"abc\n\tdef\"\nscript: x\n",
                "abc def",
            ),
            // Escaped line break and an escaped quote.
            (
                "env:\n  global:\n    - secure: \"ab\\\n  c\\\"d\n e\"\n",
                "abc\"d e",
            ),
            ("env:\n  global:\n    - secure: 'it''s\n x'\n", "it's x"),
            // CRLF line ends.
            (
                "env:\r\n  global:\r\n    - secure: \"abc\r\n  def\"\r\n",
                "abc def",
            ),
        ];
        for (text, want) in cases {
            let libyaml: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
            let libyaml = libyaml["env"]["global"][0]["secure"]
                .as_str()
                .map(str::to_string);
            assert_eq!(libyaml.as_deref(), Some(want), "{text:?}");
            assert_eq!(secure(text).as_deref(), Some(want), "{text:?}");
        }
    }

    /// A real file's shape: an editor wrapped the encrypted value; Travis
    /// ran it, and kha reads the rest of the file with its positions.
    #[test]
    fn a_wrapped_secure_value_parses() {
        let text = "language: rust\nenv:\n  global:\n    - secure: \"LqVn0m2x\n  Zq8=\"\n    - A=1\nscript: cargo test\nfoo: 1\n";
        let cfg = crate::travis::parse(text).unwrap_or_else(|e| panic!("{e}"));
        let secure = crate::travis::secure::env_line("LqVn0m2xZq8=");
        assert_eq!(cfg.env_global, [secure.as_str(), "A=1"]);
        assert_eq!(cfg.phases.script, ["cargo test"]);
        let lines: Vec<_> = cfg.diagnostics.iter().map(|d| (d.line, d.column)).collect();
        assert!(lines.contains(&(Some(8), Some(1))), "{:?}", cfg.diagnostics);
    }

    #[test]
    fn positions_after_a_reindented_line_are_the_files() {
        // `b` follows the closing quote on a line kha re-indents.
        let text = "x:\n  - a: [\"abc\n def\", b]\n  - c\n";
        let root = load(text).unwrap().root;
        let items = root.get("x").unwrap().value.items().unwrap().to_vec();
        let flow = items[0].get("a").unwrap().value.items().unwrap().to_vec();
        assert_eq!(flow[0].to_value(), Value::Str("abc def".into()));
        assert_eq!(flow[1].pos, Pos { line: 3, column: 8 });
        assert_eq!(items[1].pos, Pos { line: 4, column: 5 });
    }

    #[test]
    fn what_libyaml_refuses_stays_refused() {
        for text in [
            "a: \"abc\n---\n\"\n",
            "a: \"abc\n",
            "- a: \"abc\n  def\n",
            "script:\n\t- a\n",
        ] {
            assert!(
                serde_yaml::from_str::<serde_yaml::Value>(text).is_err(),
                "{text:?}"
            );
            assert!(load(text).is_err(), "{text:?}");
        }
    }

    /// A tab that indents is reported where it is, as libyaml does.
    #[test]
    fn tabs_are_reported_where_they_are() {
        for (text, line, column) in [
            ("script:\n\t- a\n", 2, 1),
            ("script:\n  \t- a\n", 2, 3),
            ("script: x\n\tinstall: y\n", 2, 1),
            ("a:\n  b: 1\n\tc: 2\n", 3, 1),
            ("a:\n  b:\n  \t\t- c\n", 3, 3),
        ] {
            let e = crate::travis::parse(text).unwrap_err();
            assert_eq!(
                (e.line, e.column),
                (Some(line), Some(column)),
                "{text:?}: {e}"
            );
            let libyaml = serde_yaml::from_str::<serde_yaml::Value>(text).unwrap_err();
            let loc = libyaml.location().unwrap();
            assert_eq!((loc.line(), loc.column()), (line, column), "{text:?}");
        }
        let e = load("script:\n\t- a\n").unwrap_err();
        assert!(e.message.contains("a tab indents"), "{}", e.message);
    }

    /// Re-reading is bounded: a file of thousands of wrapped values is
    /// refused, saying why, instead of costing minutes.
    #[test]
    fn leniency_is_bounded() {
        let mut text = String::from("env:\n  global:\n");
        for i in 0..5000 {
            text.push_str(&format!("    - secure: \"abc{i}\n  def\"\n"));
        }
        let e = load(&text).unwrap_err();
        assert!(
            e.message.contains("indent the continuation lines"),
            "{}",
            e.message
        );
        assert_eq!(e.pos.map(|p| p.column), Some(15));
    }

    /// serde_yaml's value in kha's shape: scalars as their text.
    fn libyaml_value(v: &serde_yaml::Value) -> Value {
        match v {
            serde_yaml::Value::Null => Value::Null,
            serde_yaml::Value::Bool(b) => Value::Str(b.to_string()),
            serde_yaml::Value::Number(n) => Value::Str(n.to_string()),
            serde_yaml::Value::String(s) => Value::Str(s.clone()),
            serde_yaml::Value::Sequence(items) => {
                Value::Seq(items.iter().map(libyaml_value).collect())
            }
            serde_yaml::Value::Mapping(m) => Value::Map(
                m.iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), libyaml_value(v)))
                    .collect(),
            ),
            serde_yaml::Value::Tagged(t) => libyaml_value(&t.value),
        }
    }

    proptest::proptest! {
        /// Re-indenting never changes a value: wherever libyaml and kha
        /// both read a file of wrapped quoted values, they read the same
        /// strings (keys and values are words, so no number formatting
        /// differs), and kha never panics.
        #[test]
        fn reindenting_keeps_values(
            depth in 0usize..6,
            items in proptest::collection::vec(
                (proptest::bool::ANY, proptest::collection::vec(
                    (0usize..8, proptest::sample::select(vec![" ", "\t", "", "  \t"]),
                     proptest::sample::select(vec!["w", "x y", "", "a\\", "b''c", "d\\\"e", "---", "#f"])),
                    0..4)),
                1..6),
        ) {
            let mut text = String::from("k:\n");
            for (n, (single, lines)) in items.iter().enumerate() {
                let q = if *single { '\'' } else { '"' };
                let pad = " ".repeat(2 + depth);
                text.push_str(&format!("{pad}- v{n}: {q}start"));
                for (indent, blank, word) in lines {
                    let word = if *single { word.replace("\\\"", "\"") } else { word.replace("''", "'") };
                    text.push_str(&format!("\n{}{blank}{word}", " ".repeat(*indent)));
                }
                text.push_str(&format!("end{q}\n"));
            }
            let mine = load(&text);
            if let (Ok(theirs), Ok(mine)) = (serde_yaml::from_str::<serde_yaml::Value>(&text), mine) {
                proptest::prop_assert_eq!(mine.root.to_value(), libyaml_value(&theirs), "{:?}", text);
            }
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(quote_after("a: # it's\n  \"x\"", 0), Some(12));
        assert_eq!(quote_after("a#'b: 'x'", 0), Some(2));
        assert_eq!(
            tab_in_indent("a\n\t\n \tb\n", 1),
            Some(Pos { line: 3, column: 2 })
        );
        let mut s = Shifts::default();
        assert_eq!(indent_quoted("k: \"a\n    b\"", 3, &mut s), None);
        assert_eq!(indent_quoted("k: x", 3, &mut s), None);
        let t = indent_quoted("k: \"a\nb\n  c\"", 3, &mut s).unwrap();
        assert_eq!(t, "k: \"a\n   b\n   c\"");
        assert_eq!(s.pos(2, 4), Pos { line: 2, column: 2 });
        assert_eq!(s.pos(3, 4), Pos { line: 3, column: 4 });
    }
}

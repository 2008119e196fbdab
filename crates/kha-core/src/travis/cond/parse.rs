//! The parser of Travis's condition language v1, a port of
//! travis-conditions' `v1/parser.rb`, `boolean.rb`, `helper.rb` and
//! `regex.rb` (github.com/travis-ci/travis-conditions).
//!
//! Travis's parser is a Ruby `StringScanner` walked by small functions, each
//! matching one regular expression at the current position. Its quirks are
//! part of the language people wrote conditions in, so they are kept:
//! keywords match as prefixes (`NOT` in `notice`), a failed `IS`/`IN` does
//! not give back what it consumed, attribute names are case-sensitive
//! (`BRANCH` is the string "BRANCH") while keywords and functions are not,
//! `env` is a function only when `(` follows, and a regex without slashes
//! runs to the next whitespace (less trailing `)`).
//!
//! Grammar, loosest first:
//! ```text
//! expr  = expr_ { ('OR' | '||') expr_ }
//! expr_ = oprd { ('AND' | '&&') oprd }
//! oprd  = '(' expr ')' | ('NOT' | '!') oprd | term
//! term  = operand 'IS' ['NOT'] pred | operand ['NOT'] 'IN' '(' list ')'
//!       | operand ('=~' | '~=' | '!~') regex | operand ('=' | '==' | '!=') operand
//!       | operand
//! ```

use super::{Error, Expr, Func, Pred, Rx, VARS};

/// Ruby's `\s`.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b')
}

/// Parses a condition; the error's offset is in `src` as written.
pub fn parse(src: &str) -> Result<Expr, Error> {
    let (text, map) = join_lines(src);
    let mut p = Parser {
        s: &text,
        pos: 0,
        map: &map,
    };
    let expr = p.expr()?;
    if p.pos < p.s.len() {
        return Err(p.err(format!(
            "could not parse {:?}: unexpected {:?}",
            src,
            p.rest()
        )));
    }
    Ok(expr)
}

/// Line continuation: `\` followed by whitespace up to a line break is one
/// space (parser.rb `CONT = /\\\s*[\n\r]/`). Returns the joined text and,
/// for each of its bytes, the offset in `src`.
fn join_lines(src: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(src.len());
    let mut map = Vec::with_capacity(src.len() + 1);
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        if let Some(after) = rest.strip_prefix('\\') {
            // `\s*` is greedy, then backs off to the last line break.
            let ws: usize = after
                .char_indices()
                .find(|(_, c)| !is_space(*c))
                .map_or(after.len(), |(n, _)| n);
            if let Some(nl) = after[..ws].rfind(['\n', '\r']) {
                out.push(' ');
                map.push(i);
                i += 1 + nl + 1;
                continue;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        for k in 0..c.len_utf8() {
            map.push(i + k);
        }
        out.push(c);
        i += c.len_utf8();
    }
    map.push(src.len());
    (out, map)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    map: &'a [usize],
}

type Res<T> = Result<T, Error>;

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn at(&self) -> usize {
        self.map.get(self.pos).copied().unwrap_or(0)
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error {
            offset: self.at(),
            message: message.into(),
        }
    }

    fn expected(&self, what: &str) -> Error {
        self.err(format!("expected {what}"))
    }

    fn skip_space(&mut self) {
        let n = self
            .rest()
            .char_indices()
            .find(|(_, c)| !is_space(*c))
            .map_or(self.rest().len(), |(n, _)| n);
        self.pos += n;
    }

    /// helper.rb `space { … }`: whitespace skipped before and after,
    /// whatever the inner scan gives.
    fn space<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        self.skip_space();
        let r = f(self);
        self.skip_space();
        r
    }

    /// Scans one of `words` (ASCII, case-insensitive, no word boundary),
    /// trying them in order like a Ruby alternation.
    fn scan_ci(&mut self, words: &[&str]) -> Option<String> {
        let rest = self.rest();
        for w in words {
            if rest.len() >= w.len()
                && rest.is_char_boundary(w.len())
                && rest[..w.len()].eq_ignore_ascii_case(w)
            {
                self.pos += w.len();
                return Some(rest[..w.len()].to_ascii_lowercase());
            }
        }
        None
    }

    fn scan_exact(&mut self, words: &[&'static str]) -> Option<&'static str> {
        let rest = self.rest();
        let w = words.iter().find(|w| rest.starts_with(**w))?;
        self.pos += w.len();
        Some(w)
    }

    fn op(&mut self, words: &[&str]) -> bool {
        self.space(|p| p.scan_ci(words)).is_some()
    }

    // boolean.rb

    fn expr(&mut self) -> Res<Expr> {
        let mut lft = self.expr_()?;
        while self.op(&["or", "||"]) {
            lft = Expr::Or(Box::new(lft), Box::new(self.expr_()?));
        }
        Ok(lft)
    }

    fn expr_(&mut self) -> Res<Expr> {
        let mut lft = self.oprd()?;
        while self.op(&["and", "&&"]) {
            lft = Expr::And(Box::new(lft), Box::new(self.oprd()?));
        }
        Ok(lft)
    }

    fn oprd(&mut self) -> Res<Expr> {
        if let Some(e) = self.parens(|p| p.expr())? {
            return Ok(e);
        }
        let start = self.pos;
        if self.space(|p| p.scan_ci(&["not", "!"])).is_some() {
            return match self.oprd() {
                Ok(e) => Ok(Expr::Not(Box::new(e))),
                Err(e) => {
                    self.pos = start;
                    Err(e)
                }
            };
        }
        self.term()
    }

    /// helper.rb `parens`: None when no `(` is next.
    fn parens<T>(&mut self, f: impl FnOnce(&mut Self) -> Res<T>) -> Res<Option<T>> {
        let open = self.space(|p| p.scan_exact(&["("]).is_some());
        if !open {
            return Ok(None);
        }
        let r = self.space(f)?;
        if self.scan_exact(&[")"]).is_none() {
            return Err(self.expected("`)`"));
        }
        Ok(Some(r))
    }

    // parser.rb

    fn term(&mut self) -> Res<Expr> {
        let lft = self.operand()?;
        if let Some(negated) = self.in_op() {
            let at = self.at();
            let list = self.parens(|p| {
                let l = p.list()?;
                if l.is_empty() {
                    return Err(p.expected("a list of values"));
                }
                Ok(l)
            })?;
            return Ok(Expr::In {
                negated,
                lft: Box::new(lft),
                list,
                at,
            });
        }
        // A failed `IS` keeps what it consumed (is_pred returns nil after
        // `is` matched): `branch IS master` then fails on `master`.
        if let Some(negated) = self.is_op() {
            if let Some(pred) = self.pred() {
                return Ok(Expr::Is {
                    negated,
                    lft: Box::new(lft),
                    pred,
                });
            }
        }
        if let Some(negated) = self
            .space(|p| p.scan_exact(&["=~", "~=", "!~"]))
            .map(|o| o == "!~")
        {
            let at = self.at();
            let rx = self.regex()?;
            return Ok(Expr::Match {
                negated,
                lft: Box::new(lft),
                rx,
                at,
            });
        }
        if let Some(op) = self.space(|p| p.scan_exact(&["==", "=", "!="])) {
            let rgt = self.operand()?;
            return Ok(Expr::Eq {
                negated: op == "!=",
                lft: Box::new(lft),
                rgt: Box::new(rgt),
            });
        }
        Ok(lft)
    }

    fn in_op(&mut self) -> Option<bool> {
        self.space(|p| p.scan_ci(&["in", "not in"]))
            .map(|w| w == "not in")
    }

    fn is_op(&mut self) -> Option<bool> {
        self.space(|p| p.scan_ci(&["is not", "is"]))
            .map(|w| w == "is not")
    }

    fn pred(&mut self) -> Option<Pred> {
        self.space(|p| p.scan_ci(&["present", "blank", "true", "false"]))
            .map(|w| match w.as_str() {
                "present" => Pred::Present,
                "blank" => Pred::Blank,
                "true" => Pred::True,
                _ => Pred::False,
            })
    }

    fn operand(&mut self) -> Res<Expr> {
        self.skip_space();
        let r = match self.var() {
            Some(v) => Some(v),
            None => match self.call()? {
                Some(c) => Some(c),
                None => self.val()?,
            },
        };
        self.skip_space();
        r.ok_or_else(|| self.expected("an operand"))
    }

    /// An attribute, when a boundary (`\s , = ) |` or the end) follows;
    /// case-sensitive, as parser.rb's `VAR` has no `/i`.
    fn var(&mut self) -> Option<Expr> {
        let rest = self.rest();
        // Ruby's alternation takes the first name that matches, then
        // checks the boundary once.
        let name = VARS.iter().find(|v| rest.starts_with(**v))?;
        let next = rest[name.len()..].chars().next();
        if next.is_none_or(|c| is_space(c) || matches!(c, ',' | '=' | ')' | '|')) {
            self.pos += name.len();
            return Some(Expr::Var(name));
        }
        None
    }

    /// `env(…)` or `concat(…)`. Like parser.rb, a function name not
    /// followed by `(` is consumed anyway: `environment` reads as the word
    /// `ironment`.
    fn call(&mut self) -> Res<Option<Expr>> {
        let at = self.at();
        let Some(name) = self.space(|p| p.scan_ci(&["env", "concat"])) else {
            return Ok(None);
        };
        let func = if name == "env" {
            Func::Env
        } else {
            Func::Concat
        };
        Ok(self
            .parens(|p| p.list())?
            .map(|args| Expr::Call { func, args, at }))
    }

    fn list(&mut self) -> Res<Vec<Expr>> {
        let item = match self.var() {
            Some(v) => Some(v),
            None => match self.call()? {
                Some(c) => Some(c),
                None => self.val()?,
            },
        };
        let Some(item) = item else {
            return Ok(Vec::new());
        };
        let mut list = vec![item];
        if self.space(|p| p.scan_exact(&[","])).is_some() {
            list.extend(self.list()?);
        }
        self.scan_exact(&[","]);
        Ok(list)
    }

    fn val(&mut self) -> Res<Option<Expr>> {
        if let Some(q) = self.quoted()? {
            return Ok(Some(Expr::Val(q)));
        }
        let start = self.at();
        let w = self.space(|p| {
            let n = p
                .rest()
                .char_indices()
                .find(|(_, c)| is_space(*c) || "()\"',=!".contains(*c))
                .map_or(p.rest().len(), |(n, _)| n);
            let w = &p.rest()[..n];
            p.pos += n;
            (!w.is_empty()).then(|| w.to_string())
        });
        match w {
            Some(w) if w.starts_with('$') => Err(Error {
                offset: start,
                message: "strings cannot start with a dollar (shell code does not work in conditions); to compare with a variable of the .travis.yml, use env(NAME), or quote the string".into(),
            }),
            other => Ok(other.map(Expr::Val)),
        }
    }

    /// `'…'` or `"…"`, no escapes.
    fn quoted(&mut self) -> Res<Option<String>> {
        let Some(q) = self
            .rest()
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
        else {
            return Ok(None);
        };
        self.pos += 1;
        let n = self.rest().find(q).ok_or_else(|| {
            let mut e = self.expected(&format!("a closing {q}"));
            e.offset = self.map.get(self.s.len()).copied().unwrap_or(0);
            e
        })?;
        let s = self.rest()[..n].to_string();
        self.pos += n + 1;
        Ok(Some(s))
    }

    /// The right side of `=~`: a call, a `/…/` regex, or a bare word up to
    /// whitespace (regex.rb). Travis's `reg.gsub(%r(^/|/$), '')` strips a
    /// slash at the start or end of every line of it.
    fn regex(&mut self) -> Res<Rx> {
        if let Some(c) = self.call()? {
            return Ok(Rx::Call(Box::new(c)));
        }
        self.skip_space();
        let rest = self.rest();
        let raw = if rest.starts_with('/') {
            Some(slashed(rest))
        } else {
            bare(rest)
        };
        let Some(raw) = raw else {
            return Ok(Rx::Missing);
        };
        self.pos += raw.len();
        Ok(Rx::Lit(strip_slashes(raw)))
    }
}

/// regex.rb `word`: `\S*[^\s)]+`, the longest run of non-space that does
/// not end in `)`.
fn bare(rest: &str) -> Option<&str> {
    let run = rest
        .char_indices()
        .find(|(_, c)| is_space(*c))
        .map_or(rest.len(), |(n, _)| n);
    let end = rest[..run].trim_end_matches(')').len();
    (end > 0).then(|| &rest[..end])
}

/// regex.rb `regex`: from `/` to the next unescaped `/` (included), or to
/// the end. A backslash escapes the next character; two in a row leave
/// the escape set, as regex.rb's flag does.
fn slashed(rest: &str) -> &str {
    let mut esc = false;
    for (i, c) in rest.char_indices().skip(1) {
        if c == '/' && !esc {
            return &rest[..i + 1];
        }
        esc = c == '\\';
    }
    rest
}

fn strip_slashes(raw: &str) -> String {
    raw.split('\n')
        .map(|line| {
            let line = line.strip_prefix('/').unwrap_or(line);
            line.strip_suffix('/').unwrap_or(line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_maps_offsets_back() {
        let (t, map) = join_lines("a \\\n  b");
        assert_eq!(t, "a    b");
        assert_eq!(map[2], 2);
        assert_eq!(map[3], 4);
        let (t, _) = join_lines("a \\ x");
        assert_eq!(t, "a \\ x");
    }

    #[test]
    fn regex_words() {
        assert_eq!(bare("^v1 AND x"), Some("^v1"));
        assert_eq!(bare("^v1)) AND"), Some("^v1"));
        assert_eq!(bare(")"), None);
        assert_eq!(slashed("/a b/ c"), "/a b/");
        assert_eq!(slashed("/a\\/b/ c"), "/a\\/b/");
        assert_eq!(slashed("/a\\\\/b"), "/a\\\\/b");
        assert_eq!(slashed("/open"), "/open");
        assert_eq!(strip_slashes("/x/"), "x");
    }
}

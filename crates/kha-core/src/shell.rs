//! Quoting for POSIX sh: the one function every generated script and every
//! command line shown to a person uses to put an untrusted value in a shell
//! word.

/// Quotes `s` as a single POSIX sh word that expands to exactly `s`.
///
/// Always single-quotes (even when no quoting is needed), so the output is
/// predictable; a `'` inside is written as `'\''` (end the quote, an
/// escaped quote, start a new one). Nothing is special inside single
/// quotes, newlines included, so this holds for any string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The words of a shell line as the shell splits them at blanks, quotes
/// and backslashes kept in the words (`A="x y"  B=2` is `A="x y"`, `B=2`):
/// how `.travis.yml` env lines are compared and read, without running a
/// shell.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', q) if q != Some('\'') => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ('"' | '\'', None) => {
                quote = Some(c);
                cur.push(c);
            }
            (c, Some(q)) if c == q => {
                quote = None;
                cur.push(c);
            }
            (c, None) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{quote, words};

    #[test]
    fn words_keep_quotes() {
        assert_eq!(words("A=1  B=2"), ["A=1", "B=2"]);
        assert_eq!(words(r#"A="x y" B='a b'"#), [r#"A="x y""#, "B='a b'"]);
        assert_eq!(words(r"A=x\ y B"), [r"A=x\ y", "B"]);
        assert_eq!(words(r"A=\"), [r"A=\"]);
        assert!(words("  ").is_empty());
    }

    #[test]
    fn table() {
        for (input, want) in [
            ("", "''"),
            ("abc", "'abc'"),
            ("a b", "'a b'"),
            ("a'b", r"'a'\''b'"),
            ("'", r"''\'''"),
            ("''", r"''\'''\'''"),
            ("a\nb", "'a\nb'"),
            ("$(rm -rf /); `x` $HOME", "'$(rm -rf /); `x` $HOME'"),
            ("\"double\"", "'\"double\"'"),
            ("back\\slash", "'back\\slash'"),
            ("tab\there", "'tab\there'"),
            ("ünï", "'ünï'"),
        ] {
            assert_eq!(quote(input), want, "{input:?}");
        }
    }

    /// The shell reads each quoted word back as the original.
    #[test]
    fn sh_reads_it_back() {
        let inputs = ["", "it's; $(x)", "a\nb\n", "'", "\\'\\", "*?[a]~"];
        let script: String = inputs
            .iter()
            .map(|s| format!("printf '%s\\0' {}\n", quote(s)))
            .collect();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        let want: Vec<&[u8]> = inputs
            .iter()
            .map(|s| s.as_bytes())
            .chain([&b""[..]])
            .collect();
        assert_eq!(got, want);
    }
}

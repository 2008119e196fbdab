//! IRC on the wire: a message cut into safe lines, and a server's lines
//! split into prefix, command and parameters.

/// A message's text is cut into pieces of at most this many bytes, so the
/// line the server relays (with our prefix and the channel) stays within
/// IRC's 512.
pub(super) const MAX_TEXT: usize = 400;

/// The message's lines as IRC texts: control characters that would end
/// or break a line become spaces, empty lines are dropped (IRC has no
/// empty message), long lines are cut at [`MAX_TEXT`] bytes.
pub(super) fn texts(lines: &[String]) -> Vec<String> {
    let mut out = vec![];
    for line in lines {
        let clean: String = line
            .chars()
            .map(|c| {
                if matches!(c, '\r' | '\n' | '\0') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        let mut rest = clean.trim_end();
        while !rest.is_empty() {
            let mut cut = rest.len().min(MAX_TEXT);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(rest[..cut].to_string());
            rest = &rest[cut..];
        }
    }
    out
}

/// One line from the server, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    /// The prefix's nick (or server name), without `!user@host`.
    pub(super) from: String,
    pub(super) command: String,
    pub(super) params: Vec<String>,
}

impl Line {
    /// RFC 1459 with IRCv3 tags: `[@tags ][:prefix ]COMMAND params [:trailing]`.
    pub(super) fn parse(raw: &str) -> Option<Line> {
        let mut rest = raw.trim_end_matches(['\r', '\n']);
        if rest.starts_with('@') {
            rest = rest.split_once(' ')?.1.trim_start_matches(' ');
        }
        let mut from = "";
        if let Some(r) = rest.strip_prefix(':') {
            let (prefix, r) = r.split_once(' ')?;
            from = prefix.split(['!', '@']).next().unwrap_or(prefix);
            rest = r.trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return None;
        }
        let mut params = vec![];
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing.to_string());
                break;
            }
            let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(p.to_string());
            rest = r;
        }
        Some(Line {
            from: from.to_string(),
            command: command.to_ascii_uppercase(),
            params,
        })
    }

    pub(super) fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The human part of a numeric or ERROR: its last parameter.
    pub(super) fn text(&self) -> &str {
        self.params.last().map_or("", String::as_str)
    }

    /// `433 #chan :text` as people read it, without our nick.
    pub(super) fn describe(&self) -> String {
        let mut words = vec![self.command.clone()];
        let skip = usize::from(self.command.len() == 3 && self.params.len() > 1);
        words.extend(self.params.iter().skip(skip).cloned());
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_from_the_server() {
        let l = |from: &str, command: &str, params: &[&str]| {
            Some(Line {
                from: from.into(),
                command: command.into(),
                params: params.iter().map(|p| p.to_string()).collect(),
            })
        };
        let table = [
            (
                ":irc.test 001 kha-ci :Welcome to the Internet Relay Network kha-ci!~kha@127.0.0.1\r\n",
                l("irc.test", "001", &["kha-ci", "Welcome to the Internet Relay Network kha-ci!~kha@127.0.0.1"]),
            ),
            ("PING :irc.test\r\n", l("", "PING", &["irc.test"])),
            (
                ":kha-ci!~kha@127.0.0.1 JOIN :#chan\r\n",
                l("kha-ci", "JOIN", &["#chan"]),
            ),
            (
                ":irc.test 433 * kha-ci :Nickname already in use\n",
                l("irc.test", "433", &["*", "kha-ci", "Nickname already in use"]),
            ),
            (
                "@time=2024-01-01T00:00:00Z :n!u@h PRIVMSG #c :a :b\r\n",
                l("n", "PRIVMSG", &["#c", "a :b"]),
            ),
            (
                "ERROR :Closing connection\r\n",
                l("", "ERROR", &["Closing connection"]),
            ),
            ("\r\n", None),
        ];
        for (raw, want) in table {
            assert_eq!(Line::parse(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn texts_are_single_safe_lines() {
        let long = "é".repeat(300);
        let got = texts(&[
            "one\r\nQUIT".into(),
            String::new(),
            "  ".into(),
            long.clone(),
        ]);
        assert_eq!(got[0], "one  QUIT");
        assert_eq!(got.len(), 3);
        assert!(got[1].len() <= MAX_TEXT && got[2].len() <= MAX_TEXT);
        assert_eq!(format!("{}{}", got[1], got[2]), long);
    }
}

//! Skip markers in commit messages.
//!
//! Travis docs (Customizing the Build, "Skipping a Build"): a commit whose
//! message holds `[<KEYWORD> skip]` or `[skip <KEYWORD>]`, where
//! `<KEYWORD>` is `ci`, `travis`, `travis ci`, `travis-ci` or `travisci`,
//! is not built; only the HEAD commit of a push counts. The marker may be
//! anywhere in the message, in any case.
//!
//! The exact forms are travis-core's (lib/travis/commit_command.rb, used by
//! `Request::Approval#skipped?`): `[skip ci]` is matched as
//! `/\[skip\s+ci\]/i`, so any run of whitespace separates the words
//! (`[skip   ci]`), and the command form as `/\[ci(?: |:)([\w ]*)\]/i`
//! with the command `skip`, so one space or a colon follows the keyword
//! (`[ci:skip]`, `[CI:Skip]`) but `[ci  skip]` is not a marker. kha applies
//! both forms to every keyword of the docs' list.

use regex::Regex;
use std::sync::LazyLock;

/// Ruby's `\s`: ASCII whitespace only.
const WS: &str = r"[ \t\r\n\x0B\x0C]";

static MARKER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let keyword = format!("(?:ci|travis|travis{WS}+ci|travis-ci|travisci)");
    Regex::new(&format!(r"\[(?:skip{WS}+{keyword}|{keyword}(?: |:)skip)\]")).ok()
});

/// Whether the head commit's message asks not to build it.
pub fn should_skip(commit_message: &str) -> bool {
    // Lower-cased here rather than `(?i)` in the pattern: Ruby's `/i` on
    // these ASCII words does not let `ſkip` (long s) match.
    let lower = commit_message.to_ascii_lowercase();
    MARKER.as_ref().is_some_and(|m| m.is_match(&lower))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("[ci skip] docs", true),
            ("docs [skip ci]", true),
            ("Fix typo\n\nbody [CI SKIP]", true),
            ("[Skip Travis] Update README", true),
            ("[travis skip]", true),
            ("[skip travis ci]", true),
            ("[travis ci skip]", true),
            ("[skip travis-ci]", true),
            ("[travis-ci skip]", true),
            ("[skip travisci]", true),
            ("[travisci skip]", true),
            ("[skip] ci", false),
            ("[ci  skip]", false),
            // travis-core's command form: one space or a colon.
            ("[ci:skip] docs", true),
            ("docs [ci:Skip]", true),
            ("[CI:SKIP]", true),
            ("[travis:skip]", true),
            ("[ci: skip]", false),
            ("[ci:build]", false),
            // `[skip ci]`: any whitespace between the words.
            ("[skip   ci]", true),
            ("[skip\tci]", true),
            ("[skip  travis   ci]", true),
            ("[skip:ci]", false),
            ("[ ci skip ]", false),
            ("[ſkip ci]", false),
            ("[skipci]", false),
            ("skip ci", false),
            ("[skip appveyor]", false),
            ("[[skip ci]]", true),
            ("[ci skip", false),
            ("ü [skip ci] ü", true),
            ("", false),
        ];
        for (msg, want) in cases {
            assert_eq!(should_skip(msg), want, "{msg:?}");
        }
    }
}

//! Skip markers in commit messages.
//!
//! Travis docs (Customizing the Build, "Skipping a Build"): a commit whose
//! message holds `[<KEYWORD> skip]` or `[skip <KEYWORD>]`, where
//! `<KEYWORD>` is `ci`, `travis`, `travis ci`, `travis-ci` or `travisci`,
//! is not built; only the HEAD commit of a push counts. The marker may be
//! anywhere in the message, in any case (Travis matched case-insensitively,
//! travis-core's `Request::Approval#skipped?`).

const KEYWORDS: [&str; 5] = ["ci", "travis", "travis ci", "travis-ci", "travisci"];

/// Whether the head commit's message asks not to build it.
pub fn should_skip(commit_message: &str) -> bool {
    let lower = commit_message.to_ascii_lowercase();
    // Every `[`…`]` span without nested brackets is a candidate marker.
    let mut rest = lower.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            return false;
        };
        let inner = &after[..close];
        if is_marker(inner) {
            return true;
        }
        rest = after;
    }
    false
}

fn is_marker(inner: &str) -> bool {
    KEYWORDS
        .iter()
        .any(|k| inner.strip_prefix("skip ") == Some(k) || inner.strip_suffix(" skip") == Some(k))
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

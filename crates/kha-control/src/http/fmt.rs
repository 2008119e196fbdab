//! Small formatting for pages: HTML escaping (for the few fragments built
//! in Rust, such as log lines), URL components, short commits, ages and
//! durations as people read them, and ISO dates for `<time datetime>`.

use kha_core::Millis;

/// `s` as HTML text (also safe inside a quoted attribute).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded as one URL path segment or query value.
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first 8 characters of a git commit id; a Subversion revision as
/// `r42`; a CVS timestamp whole.
pub fn short(commit: &str) -> String {
    kha_core::spec::short_commit(commit, 8)
}

/// The first line of a commit message.
pub fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").to_string()
}

/// A span of time as people say it: "0.4 s", "45 s", "3 min 12 s",
/// "2 h 5 min" (tenths under 10 s: most CI jobs of a small project take
/// less than a second, and "0 s" says nothing).
pub fn duration(ms: u64) -> String {
    if ms < 10_000 {
        return format!("{}.{} s", ms / 1000, (ms % 1000) / 100);
    }
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long ago `then` was, at `now`: "just now", "5 min ago", …
pub fn ago(now: Millis, then: Millis) -> String {
    if then == 0 {
        return "never".into();
    }
    let s = now.saturating_sub(then) / 1000;
    match s {
        0..=9 => "just now".into(),
        10..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `ms` since the epoch as an ISO 8601 UTC date (`2025-05-01T12:00:00Z`).
pub fn iso(ms: Millis) -> String {
    kha_core::time::iso8601(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        for (input, want) in [
            ("<script>&\"'", "&lt;script&gt;&amp;&quot;&#39;"),
            ("plain", "plain"),
        ] {
            assert_eq!(esc(input), want);
        }
        assert_eq!(pct("feature/a b&c"), "feature%2Fa%20b%26c");
        for (ms, want) in [
            (0, "0.0 s"),
            (420, "0.4 s"),
            (9_999, "9.9 s"),
            (10_000, "10 s"),
            (59_999, "59 s"),
            (192_000, "3 min 12 s"),
            (7_500_000, "2 h 5 min"),
        ] {
            assert_eq!(duration(ms), want);
        }
        assert_eq!(ago(100_000, 0), "never");
        assert_eq!(ago(400_000, 100_000), "5 min ago");
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_746_100_800_000), "2025-05-01T12:00:00Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}

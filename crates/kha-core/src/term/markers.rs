//! Travis's fold and time markers (`travis_fold:start:NAME`,
//! `travis_time:end:ID:…,duration=D`): recognised when they are a line's
//! whole text, and then hidden.

use super::LineKind;

pub(super) enum Marker {
    Fold(LineKind),
    TimeStart,
    TimeEnd(Option<u64>),
}

/// A name in a marker: non-empty, no whitespace, no control characters.
fn marker_name(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())).then_some(s)
}

pub(super) fn parse_marker(text: &str) -> Option<Marker> {
    if let Some(rest) = text.strip_prefix("travis_fold:") {
        if let Some(name) = rest.strip_prefix("start:").and_then(marker_name) {
            return Some(Marker::Fold(LineKind::FoldStart(name.to_string())));
        }
        if let Some(name) = rest.strip_prefix("end:").and_then(marker_name) {
            return Some(Marker::Fold(LineKind::FoldEnd(name.to_string())));
        }
        return None;
    }
    let rest = text.strip_prefix("travis_time:")?;
    if rest.strip_prefix("start:").and_then(marker_name).is_some() {
        return Some(Marker::TimeStart);
    }
    let rest = marker_name(rest.strip_prefix("end:")?)?;
    // `ID:start=S,finish=F,duration=D`; a malformed tail is still a marker
    // (hidden), just without a duration.
    let duration = rest
        .split_once(':')
        .map(|(_, fields)| fields)
        .into_iter()
        .flat_map(|f| f.split(','))
        .find_map(|kv| kv.strip_prefix("duration="))
        .and_then(|d| d.parse().ok());
    Some(Marker::TimeEnd(duration))
}

//! The control node's answers read into kha's own types, at the edge: the
//! one place the CLI parses a build's or job's state string (into
//! kha-core's `BuildState`/`JobState`) or derives a builder's state from
//! its flags. Commands decide on these types, never on strings.

use kha_core::{BuildState, JobState};
use kha_proto::admin::{Build, Builder};
use serde::Serialize;

/// A build's state; `None` if the control node sent one this CLI does not
/// know (a newer server), which no rule treats as final or passed.
pub fn build_state(b: &Build) -> Option<BuildState> {
    BuildState::parse(&b.state)
}

/// A job's state as a log stream's last message reports it; `None` when
/// unknown or absent (the stream ended early).
pub fn job_state(state: &str) -> Option<JobState> {
    JobState::parse(state)
}

/// What a builder is doing, as `builder list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuilderState {
    /// Connected and taking jobs.
    Ready,
    /// Connected, finishing its jobs, given no new ones.
    Draining,
    /// Not connected.
    Offline,
    /// Its credential is revoked: it will not be let in again.
    Revoked,
}

impl BuilderState {
    /// Revoked wins over offline, offline over draining.
    pub fn of(b: &Builder) -> BuilderState {
        if b.revoked {
            BuilderState::Revoked
        } else if !b.connected {
            BuilderState::Offline
        } else if b.draining {
            BuilderState::Draining
        } else {
            BuilderState::Ready
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BuilderState::Ready => "ready",
            BuilderState::Draining => "draining",
            BuilderState::Offline => "offline",
            BuilderState::Revoked => "revoked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_state_from_flags() {
        // (connected, draining, revoked) -> state
        let table = [
            ((true, false, false), BuilderState::Ready),
            ((true, true, false), BuilderState::Draining),
            ((false, true, false), BuilderState::Offline),
            ((false, false, false), BuilderState::Offline),
            ((true, false, true), BuilderState::Revoked),
            ((false, true, true), BuilderState::Revoked),
        ];
        for ((connected, draining, revoked), want) in table {
            let b = Builder {
                connected,
                draining,
                revoked,
                ..Builder::default()
            };
            assert_eq!(BuilderState::of(&b), want, "{b:?}");
            let json = serde_json::to_value(want).ok();
            assert_eq!(json, Some(serde_json::json!(want.as_str())));
        }
    }

    #[test]
    fn states_parse_at_the_edge() {
        let b = Build {
            state: "passed".into(),
            ..Build::default()
        };
        assert_eq!(build_state(&b), Some(BuildState::Passed));
        assert_eq!(job_state("timed_out"), Some(JobState::TimedOut));
        assert_eq!(job_state(""), None);
    }
}

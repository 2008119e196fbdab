//! The job state machine, and a build's state derived from its jobs.
//!
//! ```text
//!  Waiting ── its stage starts ──┐  (a later build stage's job; see `stages`)
//!     └── earlier stage failed, cancel ──────────────────► Canceled
//!                                ▼
//!            grant lease                 finish(outcome)
//!  Queued ───────────────► Running ─────────────────────► Passed | Failed | Errored
//!    │  ▲                    │  │                          Canceled | TimedOut
//!    │  └──── requeue ───────┘  └── attempts exhausted ──► Lost
//!    └──────── cancel ──────────────────────────────────► Canceled
//!  (any final state) ── restart ──► Queued | Waiting
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// A job of a later build stage: it is queued when every earlier stage
    /// passed, canceled when one did not.
    Waiting,
    Queued,
    Running,
    Passed,
    /// The `script` phase failed: the code under test is at fault.
    Failed,
    /// A setup phase failed, or the configuration is broken.
    Errored,
    Canceled,
    TimedOut,
    /// The builder running it vanished more often than the attempt limit.
    Lost,
}

/// What a builder reports when a job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Passed,
    Failed,
    Errored,
    Canceled,
    TimedOut,
    /// The builder could not run the job (checkout, container start, disk):
    /// not the job's fault, so it is handed out again.
    Infrastructure,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot go from {from} to {to}")]
pub struct TransitionError {
    pub from: JobState,
    pub to: JobState,
}

impl JobState {
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            JobState::Waiting | JobState::Queued | JobState::Running
        )
    }

    /// Not handed out yet: waiting for its stage or for a builder.
    pub fn is_pending(self) -> bool {
        matches!(self, JobState::Waiting | JobState::Queued)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Passed => "passed",
            JobState::Failed => "failed",
            JobState::Errored => "errored",
            JobState::Canceled => "canceled",
            JobState::TimedOut => "timed_out",
            JobState::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => JobState::Waiting,
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "passed" => JobState::Passed,
            "failed" => JobState::Failed,
            "errored" => JobState::Errored,
            "canceled" => JobState::Canceled,
            "timed_out" => JobState::TimedOut,
            "lost" => JobState::Lost,
            _ => return None,
        })
    }

    /// Checks one step of the state machine.
    pub fn transition(self, to: JobState) -> Result<JobState, TransitionError> {
        use JobState::*;
        let ok = match (self, to) {
            (Waiting, Queued | Canceled) => true,
            (Queued, Running | Canceled | Errored) => true,
            (Running, Queued) => true, // lease lost or infrastructure trouble: next attempt
            (Running, t) if t.is_final() => true,
            (f, Queued | Waiting) if f.is_final() => true, // restart
            _ => false,
        };
        if ok {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JobOutcome {
    /// The final state an outcome leads to; `None` means "hand it out again".
    pub fn final_state(self) -> Option<JobState> {
        Some(match self {
            JobOutcome::Passed => JobState::Passed,
            JobOutcome::Failed => JobState::Failed,
            JobOutcome::Errored => JobState::Errored,
            JobOutcome::Canceled => JobState::Canceled,
            JobOutcome::TimedOut => JobState::TimedOut,
            JobOutcome::Infrastructure => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    Queued,
    Running,
    Passed,
    Failed,
    Errored,
    Canceled,
}

impl BuildState {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Queued => "queued",
            BuildState::Running => "running",
            BuildState::Passed => "passed",
            BuildState::Failed => "failed",
            BuildState::Errored => "errored",
            BuildState::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => BuildState::Queued,
            "running" => BuildState::Running,
            "passed" => BuildState::Passed,
            "failed" => BuildState::Failed,
            "errored" => BuildState::Errored,
            "canceled" => BuildState::Canceled,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        !matches!(self, BuildState::Queued | BuildState::Running)
    }

    /// A build's state from its jobs' `(state, allow_failure)`.
    ///
    /// While any job is unfinished the build is queued (nothing started yet:
    /// every job queued or waiting) or running. Once all are final, jobs allowed to fail are ignored unless
    /// they were canceled, and the worst remaining state wins:
    /// canceled, then errored (timeouts and lost jobs count as errored), then
    /// failed. A build with no jobs at all is errored: it ran nothing.
    pub fn derive(jobs: &[(JobState, bool)]) -> BuildState {
        Self::derive_with(jobs, false)
    }

    /// Like [`BuildState::derive`]; with `fast_finish` (Travis's
    /// `jobs.fast_finish`) the build is decided as soon as every job not
    /// allowed to fail is final, or as soon as one of them fails, while
    /// jobs allowed to fail may still run.
    pub fn derive_with(jobs: &[(JobState, bool)], fast_finish: bool) -> BuildState {
        if jobs.is_empty() {
            return BuildState::Errored;
        }
        if fast_finish {
            let required: Vec<(JobState, bool)> =
                jobs.iter().copied().filter(|(_, a)| !*a).collect();
            let failed = required
                .iter()
                .any(|(s, _)| s.is_final() && *s != JobState::Passed);
            if !required.is_empty() && (failed || required.iter().all(|(s, _)| s.is_final())) {
                let done: Vec<(JobState, bool)> =
                    required.into_iter().filter(|(s, _)| s.is_final()).collect();
                return Self::derive_with(&done, false);
            }
        }
        if jobs.iter().any(|(s, _)| !s.is_final()) {
            let started = jobs.iter().any(|(s, _)| !s.is_pending());
            return if started {
                BuildState::Running
            } else {
                BuildState::Queued
            };
        }
        let mut result = BuildState::Passed;
        let rank = |b: BuildState| match b {
            BuildState::Canceled => 3,
            BuildState::Errored => 2,
            BuildState::Failed => 1,
            _ => 0,
        };
        for &(s, allow_failure) in jobs {
            let b = match s {
                JobState::Canceled => BuildState::Canceled,
                _ if allow_failure => continue,
                JobState::Errored | JobState::TimedOut | JobState::Lost => BuildState::Errored,
                JobState::Failed => BuildState::Failed,
                _ => continue,
            };
            if rank(b) > rank(result) {
                result = b;
            }
        }
        result
    }
}

impl fmt::Display for BuildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::JobState::*;
    use super::*;

    #[test]
    fn transitions() {
        let table = [
            (Queued, Running, true),
            (Queued, Canceled, true),
            (Queued, Passed, false),
            (Running, Passed, true),
            (Running, Failed, true),
            (Running, TimedOut, true),
            (Running, Lost, true),
            (Running, Queued, true),
            (Running, Running, false),
            (Passed, Queued, true),
            (Passed, Failed, false),
            (Canceled, Running, false),
            (Waiting, Queued, true),
            (Waiting, Canceled, true),
            (Waiting, Running, false),
            (Waiting, Passed, false),
            (Queued, Waiting, false),
            (Running, Waiting, false),
            (Failed, Waiting, true),
            (Canceled, Waiting, true),
        ];
        for (from, to, ok) in table {
            assert_eq!(from.transition(to).is_ok(), ok, "{from} -> {to}");
        }
    }

    #[test]
    fn build_state_from_jobs() {
        let table: &[(&[(JobState, bool)], BuildState)] = &[
            (&[], BuildState::Errored),
            (&[(Queued, false), (Queued, false)], BuildState::Queued),
            (&[(Queued, false), (Waiting, false)], BuildState::Queued),
            (&[(Passed, false), (Waiting, false)], BuildState::Running),
            (&[(Passed, false), (Queued, false)], BuildState::Running),
            (&[(Running, false)], BuildState::Running),
            (&[(Passed, false), (Passed, false)], BuildState::Passed),
            (&[(Passed, false), (Failed, false)], BuildState::Failed),
            (&[(Passed, false), (Failed, true)], BuildState::Passed),
            (&[(Errored, true), (Passed, false)], BuildState::Passed),
            (&[(Failed, false), (Errored, false)], BuildState::Errored),
            (&[(TimedOut, false)], BuildState::Errored),
            (&[(Lost, false), (Passed, false)], BuildState::Errored),
            (&[(Failed, false), (Canceled, false)], BuildState::Canceled),
            (&[(Canceled, true), (Passed, false)], BuildState::Canceled),
        ];
        for (jobs, want) in table {
            assert_eq!(BuildState::derive(jobs), *want, "{jobs:?}");
        }
    }

    #[test]
    fn fast_finish_decides_early() {
        let table: &[(&[(JobState, bool)], BuildState)] = &[
            // The allowed failure still runs: decided anyway.
            (&[(Passed, false), (Running, true)], BuildState::Passed),
            // A required job failed while another runs: failed at once.
            (&[(Failed, false), (Running, false)], BuildState::Failed),
            (&[(Passed, false), (Running, false)], BuildState::Running),
            (&[(Queued, false), (Queued, true)], BuildState::Queued),
            // Only jobs allowed to fail: the usual rule.
            (&[(Running, true)], BuildState::Running),
        ];
        for (jobs, want) in table {
            assert_eq!(BuildState::derive_with(jobs, true), *want, "{jobs:?}");
        }
        assert_eq!(
            BuildState::derive_with(&[(Passed, false), (Running, true)], false),
            BuildState::Running
        );
    }

    #[test]
    fn state_names_round_trip() {
        for s in [
            Waiting, Queued, Running, Passed, Failed, Errored, Canceled, TimedOut, Lost,
        ] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        for b in [
            BuildState::Queued,
            BuildState::Running,
            BuildState::Passed,
            BuildState::Failed,
            BuildState::Errored,
            BuildState::Canceled,
        ] {
            assert_eq!(BuildState::parse(b.as_str()), Some(b));
        }
        assert_eq!(JobState::parse("bogus"), None);
        assert_eq!(BuildState::parse("timed_out"), None);
    }
}

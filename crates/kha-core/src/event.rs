//! The event stream's vocabulary: what changed, numbered in the order it was
//! stored. Every durable state change of the control node appends one event
//! (in the same transaction as the change); the web UI's live updates,
//! `kha events`, `--wait`, notifications and hooks all read this one stream
//! and resume from a sequence number.
//!
//! Which events a job transition gives is a pure decision
//! ([`transition_events`]), tested by a table below.

use crate::{BuildId, BuildState, Epoch, JobId, JobState, Millis};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A build and its jobs were written (`build_state`: its first state).
    BuildCreated,
    /// Its first job started.
    BuildStarted,
    /// It reached a final state (`build_state`).
    BuildFinished,
    /// A finished build was put back in the queue.
    BuildRestarted,
    /// Its only running jobs were put back in the queue.
    BuildRequeued,
    /// A job is waiting for a builder (a new build's, or a restarted one).
    JobQueued,
    /// A builder holds the job's lease (`builder`, `epoch`).
    JobStarted,
    /// The job's log grew to `log_len` bytes (coalesced: not one per chunk).
    JobLog,
    /// Someone asked a running job to stop.
    JobCanceling,
    /// The job reached a final state (`job_state`, `detail`).
    JobFinished,
    /// The job's builder was lost or could not run it: it waits again.
    JobRequeued,
    /// A branch's (or tag's) head moved to `commit`.
    BranchMoved,
    /// A branch was deleted on the remote.
    BranchDeleted,
    BuilderConnected,
    BuilderDisconnected,
    /// A builder takes no new jobs.
    BuilderDraining,
    BuilderRevoked,
}

impl EventKind {
    pub const ALL: [EventKind; 17] = [
        EventKind::BuildCreated,
        EventKind::BuildStarted,
        EventKind::BuildFinished,
        EventKind::BuildRestarted,
        EventKind::BuildRequeued,
        EventKind::JobQueued,
        EventKind::JobStarted,
        EventKind::JobLog,
        EventKind::JobCanceling,
        EventKind::JobFinished,
        EventKind::JobRequeued,
        EventKind::BranchMoved,
        EventKind::BranchDeleted,
        EventKind::BuilderConnected,
        EventKind::BuilderDisconnected,
        EventKind::BuilderDraining,
        EventKind::BuilderRevoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BuildCreated => "build_created",
            EventKind::BuildStarted => "build_started",
            EventKind::BuildFinished => "build_finished",
            EventKind::BuildRestarted => "build_restarted",
            EventKind::BuildRequeued => "build_requeued",
            EventKind::JobQueued => "job_queued",
            EventKind::JobStarted => "job_started",
            EventKind::JobLog => "job_log",
            EventKind::JobCanceling => "job_canceling",
            EventKind::JobFinished => "job_finished",
            EventKind::JobRequeued => "job_requeued",
            EventKind::BranchMoved => "branch_moved",
            EventKind::BranchDeleted => "branch_deleted",
            EventKind::BuilderConnected => "builder_connected",
            EventKind::BuilderDisconnected => "builder_disconnected",
            EventKind::BuilderDraining => "builder_draining",
            EventKind::BuilderRevoked => "builder_revoked",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored change. Fields that do not apply to its kind are empty / 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Dense and increasing: 1, 2, 3, … in the order changes were stored.
    pub seq: u64,
    pub at_ms: Millis,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub build_id: BuildId,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub job_id: JobId,
    /// The job's number within its build.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub job_number: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_state: Option<BuildState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_state: Option<JobState>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub builder: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: Epoch,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_len: u64,
    /// One line for people (why a job ended or was requeued, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

impl Event {
    /// An event of `kind` with every other field empty; the store fills in
    /// `seq` and `at_ms` when it writes it.
    pub fn new(kind: EventKind) -> Event {
        Event {
            seq: 0,
            at_ms: 0,
            kind,
            project: String::new(),
            build_id: 0,
            job_id: 0,
            job_number: 0,
            build_state: None,
            job_state: None,
            branch: String::new(),
            commit: String::new(),
            builder: String::new(),
            epoch: 0,
            log_len: 0,
            detail: String::new(),
        }
    }

    /// Is this event the last word on its build (nothing more will happen to
    /// it unless someone restarts it)?
    pub fn ends_build(&self) -> bool {
        self.kind == EventKind::BuildFinished
    }
}

/// Which events a subscriber wants. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    pub project: Option<String>,
    pub build_id: Option<BuildId>,
    pub job_id: Option<JobId>,
    pub kinds: Vec<EventKind>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        self.project.as_ref().is_none_or(|p| *p == e.project)
            && self.build_id.is_none_or(|b| b == e.build_id)
            && self.job_id.is_none_or(|j| j == e.job_id)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
    }
}

/// A job's state and its build's, before or after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub job: JobState,
    pub cancel_requested: bool,
    pub build: BuildState,
}

/// The events one job transition gives, the job's first, then its build's.
pub fn transition_events(before: Snapshot, after: Snapshot) -> Vec<EventKind> {
    use JobState as J;
    let mut out = Vec::new();
    if before.job != after.job {
        out.push(match (before.job, after.job) {
            (J::Queued, J::Running) => EventKind::JobStarted,
            (J::Running, J::Queued) => EventKind::JobRequeued,
            (_, to) if to.is_final() => EventKind::JobFinished,
            _ => EventKind::JobQueued,
        });
    } else if after.job == J::Running && after.cancel_requested && !before.cancel_requested {
        out.push(EventKind::JobCanceling);
    }
    if before.build != after.build {
        out.push(if after.build.is_final() {
            EventKind::BuildFinished
        } else if before.build.is_final() {
            EventKind::BuildRestarted
        } else if after.build == BuildState::Running {
            EventKind::BuildStarted
        } else {
            EventKind::BuildRequeued
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildState as B;
    use EventKind as E;
    use JobState as J;

    fn s(job: J, cancel: bool, build: B) -> Snapshot {
        Snapshot {
            job,
            cancel_requested: cancel,
            build,
        }
    }

    #[test]
    fn transitions_give_events() {
        let table: &[(Snapshot, Snapshot, &[EventKind])] = &[
            // The first job of a build starts: the build starts too.
            (
                s(J::Queued, false, B::Queued),
                s(J::Running, false, B::Running),
                &[E::JobStarted, E::BuildStarted],
            ),
            // A second job starts in a running build.
            (
                s(J::Queued, false, B::Running),
                s(J::Running, false, B::Running),
                &[E::JobStarted],
            ),
            // The last job passes.
            (
                s(J::Running, false, B::Running),
                s(J::Passed, false, B::Passed),
                &[E::JobFinished, E::BuildFinished],
            ),
            // One of several jobs fails; others still run.
            (
                s(J::Running, false, B::Running),
                s(J::Failed, false, B::Running),
                &[E::JobFinished],
            ),
            // The only running job loses its builder.
            (
                s(J::Running, false, B::Running),
                s(J::Queued, false, B::Queued),
                &[E::JobRequeued, E::BuildRequeued],
            ),
            // Canceled while queued: the build is over.
            (
                s(J::Queued, false, B::Queued),
                s(J::Canceled, false, B::Canceled),
                &[E::JobFinished, E::BuildFinished],
            ),
            // Cancel asked of a running job.
            (
                s(J::Running, false, B::Running),
                s(J::Running, true, B::Running),
                &[E::JobCanceling],
            ),
            // Asked twice: nothing new.
            (
                s(J::Running, true, B::Running),
                s(J::Running, true, B::Running),
                &[],
            ),
            // Restart of a finished build, first job.
            (
                s(J::Failed, false, B::Failed),
                s(J::Queued, false, B::Queued),
                &[E::JobQueued, E::BuildRestarted],
            ),
            // Restart, second job: the build is queued already.
            (
                s(J::Passed, false, B::Queued),
                s(J::Queued, false, B::Queued),
                &[E::JobQueued],
            ),
            // A field changed, no state: no event.
            (
                s(J::Passed, false, B::Passed),
                s(J::Passed, false, B::Passed),
                &[],
            ),
        ];
        for (before, after, want) in table {
            assert_eq!(
                transition_events(*before, *after),
                want.to_vec(),
                "{before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn kinds_round_trip_and_filters_match() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        let mut e = Event::new(EventKind::JobLog);
        e.project = "kha".into();
        e.build_id = 7;
        let f = |project: Option<&str>, build: Option<u64>, kinds: Vec<EventKind>| EventFilter {
            project: project.map(String::from),
            build_id: build,
            job_id: None,
            kinds,
        };
        assert!(f(None, None, vec![]).matches(&e));
        assert!(f(Some("kha"), Some(7), vec![EventKind::JobLog]).matches(&e));
        assert!(!f(Some("other"), None, vec![]).matches(&e));
        assert!(!f(None, Some(8), vec![]).matches(&e));
        assert!(!f(None, None, vec![EventKind::JobFinished]).matches(&e));
    }
}

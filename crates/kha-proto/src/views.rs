//! Conversions between the admin API's wire types and kha-core's views and
//! events, both ways: the control node encodes what its service layer
//! returns, the CLI decodes it back into the same types it prints.
//! A state the wire leaves unspecified is an error, never a default.

use crate::admin as w;
use kha_core::event::{Event, EventKind};
use kha_core::view::{self, BranchStatus, BuilderState, MatrixValue};
use kha_core::{BuildState, JobState};

/// A wire message that does not say what it must.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the control node sent {0}: is the CLI older than the control node?")]
pub struct WireError(pub String);

fn unspecified(what: &str) -> WireError {
    WireError(format!("an unspecified {what}"))
}

macro_rules! enum_pair {
    ($core:ty, $wire:ty, $what:literal, [$($v:ident),* $(,)?]) => {
        impl From<$core> for $wire {
            fn from(s: $core) -> Self {
                match s { $(<$core>::$v => <$wire>::$v,)* }
            }
        }
        impl TryFrom<$wire> for $core {
            type Error = WireError;
            fn try_from(s: $wire) -> Result<Self, WireError> {
                match s {
                    $(<$wire>::$v => Ok(<$core>::$v),)*
                    <$wire>::Unspecified => Err(unspecified($what)),
                }
            }
        }
    };
}

enum_pair!(
    JobState,
    w::JobState,
    "job state",
    [Waiting, Queued, Running, Passed, Failed, Errored, Canceled, TimedOut, Lost]
);
enum_pair!(
    BuildState,
    w::BuildState,
    "build state",
    [Queued, Running, Passed, Failed, Errored, Canceled]
);
enum_pair!(
    BuilderState,
    w::BuilderState,
    "builder state",
    [Connected, Draining, Offline, Revoked]
);
enum_pair!(
    EventKind,
    w::EventKind,
    "event kind",
    [
        BuildCreated,
        BuildStarted,
        BuildFinished,
        BuildRestarted,
        BuildRequeued,
        JobQueued,
        JobStarted,
        JobLog,
        JobCanceling,
        JobFinished,
        JobRequeued,
        BranchMoved,
        BranchDeleted,
        BuilderConnected,
        BuilderDisconnected,
        BuilderDraining,
        BuilderRevoked,
    ]
);

impl From<view::Project> for w::Project {
    fn from(p: view::Project) -> Self {
        w::Project {
            name: p.name,
            repo_url: p.repo_url,
            default_branch: p.default_branch,
            timeout_secs: p.timeout_secs,
            image: p.image,
            created_ms: p.created_ms,
            poll_interval_secs: p.poll_interval_secs,
            build_tags: p.build_tags,
            cancel_superseded: p.cancel_superseded,
            github_repo: p.github_repo,
            webhook_secret: p.webhook_secret,
            has_credentials: p.has_credentials,
            private: p.private,
            vcs: p.vcs.wire_name().into(),
            module: p.module,
            layout: p.layout,
            share_secrets_with_forks: p.share_secrets_with_forks,
            job_memory_mib: p.job_limits.memory_mib,
            job_pids: p.job_limits.pids,
            job_cpu_millis: p.job_limits.cpu_millis,
            job_network: p.job_limits.network,
            max_running_jobs: p.max_running_jobs,
            one_build_per_branch: p.one_build_per_branch,
            log_keep_builds: p.log_keep_builds,
            log_max_age_days: p.log_max_age_days,
        }
    }
}

impl From<w::Project> for view::Project {
    fn from(p: w::Project) -> Self {
        view::Project {
            job_limits: kha_core::limits::JobLimits {
                memory_mib: p.job_memory_mib,
                pids: p.job_pids,
                cpu_millis: p.job_cpu_millis,
                network: p.job_network,
            },
            max_running_jobs: p.max_running_jobs,
            one_build_per_branch: p.one_build_per_branch,
            log_keep_builds: p.log_keep_builds,
            log_max_age_days: p.log_max_age_days,
            name: p.name,
            repo_url: p.repo_url,
            default_branch: p.default_branch,
            timeout_secs: p.timeout_secs,
            image: p.image,
            created_ms: p.created_ms,
            poll_interval_secs: p.poll_interval_secs,
            build_tags: p.build_tags,
            cancel_superseded: p.cancel_superseded,
            github_repo: p.github_repo,
            webhook_secret: p.webhook_secret,
            has_credentials: p.has_credentials,
            private: p.private,
            // Shown, never acted on: a kind this CLI does not know yet
            // reads as git rather than hiding the project.
            vcs: p.vcs.parse().unwrap_or_default(),
            module: p.module,
            layout: p.layout,
            share_secrets_with_forks: p.share_secrets_with_forks,
        }
    }
}

impl From<view::Job> for w::Job {
    fn from(j: view::Job) -> Self {
        let mut out = w::Job {
            id: j.id,
            build_id: j.build_id,
            number: j.number,
            epoch: j.epoch,
            attempts: j.attempts,
            builder: j.builder,
            started_ms: j.started_ms,
            finished_ms: j.finished_ms,
            log_len: j.log_len,
            env: j.env,
            allow_failure: j.allow_failure,
            detail: j.detail,
            requires: j.requires,
            name: j.name,
            stage: j.stage,
            priority: j.priority,
            state: 0,
            earlier_logs: j
                .earlier_logs
                .into_iter()
                .map(|a| w::AttemptLog {
                    attempt: a.attempt,
                    bytes: a.bytes,
                })
                .collect(),
            matrix: j
                .matrix
                .into_iter()
                .map(|m| w::MatrixValue {
                    key: m.key,
                    value: m.value,
                })
                .collect(),
        };
        out.set_state(j.state.into());
        out
    }
}

impl TryFrom<w::Job> for view::Job {
    type Error = WireError;
    fn try_from(j: w::Job) -> Result<Self, WireError> {
        Ok(view::Job {
            state: j.state().try_into()?,
            id: j.id,
            build_id: j.build_id,
            number: j.number,
            epoch: j.epoch,
            attempts: j.attempts,
            builder: j.builder,
            started_ms: j.started_ms,
            finished_ms: j.finished_ms,
            log_len: j.log_len,
            env: j.env,
            allow_failure: j.allow_failure,
            detail: j.detail,
            requires: j.requires,
            name: j.name,
            stage: j.stage,
            priority: j.priority,
            earlier_logs: j
                .earlier_logs
                .into_iter()
                .map(|a| view::AttemptLog {
                    attempt: a.attempt,
                    bytes: a.bytes,
                })
                .collect(),
            matrix: j
                .matrix
                .into_iter()
                .map(|m| MatrixValue::new(m.key, m.value))
                .collect(),
        })
    }
}

impl From<view::Build> for w::Build {
    fn from(b: view::Build) -> Self {
        let mut out = w::Build {
            id: b.id,
            project: b.project,
            branch: b.branch,
            commit: b.commit,
            message: b.message,
            created_ms: b.created_ms,
            finished_ms: b.finished_ms,
            jobs: b.jobs.into_iter().map(Into::into).collect(),
            warnings: b.warnings,
            error: b.error,
            pr_number: b.pr_number,
            event: b.event,
            fast_finish: b.fast_finish,
            state: 0,
            author: b.author,
            tag: b.tag,
            started_ms: b.started_ms,
            deliveries: b.deliveries.into_iter().map(delivery_to_wire).collect(),
            stages: b.stages,
        };
        out.set_state(b.state.into());
        out
    }
}

impl TryFrom<w::Build> for view::Build {
    type Error = WireError;
    fn try_from(b: w::Build) -> Result<Self, WireError> {
        Ok(view::Build {
            state: b.state().try_into()?,
            id: b.id,
            project: b.project,
            branch: b.branch,
            commit: b.commit,
            message: b.message,
            created_ms: b.created_ms,
            finished_ms: b.finished_ms,
            jobs: b
                .jobs
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            warnings: b.warnings,
            error: b.error,
            pr_number: b.pr_number,
            event: b.event,
            fast_finish: b.fast_finish,
            author: b.author,
            tag: b.tag,
            started_ms: b.started_ms,
            deliveries: b.deliveries.into_iter().map(delivery_from_wire).collect(),
            stages: b.stages,
        })
    }
}

fn delivery_to_wire(d: view::Delivery) -> w::Delivery {
    w::Delivery {
        id: d.id,
        channel: d.channel,
        target: d.target,
        event: d.event,
        state: d.state,
        attempts: d.attempts,
        answer: d.answer,
        created_ms: d.created_ms,
        updated_ms: d.updated_ms,
        next_ms: d.next_ms,
    }
}

fn delivery_from_wire(d: w::Delivery) -> view::Delivery {
    view::Delivery {
        id: d.id,
        channel: d.channel,
        target: d.target,
        event: d.event,
        state: d.state,
        attempts: d.attempts,
        answer: d.answer,
        created_ms: d.created_ms,
        updated_ms: d.updated_ms,
        next_ms: d.next_ms,
    }
}

impl From<view::Branch> for w::Branch {
    fn from(b: view::Branch) -> Self {
        let mut out = w::Branch {
            name: b.name,
            head: b.head,
            last_build_id: b.last_build_id,
            updated_ms: b.updated_ms,
            tag: b.tag,
            status: 0,
            build_state: 0,
        };
        let status = match b.state {
            BranchStatus::Built(s) => {
                out.set_build_state(s.into());
                w::BranchStatus::Built
            }
            BranchStatus::Skipped => w::BranchStatus::Skipped,
            BranchStatus::Filtered => w::BranchStatus::Filtered,
            BranchStatus::Deleted => w::BranchStatus::Deleted,
            BranchStatus::None => w::BranchStatus::None,
        };
        out.set_status(status);
        out
    }
}

impl TryFrom<w::Branch> for view::Branch {
    type Error = WireError;
    fn try_from(b: w::Branch) -> Result<Self, WireError> {
        let status = match b.status() {
            w::BranchStatus::Built => BranchStatus::Built(b.build_state().try_into()?),
            w::BranchStatus::Skipped => BranchStatus::Skipped,
            w::BranchStatus::Filtered => BranchStatus::Filtered,
            w::BranchStatus::Deleted => BranchStatus::Deleted,
            w::BranchStatus::None => BranchStatus::None,
            w::BranchStatus::Unspecified => return Err(unspecified("branch status")),
        };
        Ok(view::Branch {
            name: b.name,
            head: b.head,
            tag: b.tag,
            last_build_id: b.last_build_id,
            deleted: status == BranchStatus::Deleted,
            state: status,
            updated_ms: b.updated_ms,
        })
    }
}

impl From<view::Builder> for w::Builder {
    fn from(b: view::Builder) -> Self {
        let mut out = w::Builder {
            id: b.id,
            name: b.name,
            labels: b.labels,
            slots: b.slots,
            running_jobs: b.running_jobs,
            last_seen_ms: b.last_seen_ms,
            version: b.version,
            state: 0,
            trusted: b.trusted,
        };
        out.set_state(b.state.into());
        out
    }
}

impl TryFrom<w::Builder> for view::Builder {
    type Error = WireError;
    fn try_from(b: w::Builder) -> Result<Self, WireError> {
        Ok(view::Builder {
            state: b.state().try_into()?,
            id: b.id,
            name: b.name,
            labels: b.labels,
            slots: b.slots,
            running_jobs: b.running_jobs,
            last_seen_ms: b.last_seen_ms,
            version: b.version,
            trusted: b.trusted,
        })
    }
}

impl From<view::EnrolmentToken> for w::EnrolmentToken {
    fn from(t: view::EnrolmentToken) -> Self {
        w::EnrolmentToken {
            id: t.id,
            token: t.token,
            description: t.description,
            created_ms: t.created_ms,
            revoked: t.revoked,
        }
    }
}

impl From<w::EnrolmentToken> for view::EnrolmentToken {
    fn from(t: w::EnrolmentToken) -> Self {
        view::EnrolmentToken {
            id: t.id,
            token: t.token,
            description: t.description,
            created_ms: t.created_ms,
            revoked: t.revoked,
        }
    }
}

impl From<Event> for w::Event {
    fn from(e: Event) -> Self {
        let mut out = w::Event {
            seq: e.seq,
            at_ms: e.at_ms,
            kind: 0,
            project: e.project,
            build_id: e.build_id,
            job_id: e.job_id,
            job_number: e.job_number,
            build_state: 0,
            job_state: 0,
            branch: e.branch,
            commit: e.commit,
            builder: e.builder,
            epoch: e.epoch,
            log_len: e.log_len,
            detail: e.detail,
        };
        out.set_kind(e.kind.into());
        if let Some(s) = e.build_state {
            out.set_build_state(s.into());
        }
        if let Some(s) = e.job_state {
            out.set_job_state(s.into());
        }
        out
    }
}

impl TryFrom<w::Event> for Event {
    type Error = WireError;
    fn try_from(e: w::Event) -> Result<Self, WireError> {
        Ok(Event {
            kind: e.kind().try_into()?,
            build_state: e.build_state().try_into().ok(),
            job_state: e.job_state().try_into().ok(),
            seq: e.seq,
            at_ms: e.at_ms,
            project: e.project,
            build_id: e.build_id,
            job_id: e.job_id,
            job_number: e.job_number,
            branch: e.branch,
            commit: e.commit,
            builder: e.builder,
            epoch: e.epoch,
            log_len: e.log_len,
            detail: e.detail,
        })
    }
}

impl From<view::Schedule> for w::Schedule {
    fn from(s: view::Schedule) -> Self {
        w::Schedule {
            id: s.id,
            project: s.project,
            branch: s.branch,
            interval: s.interval,
            cron: s.cron,
            dont_run_if_recent_build_exists: s.dont_run_if_recent_build_exists,
            created_ms: s.created_ms,
            next_run_ms: s.next_run_ms,
            last_run_ms: s.last_run_ms,
            last_outcome: s.last_outcome,
            last_build_id: s.last_build_id,
        }
    }
}

impl From<w::Schedule> for view::Schedule {
    fn from(s: w::Schedule) -> Self {
        view::Schedule {
            id: s.id,
            project: s.project,
            branch: s.branch,
            interval: s.interval,
            cron: s.cron,
            dont_run_if_recent_build_exists: s.dont_run_if_recent_build_exists,
            created_ms: s.created_ms,
            next_run_ms: s.next_run_ms,
            last_run_ms: s.last_run_ms,
            last_outcome: s.last_outcome,
            last_build_id: s.last_build_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> view::Job {
        view::Job {
            id: 3,
            build_id: 2,
            number: 1,
            state: JobState::TimedOut,
            epoch: 2,
            attempts: 1,
            builder: "b-1".into(),
            started_ms: 10,
            finished_ms: 20,
            log_len: 5,
            env: vec!["A=1".into()],
            allow_failure: true,
            detail: "timed out".into(),
            requires: vec!["image=default".into()],
            matrix: vec![MatrixValue::new("env", "A=1")],
            name: "lint".into(),
            stage: "test".into(),
            earlier_logs: vec![view::AttemptLog {
                attempt: 1,
                bytes: 7,
            }],
            priority: "next".into(),
        }
    }

    #[test]
    fn views_round_trip() {
        let b = view::Build {
            id: 2,
            project: "kha".into(),
            branch: "main".into(),
            commit: "abc".into(),
            message: "m".into(),
            state: BuildState::Failed,
            created_ms: 1,
            finished_ms: 2,
            jobs: vec![job()],
            warnings: vec!["w".into()],
            error: String::new(),
            pr_number: 4,
            event: "push".into(),
            fast_finish: true,
            author: "Ada".into(),
            tag: true,
            started_ms: 3,
            deliveries: vec![view::Delivery {
                id: 9,
                channel: "webhooks".into(),
                target: "https://hooks.example/ci".into(),
                event: "build_finished".into(),
                state: "retrying".into(),
                attempts: 2,
                answer: "HTTP 500".into(),
                created_ms: 1,
                updated_ms: 2,
                next_ms: 3,
            }],
            stages: vec!["lint".into(), "test".into()],
        };
        assert_eq!(view::Build::try_from(w::Build::from(b.clone())), Ok(b));
        for status in [
            BranchStatus::Built(BuildState::Passed),
            BranchStatus::Skipped,
            BranchStatus::Filtered,
            BranchStatus::Deleted,
            BranchStatus::None,
        ] {
            let br = view::Branch {
                name: "main".into(),
                head: "abc".into(),
                tag: false,
                last_build_id: 2,
                state: status,
                deleted: status == BranchStatus::Deleted,
                updated_ms: 9,
            };
            assert_eq!(view::Branch::try_from(w::Branch::from(br.clone())), Ok(br));
        }
        for k in EventKind::ALL {
            let mut e = Event::new(k);
            e.seq = 7;
            e.job_state = Some(JobState::Lost);
            assert_eq!(Event::try_from(w::Event::from(e.clone())), Ok(e));
        }
    }

    #[test]
    fn unspecified_states_are_errors() {
        let mut j = w::Job::from(job());
        j.state = 0;
        assert!(view::Job::try_from(j).is_err());
        assert!(BuildState::try_from(w::BuildState::Unspecified).is_err());
    }
}

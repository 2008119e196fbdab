//! Build stages at run time: which waiting jobs to queue, which to cancel,
//! and the build's state, from its jobs' states. A pure decision, made
//! again by every job transition (in the transaction that writes it), so
//! a stage's end and the next stage's start are one change.
//!
//! Travis's rules (travis-hub `model/stage.rb`, `model/build/matrix.rb`):
//! - Stages run one after the other in the expansion's order; the jobs of
//!   one stage run in parallel.
//! - A stage's state is worked out like a build's over its own jobs
//!   ([`BuildState::derive_with`]): jobs allowed to fail do not count
//!   unless canceled, a stage of only such jobs passes, and with
//!   `fast_finish` a stage is decided once its required jobs are (or one of
//!   them failed) while its allowed failures keep running.
//! - The next stage starts only when a stage is decided and passed.
//! - A stage decided as anything else cancels every pending job of the
//!   later stages, and the build takes that stage's state; the other jobs
//!   of the failing stage still complete.
//!
//! kha departs in one place: with `fast_finish`, Travis treats a stage
//! whose jobs are all allowed to fail as finished at once (it has no
//! required job to wait for); kha waits for them, as its build rule does
//! for a build of only allowed failures.

use crate::{BuildState, JobState};

/// One job as the stage decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageJob {
    /// Its stage's place in the build's stage order (0 first).
    pub stage: usize,
    pub state: JobState,
    pub allow_failure: bool,
}

/// What the jobs' states call for. Indices are into the slice given to
/// [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub build: BuildState,
    /// Waiting jobs whose stage is now the running one: queue them.
    pub queue: Vec<usize>,
    /// Pending jobs of stages after one that did not pass: cancel them.
    pub cancel: Vec<usize>,
    /// The stage the build is at: the one running (or just started), or
    /// the one that did not pass; `None` once every stage passed.
    pub stage: Option<usize>,
}

/// A job's place in the build's stage order: stage names compare
/// case-insensitively, as the expansion dedups them. A build without stages
/// (or a name not in the list, which the expansion never gives) is one
/// stage, after the named ones.
pub fn stage_index(stages: &[String], name: &str) -> usize {
    stages
        .iter()
        .position(|s| s.eq_ignore_ascii_case(name))
        .unwrap_or(stages.len())
}

/// Why a waiting job waits, for people: the stage before its own.
pub fn waiting_reason(stages: &[String], stage: usize) -> String {
    match stage.checked_sub(1).and_then(|i| stages.get(i)) {
        Some(prev) => format!("waiting for stage {prev}"),
        None => "waiting for an earlier stage".into(),
    }
}

/// One stage's state as people read it, from its jobs' `(state,
/// allow_failure)`: `waiting` while none of them may run yet, else the
/// build rule's word over them.
pub fn stage_state(jobs: &[(JobState, bool)], fast_finish: bool) -> &'static str {
    if !jobs.is_empty() && jobs.iter().all(|(s, _)| *s == JobState::Waiting) {
        return JobState::Waiting.as_str();
    }
    let as_queued: Vec<(JobState, bool)> = jobs
        .iter()
        .map(|&(s, a)| match s {
            JobState::Waiting => (JobState::Queued, a),
            s => (s, a),
        })
        .collect();
    BuildState::derive_with(&as_queued, fast_finish).as_str()
}

/// Decides a build's stages from its jobs (see the module's rules).
pub fn plan(jobs: &[StageJob], fast_finish: bool) -> Plan {
    let mut plan = Plan {
        build: BuildState::Errored,
        queue: Vec::new(),
        cancel: Vec::new(),
        stage: None,
    };
    if jobs.is_empty() {
        // It ran nothing: errored, as `BuildState::derive` says.
        return plan;
    }
    let started = jobs.iter().any(|j| !j.state.is_pending());
    let mut order: Vec<usize> = jobs.iter().map(|j| j.stage).collect();
    order.sort_unstable();
    order.dedup();
    for stage in order {
        // A waiting job counts as queued: not started.
        let members: Vec<(JobState, bool)> = jobs
            .iter()
            .filter(|j| j.stage == stage)
            .map(|j| match j.state {
                JobState::Waiting => (JobState::Queued, j.allow_failure),
                s => (s, j.allow_failure),
            })
            .collect();
        match BuildState::derive_with(&members, fast_finish) {
            BuildState::Passed => continue,
            s if s.is_final() => {
                plan.build = s;
                plan.stage = Some(stage);
                plan.cancel = indices(jobs, |j| j.stage > stage && j.state.is_pending());
                return plan;
            }
            _ => {
                plan.build = if started {
                    BuildState::Running
                } else {
                    BuildState::Queued
                };
                plan.queue = indices(jobs, |j| j.stage == stage && j.state == JobState::Waiting);
                plan.stage = Some(stage);
                return plan;
            }
        }
    }
    plan.build = BuildState::Passed;
    plan
}

fn indices(jobs: &[StageJob], f: impl Fn(&StageJob) -> bool) -> Vec<usize> {
    jobs.iter()
        .enumerate()
        .filter(|(_, j)| f(j))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildState as B;
    use JobState::*;

    /// `(stage, state, allow_failure)`.
    fn jobs(spec: &[(usize, JobState, bool)]) -> Vec<StageJob> {
        spec.iter()
            .map(|&(stage, state, allow_failure)| StageJob {
                stage,
                state,
                allow_failure,
            })
            .collect()
    }

    #[test]
    fn stage_decisions() {
        // (jobs, fast_finish, build, queue, cancel)
        type Row<'a> = (
            &'a [(usize, JobState, bool)],
            bool,
            BuildState,
            &'a [usize],
            &'a [usize],
        );
        let table: &[Row] = &[
            // A new build: only the first stage's jobs are queued.
            (
                &[
                    (0, Waiting, false),
                    (0, Waiting, false),
                    (1, Waiting, false),
                ],
                false,
                B::Queued,
                &[0, 1],
                &[],
            ),
            // The first stage runs: the second waits.
            (
                &[(0, Running, false), (0, Queued, false), (1, Waiting, false)],
                false,
                B::Running,
                &[],
                &[],
            ),
            // The first stage passed: the second is queued.
            (
                &[
                    (0, Passed, false),
                    (0, Passed, false),
                    (1, Waiting, false),
                    (2, Waiting, false),
                ],
                false,
                B::Running,
                &[2],
                &[],
            ),
            // A job failed but its stage still runs: nothing canceled yet.
            (
                &[(0, Failed, false), (0, Running, false), (1, Waiting, false)],
                false,
                B::Running,
                &[],
                &[],
            ),
            // The stage failed: every later pending job is canceled, the
            // build fails with the stage's state.
            (
                &[
                    (0, Passed, false),
                    (1, Failed, false),
                    (1, Passed, false),
                    (2, Waiting, false),
                    (3, Waiting, true),
                ],
                false,
                B::Failed,
                &[],
                &[3, 4],
            ),
            // Errored beats failed within the failing stage; later stages'
            // state does not matter.
            (
                &[(0, Failed, false), (0, Errored, false), (1, Waiting, false)],
                false,
                B::Errored,
                &[],
                &[2],
            ),
            // A timed-out or lost job errors its stage.
            (
                &[(0, TimedOut, false), (1, Waiting, false)],
                false,
                B::Errored,
                &[],
                &[1],
            ),
            // A canceled stage cancels the rest: canceled.
            (
                &[
                    (0, Canceled, false),
                    (0, Passed, false),
                    (1, Waiting, false),
                ],
                false,
                B::Canceled,
                &[],
                &[2],
            ),
            // An allowed failure does not fail its stage.
            (
                &[(0, Passed, false), (0, Failed, true), (1, Waiting, false)],
                false,
                B::Running,
                &[2],
                &[],
            ),
            // A stage of only allowed failures passes.
            (
                &[(0, Failed, true), (0, Errored, true), (1, Waiting, false)],
                false,
                B::Running,
                &[2],
                &[],
            ),
            // …but a canceled allowed failure cancels (as the build rule).
            (
                &[(0, Canceled, true), (0, Passed, false), (1, Waiting, false)],
                false,
                B::Canceled,
                &[],
                &[2],
            ),
            // Without fast_finish the stage waits for its allowed failures.
            (
                &[(0, Passed, false), (0, Running, true), (1, Waiting, false)],
                false,
                B::Running,
                &[],
                &[],
            ),
            // With fast_finish it does not: the next stage starts.
            (
                &[(0, Passed, false), (0, Running, true), (1, Waiting, false)],
                true,
                B::Running,
                &[2],
                &[],
            ),
            // With fast_finish a required failure decides the stage at once,
            // though another required job still runs.
            (
                &[(0, Failed, false), (0, Running, false), (1, Waiting, false)],
                true,
                B::Failed,
                &[],
                &[2],
            ),
            // Every stage passed, the last with an allowed failure still
            // running: fast_finish decides the build.
            (
                &[(0, Passed, false), (1, Passed, false), (1, Running, true)],
                true,
                B::Passed,
                &[],
                &[],
            ),
            (
                &[(0, Passed, false), (1, Passed, false), (1, Running, true)],
                false,
                B::Running,
                &[],
                &[],
            ),
            // Queued jobs of a later stage (restarted by hand) are canceled
            // too; running ones are left to finish.
            (
                &[(0, Failed, false), (1, Queued, false), (1, Running, false)],
                false,
                B::Failed,
                &[],
                &[1],
            ),
            // No stages: one stage, the plain build rule.
            (
                &[(0, Passed, false), (0, Failed, false)],
                false,
                B::Failed,
                &[],
                &[],
            ),
            (
                &[(0, Passed, false), (0, Passed, false)],
                false,
                B::Passed,
                &[],
                &[],
            ),
            (&[(0, Queued, false)], false, B::Queued, &[], &[]),
            // Stage numbers with gaps (a stage dropped): order is what counts.
            (
                &[(2, Passed, false), (5, Waiting, false)],
                false,
                B::Running,
                &[1],
                &[],
            ),
            // Nothing to run.
            (&[], false, B::Errored, &[], &[]),
        ];
        for (spec, ff, build, queue, cancel) in table {
            let p = plan(&jobs(spec), *ff);
            assert_eq!(
                (p.build, p.queue.as_slice(), p.cancel.as_slice()),
                (*build, *queue, *cancel),
                "{spec:?} fast_finish={ff}"
            );
        }
    }

    #[test]
    fn plain_builds_decide_as_before() {
        // One stage gives exactly the build rule, for every mix of states.
        let states = [
            Waiting, Queued, Running, Passed, Failed, Errored, Canceled, TimedOut, Lost,
        ];
        for a in states {
            for b in states {
                for af in [false, true] {
                    for ff in [false, true] {
                        let js = jobs(&[(0, a, false), (0, b, af)]);
                        let as_queued = |s| if s == Waiting { Queued } else { s };
                        let want = BuildState::derive_with(
                            &[(as_queued(a), false), (as_queued(b), af)],
                            ff,
                        );
                        assert_eq!(plan(&js, ff).build, want, "{a} {b} af={af} ff={ff}");
                    }
                }
            }
        }
    }

    #[test]
    fn stage_names() {
        let stages = vec!["lint".to_string(), "Test".to_string(), "deploy".to_string()];
        assert_eq!(stage_index(&stages, "lint"), 0);
        assert_eq!(stage_index(&stages, "test"), 1);
        assert_eq!(stage_index(&stages, "DEPLOY"), 2);
        assert_eq!(stage_index(&stages, "other"), 3);
        assert_eq!(stage_index(&[], ""), 0);
        assert_eq!(waiting_reason(&stages, 1), "waiting for stage lint");
        assert_eq!(waiting_reason(&stages, 2), "waiting for stage Test");
        assert_eq!(waiting_reason(&stages, 0), "waiting for an earlier stage");
    }

    #[test]
    fn stage_states_for_people() {
        type Row<'a> = (&'a [(JobState, bool)], bool, &'a str);
        let table: &[Row] = &[
            (&[(Waiting, false), (Waiting, true)], false, "waiting"),
            (&[(Queued, false), (Waiting, false)], false, "queued"),
            (&[(Running, false), (Queued, false)], false, "running"),
            (&[(Passed, false), (Failed, true)], false, "passed"),
            (&[(Failed, false), (Running, false)], true, "failed"),
            (&[(Canceled, false), (Canceled, false)], false, "canceled"),
        ];
        for (jobs, ff, want) in table {
            assert_eq!(stage_state(jobs, *ff), *want, "{jobs:?}");
        }
    }
}

//! Build stages in sled: [`kha_core::stages::plan`] applied to a build's
//! job records. A new build holds its later stages' jobs back as
//! `waiting`; every job transition then decides the build again **in its
//! own transaction**, queueing the next stage's jobs or canceling the later
//! stages' ones with the change that ended a stage. So there is no moment,
//! and no restart of the control node, at which a stage has ended but the
//! next one was not started: both are one write, and the queue tree the
//! scheduler reloads at start already holds the new stage's jobs.

use super::marks::{self, Mark};
use super::records::{encode, Build, Job};
use super::{abort, tx_get, Store, StoreError, QUEUE_NORMAL_BASE};
use kha_core::event::{Event, EventKind};
use kha_core::stages;
use kha_core::{BuildState, JobState, Millis};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

/// A new build's jobs before they are written: with stages, those of every
/// stage after the first wait. Sets the build's first state.
pub(super) fn hold_later_stages(build: &mut Build, jobs: &mut [Job]) {
    if build.stages.len() < 2 || build.state.is_final() {
        return;
    }
    for j in jobs.iter_mut().filter(|j| j.state == JobState::Queued) {
        j.state = JobState::Waiting;
    }
    let plan = stages::plan(
        &jobs
            .iter()
            .map(|j| Mark::of(build, j).stage_job())
            .collect::<Vec<_>>(),
        build.fast_finish,
    );
    for (i, j) in jobs.iter_mut().enumerate() {
        if j.state != JobState::Waiting {
            continue;
        }
        if plan.queue.contains(&i) {
            j.state = JobState::Queued;
        } else {
            // It keeps its queue key, unused until its stage starts.
            j.detail = stages::waiting_reason(&build.stages, stage_of(build, &j.stage));
        }
    }
    build.state = plan.build;
}

/// In a transaction that has just written `changed`, a job of `build`
/// (None: several of its jobs, or none): decides the build's stages again
/// from its marks (`marks`) and writes what follows (jobs queued, jobs
/// canceled, the marks). Returns the build's state and the events of the
/// jobs it changed (not of the build: the caller compares states for
/// those).
pub(super) fn follow(
    t: &Trees<'_>,
    build: &Build,
    changed: Option<&Job>,
    now: Millis,
) -> TxResult<(BuildState, Vec<Event>)> {
    let (tj, tq) = (t.jobs, t.queue);
    let (mut marks, stored) = marks::load(t.marks, tj, build)?;
    if let Some(job) = changed {
        if let Some(i) = build.jobs.iter().position(|&id| id == job.id) {
            marks[i] = Mark::of(build, job);
        }
    }
    let plan = stages::plan(
        &marks.iter().map(|m| m.stage_job()).collect::<Vec<_>>(),
        build.fast_finish,
    );
    let mut events = Vec::new();
    for &i in &plan.queue {
        let key = build.jobs[i].to_be_bytes();
        let Some(mut job) = tx_get::<Job>(tj, "jobs", &key)? else {
            continue;
        };
        // The key it got with its build; sled's id generator cannot be
        // called inside a transaction.
        let q = match job.queue_key {
            0 => spare_key(job.id),
            k => k,
        };
        job.state = JobState::Queued;
        job.detail.clear();
        job.queue_key = q;
        tq.insert(&q.to_be_bytes(), &key)?;
        tj.insert(&key, encode(&job))?;
        marks[i].state = job.state;
        events.push(super::jobs::job_event(EventKind::JobQueued, &job));
    }
    // The stage that did not pass, as people read it.
    let failed = plan
        .stage
        .and_then(|i| build.stages.get(i))
        .map_or_else(|| "an earlier stage".to_string(), |s| format!("stage {s}"));
    for &i in &plan.cancel {
        let key = build.jobs[i].to_be_bytes();
        let Some(mut job) = tx_get::<Job>(tj, "jobs", &key)? else {
            continue;
        };
        if job.queue_key != 0 {
            tq.remove(&job.queue_key.to_be_bytes())?;
            job.queue_key = 0;
        }
        job.state = JobState::Canceled;
        job.finished_ms = now;
        job.detail = format!("canceled: {failed} {}", plan.build);
        tj.insert(&key, encode(&job))?;
        marks[i].state = job.state;
        events.push(super::jobs::job_event(EventKind::JobFinished, &job));
    }
    let new = marks::encode(&marks);
    if stored.as_deref() != Some(new.as_slice()) {
        t.marks.insert(&build.id.to_be_bytes(), new)?;
    }
    Ok((plan.build, events))
}

/// The trees [`follow`] reads and writes, in a transaction.
pub(super) struct Trees<'a> {
    pub jobs: &'a TransactionalTree,
    pub queue: &'a TransactionalTree,
    pub marks: &'a TransactionalTree,
}

impl Store {
    /// Runs every finished job of a finished build again, in one
    /// transaction: with stages, from the first stage on (the others wait
    /// again). Jobs still running (allowed failures of a fast-finished
    /// build) are left to finish. Returns the build and its jobs as written.
    pub fn restart_build(&self, build_id: u64, now: Millis) -> super::Result<(Build, Vec<Job>)> {
        let _gate = self.gate.enter();
        // Fresh queue keys (behind every job queued so far), drawn before
        // the transaction, which cannot draw them.
        let count = self.get_build(build_id)?.map_or(0, |b| b.jobs.len());
        let keys = (0..count)
            .map(|_| self.next_id().map(|n| QUEUE_NORMAL_BASE + n))
            .collect::<super::Result<Vec<u64>>>()?;
        let writer = self.events.writer();
        let (build, jobs, written) = (
            &self.jobs,
            &self.builds,
            &self.queue,
            &self.build_marks,
            self.events.tree(),
        )
            .transaction(|(tj, tb, tq, tm, tev)| {
                let bkey = build_id.to_be_bytes();
                let Some(mut build) = tx_get::<Build>(tb, "builds", &bkey)? else {
                    return abort(StoreError::Rejected(format!(
                        "build {build_id} does not exist"
                    )));
                };
                if !build.state.is_final() {
                    return abort(StoreError::Rejected(format!(
                        "build {build_id} is {}: cancel it or wait for it before restarting",
                        build.state
                    )));
                }
                for (i, &jid) in build.jobs.iter().enumerate() {
                    let key = jid.to_be_bytes();
                    let Some(mut j) = tx_get::<Job>(tj, "jobs", &key)? else {
                        continue;
                    };
                    if !j.state.is_final() {
                        continue;
                    }
                    j.state = JobState::Waiting;
                    j.attempts = 0;
                    j.builder.clear();
                    j.started_ms = 0;
                    j.finished_ms = 0;
                    j.cancel_requested = false;
                    j.log_len = 0;
                    j.log_sha256.clear();
                    j.detail = stages::waiting_reason(&build.stages, stage_of(&build, &j.stage));
                    if j.queue_key != 0 {
                        tq.remove(&j.queue_key.to_be_bytes())?;
                    }
                    j.queue_key = keys.get(i).copied().unwrap_or_else(|| spare_key(jid));
                    tj.insert(&key, encode(&j))?;
                }
                // Marks again from the jobs as just written.
                tm.remove(&bkey)?;
                let trees = Trees {
                    jobs: tj,
                    queue: tq,
                    marks: tm,
                };
                let (state, mut job_events) = follow(&trees, &build, None, now)?;
                build.state = state;
                build.finished_ms = if state.is_final() { now } else { 0 };
                tb.insert(&bkey, encode(&build))?;
                let mut evs = vec![super::jobs::build_event(EventKind::BuildRestarted, &build)];
                evs.append(&mut job_events);
                let mut jobs = Vec::with_capacity(build.jobs.len());
                for &jid in &build.jobs {
                    if let Some(j) = tx_get::<Job>(tj, "jobs", &jid.to_be_bytes())? {
                        jobs.push(j);
                    }
                }
                let written = writer.stage(tev, &evs, now)?;
                Ok((build, jobs, written))
            })?;
        writer.committed(written);
        Ok((build, jobs))
    }
}

/// A queue key for a waiting job that has none (a record from before
/// stages kept them): unique by its id, behind every key the id generator
/// gives (those stay far below 2^62).
fn spare_key(job: u64) -> u64 {
    QUEUE_NORMAL_BASE + (1 << 62) + job
}

/// A job's stage's place in its build's stage order (0 without stages).
pub(super) fn stage_of(build: &Build, stage: &str) -> usize {
    if build.stages.is_empty() {
        0
    } else {
        stages::stage_index(&build.stages, stage)
    }
}

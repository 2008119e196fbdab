//! Build stages in the store: what a new build holds back, what each job
//! transition queues or cancels in its own transaction, restarts, and a
//! reopened database.

use super::records::{Build, Job};
use super::*;
use kha_core::event::EventKind;
use kha_core::{BuildState, JobState};

/// A build of jobs `(stage, allow_failure)` in stages `stages`.
fn staged(store: &Store, stages: &[&str], jobs: &[(&str, bool)]) -> (Build, Vec<Job>) {
    let id = store.next_build_id().unwrap();
    let jobs: Vec<Job> = jobs
        .iter()
        .enumerate()
        .map(|(i, &(stage, allow_failure))| Job {
            allow_failure,
            stage: stage.into(),
            queue_key: QUEUE_NORMAL_BASE + store.next_id().unwrap(),
            ..Job::for_test(store.next_job_id().unwrap(), id, i as u32 + 1, "p")
        })
        .collect();
    let b = Build {
        stages: stages.iter().map(|s| s.to_string()).collect(),
        ..Build::for_test(id, "p", "main", jobs.iter().map(|j| j.id).collect())
    };
    (b, jobs)
}

fn create(store: &Store, stages: &[&str], jobs: &[(&str, bool)]) -> (Build, Vec<Job>) {
    let (mut b, mut jobs) = staged(store, stages, jobs);
    store.create_build(&mut b, &mut jobs, 1).unwrap();
    (b, jobs)
}

/// Runs a job to `end` as a builder would: started, then finished.
fn run(store: &Store, job: JobId, end: JobState) -> Build {
    store
        .transition(job, 2, |j| {
            j.state = JobState::Running;
            Ok((LeaseEffect::Set, QueueEffect::Remove))
        })
        .unwrap();
    let (_, b) = store
        .transition(job, 3, |j| {
            j.state = end;
            j.finished_ms = 3;
            Ok((LeaseEffect::Remove, QueueEffect::Keep))
        })
        .unwrap();
    b
}

fn states(store: &Store, b: &Build) -> Vec<JobState> {
    b.jobs
        .iter()
        .map(|&id| store.get_job(id).unwrap().unwrap().state)
        .collect()
}

fn queued(store: &Store) -> Vec<JobId> {
    store
        .queued_jobs()
        .unwrap()
        .into_iter()
        .map(|(_, j)| j)
        .collect()
}

/// Opens the database in `dir` again once the handle dropped before has
/// closed (sled allows one open handle per path).
async fn reopen(dir: &std::path::Path) -> Store {
    loop {
        match std::panic::catch_unwind(|| Store::open(dir).unwrap()) {
            Ok(s) => return s,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

use JobState::{Canceled, Failed, Passed, Queued, Running, Waiting};

#[tokio::test]
async fn a_new_build_queues_only_its_first_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (b, jobs) = create(
        &store,
        &["lint", "test", "deploy"],
        &[
            ("lint", false),
            ("lint", false),
            ("test", false),
            ("deploy", false),
        ],
    );
    assert_eq!(b.state, BuildState::Queued);
    assert_eq!(states(&store, &b), [Queued, Queued, Waiting, Waiting]);
    // The slice given is what was written.
    assert_eq!(
        jobs.iter().map(|j| j.state).collect::<Vec<_>>(),
        [Queued, Queued, Waiting, Waiting]
    );
    assert_eq!(queued(&store), [jobs[0].id, jobs[1].id]);
    let j3 = store.get_job(jobs[2].id).unwrap().unwrap();
    assert_eq!(j3.detail, "waiting for stage lint");
    assert_eq!(
        j3.queue_key, jobs[2].queue_key,
        "kept for when its stage starts"
    );
    let j4 = store.get_job(jobs[3].id).unwrap().unwrap();
    assert_eq!(j4.detail, "waiting for stage test");
}

#[tokio::test]
async fn a_build_without_stages_queues_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (b, _) = create(&store, &[], &[("", false), ("", false)]);
    assert_eq!(states(&store, &b), [Queued, Queued]);
    // A single named stage is no different.
    let (b, _) = create(&store, &["test"], &[("test", false), ("test", false)]);
    assert_eq!(states(&store, &b), [Queued, Queued]);
}

#[tokio::test]
async fn the_next_stage_is_queued_by_the_change_that_passed_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (b, jobs) = create(
        &store,
        &["lint", "test"],
        &[("lint", false), ("lint", false), ("test", false)],
    );
    let after = run(&store, jobs[0].id, Passed);
    assert_eq!(after.state, BuildState::Running);
    assert_eq!(
        states(&store, &b),
        [Passed, Queued, Waiting],
        "one lint job still to run"
    );
    let seq = store.events.written();
    let after = run(&store, jobs[1].id, Passed);
    assert_eq!(after.state, BuildState::Running);
    assert_eq!(states(&store, &b), [Passed, Passed, Queued]);
    assert_eq!(queued(&store), [jobs[2].id]);
    let j3 = store.get_job(jobs[2].id).unwrap().unwrap();
    assert_eq!(j3.detail, "", "no longer waiting");
    // Its event was written with the finishing job's.
    let evs = store
        .events
        .read(seq + 1, store.events.written(), 100)
        .unwrap();
    let kinds: Vec<(EventKind, JobId)> = evs.iter().map(|e| (e.kind, e.job_id)).collect();
    assert!(
        kinds.contains(&(EventKind::JobFinished, jobs[1].id)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(EventKind::JobQueued, jobs[2].id)),
        "{kinds:?}"
    );
    let done = run(&store, jobs[2].id, Passed);
    assert_eq!(done.state, BuildState::Passed);
}

#[tokio::test]
async fn a_failed_stage_cancels_the_later_stages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (b, jobs) = create(
        &store,
        &["test", "deploy", "notify"],
        &[
            ("test", false),
            ("test", false),
            ("deploy", false),
            ("notify", false),
        ],
    );
    let after = run(&store, jobs[0].id, Failed);
    // The other job of the failing stage still runs.
    assert_eq!(after.state, BuildState::Running);
    assert_eq!(states(&store, &b), [Failed, Queued, Waiting, Waiting]);
    let after = run(&store, jobs[1].id, Passed);
    assert_eq!(after.state, BuildState::Failed);
    assert!(after.finished_ms > 0);
    assert_eq!(states(&store, &b), [Failed, Passed, Canceled, Canceled]);
    let j3 = store.get_job(jobs[2].id).unwrap().unwrap();
    assert_eq!(j3.detail, "canceled: stage test failed");
    assert!(queued(&store).is_empty());
}

#[tokio::test]
async fn an_allowed_failure_does_not_stop_the_next_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (b, jobs) = create(
        &store,
        &["test", "deploy"],
        &[("test", false), ("test", true), ("deploy", false)],
    );
    run(&store, jobs[0].id, Passed);
    let after = run(&store, jobs[1].id, Failed);
    assert_eq!(after.state, BuildState::Running);
    assert_eq!(states(&store, &b), [Passed, Failed, Queued]);
    assert_eq!(run(&store, jobs[2].id, Passed).state, BuildState::Passed);
}

#[tokio::test]
async fn fast_finish_starts_the_next_stage_before_allowed_failures_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (mut b, mut jobs) = staged(
        &store,
        &["test", "deploy"],
        &[("test", false), ("test", true), ("deploy", false)],
    );
    b.fast_finish = true;
    store.create_build(&mut b, &mut jobs, 1).unwrap();
    store
        .transition(jobs[1].id, 2, |j| {
            j.state = Running;
            Ok((LeaseEffect::Set, QueueEffect::Remove))
        })
        .unwrap();
    run(&store, jobs[0].id, Passed);
    assert_eq!(states(&store, &b), [Passed, Running, Queued]);
}

#[tokio::test]
async fn canceling_a_waiting_build_cancels_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (b, jobs) = create(&store, &["a", "b"], &[("a", false), ("b", false)]);
    let (_, after) = store
        .transition(jobs[0].id, 2, |j| {
            j.state = Canceled;
            Ok((LeaseEffect::Keep, QueueEffect::Remove))
        })
        .unwrap();
    assert_eq!(after.state, BuildState::Canceled);
    assert_eq!(states(&store, &b), [Canceled, Canceled]);
    assert_eq!(
        store.get_job(jobs[1].id).unwrap().unwrap().detail,
        "canceled: stage a canceled"
    );
}

#[tokio::test]
async fn a_restart_starts_again_from_the_first_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (b, jobs) = create(
        &store,
        &["a", "b", "c"],
        &[("a", false), ("b", false), ("c", false)],
    );
    run(&store, jobs[0].id, Passed);
    let failed = run(&store, jobs[1].id, Failed);
    assert_eq!(failed.state, BuildState::Failed);
    assert_eq!(states(&store, &b), [Passed, Failed, Canceled]);
    let seq = store.events.written();
    let (restarted, written) = store.restart_build(b.id, 10).unwrap();
    assert_eq!(
        (restarted.state, restarted.finished_ms),
        (BuildState::Queued, 0)
    );
    assert_eq!(states(&store, &b), [Queued, Waiting, Waiting]);
    assert_eq!(
        written.iter().map(|j| j.state).collect::<Vec<_>>(),
        [Queued, Waiting, Waiting]
    );
    assert_eq!(queued(&store), [jobs[0].id]);
    let evs = store
        .events
        .read(seq + 1, store.events.written(), 100)
        .unwrap();
    assert_eq!(evs[0].kind, EventKind::BuildRestarted);
    // A build still running cannot be restarted.
    assert!(store.restart_build(b.id, 11).is_err());
}

#[tokio::test]
async fn a_reopened_database_has_the_next_stage_queued() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = {
        let store = Store::open(dir.path()).unwrap();
        let (_, jobs) = create(&store, &["a", "b"], &[("a", false), ("b", false)]);
        run(&store, jobs[0].id, Passed);
        store.db.flush().unwrap();
        jobs
    };
    let store = reopen(dir.path()).await;
    assert_eq!(queued(&store), [jobs[1].id]);
    assert_eq!(store.get_job(jobs[1].id).unwrap().unwrap().state, Queued);
}

#[tokio::test]
async fn builds_written_before_job_marks_existed_go_on_from_their_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (staged_jobs, plain) = {
        let store = Store::open(dir.path()).unwrap();
        let (_, staged_jobs) = create(
            &store,
            &["a", "b"],
            &[("a", false), ("a", true), ("b", false)],
        );
        run(&store, staged_jobs[0].id, Passed);
        let (plain, _) = create(&store, &[], &[("", false), ("", false)]);
        run(&store, plain.jobs[0], Passed);
        // A data dir of an older kha-control: no marks at all.
        store.build_marks.clear().unwrap();
        store.db.flush().unwrap();
        (staged_jobs, plain)
    };
    let store = reopen(dir.path()).await;
    // The allowed failure ends stage a: b is queued as it would have been.
    let b = run(&store, staged_jobs[1].id, Failed);
    assert_eq!(b.state, BuildState::Running);
    assert_eq!(states(&store, &b), [Passed, Failed, Queued]);
    assert_eq!(
        run(&store, staged_jobs[2].id, Passed).state,
        BuildState::Passed
    );
    // Without stages: the job passed before the upgrade still counts.
    assert_eq!(run(&store, plain.jobs[1], Failed).state, BuildState::Failed);
    assert_eq!(store.build_marks.len(), 2, "marks written as builds move");
}

//! The index following a build's stages: the next stage's job is offered
//! once the first stage's job finished; a failed stage's later jobs are
//! never offered.

use super::*;

/// Creates a build in stages `a`, `b` with one job each; returns the jobs
/// as written (a's queued, b's waiting).
fn staged(f: &Fixture) -> Vec<Job> {
    let s = &f.sched;
    let id = s.store.next_build_id().unwrap();
    let mut jobs: Vec<Job> = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, stage)| Job {
            requires: Labels::parse(["os=linux"]).unwrap(),
            stage: stage.to_string(),
            queue_key: s.normal_key().unwrap(),
            spec: JobSpec {
                timeout_secs: 60,
                ..Default::default()
            },
            ..Job::for_test(s.store.next_job_id().unwrap(), id, i as u32 + 1, "p")
        })
        .collect();
    let mut b = Build {
        stages: vec!["a".into(), "b".into()],
        ..Build::for_test(id, "p", "master", jobs.iter().map(|j| j.id).collect())
    };
    s.store.create_build(&mut b, &mut jobs, 0).unwrap();
    s.enqueue(&jobs);
    jobs
}

/// Finishes a job (with an empty log) as its builder would.
pub(super) async fn finish(f: &Fixture, builder: &str, job: JobId, epoch: u64, outcome: i32) {
    finish_on(&f.sched, builder, job, epoch, outcome).await
}

/// [`finish`] on a scheduler of the test's own (one opened again).
pub(super) async fn finish_on(
    sched: &Scheduler,
    builder: &str,
    job: JobId,
    epoch: u64,
    outcome: i32,
) {
    let req = kha_proto::agent::FinishJobRequest {
        job_id: job,
        epoch,
        outcome,
        total_len: 0,
        sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        ..Default::default()
    };
    sched.finish(builder, &req).await.unwrap();
}

#[tokio::test]
async fn the_next_stage_is_offered_when_the_stage_passed() {
    let f = fixture();
    let jobs = staged(&f);
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 2);
    // Two free slots, but only stage a's job is offered.
    assert_eq!(offers(&mut rx), vec![(jobs[0].id, 1)]);
    f.sched.accept("b1", jobs[0].id, 1).await;
    finish(
        &f,
        "b1",
        jobs[0].id,
        1,
        kha_proto::agent::Outcome::Passed as i32,
    )
    .await;
    f.sched.set_credit("b1", 2);
    assert_eq!(offers(&mut rx), vec![(jobs[1].id, 1)]);
}

#[tokio::test]
async fn a_failed_stage_offers_nothing_more() {
    let f = fixture();
    let jobs = staged(&f);
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 2);
    assert_eq!(offers(&mut rx), vec![(jobs[0].id, 1)]);
    f.sched.accept("b1", jobs[0].id, 1).await;
    finish(
        &f,
        "b1",
        jobs[0].id,
        1,
        kha_proto::agent::Outcome::Failed as i32,
    )
    .await;
    f.sched.set_credit("b1", 2);
    assert!(offers(&mut rx).is_empty());
    let b = f.sched.store.get_job(jobs[1].id).unwrap().unwrap();
    assert_eq!(b.state, JobState::Canceled);
    assert!(f.sched.why_waiting(jobs[1].id).is_none());
}

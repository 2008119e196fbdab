//! The projects' rules and the builds' priorities: a project at its limit
//! of running jobs waits while the others use the free slots, a branch's
//! later build waits for its earlier one, and the queue goes by priority.

use super::stages::{finish, finish_on};
use super::*;
use kha_core::priority;

/// Creates a build of `n` queued jobs of `project` on `branch` at
/// `priority`; returns the jobs.
fn queue(f: &Fixture, project: &str, branch: &str, n: u32, priority: u8) -> Vec<Job> {
    let s = &f.sched;
    let id = s.store.next_build_id().unwrap();
    let mut jobs: Vec<Job> = (1..=n)
        .map(|number| Job {
            requires: Labels::parse(["os=linux"]).unwrap(),
            queue_key: s.normal_key().unwrap(),
            priority,
            spec: JobSpec {
                timeout_secs: 60,
                branch: branch.into(),
                ..Default::default()
            },
            ..Job::for_test(s.store.next_job_id().unwrap(), id, number, project)
        })
        .collect();
    let mut b = Build::for_test(id, project, branch, jobs.iter().map(|j| j.id).collect());
    s.store.create_build(&mut b, &mut jobs, 0).unwrap();
    s.enqueue(&jobs);
    jobs
}

fn ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

/// Accepts every offer waiting on a builder's session; returns the jobs.
async fn take(
    f: &Fixture,
    builder: &str,
    rx: &mut mpsc::Receiver<Box<ControlMessage>>,
) -> Vec<JobId> {
    let mut got = vec![];
    for (job, epoch) in offers(rx) {
        f.sched.accept(builder, job, epoch).await;
        got.push(job);
    }
    got
}

const PASSED: i32 = kha_proto::agent::Outcome::Passed as i32;

#[tokio::test]
async fn a_project_limited_to_one_job_runs_them_one_at_a_time_while_another_uses_the_slots() {
    let f = fixture();
    f.sched.set_rules(
        "busy",
        ProjectRules {
            max_running: 1,
            one_build_per_branch: false,
        },
    );
    let busy = ids(&queue(&f, "busy", "master", 4, priority::NORMAL));
    let other = ids(&queue(&f, "other", "master", 3, priority::NORMAL));
    let mut rx: Vec<_> = ["b1", "b2", "b3"]
        .iter()
        .map(|b| connect(&f, b, &["os=linux"]))
        .collect();
    for b in ["b1", "b2", "b3"] {
        f.sched.set_credit(b, 1);
    }
    // One of busy's jobs and two of other's take the three slots.
    let mut running: Vec<(String, JobId)> = vec![];
    for (i, b) in ["b1", "b2", "b3"].iter().enumerate() {
        for j in take(&f, b, &mut rx[i]).await {
            running.push((b.to_string(), j));
        }
    }
    let of = |running: &[(String, JobId)], jobs: &[JobId]| {
        running.iter().filter(|(_, j)| jobs.contains(j)).count()
    };
    assert_eq!(of(&running, &busy), 1, "{running:?}");
    assert_eq!(of(&running, &other), 2, "{running:?}");
    assert_eq!(
        f.sched.why_waiting(busy[1]).unwrap(),
        "busy runs at most 1 job at a time and 1 is running"
    );
    // As each job ends, the freed slot goes to what may run: busy's jobs
    // in order, one at a time, and other's last job.
    let mut busy_order = vec![];
    while let Some((b, j)) = running.pop() {
        if busy.contains(&j) {
            busy_order.push(j);
        }
        finish(&f, &b, j, 1, PASSED).await;
        f.sched.set_credit(&b, 1);
        // The job may go to any builder with a free slot.
        for (i, b) in ["b1", "b2", "b3"].iter().enumerate() {
            for j in take(&f, b, &mut rx[i]).await {
                running.push((b.to_string(), j));
            }
        }
        assert!(of(&running, &busy) <= 1, "{running:?}");
    }
    assert_eq!(busy_order, busy, "busy's jobs ran one at a time, in order");
    for j in busy.iter().chain(&other) {
        let job = f.sched.store.get_job(*j).unwrap().unwrap();
        assert_eq!(job.state, JobState::Passed, "job {j}");
    }
}

#[tokio::test]
async fn a_branchs_later_build_waits_for_its_earlier_one() {
    let f = fixture();
    f.sched.set_rules(
        "p",
        ProjectRules {
            max_running: 0,
            one_build_per_branch: true,
        },
    );
    let first = queue(&f, "p", "master", 2, priority::NORMAL);
    let second = queue(&f, "p", "master", 2, priority::NORMAL);
    let elsewhere = queue(&f, "p", "topic", 1, priority::NORMAL);
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 8);
    let got = take(&f, "b1", &mut rx).await;
    assert_eq!(got, vec![first[0].id, first[1].id, elsewhere[0].id]);
    assert_eq!(
        f.sched.why_waiting(second[0].id).unwrap(),
        format!(
            "build {} of branch master runs first (p runs one build of a branch at a time)",
            first[0].build
        )
    );
    finish(&f, "b1", first[0].id, 1, PASSED).await;
    f.sched.set_credit("b1", 8);
    assert!(
        take(&f, "b1", &mut rx).await.is_empty(),
        "first is not over"
    );
    finish(&f, "b1", first[1].id, 1, PASSED).await;
    f.sched.set_credit("b1", 8);
    assert_eq!(take(&f, "b1", &mut rx).await, ids(&second));
}

#[tokio::test]
async fn the_queue_goes_by_priority_and_run_next_goes_before_the_other_projects() {
    let f = fixture();
    let pr = queue(&f, "p", "feature", 1, priority::LOW);
    let topic = queue(&f, "p", "topic", 1, priority::NORMAL);
    let main = queue(&f, "p", "master", 1, priority::DEFAULT_BRANCH);
    let a = queue(&f, "a", "master", 2, priority::NORMAL);
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 1);
    // Projects take turns ("a" first); within "p", by priority.
    assert_eq!(take(&f, "b1", &mut rx).await, vec![a[0].id]);
    f.sched.set_credit("b1", 1);
    assert_eq!(take(&f, "b1", &mut rx).await, vec![main[0].id]);
    // The pull request is asked to run next: before "a"'s turn and
    // "p"'s other job.
    f.sched
        .store
        .transition(pr[0].id, 0, |j| {
            j.priority = priority::NEXT;
            Ok((
                crate::store::LeaseEffect::Keep,
                crate::store::QueueEffect::Keep,
            ))
        })
        .unwrap();
    f.sched.reprioritize(&[pr[0].id], priority::NEXT);
    f.sched.set_credit("b1", 1);
    assert_eq!(take(&f, "b1", &mut rx).await, vec![pr[0].id]);
    f.sched.set_credit("b1", 2);
    assert_eq!(take(&f, "b1", &mut rx).await, vec![a[1].id, topic[0].id]);
}

#[tokio::test]
async fn rules_and_priorities_hold_after_a_restart() {
    let f = fixture();
    let p = crate::store::records::Project {
        max_running_jobs: 1,
        ..crate::store::records::Project::for_test("busy")
    };
    f.sched.store.put_project(&p).unwrap();
    let low = queue(&f, "busy", "feature", 1, priority::LOW);
    let high = queue(&f, "busy", "master", 2, priority::DEFAULT_BRANCH);
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 1);
    assert_eq!(take(&f, "b1", &mut rx).await, vec![high[0].id]);
    // The control node restarts: the index is rebuilt from sled.
    let sched = Scheduler::new(
        f.sched.store.clone(),
        f.sched.logs.clone(),
        Arc::new(f.clock.clone()),
        f.sched.cfg.clone(),
    )
    .unwrap();
    let (s, mut rx) = session("b1", &["os=linux"], 8);
    sched.session_opened("b1", s, &[(high[0].id, 1)]);
    sched.set_credit("b1", 4);
    assert!(offers(&mut rx).is_empty(), "busy is at its limit");
    assert_eq!(
        sched.why_waiting(high[1].id).unwrap(),
        "busy runs at most 1 job at a time and 1 is running"
    );
    // The job that ends frees the project's turn: the default branch's
    // second job goes before the pull request's.
    finish_on(&sched, "b1", high[0].id, 1, PASSED).await;
    sched.set_credit("b1", 4);
    assert_eq!(offers(&mut rx), vec![(high[1].id, 1)]);
    assert!(sched
        .why_waiting(low[0].id)
        .unwrap()
        .starts_with("busy runs at most 1 job"));
}

#[tokio::test]
async fn a_job_being_accepted_counts_against_its_projects_limit() {
    let f = fixture();
    f.sched.set_rules(
        "busy",
        ProjectRules {
            max_running: 1,
            one_build_per_branch: false,
        },
    );
    let jobs = ids(&queue(&f, "busy", "master", 2, priority::NORMAL));
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 1);
    assert_eq!(offers(&mut rx), vec![(jobs[0], 1)]);
    // The accept stops where it waits for its lease to be stored: out of
    // the offers, not yet leased. A credit arriving then offers nothing.
    let mut accept = Box::pin(f.sched.accept("b1", jobs[0], 1));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = std::future::Future::poll(accept.as_mut(), &mut cx);
    f.sched.set_credit("b1", 2);
    assert!(offers(&mut rx).is_empty(), "busy is at its limit");
    accept.await;
    f.sched.set_credit("b1", 1);
    assert!(offers(&mut rx).is_empty(), "busy is at its limit");
    assert_eq!(
        f.sched.why_waiting(jobs[1]).unwrap(),
        "busy runs at most 1 job at a time and 1 is running"
    );
}

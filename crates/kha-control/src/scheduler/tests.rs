//! Scheduler tests against a real store in a temp dir and a fake clock.

use super::pick::{pick, Pick, PickInput, Slots};
use super::*;
use crate::store::records::{Build, Job, JobSpec};
use kha_core::{BuildState, FakeClock, JobState};
use kha_proto::agent::control_message::Msg;
use tokio::sync::mpsc;

struct Fixture {
    _dir: tempfile::TempDir,
    sched: Arc<Scheduler>,
    clock: FakeClock,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let logs = Arc::new(LogStore::open(dir.path().join("logs"), 1 << 20).unwrap());
    let clock = FakeClock::new(1_000_000);
    let cfg = Config {
        heartbeat_ms: 100,
        max_attempts: 2,
        ..Config::default()
    };
    let sched = Scheduler::new(store, logs, Arc::new(clock.clone()), cfg).unwrap();
    Fixture {
        _dir: dir,
        sched,
        clock,
    }
}

/// Like [`fixture`], but every flush fails, as it would on a disk that
/// refuses writes (sled still applies the transactions).
fn fixture_without_flush() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    store.break_flushes();
    let logs = Arc::new(LogStore::open(dir.path().join("logs"), 1 << 20).unwrap());
    let clock = FakeClock::new(1_000_000);
    let cfg = Config {
        heartbeat_ms: 100,
        max_attempts: 2,
        ..Config::default()
    };
    let sched = Scheduler::new(store, logs, Arc::new(clock.clone()), cfg).unwrap();
    Fixture {
        _dir: dir,
        sched,
        clock,
    }
}

/// Creates a build of `n` queued jobs in `project`; returns the jobs.
async fn build(f: &Fixture, project: &str, n: u32) -> Vec<Job> {
    build_with_env(f, project, n, vec![]).await
}

/// As [`build`], each job with these env lines.
async fn build_with_env(f: &Fixture, project: &str, n: u32, env: Vec<String>) -> Vec<Job> {
    let s = &f.sched;
    let id = s.store.next_id().unwrap();
    let mut jobs = vec![];
    for number in 1..=n {
        jobs.push(Job {
            requires: Labels::parse(["os=linux"]).unwrap(),
            queue_key: s.normal_key().unwrap(),
            spec: JobSpec {
                timeout_secs: 60,
                env: env.clone(),
                ..Default::default()
            },
            ..Job::for_test(s.store.next_id().unwrap(), id, number, project)
        });
    }
    let b = Build::for_test(id, project, "master", jobs.iter().map(|j| j.id).collect());
    let (mut b, mut jobs) = (b, jobs);
    s.store.create_build(&mut b, &mut jobs, 0).unwrap();
    s.enqueue(&jobs);
    jobs
}

/// A session of builder `id` with these labels and slots (no credit yet),
/// and the messages sent on it.
fn session(
    id: &str,
    labels: &[&str],
    slots: u32,
) -> (Session, mpsc::Receiver<Box<ControlMessage>>) {
    let (tx, rx) = mpsc::channel(256);
    let session = Session {
        trusted: false,
        conn: 0,
        tx,
        close: CancellationToken::new(),
        name: id.into(),
        labels: Labels::parse(labels.iter().copied()).unwrap(),
        slots,
        free: 0,
        draining: false,
        version: String::new(),
    };
    (session, rx)
}

fn connect(f: &Fixture, id: &str, labels: &[&str]) -> mpsc::Receiver<Box<ControlMessage>> {
    let (session, rx) = session(id, labels, 8);
    f.sched.session_opened(id, session, &[]);
    rx
}

fn offers(rx: &mut mpsc::Receiver<Box<ControlMessage>>) -> Vec<(u64, u64)> {
    let mut v = vec![];
    while let Ok(ControlMessage { msg: Some(m) }) = rx.try_recv().map(|b| *b) {
        if let Msg::Offer(o) = m {
            v.push((o.job_id, o.epoch));
        }
    }
    v
}

/// Every message waiting on a session.
fn messages(rx: &mut mpsc::Receiver<Box<ControlMessage>>) -> Vec<Msg> {
    let mut v = vec![];
    while let Ok(ControlMessage { msg: Some(m) }) = rx.try_recv().map(|b| *b) {
        v.push(m);
    }
    v
}

#[tokio::test]
async fn projects_take_turns_and_each_is_fifo() {
    let f = fixture();
    let a = build(&f, "alpha", 3).await;
    let b = build(&f, "beta", 2).await;
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 4);
    let got: Vec<u64> = offers(&mut rx).into_iter().map(|(j, _)| j).collect();
    assert_eq!(got, vec![a[0].id, b[0].id, a[1].id, b[1].id]);
}

#[tokio::test]
async fn offers_need_credit_and_matching_labels() {
    let f = fixture();
    let jobs = build(&f, "p", 2).await;
    let mut mac = connect(&f, "mac", &["os=osx"]);
    f.sched.set_credit("mac", 5);
    assert!(offers(&mut mac).is_empty());
    assert_eq!(
        f.sched.why_waiting(jobs[0].id).unwrap(),
        "no connected builder offers os=linux"
    );
    let mut lin = connect(&f, "lin", &["os=linux", "arch=x86_64"]);
    assert!(offers(&mut lin).is_empty(), "no credit yet");
    f.sched.set_credit("lin", 1);
    assert_eq!(offers(&mut lin), vec![(jobs[0].id, 1)]);
}

#[tokio::test]
async fn a_refusal_holds_until_the_builder_comes_back() {
    let f = fixture();
    let jobs = build(&f, "p", 1).await;
    let mut lin = connect(&f, "lin", &["os=linux"]);
    f.sched.set_credit("lin", 1);
    let (job, epoch) = offers(&mut lin)[0];
    assert_eq!(job, jobs[0].id);
    f.sched
        .reject("lin", job, epoch, false, "no image here has arch=aarch64");
    f.sched.set_credit("lin", 1);
    assert!(offers(&mut lin).is_empty(), "not offered again");
    assert_eq!(
        f.sched.why_waiting(job).unwrap(),
        "every builder that could run it refused it: no image here has arch=aarch64"
    );
    // Restarted, say with the image made: it is asked again.
    let mut lin = connect(&f, "lin", &["os=linux"]);
    f.sched.set_credit("lin", 1);
    assert_eq!(offers(&mut lin).len(), 1);
}

#[tokio::test]
async fn lost_lease_requeues_as_a_new_epoch_then_gives_up() {
    let f = fixture();
    let jobs = build(&f, "p", 1).await;
    let job = jobs[0].id;
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 1);
    assert_eq!(offers(&mut rx), vec![(job, 1)]);
    f.sched.accept("b1", job, 1).await;
    assert!(f.sched.check_lease("b1", job, 1).is_ok());
    // Heartbeats keep it.
    for _ in 0..10 {
        f.clock.advance(100);
        f.sched.heartbeat("b1", &[(job, 1)]);
        f.sched.sweep().await;
    }
    assert_eq!(
        f.sched.store.get_job(job).unwrap().unwrap().state,
        JobState::Running
    );
    // Silence past the lease (3 heartbeats): back in the queue.
    f.clock.advance(301);
    f.sched.sweep().await;
    let j = f.sched.store.get_job(job).unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert!(f.sched.check_lease("b1", job, 1).is_err());
    // Offered again as epoch 2; the old epoch is fenced off.
    f.sched.set_credit("b1", 1);
    assert_eq!(offers(&mut rx), vec![(job, 2)]);
    f.sched.accept("b1", job, 2).await;
    let stale = kha_proto::agent::FinishJobRequest {
        job_id: job,
        epoch: 1,
        outcome: 1,
        ..Default::default()
    };
    assert!(matches!(
        f.sched.finish("b1", &stale).await,
        Err(SchedError::Lease(_))
    ));
    // Lost again: two attempts is the limit here.
    f.clock.advance(1_000);
    f.sched.sweep().await;
    let j = f.sched.store.get_job(job).unwrap().unwrap();
    assert_eq!(j.state, JobState::Lost);
    assert_eq!(j.attempts, 2);
    let b = f.sched.store.get_build(j.build).unwrap().unwrap();
    assert_eq!(b.state, BuildState::Errored);
}

/// A builder that acknowledges a cancel but never confirms the job
/// stopped: past the grace, the sweep ends its session and records the
/// job canceled, and the scheduler still answers (it once deadlocked
/// there: the sweep held its lock while closing the session).
#[tokio::test]
async fn a_cancel_never_confirmed_ends_the_session_and_the_job() {
    let f = fixture();
    let job = build(&f, "p", 1).await[0].id;
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 1);
    assert_eq!(offers(&mut rx), vec![(job, 1)]);
    f.sched.accept("b1", job, 1).await;
    f.sched.cancel_job(job).await.unwrap();
    // The builder goes on heartbeating the job as if it still ran.
    let past = f.sched.cfg.cancel_grace_ms + f.sched.cfg.lease_ms() + 100;
    for _ in 0..=past / 100 {
        f.clock.advance(100);
        f.sched.heartbeat("b1", &[(job, 1)]);
        // On a thread of its own, so that a deadlock fails the test
        // instead of hanging it.
        let (s, (tx, rx)) = (f.sched.clone(), std::sync::mpsc::channel());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(s.sweep());
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the sweep deadlocked");
    }
    let j = f.sched.store.get_job(job).unwrap().unwrap();
    assert_eq!(j.state, JobState::Canceled, "{}", j.detail);
    assert!(messages(&mut rx)
        .iter()
        .any(|m| matches!(m, Msg::Disconnect(_))));
    // Still answering.
    f.sched.set_credit("b1", 1);
}

#[tokio::test]
async fn finish_verifies_the_log() {
    let f = fixture();
    let job = build(&f, "p", 1).await[0].id;
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 1);
    offers(&mut rx);
    f.sched.accept("b1", job, 1).await;
    f.sched
        .logs
        .append(job, vec![(0, b"hello\n".to_vec())])
        .await
        .unwrap();
    let mut req = kha_proto::agent::FinishJobRequest {
        job_id: job,
        epoch: 1,
        outcome: 1,
        total_len: 10,
        ..Default::default()
    };
    assert!(matches!(
        f.sched.finish("b1", &req).await,
        Err(SchedError::LogShort { stored: 6, .. })
    ));
    req.total_len = 6;
    req.sha256 = "00".into();
    assert!(matches!(
        f.sched.finish("b1", &req).await,
        Err(SchedError::LogHash { .. })
    ));
    req.sha256 = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03".into();
    f.sched.finish("b1", &req).await.unwrap();
    // Idempotent.
    f.sched.finish("b1", &req).await.unwrap();
    let j = f.sched.store.get_job(job).unwrap().unwrap();
    assert_eq!(j.state, JobState::Passed);
    assert_eq!(j.log_len, 6);
}

/// A job a builder hands back as an infrastructure error (a checkout that
/// failed on a full disk) is not offered to it again at once, where it
/// would spend every attempt in milliseconds. A lone builder gets it again
/// after the hold (another builder would take it meanwhile:
/// `disk::a_builder_with_a_full_disk_…`).
#[tokio::test]
async fn a_job_handed_back_is_held_from_its_builder_a_while() {
    use super::leases::HANDED_BACK_HOLD_MS;
    use kha_proto::agent::{FinishJobRequest, Outcome};
    let f = fixture();
    let job = build(&f, "p", 1).await[0].id;
    let mut a = connect(&f, "a", &["os=linux"]);
    f.sched.set_credit("a", 1);
    assert_eq!(offers(&mut a), vec![(job, 1)]);
    f.sched.accept("a", job, 1).await;
    let mut back = FinishJobRequest {
        job_id: job,
        epoch: 1,
        detail: "checkout failed: No space left on device".into(),
        // The SHA-256 of nothing: the job printed nothing.
        sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        ..Default::default()
    };
    back.set_outcome(Outcome::Infrastructure);
    f.sched.finish("a", &back).await.unwrap();
    f.sched.set_credit("a", 1);
    f.clock.advance(HANDED_BACK_HOLD_MS - 100);
    f.sched.sweep().await;
    assert!(offers(&mut a).is_empty(), "offered again during the hold");
    assert_eq!(
        f.sched.why_waiting(job).unwrap(),
        "every builder that could run it refused it: checkout failed: No space left on device"
    );
    // After it: offered there again, as the next attempt.
    f.clock.advance(200);
    f.sched.sweep().await;
    assert_eq!(offers(&mut a), vec![(job, 2)]);
    f.sched.accept("a", job, 2).await;
    back.epoch = 2;
    f.sched.finish("a", &back).await.unwrap();
    // Its last attempt (2 here): given up, the hold forgotten.
    let j = f.sched.store.get_job(job).unwrap().unwrap();
    assert_eq!(j.state, JobState::Errored);
    assert!(f.sched.lock().handed_back.is_empty());
}

#[tokio::test]
async fn restart_of_the_control_node_keeps_queue_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(5_000);
    let cfg = Config {
        heartbeat_ms: 100,
        ..Config::default()
    };
    let open = || {
        let store = Store::open(&dir.path().join("db")).unwrap();
        let logs = Arc::new(LogStore::open(dir.path().join("logs"), 1 << 20).unwrap());
        Scheduler::new(store, logs, Arc::new(clock.clone()), cfg.clone()).unwrap()
    };
    let (running, queued) = {
        let f = Fixture {
            _dir: tempfile::tempdir().unwrap(),
            sched: open(),
            clock: clock.clone(),
        };
        let jobs = build(&f, "p", 2).await;
        let mut rx = connect(&f, "b1", &["os=linux"]);
        f.sched.set_credit("b1", 1);
        offers(&mut rx);
        f.sched.accept("b1", jobs[0].id, 1).await;
        f.sched.store.durable().await.unwrap();
        (jobs[0].id, jobs[1].id)
    };
    // sled allows one open handle per path: wait for the old one to close.
    let sched = loop {
        match std::panic::catch_unwind(open) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    assert!(sched.check_lease("b1", running, 1).is_ok());
    let (s, mut rx) = session("b1", &["os=linux"], 2);
    let (_, verdicts) = sched.session_opened("b1", s, &[(running, 1)]);
    assert!(verdicts[0].keep);
    sched.set_credit("b1", 1);
    assert_eq!(offers(&mut rx), vec![(queued, 1)]);
}

#[tokio::test]
async fn a_lease_that_cannot_be_stored_is_revoked_and_the_job_runs_again() {
    let f = fixture_without_flush();
    let job = build(&f, "p", 1).await[0].id;
    let mut rx = connect(&f, "b1", &["os=linux"]);
    f.sched.set_credit("b1", 1);
    assert_eq!(offers(&mut rx), vec![(job, 1)]);
    f.sched.accept("b1", job, 1).await;
    let sent = messages(&mut rx);
    assert!(
        !sent.iter().any(|m| matches!(m, Msg::Granted(_))),
        "granted a lease that is not durable: {sent:?}"
    );
    assert!(
        sent.iter()
            .any(|m| matches!(m, Msg::Revoke(r) if r.job_id == job && r.epoch == 1)),
        "the builder was not told to drop the offer: {sent:?}"
    );
    assert!(f.sched.check_lease("b1", job, 1).is_err());
    // Not stuck: queued again and offered as a new epoch.
    assert_eq!(
        f.sched.store.get_job(job).unwrap().unwrap().state,
        JobState::Queued
    );
    f.sched.set_credit("b1", 1);
    assert_eq!(offers(&mut rx), vec![(job, 2)]);
    // Still failing: after two attempts the job is given up, not left running.
    f.sched.accept("b1", job, 2).await;
    assert!(!messages(&mut rx)
        .iter()
        .any(|m| matches!(m, Msg::Granted(_))));
    f.clock.advance(1_000);
    f.sched.sweep().await;
    let j = f.sched.store.get_job(job).unwrap().unwrap();
    assert_eq!(j.state, JobState::Errored);
    assert!(
        j.detail.contains("could not store its lease"),
        "{}",
        j.detail
    );
    assert!(f.sched.check_lease("b1", job, 2).is_err());
}

mod fairness;
mod rules;
mod secrets;
mod stages;

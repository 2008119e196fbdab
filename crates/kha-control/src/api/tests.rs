//! The service layer called in process, as every interface calls it: a real
//! store in a temp dir, a real git repository, and a stand-in builder
//! session driven through the scheduler (offers, accept, finish).

use super::*;
use crate::config::Config;
use crate::scheduler::Session;
use kha_core::event::{Event, EventFilter, EventKind};
use kha_core::view::{BranchStatus, BuilderState};
use kha_core::{BuildState, JobState, Labels};
use kha_proto::agent::{control_message::Msg, ControlMessage, FinishJobRequest, Outcome};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TRAVIS: &str = "language: shell\nenv:\n  - A=1\n  - A=2\nscript: true\n";

struct Fixture {
    dir: tempfile::TempDir,
    app: Arc<App>,
    repo: String,
}

use crate::test_git::git;

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.join("data"),
        heartbeat_ms: 100,
        ..Config::default()
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".travis.yml"), TRAVIS).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let app = App::open(config(dir.path()), CancellationToken::new()).unwrap();
    let repo = repo.to_string_lossy().into_owned();
    Fixture { dir, app, repo }
}

fn new_project(name: &str, url: &str) -> projects::NewProject {
    projects::NewProject {
        name: name.into(),
        repo_url: url.into(),
        no_poll: true,
        ..Default::default()
    }
}

async fn add_and_trigger(f: &Fixture) -> kha_core::view::Build {
    projects::add(&f.app, &Principal::Admin, new_project("p", &f.repo))
        .await
        .unwrap();
    let args = builds::TriggerArgs {
        project: "p".into(),
        ..Default::default()
    };
    builds::trigger(&f.app, &Principal::Admin, args)
        .await
        .unwrap()
        .build
}

/// A builder session held by the test: offers arrive on `rx`.
fn connect(app: &App, id: &str) -> mpsc::Receiver<Box<ControlMessage>> {
    let (tx, rx) = mpsc::channel(64);
    let session = Session {
        trusted: false,
        conn: 0,
        tx,
        close: CancellationToken::new(),
        name: id.into(),
        labels: Labels::parse(["os=linux", "image=default"]).unwrap(),
        slots: 4,
        free: 0,
        draining: false,
        version: String::new(),
    };
    app.sched.session_opened(id, session, &[]);
    app.sched.set_credit(id, 4);
    rx
}

/// Takes every offer, then finishes each job as `passed` with an empty log.
async fn run_all(app: &App, id: &str, rx: &mut mpsc::Receiver<Box<ControlMessage>>, n: usize) {
    let mut offers = vec![];
    while offers.len() < n {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("an offer in time")
            .expect("session open");
        if let Some(Msg::Offer(o)) = m.msg {
            offers.push((o.job_id, o.epoch));
        }
    }
    for &(job, epoch) in &offers {
        app.sched.accept(id, job, epoch).await;
    }
    for &(job, epoch) in &offers {
        let mut req = FinishJobRequest {
            job_id: job,
            epoch,
            total_len: 0,
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            detail: String::new(),
            ..Default::default()
        };
        req.set_outcome(Outcome::Passed);
        app.sched.finish(id, &req).await.unwrap();
    }
}

async fn collect(app: &App, from: u64, filter: EventFilter) -> Vec<Event> {
    let mut s = events::watch(
        app,
        &Principal::Admin,
        events::WatchArgs {
            from,
            filter,
            ..Default::default()
        },
    )
    .unwrap();
    let mut out = vec![];
    while let Some(e) = s.next().await.unwrap() {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn every_operation_and_the_errors_a_caller_can_cause() {
    let f = fixture().await;
    let (app, admin) = (&f.app, &Principal::Admin);
    let builder = Principal::Builder("b-1".into());

    // Projects.
    let bad = projects::add(app, admin, new_project("a/b", &f.repo)).await;
    assert!(matches!(bad, Err(ApiError::Invalid(_))), "{bad:?}");
    let empty = projects::add(app, admin, new_project("x", " ")).await;
    assert!(matches!(empty, Err(ApiError::Invalid(_))), "{empty:?}");
    let p = projects::add(app, admin, new_project("p", &f.repo))
        .await
        .unwrap();
    assert_eq!(p.default_branch, "main");
    assert!(p.webhook_secret.starts_with("khaw_"));
    let dup = projects::add(app, admin, new_project("p", &f.repo)).await;
    assert!(matches!(dup, Err(ApiError::Exists(_))), "{dup:?}");
    let listed = projects::list(app, admin).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].webhook_secret.is_empty(), "shown only when added");
    assert!(matches!(
        projects::get(app, admin, "nope"),
        Err(ApiError::NotFound(_))
    ));
    assert!(matches!(
        projects::remove(app, &builder, "p").await,
        Err(ApiError::Denied(_))
    ));

    // Builds.
    let t = |project: &str| builds::TriggerArgs {
        project: project.into(),
        ..Default::default()
    };
    let unknown = builds::trigger(app, admin, t("nope")).await;
    assert!(matches!(unknown, Err(ApiError::NotFound(_))), "{unknown:?}");
    let first = builds::trigger(app, admin, t("p")).await.unwrap();
    assert!(first.created);
    assert_eq!(first.build.id, 1, "ids are dense from 1");
    assert_eq!(first.build.jobs.len(), 2);
    assert_eq!(first.build.jobs[1].id, 2);
    assert_eq!(first.build.state, BuildState::Queued);
    assert_eq!(
        first.build.jobs[0].detail,
        "waiting: no builder is connected"
    );
    let again = builds::trigger(app, admin, t("p")).await.unwrap();
    assert!(!again.created, "the same commit is built once");
    let no_branch = builds::TriggerArgs {
        branch: "nope".into(),
        ..t("p")
    };
    let r = builds::trigger(app, admin, no_branch).await;
    assert!(matches!(r, Err(ApiError::NotFound(_))), "{r:?}");

    let page = builds::list(app, admin, "p", None, 1, 0).unwrap();
    assert_eq!((page.total, page.per_page, page.builds.len()), (1, 25, 1));
    assert!(matches!(
        builds::list(app, admin, "p", None, 1, 101),
        Err(ApiError::Invalid(_))
    ));
    assert!(matches!(
        builds::list(app, admin, "nope", None, 1, 10),
        Err(ApiError::NotFound(_))
    ));
    assert_eq!(
        builds::list(app, admin, "p", Some("other"), 1, 10)
            .unwrap()
            .total,
        0
    );
    assert!(matches!(
        builds::get(app, admin, 99),
        Err(ApiError::NotFound(_))
    ));
    assert!(matches!(
        builds::job(app, admin, 99),
        Err(ApiError::NotFound(_))
    ));
    let j = builds::job(app, admin, 2).unwrap();
    assert_eq!((j.build_id, j.number, j.state), (1, 2, JobState::Queued));
    let running = builds::restart(app, admin, 1).await;
    assert!(
        matches!(running, Err(ApiError::Precondition(_))),
        "{running:?}"
    );
    let canceled = builds::cancel(app, admin, 1).await.unwrap();
    assert_eq!(canceled.state, BuildState::Canceled);
    assert!(canceled.jobs.iter().all(|j| j.state == JobState::Canceled));
    let restarted = builds::restart(app, admin, 1).await.unwrap();
    assert_eq!(restarted.state, BuildState::Queued);

    // Branches.
    let branches = branches::list(app, admin, "p").unwrap();
    assert_eq!(branches.len(), 1);
    assert_eq!(branches[0].state, BranchStatus::Built(BuildState::Queued));
    assert!(matches!(
        branches::list(app, admin, "nope"),
        Err(ApiError::NotFound(_))
    ));

    // Logs.
    assert!(matches!(
        logs::follow(app, admin, 999, 0, false),
        Err(ApiError::NotFound(_))
    ));
    let mut rx = logs::follow(app, admin, 1, 0, false).unwrap();
    let last = rx.recv().await.unwrap().unwrap();
    assert!(last.done && last.data.is_empty());
    assert_eq!(last.state, Some(JobState::Queued));

    // Builders and tokens.
    let tok = builders::create_token(app, admin, "ci").await.unwrap();
    assert!(tok.token.starts_with("khaet_"));
    let tokens = builders::list_tokens(app, admin).unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].token.is_empty(), "shown only when created");
    assert!(matches!(
        builders::revoke_token(app, admin, "t-nope").await,
        Err(ApiError::NotFound(_))
    ));
    assert!(
        builders::revoke_token(app, admin, &tok.id)
            .await
            .unwrap()
            .revoked
    );
    assert!(matches!(
        builders::drain(app, admin, "b-nope").await,
        Err(ApiError::NotFound(_))
    ));
    // Enrolment and builder credentials.
    let bad = builders::enrol(app, "khaet_nope", "x", None).await;
    assert!(matches!(bad, Err(ApiError::Unauthenticated(_))), "{bad:?}");
    let revoked_token = builders::enrol(app, &tok.token, "x", None).await;
    assert!(
        matches!(&revoked_token, Err(ApiError::Unauthenticated(m)) if m.contains("revoked")),
        "{revoked_token:?}"
    );
    let fresh = builders::create_token(app, admin, "two").await.unwrap();
    let (bid, secret) = builders::enrol(app, &fresh.token, " two ", None)
        .await
        .unwrap();
    let cred = format!("{bid}:{}", secret.expose());
    assert_eq!(
        builders::authenticate(app, Some(&cred)).unwrap().name,
        "two"
    );
    for wrong in [None, Some("no-colon"), Some("b-nope:x")] {
        let r = builders::authenticate(app, wrong);
        assert!(
            matches!(r, Err(ApiError::Unauthenticated(_))),
            "{wrong:?}: {r:?}"
        );
    }
    let wrong_secret = format!("{bid}:khab_wrong");
    assert!(builders::authenticate(app, Some(&wrong_secret)).is_err());
    builders::revoke(app, admin, &bid).await.unwrap();
    let r = builders::authenticate(app, Some(&cred));
    assert!(
        matches!(&r, Err(ApiError::Unauthenticated(m)) if m.contains("revoked")),
        "a revoked builder is refused: {r:?}"
    );

    let rec = crate::store::records::Builder {
        trusted: false,
        id: "b-1".into(),
        name: "one".into(),
        secret_sha256: String::new(),
        revoked: false,
        draining: false,
        labels: vec![],
        slots: 1,
        version: String::new(),
        created_ms: 0,
        last_seen_ms: 0,
    };
    app.store.put_builder(&rec).unwrap();
    let state_of = |id: &str| {
        builders::list(app, admin)
            .unwrap()
            .into_iter()
            .find(|b| b.id == id)
            .unwrap()
            .state
    };
    assert_eq!(state_of("b-1"), BuilderState::Offline);
    let _rx = connect(app, "b-1");
    assert_eq!(state_of("b-1"), BuilderState::Connected);
    let drained = builders::drain(app, admin, "b-1").await.unwrap();
    assert_eq!(drained.state, BuilderState::Draining);
    let revoked = builders::revoke(app, admin, "b-1").await.unwrap();
    assert_eq!(revoked.state, BuilderState::Revoked);
    assert!(matches!(
        builders::revoke(app, &builder, "b-1").await,
        Err(ApiError::Denied(_))
    ));

    // The events of all that, in order.
    let all = collect(app, 1, EventFilter::default()).await;
    assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1), "dense");
    let kinds: Vec<EventKind> = all.iter().map(|e| e.kind).collect();
    for k in [
        EventKind::BuildCreated,
        EventKind::JobQueued,
        EventKind::BranchMoved,
        EventKind::JobFinished,
        EventKind::BuildFinished,
        EventKind::BuildRestarted,
        EventKind::BuilderDraining,
        EventKind::BuilderRevoked,
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }

    // Removal.
    projects::remove(app, admin, "p").await.unwrap();
    assert!(matches!(
        projects::remove(app, admin, "p").await,
        Err(ApiError::NotFound(_))
    ));
    drop(f.dir);
}

#[tokio::test]
async fn a_subscriber_sees_every_change_of_a_build_in_order() {
    let f = fixture().await;
    let app = &f.app;
    let mut live = events::watch(
        app,
        &Principal::Admin,
        events::WatchArgs {
            follow: true,
            ..Default::default()
        },
    )
    .unwrap();
    let build = add_and_trigger(&f).await;
    let mut rx = connect(app, "b-1");
    run_all(app, "b-1", &mut rx, 2).await;
    app.store.durable().await.unwrap();

    let mut seen = vec![];
    loop {
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), live.next())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap();
        let end = e.kind == EventKind::BuildFinished;
        seen.push(e);
        if end {
            break;
        }
    }
    assert!(
        seen.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "no gap: {seen:?}"
    );
    assert_eq!(seen[0].kind, EventKind::BuildCreated);
    assert_eq!(seen.last().unwrap().build_state, Some(BuildState::Passed));
    for job in &build.jobs {
        let order: Vec<EventKind> = seen
            .iter()
            .filter(|e| e.job_id == job.id)
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            order,
            [
                EventKind::JobQueued,
                EventKind::JobStarted,
                EventKind::JobFinished
            ],
            "job {}",
            job.id
        );
    }
    assert_eq!(
        seen.iter()
            .filter(|e| e.kind == EventKind::BuildStarted)
            .count(),
        1
    );

    // Filtered by build, and by another project: the same events, none.
    let by_build = collect(
        app,
        1,
        EventFilter {
            build_id: Some(build.id),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_build.len(), seen.len());
    let other = collect(
        app,
        1,
        EventFilter {
            project: Some("other".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(other.is_empty());
}

#[tokio::test]
async fn resuming_from_last_seen_plus_one_misses_nothing_and_repeats_nothing() {
    let f = fixture().await;
    let app = &f.app;
    add_and_trigger(&f).await;
    let mut rx = connect(app, "b-1");
    run_all(app, "b-1", &mut rx, 2).await;
    app.store.durable().await.unwrap();
    let all = collect(app, 1, EventFilter::default()).await;
    assert!(all.len() >= 8, "{all:?}");

    // Read three, "disconnect", resume from the last seen + 1.
    let mut first = events::watch(app, &Principal::Admin, events::WatchArgs::default()).unwrap();
    drop(first.next().await);
    let mut s = events::watch(
        app,
        &Principal::Admin,
        events::WatchArgs {
            from: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut head = vec![];
    for _ in 0..3 {
        head.push(s.next().await.unwrap().unwrap());
    }
    drop(s);
    let rest = collect(app, head[2].seq + 1, EventFilter::default()).await;
    let joined: Vec<u64> = head.iter().chain(&rest).map(|e| e.seq).collect();
    let want: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(joined, want);

    // The newest few.
    let tail = events::watch(
        app,
        &Principal::Admin,
        events::WatchArgs {
            tail: 2,
            ..Default::default()
        },
    );
    let mut tail = tail.unwrap();
    let a = tail.next().await.unwrap().unwrap();
    let b = tail.next().await.unwrap().unwrap();
    assert!(tail.next().await.unwrap().is_none());
    assert_eq!(
        (a.seq, b.seq),
        (all[all.len() - 2].seq, all[all.len() - 1].seq)
    );
}

#[tokio::test]
async fn a_pruned_range_gets_a_clear_answer() {
    let f = fixture().await;
    let app = &f.app;
    add_and_trigger(&f).await;
    app.store.durable().await.unwrap();
    let newest = app.events.published();
    assert!(newest >= 3);
    let gone = app.events.prune(2, 0, app.clock.now()).unwrap();
    assert_eq!(gone, newest - 2);
    let r = events::watch(
        app,
        &Principal::Admin,
        events::WatchArgs {
            from: 1,
            ..Default::default()
        },
    );
    match r {
        Err(e @ ApiError::Pruned { .. }) => {
            assert_eq!(
                e.to_string(),
                format!(
                    "events before {0} were pruned; the stream starts at {0} now",
                    newest - 1
                )
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("pruned events were served"),
    }
    let kept = collect(app, newest - 1, EventFilter::default()).await;
    assert_eq!(kept.len(), 2);
}

#[tokio::test]
async fn ids_stay_dense_across_restarts() {
    let f = fixture().await;
    let b1 = add_and_trigger(&f).await;
    assert_eq!((b1.id, b1.jobs[0].id, b1.jobs[1].id), (1, 1, 2));
    let data = f.dir.path().to_path_buf();
    let Fixture { dir, app, .. } = f;
    app.store.durable().await.unwrap();
    drop(app);
    // The flusher lets go of the database once every handle is gone.
    let mut reopened = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if let Ok(a) = App::open(config(&data), CancellationToken::new()) {
            reopened = Some(a);
            break;
        }
    }
    let app = reopened.expect("the database reopens");
    let args = builds::TriggerArgs {
        project: "p".into(),
        force: true,
        ..Default::default()
    };
    let b2 = builds::trigger(&app, &Principal::Admin, args)
        .await
        .unwrap()
        .build;
    assert_eq!((b2.id, b2.jobs[0].id, b2.jobs[1].id), (2, 3, 4));
    let evs = collect(&app, 1, EventFilter::default()).await;
    assert!(evs.windows(2).all(|w| w[1].seq == w[0].seq + 1), "{evs:?}");
    drop(dir);
}

#[tokio::test]
async fn the_front_page_the_queue_and_why_jobs_wait() {
    let f = fixture().await;
    let b = add_and_trigger(&f).await;
    let anyone = Principal::Anonymous;
    assert_eq!(b.author, "kha");
    assert!(!b.tag);
    assert_eq!(b.started_ms, 0);

    // Nobody connected: both jobs wait, and say so; anyone may read.
    let q = queue::list(&f.app, &anyone).unwrap();
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(
        q.iter().all(|j| j.reason == "no builder is connected"),
        "{q:?}"
    );
    assert_eq!((q[0].project.as_str(), q[0].branch.as_str()), ("p", "main"));
    assert_eq!(
        builds::job(&f.app, &anyone, q[0].job.id).unwrap().detail,
        "waiting: no builder is connected"
    );

    // A builder without the job's labels: the label it lacks is named.
    let (tx, _mac) = mpsc::channel(64);
    let session = Session {
        trusted: false,
        conn: 0,
        tx,
        close: CancellationToken::new(),
        name: "mac".into(),
        labels: Labels::parse(["os=osx", "image=default"]).unwrap(),
        slots: 2,
        free: 2,
        draining: false,
        version: String::new(),
    };
    f.app.sched.session_opened("mac", session, &[]);
    let q = queue::list(&f.app, &anyone).unwrap();
    assert!(
        q.iter()
            .all(|j| j.reason == "no connected builder offers os=linux"),
        "{q:?}"
    );

    // A matching builder with no free slot: its slots are busy.
    let mut rx = connect(&f.app, "lin");
    f.app.sched.set_credit("lin", 0);
    let o = overview::get(&f.app, &anyone).unwrap();
    assert_eq!(o.projects.len(), 1);
    assert_eq!(o.projects[0].project.name, "p");
    assert_eq!(o.projects[0].last_build.as_ref().map(|b| b.id), Some(b.id));
    assert!(o.running.is_empty());
    assert_eq!(o.queued.len(), 2);
    // The builder's four slots are announced as taken by offers, or busy.
    assert!(
        o.queued
            .iter()
            .all(|j| j.reason.starts_with("offered to lin")
                || j.reason == "all 4 matching slots are busy"),
        "{:?}",
        o.queued
    );

    run_all(&f.app, "lin", &mut rx, 2).await;
    let o = overview::get(&f.app, &anyone).unwrap();
    assert!(o.queued.is_empty() && o.running.is_empty(), "{o:?}");
    let done = builds::get(&f.app, &anyone, b.id).unwrap();
    assert_eq!(done.state, BuildState::Passed);
    assert!(done.started_ms > 0);
    assert_eq!(
        o.projects[0].last_build.as_ref().map(|b| b.state),
        Some(BuildState::Passed)
    );
    assert!(builds::pull_requests(&f.app, &anyone, "p")
        .unwrap()
        .is_empty());

    // Reading is open; changing is not.
    let err = builds::restart(&f.app, &anyone, b.id).await.unwrap_err();
    assert!(matches!(err, ApiError::Unauthenticated(_)), "{err:?}");
    let err = projects::remove(&f.app, &anyone, "p").await.unwrap_err();
    assert!(matches!(err, ApiError::Unauthenticated(_)), "{err:?}");
}

//! Scheduled builds on a fake clock: a real store and a real git
//! repository, the control node opened, closed and opened again, and the
//! scheduler's look for due schedules called by hand.

use super::run_due;
use crate::api::schedules::{self, NewSchedule};
use crate::api::{projects, ApiError, Principal, UserCtx};
use crate::app::App;
use crate::config::Config;
use crate::store::records::Build;
use kha_core::schedule::{DAY_MS, MINUTE_MS};
use kha_core::travis::EventType;
use kha_core::view::Role;
use kha_core::FakeClock;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// 2026-12-04T10:00:00Z.
const T0: u64 = 1_796_378_400_000;

use crate::test_git::git;

/// A repository whose `main` head says `[ci skip]`, with a branch `dev`.
fn repo(dir: &Path) -> String {
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".travis.yml"), "language: shell\nscript: true\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first [ci skip]"]);
    git(&repo, &["branch", "dev"]);
    repo.to_string_lossy().into_owned()
}

/// Opens the control node on `data` (again, once the last one let go of
/// its database).
async fn open(data: &Path, clock: &FakeClock) -> Arc<App> {
    let cfg = Config {
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    for _ in 0..100 {
        if let Ok(app) = App::open_with_clock(
            cfg.clone(),
            CancellationToken::new(),
            Arc::new(clock.clone()),
        ) {
            return app;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the database does not open");
}

async fn with_project(dir: &Path, clock: &FakeClock) -> Arc<App> {
    let url = repo(dir);
    let app = open(&dir.join("data"), clock).await;
    let p = projects::NewProject {
        name: "p".into(),
        repo_url: url,
        no_poll: true,
        ..Default::default()
    };
    projects::add(&app, &Principal::Admin, p).await.unwrap();
    app
}

fn add(branch: &str, interval: &str, cron: &str, dont_run: bool) -> NewSchedule {
    NewSchedule {
        project: "p".into(),
        branch: branch.into(),
        interval: interval.into(),
        cron: cron.into(),
        dont_run_if_recent_build_exists: dont_run,
    }
}

fn builds(app: &App) -> Vec<Build> {
    let mut out: Vec<Build> = app
        .store
        .project_build_ids("p")
        .map(|id| app.store.get_build(id.unwrap()).unwrap().unwrap())
        .collect();
    out.reverse();
    out
}

async fn due(app: &App) -> Vec<(u64, String)> {
    run_due(&app.triggers, &CancellationToken::new()).await
}

#[tokio::test]
async fn a_schedule_due_while_the_control_node_was_down_runs_once_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(T0);
    let app = with_project(dir.path(), &clock).await;
    let s = schedules::add(&app, &Principal::Admin, add("main", "daily", "", false))
        .await
        .unwrap();
    assert_eq!(s.next_run_ms, T0 + MINUTE_MS, "Travis: a minute after");
    assert_eq!(due(&app).await, vec![], "not due yet");
    // Any other build of the head is skipped (its message says so): only
    // cron builds ignore skip markers.
    let api = crate::api::builds::TriggerArgs {
        project: "p".into(),
        ..Default::default()
    };
    let e = crate::api::builds::trigger(&app, &Principal::Admin, api)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("skip marker"), "{e}");

    // Down for three days and a bit: the run was missed three times.
    app.store.durable().await.unwrap();
    drop(app);
    clock.advance(3 * DAY_MS + 5 * 3_600_000);
    let now = T0 + 3 * DAY_MS + 5 * 3_600_000;
    let app = open(&dir.path().join("data"), &clock).await;
    assert_eq!(due(&app).await, vec![(s.id, "started build 1".into())]);
    let b = builds(&app);
    assert_eq!(b.len(), 1, "once, not once per missed day");
    assert_eq!(b[0].event, "cron");
    assert_eq!(b[0].context.as_ref().unwrap().event, EventType::Cron);
    assert_eq!(b[0].jobs.len(), 1, "its `[ci skip]` does not apply");
    let after = app.store.get_schedule(s.id).unwrap().unwrap();
    assert_eq!(after.last_run_ms, now);
    assert_eq!(after.next_run_ms, now + DAY_MS, "a day from the late run");
    assert_eq!(after.last_build, 1);

    // Not again until then; then again, though the commit was built.
    assert_eq!(due(&app).await, vec![]);
    clock.advance(DAY_MS - 1);
    assert_eq!(due(&app).await, vec![]);
    clock.advance(1);
    assert_eq!(due(&app).await, vec![(s.id, "started build 2".into())]);
    assert_eq!(builds(&app).len(), 2);
    let after = app.store.get_schedule(s.id).unwrap().unwrap();
    assert_eq!(
        after.next_run_ms,
        now + 2 * DAY_MS,
        "on time: the series goes on"
    );

    // A cron expression: its next minute after the run.
    let c = schedules::add(&app, &Principal::Admin, add("dev", "", "30 4 * * *", false))
        .await
        .unwrap();
    assert_eq!(
        kha_core::time::iso8601(c.next_run_ms),
        "2026-12-09T04:30:00Z"
    );
}

#[tokio::test]
async fn dont_run_if_recent_build_exists_skips_only_after_another_build() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(T0);
    let app = with_project(dir.path(), &clock).await;
    let api = crate::api::builds::TriggerArgs {
        project: "p".into(),
        branch: "main".into(),
        force: true,
        ..Default::default()
    };
    crate::api::builds::trigger(&app, &Principal::Admin, api)
        .await
        .unwrap();
    let main = schedules::add(&app, &Principal::Admin, add("main", "daily", "", true))
        .await
        .unwrap();
    let dev = schedules::add(&app, &Principal::Admin, add("dev", "daily", "", true))
        .await
        .unwrap();
    clock.advance(2 * MINUTE_MS);
    let got = due(&app).await;
    assert_eq!(
        got,
        vec![
            (
                main.id,
                "skipped: a build of main ran in the last 24 h".to_string()
            ),
            (dev.id, "started build 2".to_string()),
        ]
    );
    let m = app.store.get_schedule(main.id).unwrap().unwrap();
    assert_eq!((m.last_run_ms, m.last_build), (T0 + 2 * MINUTE_MS, 0));
    assert_eq!(m.next_run_ms, T0 + MINUTE_MS + DAY_MS);

    // A day on, the API build is older than 24 h; dev's own cron build
    // does not count.
    clock.advance(DAY_MS);
    assert_eq!(
        due(&app).await,
        vec![
            (main.id, "started build 3".to_string()),
            (dev.id, "started build 4".to_string()),
        ]
    );
}

#[tokio::test]
async fn schedules_are_checked_and_guarded_like_project_settings() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(T0);
    let app = with_project(dir.path(), &clock).await;
    let user = |role: Role| {
        Principal::User(Arc::new(UserCtx {
            name: "u".into(),
            roles: [("p".to_string(), role)].into(),
            ..Default::default()
        }))
    };
    for (r, says) in [
        (add("main", "", "", false), "give an interval"),
        (
            add("main", "hourly", "", false),
            "is not daily, weekly or monthly",
        ),
        (add("main", "", "0 3 * *", false), "has 4 fields"),
        (
            add("main", "", "0 25 * * *", false),
            "hour: 25 is out of range",
        ),
        (
            add("a..b", "daily", "", false),
            "branch or tag name \"a..b\"",
        ),
        (add("-x", "daily", "", false), "branch or tag name \"-x\""),
    ] {
        match schedules::add(&app, &Principal::Admin, r).await {
            Err(ApiError::Invalid(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{says}: {other:?}"),
        }
    }
    let mut r = add("main", "daily", "", false);
    r.project = "nope".into();
    assert!(matches!(
        schedules::add(&app, &Principal::Admin, r).await,
        Err(ApiError::NotFound(_))
    ));
    assert!(matches!(
        schedules::add(&app, &user(Role::Viewer), add("main", "daily", "", false)).await,
        Err(ApiError::Denied(_))
    ));
    assert!(matches!(
        schedules::add(&app, &Principal::Anonymous, add("main", "daily", "", false)).await,
        Err(ApiError::Unauthenticated(_))
    ));
    let s = schedules::add(
        &app,
        &user(Role::Maintainer),
        add("main", "weekly", "", false),
    )
    .await
    .unwrap();
    // Anyone reads a public project's schedules; maintainers remove them.
    let listed = schedules::list(&app, &Principal::Anonymous, Some("p")).unwrap();
    assert_eq!(listed, vec![s.clone()]);
    assert_eq!(
        schedules::list(&app, &Principal::Anonymous, None)
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        schedules::remove(&app, &user(Role::Viewer), s.id).await,
        Err(ApiError::Denied(_))
    ));
    assert!(matches!(
        schedules::remove(&app, &Principal::Admin, 99).await,
        Err(ApiError::NotFound(_))
    ));
    // Gone with its project.
    projects::remove(&app, &Principal::Admin, "p")
        .await
        .unwrap();
    assert_eq!(app.store.list_schedules().unwrap(), vec![]);
}

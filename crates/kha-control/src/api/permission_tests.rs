//! The permission table (`tests/permissions.table`) held against the
//! service layer itself: every operation × caller × project visibility,
//! each caller resolved from a real credential (an API token) exactly as
//! gRPC and HTTP resolve theirs. The end-to-end test drives the same rows
//! through both interfaces.

use super::*;
use crate::config::Config;
use kha_core::event::EventFilter;
use kha_core::view::Role;
use tokio_util::sync::CancellationToken;

pub const TABLE: &str = include_str!("../../../../tests/permissions.table");

/// The table's rows: (section, operation, expected outcome per caller).
pub fn rows() -> Vec<(String, String, Vec<String>)> {
    let mut out = vec![];
    let mut section = String::new();
    for line in TABLE.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let mut cols = line.split_whitespace().map(String::from);
        let op = cols.next().unwrap();
        out.push((section.clone(), op, cols.collect()));
    }
    out
}

const CALLERS: [&str; 7] = [
    "anon", "viewer", "maint", "other", "admin", "disabled", "expired",
];

use crate::test_git::git;

struct World {
    _dir: tempfile::TempDir,
    app: Arc<App>,
    repo: String,
    tokens: Vec<Option<String>>,
    build: u64,
    job: u64,
    builder: String,
}

async fn world(private: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".travis.yml"), "language: shell\nscript: true\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let cfg = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let app = App::open(cfg, CancellationToken::new()).unwrap();
    let repo = repo.to_string_lossy().into_owned();
    let admin = Principal::Admin;
    for (name, private) in [("p", private), ("q", false)] {
        let new = projects::NewProject {
            name: name.into(),
            repo_url: repo.clone(),
            no_poll: true,
            private,
            ..Default::default()
        };
        projects::add(&app, &admin, new).await.unwrap();
    }
    let mut tokens = vec![None];
    for (name, global, on) in [
        ("vic", Role::None, Some(("p", Role::Viewer))),
        ("max", Role::None, Some(("p", Role::Maintainer))),
        ("ola", Role::None, Some(("q", Role::Maintainer))),
        ("ada", Role::Admin, None),
        ("dan", Role::None, Some(("p", Role::Maintainer))),
        ("eve", Role::None, Some(("p", Role::Maintainer))),
    ] {
        let new = users::NewUser {
            name: name.into(),
            password: "correct horse".into(),
            role: global,
            email: String::new(),
        };
        users::add(&app, &admin, new).await.unwrap();
        if let Some((p, r)) = on {
            users::set_role(&app, &admin, name, Some(p), r)
                .await
                .unwrap();
        }
        let who = auth::from_bearer(&app, None).unwrap();
        assert_eq!(who, Principal::Anonymous);
        let u = auth::principal_of(app.store.get_user(name).unwrap().unwrap());
        let (_, t) = auth::create_token(&app, &u, "table", None).await.unwrap();
        tokens.push(Some(t.expose().to_string()));
    }
    users::set_disabled(&app, &admin, "dan", true)
        .await
        .unwrap();
    // An expired token: written as the store would hold one a day old.
    let t = tokens[6].clone().unwrap();
    let key = crate::auth::hash(&t);
    let mut rec = app.store.get_api_token(&key).unwrap().unwrap();
    rec.expires_ms = app.clock.now() - 1;
    app.store.put_api_token(&key, &rec).unwrap();
    let args = builds::TriggerArgs {
        project: "p".into(),
        ..Default::default()
    };
    let b = builds::trigger(&app, &admin, args).await.unwrap().build;
    let (id, _) = builders::enrol(
        &app,
        &builders::create_token(&app, &admin, "t")
            .await
            .unwrap()
            .token,
        "b1",
        None,
    )
    .await
    .unwrap();
    World {
        _dir: dir,
        app,
        repo,
        tokens,
        build: b.id,
        job: b.jobs[0].id,
        builder: id,
    }
}

fn code<T>(r: &Result<T, ApiError>) -> String {
    match r {
        Ok(_) | Err(ApiError::Precondition(_)) | Err(ApiError::Exists(_)) => "ok".into(),
        Err(ApiError::NotFound(_)) => "404".into(),
        Err(ApiError::Unauthenticated(_)) => "401".into(),
        Err(ApiError::Denied(_)) => "403".into(),
        Err(e) => format!("unexpected: {e:?}"),
    }
}

/// "ok" if the answer lists P, "hidden" if not; errors as `code`.
fn listed<T>(r: Result<T, ApiError>, has_p: impl Fn(&T) -> bool) -> String {
    match &r {
        Ok(v) if has_p(v) => "ok".into(),
        Ok(_) => "hidden".into(),
        Err(_) => code(&r),
    }
}

/// A daily schedule of `project`'s main.
fn daily(project: &str) -> schedules::NewSchedule {
    schedules::NewSchedule {
        project: project.into(),
        branch: "main".into(),
        interval: "daily".into(),
        ..Default::default()
    }
}

async fn run(w: &World, who: &Principal, op: &str, n: usize) -> String {
    let app = &w.app;
    let p = "p";
    match op {
        "project.list" => listed(projects::list(app, who), |v| v.iter().any(|x| x.name == p)),
        "project.get" => code(&projects::get(app, who, p)),
        "project.key" => code(&projects::public_key(app, who, p).await),
        "project.members" => code(&projects::members(app, who, p)),
        "project.notify" => code(&projects::notify_settings(app, who, p)),
        "project.update" => {
            let cur = app.store.get_project(p).unwrap().unwrap().private;
            let u = projects::ProjectUpdate {
                private: Some(cur),
                ..Default::default()
            };
            code(&projects::update(app, who, p, u).await)
        }
        "project.add" => {
            let new = projects::NewProject {
                name: format!("new{n}"),
                repo_url: w.repo.clone(),
                default_branch: "main".into(),
                no_poll: true,
                ..Default::default()
            };
            code(&projects::add(app, who, new).await)
        }
        "project.remove" => {
            let new = projects::NewProject {
                name: format!("gone{n}"),
                repo_url: w.repo.clone(),
                default_branch: "main".into(),
                no_poll: true,
                ..Default::default()
            };
            projects::add(app, &Principal::Admin, new).await.unwrap();
            code(&projects::remove(app, who, &format!("gone{n}")).await)
        }
        "branch.list" => code(&branches::list(app, who, p)),
        "branch.status" => code(&branches::status(app, who, p, "")),
        "build.list" => code(&builds::list(app, who, p, None, 1, 10)),
        "build.get" => code(&builds::get(app, who, w.build)),
        "build.pulls" => code(&builds::pull_requests(app, who, p)),
        "build.trigger" => {
            let args = builds::TriggerArgs {
                project: p.into(),
                force: true,
                ..Default::default()
            };
            code(&builds::trigger(app, who, args).await)
        }
        "cron.list" => code(&schedules::list(app, who, Some(p))),
        "cron.add" => code(&schedules::add(app, who, daily(p)).await),
        "cron.remove" => {
            let s = schedules::add(app, &Principal::Admin, daily(p))
                .await
                .unwrap();
            code(&schedules::remove(app, who, s.id).await)
        }
        "build.restart" => code(&builds::restart(app, who, w.build).await),
        "build.cancel" => code(&builds::cancel(app, who, w.build).await),
        "job.get" => code(&builds::job(app, who, w.job)),
        "log.read" => code(&logs::follow(app, who, w.job, 0, false)),
        "events.read" => {
            let a = events::WatchArgs {
                from: 1,
                filter: EventFilter::default(),
                ..Default::default()
            };
            match events::watch(app, who, a) {
                Ok(mut s) => {
                    let mut seen = false;
                    while let Some(e) = s.next().await.unwrap() {
                        seen |= e.project == p;
                    }
                    if seen { "ok" } else { "hidden" }.into()
                }
                Err(e) => code::<()>(&Err(e)),
            }
        }
        "overview" => listed(overview::get(app, who), |o| {
            o.projects.iter().any(|s| s.project.name == p)
        }),
        "queue" => listed(queue::list(app, who), |q| q.iter().any(|j| j.project == p)),
        "star" => code(&users::star(app, who, p, true).await),
        "builder.list" => code(&builders::list(app, who)),
        "builder.drain" => code(&builders::drain(app, who, &w.builder).await),
        "builder.trust" => code(&builders::set_trusted(app, who, &w.builder, true).await),
        "builder.token.create" => code(&builders::create_token(app, who, "x").await),
        "builder.token.list" => code(&builders::list_tokens(app, who)),
        "user.list" => code(&users::list(app, who)),
        "user.add" => {
            let new = users::NewUser {
                name: format!("new{n}"),
                ..Default::default()
            };
            code(&users::add(app, who, new).await)
        }
        "user.role" => code(&users::set_role(app, who, "vic", Some(p), Role::Viewer).await),
        "user.disable" => code(&users::set_disabled(app, who, "ola", false).await),
        "audit.list" => code(&audit::list(app, who, 1, 10)),
        "token.create" => code(&auth::create_token(app, who, "more", None).await),
        "token.list" => code(&auth::list_tokens(app, who)),
        "whoami" => {
            users::whoami(app, who);
            "ok".into()
        }
        other => panic!("the table names an operation this test does not know: {other}"),
    }
}

#[tokio::test]
async fn every_operation_for_every_caller_matches_the_table() {
    let rows = rows();
    assert!(rows.len() > 60, "the table has both sections");
    let mut wrong = vec![];
    let mut n = 0;
    for private in [false, true] {
        let w = world(private).await;
        let section = if private { "private" } else { "public" };
        for (_, op, want) in rows.iter().filter(|(s, _, _)| s == section) {
            assert_eq!(
                want.len(),
                CALLERS.len(),
                "{section} {op}: one outcome per caller"
            );
            for (i, caller) in CALLERS.iter().enumerate() {
                n += 1;
                let got = match auth::from_bearer(&w.app, w.tokens[i].as_deref()) {
                    Ok(who) => run(&w, &who, op, n).await,
                    Err(e) => code::<()>(&Err(e)),
                };
                if got != want[i] {
                    wrong.push(format!(
                        "{section} {op} as {caller}: want {}, got {got}",
                        want[i]
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn refusals_name_the_role_and_hide_private_projects() {
    let w = world(true).await;
    let vic = auth::from_bearer(&w.app, w.tokens[1].as_deref()).unwrap();
    let args = builds::TriggerArgs {
        project: "p".into(),
        ..Default::default()
    };
    let e = builds::trigger(&w.app, &vic, args.clone())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "triggering a build of p needs the maintainer role on p; vic is a viewer there"
    );
    let e = builds::trigger(&w.app, &Principal::Anonymous, args)
        .await
        .unwrap_err();
    let missing = projects::get(&w.app, &Principal::Anonymous, "nope").unwrap_err();
    assert_eq!(e.to_string(), missing.to_string().replace("nope", "p"));
    let e = users::list(&w.app, &vic).unwrap_err();
    assert_eq!(
        e.to_string(),
        "this needs the admin role; vic is not an admin"
    );
    let e = auth::from_bearer(&w.app, w.tokens[6].as_deref()).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // Disabling a user deletes their tokens: the token is gone, not merely refused.
    let e = auth::from_bearer(&w.app, w.tokens[5].as_deref()).unwrap_err();
    assert!(e.to_string().contains("unknown or revoked"), "{e}");
    assert!(w
        .app
        .store
        .list_api_tokens()
        .unwrap()
        .iter()
        .all(|(_, t)| t.user != "dan"));
    let e = auth::from_bearer(&w.app, Some("khau_0000")).unwrap_err();
    assert!(e.to_string().contains("unknown or revoked"), "{e}");
}

#[tokio::test]
async fn a_removed_projects_name_is_not_reused_and_open_streams_follow_the_credential() {
    let w = world(true).await;
    let admin = Principal::Admin;
    // p has builds: once removed, its name cannot bring them back.
    projects::remove(&w.app, &admin, "p").await.unwrap();
    let again = projects::NewProject {
        name: "p".into(),
        repo_url: w.repo.clone(),
        default_branch: "main".into(),
        no_poll: true,
        ..Default::default()
    };
    let e = projects::add(&w.app, &admin, again).await.unwrap_err();
    assert!(e.to_string().contains("removed project"), "{e}");

    // An open event stream checks its credential again: a disabled user's
    // stream ends.
    let ola = auth::from_bearer(&w.app, w.tokens[3].as_deref()).unwrap();
    let a = events::WatchArgs {
        from: 1,
        follow: true,
        ..Default::default()
    };
    let mut s = events::watch(&w.app, &ola, a).unwrap();
    let token = w.tokens[3].clone();
    let app = w.app.clone();
    s.recheck_with(Box::new(move || auth::from_bearer(&app, token.as_deref())));
    let q = || builds::TriggerArgs {
        project: "q".into(),
        force: true,
        ..Default::default()
    };
    builds::trigger(&w.app, &admin, q()).await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), s.next()).await;
    assert_eq!(first.unwrap().unwrap().unwrap().project, "q");
    users::set_disabled(&w.app, &admin, "ola", true)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // Nothing more reaches ola: the next change ends the stream instead.
    builds::trigger(&w.app, &admin, q()).await.unwrap();
    let e = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), s.next()).await {
            Ok(Ok(Some(e))) => assert!(e.project != "q", "an event after disabling: {e:?}"),
            Ok(other) => break other.unwrap_err(),
            Err(_) => panic!("the stream neither ended nor went on"),
        }
    };
    assert!(matches!(e, ApiError::Unauthenticated(_)), "{e:?}");
}

#[tokio::test]
async fn sign_in_names_that_cannot_exist_are_not_kept_and_the_address_limit_holds() {
    let w = world(false).await;
    let addr: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let huge = "x".repeat(100_000);
    for _ in 0..auth::MAX_FAILURES_ADDR {
        let e = auth::check_password(&w.app, &huge, "pw", addr)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "wrong user name or password");
    }
    let e = auth::check_password(&w.app, "vic", "correct horse", addr)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("too many failed sign-ins from 192.0.2.7"),
        "{e}"
    );
    // Another address is not held back by that one.
    let other: std::net::IpAddr = "192.0.2.8".parse().unwrap();
    let name = auth::check_password(&w.app, "vic", "correct horse", other)
        .await
        .unwrap();
    assert_eq!(name, "vic");
}

#[tokio::test]
async fn github_sign_in_checks_the_organisations_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_dir: dir.path().join("data"),
        github: Some(crate::config::GithubConfig {
            client_id: "id".into(),
            client_secret: "secret".into(),
            authorize_url: "https://github.com/login/oauth/authorize".into(),
            token_url: "https://github.com/login/oauth/access_token".into(),
            api_url: "https://api.github.com".into(),
            default_role: Role::Viewer,
            orgs: vec!["kha-friends".into()],
        }),
        ..Config::default()
    };
    let app = App::open(cfg, CancellationToken::new()).unwrap();
    let mut gh = auth::GithubIdentity {
        id: 42,
        login: "Octo".into(),
        orgs: vec!["kha-friends".into()],
        ..Default::default()
    };
    assert_eq!(auth::github_user(&app, &gh).await.unwrap(), "octo");
    let u = app.store.get_user("octo").unwrap().unwrap();
    assert_eq!(u.role, Role::Viewer);
    gh.orgs.clear();
    let e = auth::github_user(&app, &gh).await.unwrap_err();
    assert!(matches!(e, ApiError::Denied(_)), "{e:?}");
    assert!(e.to_string().contains("members of kha-friends"), "{e}");
}

#[tokio::test]
async fn a_flood_of_wrong_enrolment_tokens_is_held_back_by_address() {
    let w = world(false).await;
    let admin = Principal::Admin;
    let flood: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    for i in 0..builders::MAX_ENROL_FAILURES_ADDR {
        let e = builders::enrol(&w.app, &format!("khaet_guess{i}"), "x", Some(flood))
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::Unauthenticated(_)), "{e:?}");
    }
    // From there, even a good token waits: it is not compared at all.
    let good = builders::create_token(&w.app, &admin, "t")
        .await
        .unwrap()
        .token;
    let e = builders::enrol(&w.app, &good, "x", Some(flood))
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::TooMany(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("too many failed enrolments from 192.0.2.7"),
        "{e}"
    );
    // A builder enrolling from elsewhere is not held back, and an enrolled
    // builder authenticates with its own secret as before.
    let other: std::net::IpAddr = "192.0.2.8".parse().unwrap();
    let (id, secret) = builders::enrol(&w.app, &good, "y", Some(other))
        .await
        .unwrap();
    let cred = format!("{id}:{}", secret.expose());
    assert_eq!(builders::authenticate(&w.app, Some(&cred)).unwrap().id, id);
    assert!(builders::authenticate(&w.app, Some(&format!("{}:nope", w.builder))).is_err());
}

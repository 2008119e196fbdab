//! End to end: `tests/permissions.table` driven through the real control
//! node's two interfaces, gRPC (what the CLI speaks) and HTTP (the JSON
//! API, SSE and badges), for a public and for a private project. Every
//! caller holds a real credential: an API token from `Login` (or none).
//!
//! Operations an interface does not offer are skipped for it and named in
//! `NOT_OVER_GRPC` (gRPC has no job, pull-request, badge, overview or queue
//! calls: the CLI reads those through builds and events).
#![allow(clippy::unwrap_used)]

use kha_proto::admin::admin_service_client::AdminServiceClient;
use kha_proto::admin::*;
use kha_proto::agent::agent_service_client::AgentServiceClient;
use kha_proto::agent::RegisterRequest;
use kha_tests::*;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

const TABLE: &str = include_str!("../permissions.table");
const CALLERS: [&str; 7] = [
    "anon", "viewer", "maint", "other", "admin", "disabled", "expired",
];
const NOT_OVER_GRPC: [&str; 5] = [
    "job.get",
    "build.pulls",
    "branch.status",
    "overview",
    "queue",
];

fn rows(section: &str) -> Vec<(String, Vec<String>)> {
    let mut out = vec![];
    let mut current = String::new();
    for line in TABLE.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            current = s.to_string();
            continue;
        }
        if current == section {
            let mut cols = line.split_whitespace().map(String::from);
            let op = cols.next().unwrap();
            out.push((op, cols.collect()));
        }
    }
    out
}

struct World {
    c: Cluster,
    ch: Channel,
    tokens: Vec<Option<String>>,
    build: u64,
    job: u64,
    builder: String,
    repo: String,
}

fn req<T>(token: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn role(r: Role) -> i32 {
    r as i32
}

async fn world(private: bool, repo: &Repo) -> World {
    let extra: &[&str] = if private { &["--private"] } else { &[] };
    let c = Fixture::new()
        .project_with("p", &repo.url(), extra)
        .project("q", &repo.url())
        .start();
    let ch = Channel::from_shared(format!("http://{}", c.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut a = AdminServiceClient::new(ch.clone());
    let admin = c.admin_token();
    let at = Some(admin.as_str());
    let mut tokens = vec![None];
    for (name, global, on) in [
        ("vic", Role::None, Some(("p", Role::Viewer))),
        ("max", Role::None, Some(("p", Role::Maintainer))),
        ("ola", Role::None, Some(("q", Role::Maintainer))),
        ("ada", Role::Admin, None),
        ("dan", Role::None, Some(("p", Role::Maintainer))),
        ("eve", Role::None, Some(("p", Role::Maintainer))),
    ] {
        let add = AddUserRequest {
            name: name.into(),
            password: "correct horse".into(),
            role: role(global),
            email: String::new(),
        };
        a.add_user(req(at, add)).await.unwrap();
        if let Some((p, r)) = on {
            let set = SetRoleRequest {
                user: name.into(),
                project: p.into(),
                role: role(r),
            };
            a.set_role(req(at, set)).await.unwrap();
        }
        let login = LoginRequest {
            user: name.into(),
            password: "correct horse".into(),
            token_name: "table".into(),
        };
        let t = if name == "eve" {
            // An expired token: eve's own, made to expire in a second.
            let tok = a.login(req(None, login)).await.unwrap().into_inner().token;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let short = CreateTokenRequest {
                name: "short".into(),
                expires_ms: now + 1000,
            };
            a.create_token(req(Some(&tok), short))
                .await
                .unwrap()
                .into_inner()
                .token
        } else {
            a.login(req(None, login)).await.unwrap().into_inner().token
        };
        tokens.push(Some(t));
    }
    let off = SetUserDisabledRequest {
        user: "dan".into(),
        disabled: true,
    };
    a.set_user_disabled(req(at, off)).await.unwrap();
    let trig = TriggerBuildRequest {
        project: "p".into(),
        ..Default::default()
    };
    let b = a
        .trigger_build(req(at, trig))
        .await
        .unwrap()
        .into_inner()
        .build
        .unwrap();
    let et = a
        .create_enrolment_token(req(at, CreateEnrolmentTokenRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .token;
    let builder = AgentServiceClient::new(ch.clone())
        .register(RegisterRequest {
            enrolment_token: et,
            name: "b1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .builder_id;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    World {
        build: b.id,
        job: b.jobs[0].id,
        c,
        ch,
        tokens,
        builder,
        repo: repo.url(),
    }
}

fn grpc_code<T>(r: &Result<T, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(s) => match s.code() {
            Code::FailedPrecondition | Code::AlreadyExists => "ok".into(),
            Code::NotFound => "404".into(),
            Code::Unauthenticated => "401".into(),
            Code::PermissionDenied => "403".into(),
            c => format!("unexpected {c:?}: {}", s.message()),
        },
    }
}

fn grpc_listed<T>(r: Result<T, tonic::Status>, has_p: impl Fn(&T) -> bool) -> String {
    match &r {
        Ok(v) if has_p(v) => "ok".into(),
        Ok(_) => "hidden".into(),
        Err(_) => grpc_code(&r),
    }
}

/// A daily schedule of p's main.
fn daily() -> AddScheduleRequest {
    AddScheduleRequest {
        project: "p".into(),
        branch: "main".into(),
        interval: "daily".into(),
        ..Default::default()
    }
}

async fn over_grpc(w: &World, t: Option<&str>, op: &str, n: usize) -> String {
    let mut a = AdminServiceClient::new(w.ch.clone());
    let admin = w.c.admin_token();
    let p = || "p".to_string();
    match op {
        "project.list" => grpc_listed(a.list_projects(req(t, ListProjectsRequest {})).await, |r| {
            r.get_ref().projects.iter().any(|x| x.name == "p")
        }),
        "project.get" => grpc_code(&a.get_project(req(t, GetProjectRequest { name: p() })).await),
        "project.key" => grpc_code(
            &a.get_project_key(req(t, GetProjectKeyRequest { project: p() }))
                .await,
        ),
        "project.members" => grpc_code(
            &a.list_members(req(t, ListMembersRequest { project: p() }))
                .await,
        ),
        "project.notify" => grpc_code(
            &a.get_notify(req(t, GetNotifyRequest { project: p() }))
                .await,
        ),
        "project.update" => {
            let cur = a
                .get_project(req(Some(&admin), GetProjectRequest { name: p() }))
                .await
                .unwrap()
                .into_inner()
                .private;
            let u = UpdateProjectRequest {
                name: p(),
                private: Some(cur),
                ..Default::default()
            };
            grpc_code(&a.update_project(req(t, u)).await)
        }
        "project.add" => {
            let r = AddProjectRequest {
                name: format!("new{n}"),
                repo_url: w.repo.clone(),
                default_branch: "main".into(),
                no_poll: true,
                ..Default::default()
            };
            grpc_code(&a.add_project(req(t, r)).await)
        }
        "project.remove" => {
            let r = AddProjectRequest {
                name: format!("gone{n}"),
                repo_url: w.repo.clone(),
                default_branch: "main".into(),
                no_poll: true,
                ..Default::default()
            };
            a.add_project(req(Some(&admin), r)).await.unwrap();
            let rm = RemoveProjectRequest {
                name: format!("gone{n}"),
            };
            grpc_code(&a.remove_project(req(t, rm)).await)
        }
        "cron.list" => grpc_code(
            &a.list_schedules(req(t, ListSchedulesRequest { project: p() }))
                .await,
        ),
        "cron.add" => grpc_code(&a.add_schedule(req(t, daily())).await),
        "cron.remove" => {
            let id = a
                .add_schedule(req(Some(&admin), daily()))
                .await
                .unwrap()
                .into_inner()
                .id;
            grpc_code(
                &a.remove_schedule(req(t, RemoveScheduleRequest { id }))
                    .await,
            )
        }
        "branch.list" => grpc_code(
            &a.list_branches(req(t, ListBranchesRequest { project: p() }))
                .await,
        ),
        "build.list" => {
            let r = ListBuildsRequest {
                project: p(),
                ..Default::default()
            };
            grpc_code(&a.list_builds(req(t, r)).await)
        }
        "build.get" => grpc_code(
            &a.get_build(req(t, GetBuildRequest { build_id: w.build }))
                .await,
        ),
        "build.trigger" => {
            let r = TriggerBuildRequest {
                project: p(),
                force: true,
                ..Default::default()
            };
            grpc_code(&a.trigger_build(req(t, r)).await)
        }
        "build.restart" => grpc_code(
            &a.restart_build(req(t, GetBuildRequest { build_id: w.build }))
                .await,
        ),
        "build.cancel" => grpc_code(
            &a.cancel_build(req(t, GetBuildRequest { build_id: w.build }))
                .await,
        ),
        "log.read" => {
            let r = FollowLogRequest {
                job_id: w.job,
                offset: 0,
                follow: false,
                attempt: 0,
            };
            match a.follow_log(req(t, r)).await {
                Ok(mut s) => {
                    // The first message (or the end) says whether reading was allowed.
                    match s.get_mut().message().await {
                        Ok(_) => "ok".into(),
                        Err(e) => grpc_code::<()>(&Err(e)),
                    }
                }
                Err(e) => grpc_code::<()>(&Err(e)),
            }
        }
        "events.read" => {
            let r = WatchEventsRequest {
                from: 1,
                follow: false,
                ..Default::default()
            };
            match a.watch_events(req(t, r)).await {
                Ok(mut s) => {
                    let mut seen = false;
                    loop {
                        match s.get_mut().message().await {
                            Ok(Some(e)) => seen |= e.project == "p",
                            Ok(None) => break,
                            Err(e) => return grpc_code::<()>(&Err(e)),
                        }
                    }
                    if seen { "ok" } else { "hidden" }.into()
                }
                Err(e) => grpc_code::<()>(&Err(e)),
            }
        }
        "star" => grpc_code(
            &a.star(req(
                t,
                StarRequest {
                    project: p(),
                    on: true,
                },
            ))
            .await,
        ),
        "builder.list" => grpc_code(&a.list_builders(req(t, ListBuildersRequest {})).await),
        "builder.trust" => grpc_code(
            &a.set_builder_trusted(req(
                t,
                SetBuilderTrustedRequest {
                    builder_id: w.builder.clone(),
                    trusted: true,
                },
            ))
            .await,
        ),
        "builder.drain" => grpc_code(
            &a.drain_builder(req(
                t,
                BuilderRequest {
                    builder_id: w.builder.clone(),
                },
            ))
            .await,
        ),
        "builder.token.create" => grpc_code(
            &a.create_enrolment_token(req(t, CreateEnrolmentTokenRequest::default()))
                .await,
        ),
        "builder.token.list" => grpc_code(
            &a.list_enrolment_tokens(req(t, ListEnrolmentTokensRequest {}))
                .await,
        ),
        "user.list" => grpc_code(&a.list_users(req(t, ListUsersRequest {})).await),
        "user.add" => {
            let r = AddUserRequest {
                name: format!("new{n}"),
                ..Default::default()
            };
            grpc_code(&a.add_user(req(t, r)).await)
        }
        "user.role" => {
            let r = SetRoleRequest {
                user: "vic".into(),
                project: p(),
                role: role(Role::Viewer),
            };
            grpc_code(&a.set_role(req(t, r)).await)
        }
        "user.disable" => {
            let r = SetUserDisabledRequest {
                user: "ola".into(),
                disabled: false,
            };
            grpc_code(&a.set_user_disabled(req(t, r)).await)
        }
        "audit.list" => grpc_code(&a.list_audit(req(t, ListAuditRequest::default())).await),
        "token.create" => {
            let r = CreateTokenRequest {
                name: "more".into(),
                expires_ms: 0,
            };
            grpc_code(&a.create_token(req(t, r)).await)
        }
        "token.list" => grpc_code(&a.list_tokens(req(t, ListTokensRequest {})).await),
        "whoami" => grpc_code(&a.whoami(req(t, WhoamiRequest {})).await),
        other => panic!("the table names an operation this test does not know: {other}"),
    }
}

fn http_code(r: &Response) -> String {
    match r.status {
        200..=299 | 409 => "ok".into(),
        404 => "404".into(),
        401 => "401".into(),
        403 => "403".into(),
        s => format!("unexpected {s}: {}", r.text()),
    }
}

fn http_listed(r: &Response, has_p: impl Fn(&serde_json::Value) -> bool) -> String {
    match r.status {
        200 if has_p(&r.json()) => "ok".into(),
        200 => "hidden".into(),
        _ => http_code(r),
    }
}

fn over_http(w: &World, t: Option<&str>, op: &str, n: usize) -> String {
    let base = w.c.http_url();
    let auth = t.map(|t| format!("Bearer {t}"));
    let admin = format!("Bearer {}", w.c.admin_token());
    let call = |method: &str, path: &str, body: &str, who: Option<&str>| {
        let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        if let Some(a) = who {
            h.push(("Authorization", a));
        }
        http_request(&base, method, path, &h, body.as_bytes())
    };
    let me = auth.as_deref();
    let (b, j) = (w.build, w.job);
    let is_p = |v: &serde_json::Value| v["name"] == "p";
    match op {
        "project.list" => http_listed(&call("GET", "/api/v1/projects", "", me), |v| {
            v.as_array().unwrap().iter().any(is_p)
        }),
        "project.get" => http_code(&call("GET", "/api/v1/projects/p", "", me)),
        "project.key" => http_code(&call("GET", "/api/v1/projects/p/key", "", me)),
        "project.members" => http_code(&call("GET", "/api/v1/projects/p/members", "", me)),
        "project.notify" => http_code(&call("GET", "/api/v1/projects/p/notify", "", me)),
        "project.update" => {
            let cur = call("GET", "/api/v1/projects/p", "", Some(&admin)).json()["private"]
                .as_bool()
                .unwrap();
            let body = format!("{{\"private\":{cur}}}");
            http_code(&call("POST", "/api/v1/projects/p/settings", &body, me))
        }
        "project.add" => {
            let body = format!(
                "{{\"name\":\"hnew{n}\",\"repo_url\":{:?},\"default_branch\":\"main\",\"no_poll\":true}}",
                w.repo
            );
            http_code(&call("POST", "/api/v1/projects", &body, me))
        }
        "project.remove" => {
            let body = format!(
                "{{\"name\":\"hgone{n}\",\"repo_url\":{:?},\"default_branch\":\"main\",\"no_poll\":true}}",
                w.repo
            );
            let made = call("POST", "/api/v1/projects", &body, Some(&admin));
            assert_eq!(made.status, 201, "{}", made.text());
            http_code(&call(
                "DELETE",
                &format!("/api/v1/projects/hgone{n}"),
                "",
                me,
            ))
        }
        "cron.list" => http_code(&call("GET", "/api/v1/projects/p/schedules", "", me)),
        "cron.add" => http_code(&call(
            "POST",
            "/api/v1/projects/p/schedules",
            "{\"branch\":\"main\",\"interval\":\"daily\"}",
            me,
        )),
        "cron.remove" => {
            let made = call(
                "POST",
                "/api/v1/projects/p/schedules",
                "{\"branch\":\"main\",\"interval\":\"daily\"}",
                Some(&admin),
            );
            assert_eq!(made.status, 201, "{}", made.text());
            let id = made.json()["id"].as_u64().unwrap();
            http_code(&call("DELETE", &format!("/api/v1/schedules/{id}"), "", me))
        }
        "branch.list" => http_code(&call("GET", "/api/v1/projects/p/branches", "", me)),
        "branch.status" => http_code(&call("GET", "/badge/p.svg", "", me)),
        "build.list" => http_code(&call("GET", "/api/v1/projects/p/builds", "", me)),
        "build.get" => http_code(&call("GET", &format!("/api/v1/builds/{b}"), "", me)),
        "build.pulls" => http_code(&call("GET", "/api/v1/projects/p/pulls", "", me)),
        "build.trigger" => http_code(&call(
            "POST",
            "/api/v1/projects/p/builds",
            "{\"force\":true}",
            me,
        )),
        "build.restart" => http_code(&call(
            "POST",
            &format!("/api/v1/builds/{b}/restart"),
            "",
            me,
        )),
        "build.cancel" => http_code(&call("POST", &format!("/api/v1/builds/{b}/cancel"), "", me)),
        "job.get" => http_code(&call("GET", &format!("/api/v1/jobs/{j}"), "", me)),
        "log.read" => http_code(&call("GET", &format!("/api/v1/jobs/{j}/log"), "", me)),
        "events.read" => {
            let r = call("GET", "/api/v1/events?from=1&follow=0", "", me);
            match r.status {
                200 if r.text().contains("\"project\":\"p\"") => "ok".into(),
                200 => "hidden".into(),
                _ => http_code(&r),
            }
        }
        "overview" => http_listed(&call("GET", "/api/v1/overview", "", me), |v| {
            v["projects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| is_p(&s["project"]))
        }),
        "queue" => http_listed(&call("GET", "/api/v1/queue", "", me), |v| {
            v.as_array().unwrap().iter().any(|q| q["project"] == "p")
        }),
        "star" => http_code(&call("POST", "/api/v1/projects/p/star", "", me)),
        "builder.list" => http_code(&call("GET", "/api/v1/builders", "", me)),
        "builder.trust" => http_code(&call(
            "POST",
            &format!("/api/v1/builders/{}/trust", w.builder),
            "",
            me,
        )),
        "builder.drain" => http_code(&call(
            "POST",
            &format!("/api/v1/builders/{}/drain", w.builder),
            "",
            me,
        )),
        "builder.token.create" => http_code(&call("POST", "/api/v1/enrolment-tokens", "{}", me)),
        "builder.token.list" => http_code(&call("GET", "/api/v1/enrolment-tokens", "", me)),
        "user.list" => http_code(&call("GET", "/api/v1/users", "", me)),
        "user.add" => {
            let body = format!("{{\"name\":\"hnew{n}\"}}");
            http_code(&call("POST", "/api/v1/users", &body, me))
        }
        "user.role" => http_code(&call(
            "POST",
            "/api/v1/users/vic/role",
            "{\"project\":\"p\",\"role\":\"viewer\"}",
            me,
        )),
        "user.disable" => http_code(&call(
            "POST",
            "/api/v1/users/ola/disabled",
            "{\"disabled\":false}",
            me,
        )),
        "audit.list" => http_code(&call("GET", "/api/v1/audit", "", me)),
        "token.create" => http_code(&call("POST", "/api/v1/tokens", "{\"name\":\"more\"}", me)),
        "token.list" => http_code(&call("GET", "/api/v1/tokens", "", me)),
        "whoami" => http_code(&call("GET", "/api/v1/whoami", "", me)),
        other => panic!("the table names an operation this test does not know: {other}"),
    }
}

#[test]
fn the_permission_table_holds_through_grpc_and_http() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let repo = Repo::with_travis_yml("language: shell\nscript: true\n");
    let mut wrong = vec![];
    let mut n = 0;
    for private in [false, true] {
        let section = if private { "private" } else { "public" };
        let w = rt.block_on(world(private, &repo));
        for (op, want) in rows(section) {
            for (i, caller) in CALLERS.iter().enumerate() {
                n += 1;
                let t = w.tokens[i].as_deref();
                if !NOT_OVER_GRPC.contains(&op.as_str()) {
                    let got = rt.block_on(over_grpc(&w, t, &op, n));
                    if got != want[i] {
                        wrong.push(format!(
                            "gRPC {section} {op} as {caller}: want {}, got {got}",
                            want[i]
                        ));
                    }
                }
                if std::env::var_os("GRPC_ONLY").is_some() {
                    continue;
                }
                let got = over_http(&w, t, &op, n);
                if got != want[i] {
                    wrong.push(format!(
                        "HTTP {section} {op} as {caller}: want {}, got {got}",
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

//! The web UI's server over real HTTP: a control node's `App` in a temp dir
//! with a real git repository, its router served on a port-0 listener, and
//! plain HTTP/1.1 requests written on a `TcpStream`, so what is checked is
//! exactly what a browser or a program receives.

use crate::api::{auth, builds, projects, users, ApiError, Principal};
use crate::app::App;
use crate::config::Config;
use kha_core::view::Role;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const TRAVIS: &str = "language: shell\nenv:\n  - A=1\n  - A=2\nscript: true\n";
const XSS: &str = "<script>window.__pwned = 1</script>";

struct Server {
    _dir: tempfile::TempDir,
    app: Arc<App>,
    addr: SocketAddr,
    token: String,
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada \"&amp\" Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.org")
        .env("GIT_COMMITTER_NAME", "kha")
        .env("GIT_COMMITTER_EMAIL", "kha@example.org")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A control node with project `p` (branch `main`, and a branch whose name
/// is markup) and its router on a port-0 listener.
async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".travis.yml"), TRAVIS).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", &format!("first {XSS}")]);
    git(&repo, &["branch", "x<script>y"]);
    let cfg = Config {
        data_dir: dir.path().join("data"),
        heartbeat_ms: 100,
        ..Config::default()
    };
    let app = App::open(cfg, CancellationToken::new()).unwrap();
    let token = crate::admin_token(&dir.path().join("data")).unwrap();
    let new = projects::NewProject {
        name: "p".into(),
        repo_url: repo.to_string_lossy().into_owned(),
        no_poll: true,
        ..Default::default()
    };
    projects::add(&app, &Principal::Admin, new).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (router, stop) = (super::router(app.clone()), app.shutdown.clone());
    app.spawn("http", async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, service)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Server {
        _dir: dir,
        app,
        addr,
        token,
    }
}

async fn trigger(s: &Server, branch: &str) -> kha_core::view::Build {
    let args = builds::TriggerArgs {
        project: "p".into(),
        branch: branch.into(),
        ..Default::default()
    };
    builds::trigger(&s.app, &Principal::Admin, args)
        .await
        .unwrap()
        .build
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    /// The `Set-Cookie` header that sets (or clears) cookie `name`.
    fn set_cookie(&self, name: &str) -> &str {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
            .unwrap_or("")
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let Some(i) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&raw[..i]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&raw[i + 2..i + 2 + n]);
        raw = &raw[i + 4 + n..];
    }
}

/// One request on a fresh connection (`Connection: close`), read to its end.
async fn request(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        s.addr,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    c.write_all(req.as_bytes()).await.unwrap();
    let mut raw = vec![];
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(s: &Server, path: &str) -> Reply {
    request(s, "GET", path, &[], "").await
}

/// Opens an SSE stream and reads until `until` holds of what came (or 10 s).
async fn sse(
    s: &Server,
    path: &str,
    headers: &[(&str, &str)],
    until: impl Fn(&str) -> bool,
) -> String {
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
        s.addr
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !until(&got) {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    got
}

/// The `id:` lines of an SSE transcript, in order.
fn ids(t: &str) -> Vec<u64> {
    t.lines()
        .filter_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

#[tokio::test]
async fn pages_render_escaped_and_unknown_things_are_404() {
    let s = server().await;
    let b = trigger(&s, "main").await;
    let evil = trigger(&s, "x<script>y").await;

    for path in [
        "/",
        "/projects/p",
        "/queue",
        "/builders",
        "/login",
        &format!("/builds/{}", b.id),
    ] {
        let r = get(&s, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.header("content-type").starts_with("text/html"), "{path}");
        assert!(r.body.contains("<main id=\"main\""), "{path}");
        assert!(r.body.contains("data-seq=\""), "{path}");
        assert!(
            !r.body.contains("<script>window"),
            "{path} lets markup through"
        );
    }
    let page = get(&s, &format!("/builds/{}", evil.id)).await;
    // askama escapes with numeric entities.
    assert!(
        page.body
            .contains("first &#60;script&#62;window.__pwned = 1&#60;/script&#62;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("x&#60;script&#62;y"), "{}", page.body);
    assert!(
        page.body.contains("Ada &#34;&#38;amp&#34; Lovelace"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"build\" data-state=\"queued\""));
    let project = get(&s, "/projects/p").await.body;
    assert!(
        project.contains("data-branch=\"x&#60;script&#62;y\""),
        "{project}"
    );
    assert!(!project.contains("id=\"schedules\""), "none yet: {project}");
    let nightly = crate::api::schedules::NewSchedule {
        project: "p".into(),
        branch: "main".into(),
        cron: "0 3 * * *".into(),
        dont_run_if_recent_build_exists: true,
        ..Default::default()
    };
    crate::api::schedules::add(&s.app, &crate::api::Principal::Admin, nightly)
        .await
        .unwrap();
    let project = get(&s, "/projects/p").await.body;
    assert!(
        project.contains("<td>cron 0 3 * * *, unless built in 24 h</td>"),
        "{project}"
    );
    assert!(project.contains("T03:00:00Z</time>"), "{project}");
    assert!(project.contains("/badge/p.svg"), "{project}");
    assert!(project.contains("/hooks/generic/p"), "{project}");
    let overview = get(&s, "/").await.body;
    assert!(overview.contains("data-project=\"p\""), "{overview}");
    let queue = get(&s, "/queue").await.body;
    let job = b.jobs[0].id;
    assert!(queue.contains(&format!("data-job=\"{job}\"")), "{queue}");
    let jp = get(&s, &format!("/jobs/{job}")).await;
    assert_eq!(jp.status, 200);
    assert!(jp
        .body
        .contains(&format!("data-stream=\"/api/v1/jobs/{job}/log/stream\"")));

    for path in [
        "/builds/abc",
        "/builds/99999",
        "/jobs/-1",
        "/jobs/99999",
        "/projects/nope",
        "/nope/at/all",
        "/jobs/99999/log.txt",
        "/badge/nope.svg",
    ] {
        let r = get(&s, path).await;
        assert_eq!(r.status, 404, "{path}");
        if !path.starts_with("/badge") {
            assert!(r.body.contains("<h1>Not found</h1>"), "{path}: {}", r.body);
        }
    }
    // Asset URLs carry a content hash and are cached for good.
    let css = get(&s, "/assets/kha.css").await;
    assert_eq!(css.status, 200);
    assert_eq!(
        css.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(overview.contains("/assets/kha.css?v="));
    s.app.shutdown.cancel();
}

#[tokio::test]
async fn json_api_answers_views_and_json_errors() {
    let s = server().await;
    let b = trigger(&s, "main").await;
    let r = get(&s, &format!("/api/v1/builds/{}", b.id)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["id"], b.id);
    for path in [
        "/api/v1/overview",
        "/api/v1/projects",
        "/api/v1/projects/p",
        "/api/v1/projects/p/branches",
        "/api/v1/projects/p/pulls",
        "/api/v1/projects/p/builds",
        "/api/v1/builders",
        "/api/v1/queue",
    ] {
        let r = get(&s, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap();
    }
    for (path, status, code) in [
        ("/api/v1/builds/99999", 404, "not_found"),
        ("/api/v1/builds/abc", 404, "not_found"),
        ("/api/v1/projects/nope", 404, "not_found"),
        ("/api/v1/projects/p/builds?per_page=500", 400, "invalid"),
        ("/api/v1/projects/p/builds?page=x", 400, "invalid"),
        ("/api/v1/nothing", 404, "not_found"),
        ("/api/v1/events?kinds=bogus", 400, "invalid"),
    ] {
        let r = get(&s, path).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["code"], code, "{path}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Writes: nothing → 401; the cookie without the CSRF header → 403;
    // a bearer token → done.
    let path = format!("/api/v1/builds/{}/cancel", b.id);
    let r = request(&s, "POST", &path, &[], "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("\"unauthenticated\""));
    let cookie = login_cookie(&s).await;
    let r = request(&s, "POST", &path, &[("Cookie", &cookie)], "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("\"denied\""));
    let wrong = "Bearer nope";
    let r = request(&s, "POST", &path, &[("Authorization", wrong)], "").await;
    assert_eq!(r.status, 401);
    let bearer = format!("Bearer {}", s.token);
    let r = request(&s, "POST", &path, &[("Authorization", &bearer)], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["state"], "canceled");
    let r = request(
        &s,
        "POST",
        "/api/v1/projects/p/builds",
        &[("Authorization", &bearer)],
        "{\"branch\":\"main\",\"force\":true}",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = request(
        &s,
        "POST",
        "/api/v1/projects/p/builds",
        &[("Authorization", &bearer)],
        "{not json",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    s.app.shutdown.cancel();
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// What a browser does to sign in: GET the sign-in page (for its
/// `kha_pre` cookie and the form's copy of it), then POST the form with
/// `fields` ("name=…&password=…" or "token=…") and `next=/builders`.
async fn sign_in(s: &Server, fields: &str) -> Reply {
    let page = get(s, "/login").await;
    let pre_cookie = page
        .set_cookie("kha_pre")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let pre = field(&page.body, "pre");
    assert!(pre_cookie.ends_with(&pre), "{pre_cookie} / {pre}");
    let next = if fields.contains("next=") {
        ""
    } else {
        "&next=%2Fbuilders"
    };
    let body = format!("{fields}&pre={pre}{next}");
    let h = [FORM, ("Cookie", &pre_cookie)];
    request(s, "POST", "/login", &h, &body).await
}

/// The value of the first `<input name=NAME value=…>` of a page.
fn field(page: &str, name: &str) -> String {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no {name} field in {page}"))
        .to_string()
}

/// A signed-in session: its `Cookie` header and its CSRF token.
async fn session(s: &Server, fields: &str) -> (String, String) {
    let r = sign_in(s, fields).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r
        .set_cookie("kha_session")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = get_with(s, "/", &cookie).await;
    (cookie.clone(), field(&page, "csrf"))
}

async fn login_cookie(s: &Server) -> String {
    session(s, &format!("token={}", s.token)).await.0
}

/// Adds user `name` with `password` and global `role`.
async fn add_user(s: &Server, name: &str, password: &str, role: Role) {
    let new = users::NewUser {
        name: name.into(),
        password: password.into(),
        role,
        email: String::new(),
    };
    users::add(&s.app, &Principal::Admin, new).await.unwrap();
}

#[tokio::test]
async fn sessions_use_lax_httponly_cookies_and_forms_need_the_csrf_token() {
    let s = server().await;
    let b = trigger(&s, "main").await;
    add_user(&s, "alice", "alice-password-1", Role::Maintainer).await;

    // Wrong credentials: no cookie, and the page says why.
    let r = sign_in(&s, "token=wrong").await;
    assert_eq!(r.status, 401);
    assert!(r.set_cookie("kha_session").is_empty());
    assert!(r.body.contains("wrong admin token"), "{}", r.body);
    let r = sign_in(&s, "name=alice&password=nope-nope").await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("wrong user name or password"), "{}", r.body);
    assert!(
        r.body.contains("value=\"alice\""),
        "the name is kept: {}",
        r.body
    );
    // Without the sign-in page's kha_pre cookie (a form on another site): refused.
    let body = "name=alice&password=alice-password-1&pre=00&next=%2F";
    let r = request(&s, "POST", "/login", &[FORM], body).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.set_cookie("kha_session").is_empty());

    let r = sign_in(&s, "name=alice&password=alice-password-1").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), "/builders");
    let set = r.set_cookie("kha_session");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(flag), "{set} lacks {flag}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    assert!(!set.contains("alice-password-1"));
    assert!(
        r.set_cookie("kha_pre").contains("Max-Age=0"),
        "kha_pre is cleared"
    );
    // Never an open redirect.
    let r = sign_in(&s, &format!("token={}&next=%2F%2Fevil.example", s.token)).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), "/");

    let (cookie, csrf) = session(&s, "name=alice&password=alice-password-1").await;
    let nav = get_with(&s, "/", &cookie).await;
    assert!(
        nav.contains("id=\"whoami\" href=\"/account\">alice<"),
        "{nav}"
    );
    assert!(nav.contains("form class=\"logout\""), "{nav}");
    assert!(
        !nav.contains("href=\"/users\""),
        "no admin links for a maintainer"
    );
    let path = format!("/builds/{}/cancel", b.id);
    // Without a session: to the sign-in page, and back afterwards.
    let r = request(&s, "POST", &path, &[FORM], "csrf=x").await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        format!("/login?next=%2Fbuilds%2F{}", b.id)
    );
    // With the session but without the token, or a wrong one: refused.
    for body in ["", "csrf=", "csrf=0123"] {
        let h = [FORM, ("Cookie", &cookie)];
        let r = request(&s, "POST", &path, &h, body).await;
        assert_eq!(r.status, 403, "{body:?}: {}", r.body);
        assert!(r.body.contains("CSRF"), "{}", r.body);
    }
    let page = get_with(&s, &format!("/builds/{}", b.id), &cookie).await;
    assert!(page.contains("form class=\"cancel\""), "{page}");
    let h = [FORM, ("Cookie", &cookie)];
    let r = request(&s, "POST", &path, &h, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), format!("/builds/{}", b.id));
    let after = builds::get(&s.app, &Principal::Admin, b.id).unwrap();
    assert_eq!(after.state, kha_core::BuildState::Canceled);
    // Anonymous readers get no forms and no token.
    let anon = get(&s, &format!("/builds/{}", b.id)).await.body;
    assert!(!anon.contains("name=\"csrf\""), "{anon}");
    assert!(anon.contains("id=\"signin\""), "{anon}");

    // Signing out ends the session on the server: the copied cookie is dead.
    let r = request(&s, "POST", "/logout", &h, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303);
    assert!(r.set_cookie("kha_session").contains("Max-Age=0"));
    let r = request(&s, "POST", &path, &h, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303, "signed out: to the sign-in page");
    assert!(r.header("location").starts_with("/login"));
    let me = request(&s, "GET", "/api/v1/whoami", &[("Cookie", &cookie)], "").await;
    assert!(me.body.contains("\"kind\":\"anonymous\""), "{}", me.body);
    s.app.shutdown.cancel();
}

#[tokio::test]
async fn the_tenth_wrong_password_is_answered_429() {
    let s = server().await;
    add_user(&s, "bob", "bob-password-1", Role::Viewer).await;
    for i in 1..=9 {
        let r = sign_in(&s, "name=bob&password=wrong-wrong").await;
        assert_eq!(r.status, 401, "try {i}: {}", r.body);
    }
    // Even the right password waits now: the answer must not tell.
    for pw in ["wrong-wrong", "bob-password-1"] {
        let r = sign_in(&s, &format!("name=bob&password={pw}")).await;
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(
            r.body.contains("too many failed sign-ins for bob")
                && r.body.contains("try again in 15 minutes"),
            "{}",
            r.body
        );
        assert!(r.set_cookie("kha_session").is_empty());
    }
    // The JSON error has its own code.
    let err = api_error(ApiError::TooMany("x".into()));
    assert_eq!(err, (429, "too_many"));
    s.app.shutdown.cancel();
}

fn api_error(e: ApiError) -> (u16, &'static str) {
    let (status, code) = super::error::status_of(&e);
    (status.as_u16(), code)
}

#[tokio::test]
async fn roles_decide_what_each_page_offers_and_allows() {
    let s = server().await;
    add_user(&s, "ada", "ada-password-1", Role::Admin).await;
    add_user(&s, "val", "val-password-1", Role::None).await;
    add_user(&s, "max", "max-password-1", Role::None).await;
    users::set_role(&s.app, &Principal::Admin, "val", Some("p"), Role::Viewer)
        .await
        .unwrap();
    users::set_role(
        &s.app,
        &Principal::Admin,
        "max",
        Some("p"),
        Role::Maintainer,
    )
    .await
    .unwrap();
    let (max, max_csrf) = session(&s, "name=max&password=max-password-1").await;
    let (val, val_csrf) = session(&s, "name=val&password=val-password-1").await;
    let (ada, ada_csrf) = session(&s, "name=ada&password=ada-password-1").await;

    // A maintainer triggers from the project page and lands on the build.
    let page = get_with(&s, "/projects/p", &max).await;
    assert!(page.contains("form id=\"trigger-build\""), "{page}");
    assert!(page.contains("form id=\"settings\""), "{page}");
    let h = [FORM, ("Cookie", max.as_str())];
    let body = format!("csrf={max_csrf}&branch=main");
    let r = request(&s, "POST", "/projects/p/trigger", &h, &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id: u64 = r
        .header("location")
        .strip_prefix("/builds/")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        builds::get(&s.app, &Principal::Admin, id).unwrap().branch,
        "main"
    );

    // A viewer sees no such forms, and the service refuses the POST anyway.
    let page = get_with(&s, "/projects/p", &val).await;
    assert!(!page.contains("trigger-build") && !page.contains("id=\"settings\""));
    assert!(page.contains("form class=\"star\""), "{page}");
    let h = [FORM, ("Cookie", val.as_str())];
    let body = format!("csrf={val_csrf}&branch=main&force=on");
    let r = request(&s, "POST", "/projects/p/trigger", &h, &body).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body
            .contains("needs the maintainer role on p; val is a viewer there"),
        "{}",
        r.body
    );
    // Anonymous: the JSON API says to sign in.
    let r = request(&s, "POST", "/api/v1/projects/p/builds", &[], "").await;
    assert_eq!(r.status, 401, "{}", r.body);

    // The maintainer makes the project private: gone for anonymous readers
    // (as if it never existed), still there for its viewer.
    let h = [FORM, ("Cookie", max.as_str())];
    let body = format!(
        "csrf={max_csrf}&visibility=private&default_branch=main&timeout_secs=3000&poll_interval_secs=0&build_tags=on&share_secrets_with_forks=on&job_memory_mib=512&job_pids=0&job_cpus=0.25"
    );
    let r = request(&s, "POST", "/projects/p/settings", &h, &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let after = projects::get(&s.app, &Principal::Admin, "p").unwrap();
    assert!(after.private && after.share_secrets_with_forks);
    assert_eq!(
        (
            after.job_limits.memory_mib,
            after.job_limits.pids,
            after.job_limits.cpu_millis
        ),
        (512, 0, 250)
    );
    assert!(
        get_with(&s, "/projects/p", &max)
            .await
            .contains("name=\"job_cpus\" type=\"number\" min=\"0\" step=\"0.01\" value=\"0.25\""),
        "the settings form shows the limits"
    );
    // Only the limits, the running-job rules and the log retention change:
    // the form saves them (the rest is as it was).
    let body = format!(
        "csrf={max_csrf}&visibility=private&default_branch=main&timeout_secs=3000&poll_interval_secs=0&build_tags=on&share_secrets_with_forks=on&job_memory_mib=1024&job_pids=0&job_cpus=0.25&max_running_jobs=2&one_build_per_branch=on&log_keep_builds=10&log_max_age_days=30"
    );
    let r = request(&s, "POST", "/projects/p/settings", &h, &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let after = projects::get(&s.app, &Principal::Admin, "p").unwrap();
    assert_eq!(after.job_limits.memory_mib, 1024);
    assert_eq!(
        (
            after.max_running_jobs,
            after.one_build_per_branch,
            after.log_keep_builds,
            after.log_max_age_days
        ),
        (2, true, 10, 30)
    );
    let form = get_with(&s, "/projects/p", &max).await;
    assert!(
        form.contains("name=\"max_running_jobs\" type=\"number\" min=\"0\" value=\"2\"")
            && form.contains("name=\"one_build_per_branch\" checked")
            && form.contains("name=\"log_keep_builds\" type=\"number\" min=\"0\" value=\"10\""),
        "the settings form shows the rules and the retention"
    );
    let body = format!("csrf={max_csrf}&visibility=private&default_branch=main&timeout_secs=3000&poll_interval_secs=0&max_running_jobs=many");
    let r = request(&s, "POST", "/projects/p/settings", &h, &body).await;
    assert!(
        r.body
            .contains("running jobs &#34;many&#34;: give a whole number"),
        "{}",
        r.body
    );
    // The form shows the setting as it is.
    assert!(
        get_with(&s, "/projects/p", &max)
            .await
            .contains("name=\"share_secrets_with_forks\" checked"),
        "the settings form shows share-with-forks"
    );
    let nope = get(&s, "/projects/nope").await;
    let hidden = get(&s, "/projects/p").await;
    assert_eq!(hidden.status, 404);
    assert_eq!(
        hidden.body.replace("&#34;p&#34;", "&#34;nope&#34;"),
        nope.body,
        "a private project looks exactly like a missing one"
    );
    assert!(!get(&s, "/").await.body.contains("data-project=\"p\""));
    assert_eq!(get(&s, "/api/v1/projects/p").await.status, 404);
    assert_eq!(get(&s, &format!("/builds/{id}")).await.status, 404);
    let seen = get_with(&s, "/projects/p", &val).await;
    assert!(
        seen.contains("<span class=\"tag private\">private</span>"),
        "{seen}"
    );
    assert!(get_with(&s, "/", &val).await.contains("data-project=\"p\""));

    // Stars: the viewer stars it; it is marked on the overview.
    let h = [FORM, ("Cookie", val.as_str())];
    let r = request(
        &s,
        "POST",
        "/projects/p/star",
        &h,
        &format!("csrf={val_csrf}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let o = get_with(&s, "/", &val).await;
    assert!(o.contains("data-project=\"p\" class=\"starred\""), "{o}");
    assert!(get_with(&s, "/account", &val)
        .await
        .contains("<li data-project=\"p\">"));

    // Users and audit: admins only.
    for path in ["/users", "/audit", "/api/v1/users", "/api/v1/audit"] {
        let r = request(&s, "GET", path, &[("Cookie", val.as_str())], "").await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert_eq!(get(&s, path).await.status, 401, "{path}");
    }
    let page = get_with(&s, "/users", &ada).await;
    assert!(page.contains("<tr data-user=\"val\">"), "{page}");
    let h = [FORM, ("Cookie", ada.as_str())];
    let body = format!("csrf={ada_csrf}&name=neo&email=&role=viewer&password=");
    let r = request(&s, "POST", "/users", &h, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    let generated = r
        .body
        .split("id=\"new-password\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    assert_eq!(generated.len(), 20, "{generated}");
    let body = format!("csrf={ada_csrf}&role=maintainer&project=p");
    let r = request(&s, "POST", "/users/neo/role", &h, &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = request(
        &s,
        "POST",
        "/users/val/disable",
        &h,
        &format!("csrf={ada_csrf}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    // Disabling ends val's session at once.
    let me = request(&s, "GET", "/api/v1/whoami", &[("Cookie", val.as_str())], "").await;
    assert!(me.body.contains("\"anonymous\""), "{}", me.body);
    let r = request(
        &s,
        "POST",
        "/users/neo/remove",
        &h,
        &format!("csrf={ada_csrf}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let audit = get_with(&s, "/audit", &ada).await;
    for action in [
        "build.trigger",
        "project.update",
        "user.disable",
        "user.remove",
        "signin",
    ] {
        assert!(
            audit.contains(&format!("<code>{action}</code>")),
            "{action}: {audit}"
        );
    }
    let j = request(
        &s,
        "GET",
        "/api/v1/audit?per_page=2",
        &[("Cookie", ada.as_str())],
        "",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&j.body).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["total"].as_u64().unwrap() > 2);
    s.app.shutdown.cancel();
}

#[tokio::test]
async fn account_tokens_are_shown_once_and_work_as_bearer_tokens() {
    let s = server().await;
    add_user(&s, "tia", "tia-password-1", Role::Maintainer).await;
    let (tia, csrf) = session(&s, "name=tia&password=tia-password-1").await;
    let h = [FORM, ("Cookie", tia.as_str())];
    let r = request(
        &s,
        "POST",
        "/account/tokens",
        &h,
        &format!("csrf={csrf}&name=laptop&days=30"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    let token = r
        .body
        .split("id=\"new-token-value\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert!(token.starts_with("khau_"), "{token}");
    let again = get_with(&s, "/account", &tia).await;
    assert!(!again.contains(&token), "shown once");
    assert!(again.contains(">laptop</th>"), "{again}");
    let bearer = format!("Bearer {token}");
    let me = request(
        &s,
        "GET",
        "/api/v1/whoami",
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert!(me.body.contains("\"name\":\"tia\""), "{}", me.body);
    // A bearer write needs no CSRF header; a cookie write does.
    let r = request(
        &s,
        "POST",
        "/api/v1/projects/p/builds",
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = request(
        &s,
        "POST",
        "/api/v1/tokens",
        &[("Cookie", &tia)],
        "{\"name\":\"x\"}",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let hx = [("Cookie", tia.as_str()), ("X-Kha-Csrf", csrf.as_str())];
    let r = request(&s, "POST", "/api/v1/tokens", &hx, "{\"name\":\"ci\"}").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["secret"].as_str().unwrap().starts_with("khau_"));
    let list = request(
        &s,
        "GET",
        "/api/v1/tokens",
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    let v: Vec<serde_json::Value> = serde_json::from_str(&list.body).unwrap();
    assert_eq!(v.len(), 2);
    // Revoking it from the account page ends it.
    let id = v.iter().find(|t| t["name"] == "laptop").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = request(
        &s,
        "POST",
        &format!("/account/tokens/{id}/revoke"),
        &h,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let me = request(
        &s,
        "GET",
        "/api/v1/whoami",
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(me.status, 401, "{}", me.body);
    // A page asked with a dead token says so.
    let page = request(&s, "GET", "/", &[("Authorization", &bearer)], "").await;
    assert_eq!(page.status, 401);
    assert!(page.body.contains("revoked"), "{}", page.body);
    // The CLI code.
    let r = request(&s, "POST", "/account/cli-code", &h, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let code = r
        .body
        .split("id=\"cli-code-value\" class=\"code\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(code.len(), 9, "{code}");
    let (t, _) = auth::redeem_cli_code(&s.app, &code, "cli").await.unwrap();
    assert_eq!(t.user, "tia");
    s.app.shutdown.cancel();
}

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_once() {
    let s = server().await;
    let token = auth::setup_token(&s.app).unwrap().unwrap();
    let path = format!("/setup/{}", token.expose());
    let page = get(&s, &path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let pre_cookie = page
        .set_cookie("kha_pre")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let pre = field(&page.body, "pre");
    let h = [FORM, ("Cookie", pre_cookie.as_str())];
    let r = request(
        &s,
        "POST",
        &path,
        &h,
        &format!("pre={pre}&name=root&password=short"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("at least 8 characters"), "{}", r.body);
    let r = request(
        &s,
        "POST",
        &path,
        &h,
        &format!("pre={pre}&name=root&password=root-password"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), "/account");
    let cookie = r
        .set_cookie("kha_session")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me = request(&s, "GET", "/api/v1/whoami", &[("Cookie", &cookie)], "").await;
    assert!(
        me.body.contains("\"name\":\"root\"") && me.body.contains("\"role\":\"admin\""),
        "{}",
        me.body
    );
    let again = get(&s, &path).await;
    assert_eq!(again.status, 404, "used once");
    s.app.shutdown.cancel();
}

async fn get_with(s: &Server, path: &str, cookie: &str) -> String {
    request(s, "GET", path, &[("Cookie", cookie)], "")
        .await
        .body
}

#[tokio::test]
async fn raw_log_ranges_and_the_log_stream_resume() {
    let s = server().await;
    let b = trigger(&s, "main").await;
    let job = b.jobs[0].id;
    s.app
        .logs
        .append(job, vec![(0, b"hello\n<b>x</b>\n".to_vec())])
        .await
        .unwrap();

    let r = get(&s, &format!("/jobs/{job}/log.txt")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(r.body, "hello\n<b>x</b>\n");
    let range = |h: &'static str| [("Range", h)];
    let r = request(
        &s,
        "GET",
        &format!("/jobs/{job}/log.txt"),
        &range("bytes=6-"),
        "",
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, "<b>x</b>\n");
    assert_eq!(r.header("content-range"), "bytes 6-14/15");
    let r = request(
        &s,
        "GET",
        &format!("/jobs/{job}/log.txt"),
        &range("bytes=1-4"),
        "",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (206, "ello"));
    let r = request(
        &s,
        "GET",
        &format!("/jobs/{job}/log.txt"),
        &range("bytes=99-"),
        "",
    )
    .await;
    assert_eq!(r.status, 416);
    let r = get(&s, &format!("/jobs/{job}/log.txt?download=1")).await;
    assert!(r.header("content-disposition").starts_with("attachment"));
    let r = request(
        &s,
        "GET",
        &format!("/api/v1/jobs/{job}/log"),
        &range("bytes=6-"),
        "",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (206, "<b>x</b>\n"));
    // The no-JS page: escaped lines with ids.
    let page = get(&s, &format!("/jobs/{job}")).await.body;
    assert!(page.contains("<li class=\"line\" id=\"L2\"><a class=\"ln\" href=\"#L2\">2</a><span class=\"txt\">&lt;b&gt;x&lt;/b&gt;</span></li>"), "{page}");

    // The stream: everything from 0, then (resuming at byte 6) the rest.
    let stream = format!("/api/v1/jobs/{job}/log/stream");
    let t = sse(&s, &stream, &[], |t| t.contains("id: 15")).await;
    assert!(t.contains("event: log"), "{t}");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"hello\n<b>x</b>\n");
    assert!(t.contains(&format!("data: {b64}")), "{t}");
    let t = sse(&s, &stream, &[("Last-Event-ID", "6")], |t| {
        t.contains("id: 15")
    })
    .await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"<b>x</b>\n");
    assert!(t.contains(&format!("data: {b64}")), "{t}");
    assert_eq!(ids(&t), [15]);
    let t = sse(&s, &format!("{stream}?offset=12"), &[], |t| {
        t.contains("id: 15")
    })
    .await;
    assert_eq!(ids(&t), [15]);
    // The end: once the job is over, `end` with its state, and the close.
    builds::cancel(&s.app, &Principal::Admin, b.id)
        .await
        .unwrap();
    let t = sse(&s, &stream, &[("Last-Event-ID", "15")], |t| {
        t.contains("event: end") && t.ends_with("0\r\n\r\n")
    })
    .await;
    assert!(t.contains("data: {\"state\":\"canceled\"}"), "{t}");
    assert!(ids(&t).is_empty(), "{t}");
    s.app.shutdown.cancel();
}

#[tokio::test]
async fn event_stream_resumes_from_last_event_id_and_ends_at_shutdown() {
    let s = server().await;
    trigger(&s, "main").await;
    let newest = crate::api::events::newest(&s.app);
    assert!(newest >= 3, "a build and its jobs give events: {newest}");

    let t = sse(&s, "/api/v1/events?from=1", &[], |t| {
        ids(t).len() as u64 >= newest
    })
    .await;
    assert_eq!(ids(&t), (1..=newest).collect::<Vec<_>>(), "{t}");
    assert!(t.contains("event: build_created"), "{t}");
    // Last-Event-ID wins over `from`: the next one after it.
    let t = sse(
        &s,
        "/api/v1/events?from=1",
        &[("Last-Event-ID", "2")],
        |t| ids(t).len() as u64 >= newest - 2,
    )
    .await;
    assert_eq!(ids(&t), (3..=newest).collect::<Vec<_>>(), "{t}");
    // Filtered by kind.
    let t = sse(&s, "/api/v1/events?from=1&kinds=job_queued", &[], |t| {
        ids(t).len() >= 2
    })
    .await;
    assert!(
        t.contains("event: job_queued") && !t.contains("event: build_created"),
        "{t}"
    );

    // Live: an open stream from now gets the next change; at shutdown it
    // ends and App::stop is not held up.
    let app = s.app.clone();
    let addr = s.addr;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("text/event-stream"));
    let b = trigger(&s, "x<script>y").await;
    let mut got = String::new();
    while !got.contains("event: build_created") {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains(&format!("\"build_id\":{}", b.id)), "{got}");
    app.shutdown.cancel();
    let started = std::time::Instant::now();
    app.stop(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    let mut rest = vec![];
    let r = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "the stream ended with the control node");
}

#[tokio::test]
async fn badges_revalidate_with_etags() {
    let s = server().await;
    let r = get(&s, "/badge/p.svg").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "image/svg+xml; charset=utf-8");
    assert_eq!(r.header("cache-control"), "no-cache, max-age=0");
    assert!(r.body.contains(">unknown<"), "{}", r.body);
    let etag = r.header("etag").to_string();
    assert!(etag.starts_with('"'));
    let r = request(&s, "GET", "/badge/p.svg", &[("If-None-Match", &etag)], "").await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    trigger(&s, "main").await;
    let r = request(
        &s,
        "GET",
        "/badge/p.svg?branch=main",
        &[("If-None-Match", &etag)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "a new state is a new badge");
    assert!(r.body.contains(">queued<"), "{}", r.body);
    assert_ne!(r.header("etag"), etag);
    s.app.shutdown.cancel();
}

#[tokio::test]
async fn without_a_github_section_there_is_no_github_sign_in() {
    let s = server().await;
    let login = get(&s, "/login").await;
    assert!(!login.body.contains("id=\"github\""), "{}", login.body);
    assert!(login.body.contains("id=\"break-glass\""), "{}", login.body);
    for path in ["/auth/github", "/auth/github/callback?code=x&state=y"] {
        let r = get(&s, path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(
            r.body.contains("GitHub sign-in is not configured"),
            "{}",
            r.body
        );
    }
    s.app.shutdown.cancel();
}

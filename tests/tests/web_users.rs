//! End to end: users in the web UI, in a real headless chromium against a
//! real control node (and a host builder where a build must run): signing
//! in with a password, triggering a build from the project page and
//! signing out; private projects; CSRF; sign-in rate limits; GitHub
//! sign-in against the GitHub stand-in. Requests a browser would not make
//! (a copied cookie, a form without its token) are made with a plain HTTP
//! client, as curl would. Every test ends by reading the control node's
//! log for each password, token and session id it used: none may appear.
//!
//! Without chromium-driver these tests are reported as ignored (see
//! `tests/build.rs`), never passed.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const LOAD: Duration = Duration::from_secs(30);
const BUILD: Duration = Duration::from_secs(90);

/// A plain HTTP client that keeps cookies, as `curl -b -c` would.
struct Client {
    base: String,
    cookies: BTreeMap<String, String>,
}

impl Client {
    fn new(base: &str) -> Client {
        Client {
            base: base.to_string(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A request with this client's cookies; the answer's `Set-Cookie`s
    /// are kept (or dropped when they expire them).
    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let cookie = self.cookie_header();
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if !cookie.is_empty() {
            h.push(("Cookie", &cookie));
        }
        let r = http_request(&self.base, method, path, &h, body.as_bytes());
        for (k, v) in &r.headers {
            if k != "set-cookie" {
                continue;
            }
            let pair = v.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if value.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        r
    }

    fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, &[], "")
    }

    /// POSTs an HTML form.
    fn post(&mut self, path: &str, form: &str) -> Response {
        let h = [("Content-Type", "application/x-www-form-urlencoded")];
        self.request("POST", path, &h, form)
    }

    /// What a browser does: the sign-in page (its `kha_pre` cookie and
    /// the form's copy), then the form with `fields`.
    fn sign_in(&mut self, fields: &str) -> Response {
        let page = self.get("/login").text();
        let pre = field(&page, "pre");
        self.post("/login", &format!("{fields}&pre={pre}&next=%2F"))
    }

    /// The session's CSRF token, from a page's sign-out form.
    fn csrf(&mut self) -> String {
        field(&self.get("/").text(), "csrf")
    }

    fn session_id(&self) -> String {
        self.cookies.get("kha_session").cloned().expect("signed in")
    }
}

/// The value of the first `<input name=NAME value=…>` of a page.
fn field(page: &str, name: &str) -> String {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no {name} field in {page}"))
        .to_string()
}

/// The admin, signed in with the admin token (break-glass) over plain HTTP.
fn admin(c: &Cluster) -> Client {
    let mut a = Client::new(&c.http_url());
    let r = a.sign_in(&format!("token={}", c.admin_token()));
    assert_eq!(r.status, 303, "{}", r.text());
    a
}

/// The admin adds `name` on the users page.
fn add_user(a: &mut Client, name: &str, password: &str, role: &str) {
    let csrf = a.csrf();
    let form = format!("csrf={csrf}&name={name}&email=&role={role}&password={password}");
    let r = a.post("/users", &form);
    assert_eq!(r.status, 303, "{}", r.text());
}

/// The admin gives `name` a role on `project`.
fn set_role(a: &mut Client, name: &str, project: &str, role: &str) {
    let csrf = a.csrf();
    let r = a.post(
        &format!("/users/{name}/role"),
        &format!("csrf={csrf}&role={role}&project={project}"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
}

/// The admin makes `project` private with its settings form, the other
/// settings as they are.
fn make_private(a: &mut Client, project: &str) {
    let p = a.get(&format!("/api/v1/projects/{project}")).json();
    let csrf = a.csrf();
    let mut form = format!(
        "csrf={csrf}&visibility=private&default_branch={}&timeout_secs={}&poll_interval_secs={}",
        p["default_branch"].as_str().unwrap(),
        p["timeout_secs"],
        p["poll_interval_secs"]
    );
    if p["build_tags"] == true {
        form.push_str("&build_tags=on");
    }
    if p["cancel_superseded"] == true {
        form.push_str("&cancel_superseded=on");
    }
    let r = a.post(&format!("/projects/{project}/settings"), &form);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        a.get(&format!("/api/v1/projects/{project}")).json()["private"],
        true
    );
}

/// A repository whose build prints a line and passes.
fn repo() -> Repo {
    let r = Repo::temp();
    r.commit(
        &[(
            ".travis.yml",
            "language: shell\nscript: echo built-by-kha\n",
        )],
        "first",
    );
    r
}

/// The HTTP status of the page the browser shows.
fn page_status(b: &Browser) -> u64 {
    b.js(
        "return performance.getEntriesByType('navigation')[0].responseStatus;",
        vec![],
    )
    .as_u64()
    .unwrap()
}

/// Signs the browser in with a password on the sign-in page.
fn browser_sign_in(b: &Browser, base: &str, name: &str, password: &str) {
    b.goto(&format!("{base}/login"));
    b.wait_css("#login", LOAD);
    b.send_keys("#name", name);
    b.send_keys("#password", password);
    b.submit("#login button");
    assert_eq!(
        b.try_text("#whoami").as_deref(),
        Some(name),
        "{}",
        b.text("main")
    );
}

/// The browser's session cookie (HttpOnly: not visible to scripts, so
/// read through DevTools).
fn browser_session_id(b: &Browser) -> String {
    let v = b.cdp("Network.getAllCookies", json!({}));
    v["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kha_session")
        .map(|c| {
            assert_eq!(c["httpOnly"], true, "{c}");
            assert_eq!(c["sameSite"], "Lax", "{c}");
            c["value"].as_str().unwrap().to_string()
        })
        .unwrap_or_else(|| panic!("no kha_session cookie in {v}"))
}

/// `fetch(path)` in the page (with its cookies), as JSON.
fn fetch_json(b: &Browser, path: &str) -> Value {
    b.js(
        "return fetch(arguments[0]).then(r => r.json());",
        vec![json!(path)],
    )
}

/// None of `secrets` appears in the control node's log, which does record
/// the sign-ins (so the search is not of an empty file): `user` is named.
fn assert_log_clean(c: &Cluster, user: &str, secrets: &[String]) {
    let log = c.control.as_ref().unwrap().log_text();
    assert!(
        log.contains(&format!("user={user}")),
        "the log names {user}'s sign-in:\n{log}"
    );
    for s in secrets {
        assert!(s.len() >= 8, "a real secret: {s:?}");
        assert!(
            !log.contains(s.as_str()),
            "the control node's log holds a secret:\n{log}"
        );
    }
}

/// A maintainer signs in with a password, triggers a build from the
/// project page and watches it pass, makes an API token on the account page
/// and uses it, and signs out; the session cookie copied before signing out
/// is refused afterwards.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn a_maintainer_signs_in_triggers_a_build_and_signs_out() {
    let repo = repo();
    let c = Fixture::new()
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();
    let base = c.http_url();
    let mut a = admin(&c);
    add_user(&mut a, "maria", "maria-pass-0451", "none");
    set_role(&mut a, "maria", "demo", "maintainer");

    let b = Browser::start();
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css("#branches", LOAD);
    assert!(
        b.try_text("#trigger-build").is_none(),
        "no trigger form signed out"
    );
    b.click("a#signin");
    b.wait_css("#login", LOAD);
    b.send_keys("#name", "maria");
    b.send_keys("#password", "maria-pass-0451");
    b.submit("#login button");
    assert_eq!(b.text("#whoami"), "maria");
    assert!(
        b.current_url().ends_with("/projects/demo"),
        "back where she was: {}",
        b.current_url()
    );
    let sid = browser_session_id(&b);

    b.submit("#trigger-build button");
    assert!(b.current_url().contains("/builds/"), "{}", b.current_url());
    let id: u64 = b.current_url().rsplit('/').next().unwrap().parse().unwrap();
    b.wait_js(
        "the build to pass",
        BUILD,
        "const e = document.querySelector('#build'); return e && e.dataset.state === 'passed';",
    );
    assert_eq!(c.build(id)["state"], "passed");
    let audit = a.get("/api/v1/audit").json();
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "build.trigger" && e["actor"] == "maria"),
        "{audit}"
    );

    // An API token, shown once, works as a bearer token.
    b.goto(&format!("{base}/account"));
    b.wait_css("#new-token-form", LOAD);
    b.send_keys("#token-name", "laptop");
    b.submit("#new-token-form button");
    let token = b.text("#new-token-value");
    assert!(token.starts_with("khau_"), "{token}");
    let me = http_request(
        &base,
        "GET",
        "/api/v1/whoami",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(me.json()["name"], "maria", "{}", me.text());

    // Signing out ends the session on the server: the copied cookie is dead.
    let copied = format!("kha_session={sid}");
    let me = http_request(&base, "GET", "/api/v1/whoami", &[("Cookie", &copied)], b"");
    assert_eq!(me.json()["name"], "maria", "{}", me.text());
    b.submit("form.logout button");
    assert!(b.try_text("#whoami").is_none());
    assert!(b.try_text("a#signin").is_some());
    let me = http_request(&base, "GET", "/api/v1/whoami", &[("Cookie", &copied)], b"");
    assert_eq!(me.json()["kind"], "anonymous", "{}", me.text());
    let trigger = http_request(
        &base,
        "POST",
        "/api/v1/projects/demo/builds",
        &[("Cookie", &copied)],
        b"",
    );
    assert_eq!(trigger.status, 401, "{}", trigger.text());
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css("#branches", LOAD);
    assert!(b.try_text("#trigger-build").is_none());

    let secrets = [
        "maria-pass-0451".to_string(),
        sid,
        token,
        a.session_id(),
        c.admin_token(),
    ];
    assert_log_clean(&c, "maria", &secrets);
}

/// A private project does not exist for a signed-out reader (404 like a
/// missing one, absent from the overview); its viewer sees it.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn a_private_project_is_invisible_signed_out_and_visible_to_its_viewer() {
    let (open, secret) = (repo(), repo());
    let c = Fixture::new()
        .project("open", &open.url())
        .project("secret", &secret.url())
        .start();
    let base = c.http_url();
    let build = c.trigger("secret", None);
    let mut a = admin(&c);
    make_private(&mut a, "secret");
    add_user(&mut a, "vera", "vera-pass-7703", "none");
    set_role(&mut a, "vera", "secret", "viewer");

    let b = Browser::start();
    b.goto(&format!("{base}/"));
    b.wait_css("#projects", LOAD);
    assert!(b.try_text("tr[data-project='open']").is_some());
    assert!(
        b.try_text("tr[data-project='secret']").is_none(),
        "{}",
        b.text("#projects")
    );
    for (path, what) in [
        ("/projects/secret".to_string(), "no project \"secret\""),
        (format!("/builds/{build}"), "no build"),
    ] {
        b.goto(&format!("{base}{path}"));
        assert_eq!(b.text("h1"), "Not found", "{path}");
        assert_eq!(page_status(&b), 404, "{path}");
        assert!(b.text("main").contains(what), "{path}: {}", b.text("main"));
    }
    // Exactly as a project that does not exist.
    let hidden = http_get(&base, "/api/v1/projects/secret");
    let missing = http_get(&base, "/api/v1/projects/nothing");
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.text().replace("secret", "nothing"), missing.text());

    browser_sign_in(&b, &base, "vera", "vera-pass-7703");
    b.goto(&format!("{base}/"));
    b.wait_css("tr[data-project='secret']", LOAD);
    assert!(b.text("tr[data-project='secret']").contains("private"));
    b.goto(&format!("{base}/projects/secret"));
    assert_eq!(b.text("h1").trim(), "secret private");
    assert!(
        b.try_text("#trigger-build").is_none(),
        "a viewer does not trigger"
    );
    b.goto(&format!("{base}/builds/{build}"));
    b.wait_css("#build", LOAD);
    assert!(b.try_text("form.cancel").is_none() && b.try_text("form.restart").is_none());

    // Starring it puts it first on her overview.
    b.goto(&format!("{base}/projects/secret"));
    b.submit("form.star button");
    assert!(b.try_text("form.unstar").is_some());
    b.goto(&format!("{base}/"));
    let first = b.attr("#projects tbody tr", "data-project");
    assert_eq!(first.as_deref(), Some("secret"));

    let sid = browser_session_id(&b);
    assert_log_clean(
        &c,
        "vera",
        &[
            "vera-pass-7703".into(),
            sid,
            a.session_id(),
            c.admin_token(),
        ],
    );
}

/// A form posted without the session's CSRF token is refused with 403,
/// from a browser (the field removed) and from a plain client.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn a_post_without_the_csrf_token_is_refused() {
    let repo = repo();
    let c = Fixture::new().project("demo", &repo.url()).start();
    let base = c.http_url();
    let mut a = admin(&c);
    add_user(&mut a, "mo", "mo-pass-88231", "maintainer");

    let b = Browser::start();
    browser_sign_in(&b, &base, "mo", "mo-pass-88231");
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css("#trigger-build", LOAD);
    b.js(
        "document.querySelector('#trigger-build input[name=csrf]').remove();",
        vec![],
    );
    b.submit("#trigger-build button");
    assert_eq!(page_status(&b), 403);
    assert_eq!(b.text("h1"), "Not allowed");
    assert!(b.text("main").contains("CSRF"), "{}", b.text("main"));

    let mut mo = Client::new(&base);
    assert_eq!(mo.sign_in("name=mo&password=mo-pass-88231").status, 303);
    for form in ["", "csrf=", "csrf=deadbeef"] {
        let r = mo.post("/projects/demo/trigger", form);
        assert_eq!(r.status, 403, "{form}: {}", r.text());
    }
    let r = mo.request("POST", "/api/v1/projects/demo/builds", &[], "");
    assert_eq!(
        r.status,
        403,
        "JSON with the cookie but no X-Kha-Csrf: {}",
        r.text()
    );
    assert!(a.get("/api/v1/projects/demo/builds").json()["builds"]
        .as_array()
        .unwrap()
        .is_empty());
    // With it, the same request goes through.
    let csrf = mo.csrf();
    let r = mo.post("/projects/demo/trigger", &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.text());

    let secrets = [
        "mo-pass-88231".to_string(),
        browser_session_id(&b),
        mo.session_id(),
        a.session_id(),
        c.admin_token(),
    ];
    assert_log_clean(&c, "mo", &secrets);
}

/// Nine wrong passwords in a row are answered "wrong"; the tenth try gets
/// the rate limit's answer, 429 with when to try again.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn the_tenth_wrong_password_in_a_row_is_rate_limited() {
    let c = Fixture::new().start();
    let base = c.http_url();
    let mut a = admin(&c);
    add_user(&mut a, "rita", "rita-pass-5512", "viewer");

    let b = Browser::start();
    b.goto(&format!("{base}/login"));
    b.wait_css("#login", LOAD);
    b.send_keys("#name", "rita");
    let mut tried = vec![];
    for i in 1..=10 {
        let wrong = format!("rita-wrong-{i:03}");
        b.send_keys("#password", &wrong);
        b.submit("#login button");
        tried.push(wrong);
        let said = b.text(".error-message");
        if i < 10 {
            assert_eq!(page_status(&b), 401, "try {i}");
            assert!(
                said.contains("wrong user name or password"),
                "try {i}: {said}"
            );
            assert_eq!(b.attr("#name", "value").as_deref(), Some("rita"));
        } else {
            assert_eq!(page_status(&b), 429, "try {i}: {said}");
            assert!(
                said.contains("too many failed sign-ins for rita")
                    && said.contains("try again in 15 minutes"),
                "{said}"
            );
        }
    }
    // The right password waits too (the answer must not tell them apart).
    let mut rita = Client::new(&base);
    let r = rita.sign_in("name=rita&password=rita-pass-5512");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(!rita.cookies.contains_key("kha_session"));

    let mut secrets = tried;
    secrets.extend([
        "rita-pass-5512".to_string(),
        a.session_id(),
        c.admin_token(),
    ]);
    assert_log_clean(&c, "rita", &secrets);
}

/// "Sign in with GitHub" against the stand-in: the first sign-in creates
/// the user with the configured default role; a denied authorization and
/// an answer that does not match the browser's state sign nobody in.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn github_sign_in_creates_the_user_and_refuses_denials_and_foreign_states() {
    let stub = GithubStub::start();
    stub.set_user(
        StubUser::new(9001, "Octo-Cat")
            .name(Some("Octo Cat"))
            .emails(&[("octo@example.org", true, true)])
            .orgs(&["kha-friends"]),
    );
    let repo = repo();
    let c = Fixture::new()
        .known_http_port()
        .config(&stub.config_toml(&["default_role = \"viewer\"", "orgs = [\"kha-friends\"]"]))
        .project("demo", &repo.url())
        .start();
    let base = c.http_url();
    stub.set_callback(Some(&format!("{base}/auth/github/callback")));

    let b = Browser::start();
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css("a#signin", LOAD);
    b.click("a#signin");
    b.wait_css("a#github", LOAD);
    b.submit("a#github");
    assert_eq!(b.text("#whoami"), "octo-cat", "{}", b.text("main"));
    assert!(
        b.current_url().ends_with("/projects/demo"),
        "{}",
        b.current_url()
    );
    let me = fetch_json(&b, "/api/v1/whoami");
    assert_eq!(me["kind"], "user", "{me}");
    assert_eq!(me["role"], "viewer", "the configured default role: {me}");
    let state = stub.seen_at("/login/oauth/authorize")[0]
        .param("state")
        .unwrap()
        .to_string();
    assert!(state.len() >= 32, "a random state: {state}");
    let mut a = admin(&c);
    let users = a.get("/api/v1/users").json();
    let u = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "octo-cat")
        .unwrap();
    assert_eq!(u["github_login"], "Octo-Cat", "{u}");
    assert_eq!(u["email"], "octo@example.org", "{u}");
    assert_eq!(u["has_password"], false, "{u}");
    let sid = browser_session_id(&b);
    b.submit("form.logout button");

    // The person declines on GitHub's page.
    stub.deny(true);
    b.goto(&format!("{base}/login"));
    b.submit("a#github");
    assert_eq!(page_status(&b), 403);
    assert!(
        b.text("main").contains("GitHub sign-in was denied"),
        "{}",
        b.text("main")
    );
    assert!(b.try_text("#whoami").is_none());
    stub.deny(false);

    // An answer from GitHub that this browser did not ask for: an
    // attacker's own code and state (a login CSRF) signs nobody in.
    let mut attacker = Client::new(&base);
    let go = attacker.get("/auth/github");
    assert_eq!(go.status, 303, "{}", go.text());
    let at_github = go.header("location").unwrap().to_string();
    let back = http_get(&stub.url, at_github.strip_prefix(&stub.url).unwrap());
    assert_eq!(back.status, 302, "{}", back.text());
    let callback = back.header("location").unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{base}/auth/github/callback?")),
        "{callback}"
    );
    b.goto(&callback);
    assert_eq!(page_status(&b), 400);
    assert!(
        b.text("main").contains("sign-in state mismatch"),
        "{}",
        b.text("main")
    );
    assert!(b.try_text("#whoami").is_none());
    // A browser with a flow of its own, but another one's state: refused too.
    let first = attacker
        .get("/auth/github")
        .header("location")
        .unwrap()
        .to_string();
    let first_back = http_get(&stub.url, first.strip_prefix(&stub.url).unwrap());
    let _second = attacker.get("/auth/github");
    let path = first_back
        .header("location")
        .unwrap()
        .strip_prefix(&base)
        .unwrap()
        .to_string();
    let r = attacker.get(&path);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!attacker.cookies.contains_key("kha_session"));

    let mut secrets = vec![
        sid,
        stub.client_secret.clone(),
        a.session_id(),
        c.admin_token(),
    ];
    secrets.extend(stub.seen_at("/user").iter().filter_map(|s| {
        s.header("authorization").map(|h| {
            h.trim_start_matches("Bearer ")
                .trim_start_matches("token ")
                .to_string()
        })
    }));
    assert_log_clean(&c, "octo-cat", &secrets);
}

/// `kha login --web`: a user (one who might sign in with GitHub and have no
/// password) makes a code on their account page and types it into the CLI,
/// which then acts as them; the code works once.
#[test]
fn kha_login_web_takes_the_code_from_the_account_page() {
    let c = Fixture::new().start();
    let mut a = admin(&c);
    add_user(&mut a, "gina", "gina-pass-7781", "none");
    let mut g = Client::new(&c.http_url());
    let r = g.sign_in("name=gina&password=gina-pass-7781");
    assert_eq!(r.status, 303, "{}", r.text());
    let csrf = g.csrf();
    let page = g.post("/account/cli-code", &format!("csrf={csrf}")).text();
    let code = page
        .split("id=\"cli-code-value\" class=\"code\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or_else(|| panic!("no code on {page}"))
        .to_string();
    assert_eq!(code.len(), 9, "{code}");
    let kha = |config: &str, args: &[&str], input: &str| {
        let mut child = std::process::Command::new(bin("kha"))
            .arg("--config")
            .arg(c.path(config))
            .args(args)
            .env_remove("KHA_TOKEN")
            .env("KHA_SERVER", c.url())
            .env("KHA_DATA_DIR", c.path("nowhere"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = kha("gina.toml", &["login", "--web"], &format!("{code}\n"));
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}/account", c.http_url())),
        "names the account page: {err}"
    );
    let o = kha("gina.toml", &["whoami", "--json"], "");
    assert!(o.status.success(), "{o:?}");
    let me: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(me["name"], "gina", "{me}");
    // The code is spent.
    let o = kha("other.toml", &["login", "--web"], &format!("{code}\n"));
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown or expired code"),
        "{o:?}"
    );
}

/// A maintainer sets a notification channel on the project page and
/// removes it again; the build page lists the build's deliveries (here a
/// webhook whose receiver is down: retrying, and why).
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn a_maintainer_sets_notifications_and_sees_deliveries_on_the_build_page() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = Repo::temp();
    r.commit(
        &[(
            ".travis.yml",
            &format!("language: shell\nscript: true\nnotifications:\n  webhooks: http://127.0.0.1:{port}/secret-path\n"),
        )],
        "first",
    );
    let c = Fixture::new()
        .config("[notify]\nfirst_retry_secs = 60.0\nattempt_timeout_secs = 2.0\n")
        .project("demo", &r.url())
        .host_builder("a", 1)
        .start();
    let base = c.http_url();
    let mut a = admin(&c);
    add_user(&mut a, "nora", "nora-pass-7731", "none");
    set_role(&mut a, "nora", "demo", "maintainer");

    let b = Browser::start();
    browser_sign_in(&b, &base, "nora", "nora-pass-7731");
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css("form#notify", LOAD);
    assert!(b
        .text("#notify-settings")
        .contains("the .travis.yml decides"));
    b.send_keys("#n-channel", "irc");
    b.send_keys("#n-value", "false");
    b.submit("form#notify button");
    assert_eq!(b.text("li[data-channel=irc] code"), "irc: false");
    let set = a.get("/api/v1/projects/demo/notify").json();
    assert_eq!(set["irc"], "false");
    // A value that does not read is refused with the reason, nothing kept.
    b.send_keys("#n-channel", "email");
    b.send_keys("#n-value", "{on_success: sometimes}");
    b.submit("form#notify button");
    assert!(
        b.text("main").contains("always, never or change"),
        "{}",
        b.text("main")
    );
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css("form#notify", LOAD);
    b.submit("li[data-channel=irc] form.notify-clear button");
    assert!(b.try_text("li[data-channel=irc]").is_none());

    b.submit("#trigger-build button");
    let id: u64 = b.current_url().rsplit('/').next().unwrap().parse().unwrap();
    wait_for("the webhook's first attempt", BUILD, || {
        c.build(id)["deliveries"][0]["state"]
            .as_str()
            .filter(|s| *s == "retrying")
            .map(|_| ())
    });
    b.goto(&format!("{base}/builds/{id}"));
    b.wait_css("#deliveries", LOAD);
    let row = b.text("#deliveries tbody tr");
    assert!(
        row.contains("webhooks") && row.contains("retrying"),
        "{row}"
    );
    assert!(
        !row.contains("secret-path"),
        "a webhook is shown by its origin only: {row}"
    );
    assert_eq!(
        b.attr("#deliveries tbody tr", "data-state").as_deref(),
        Some("retrying")
    );
}

//! A stand-in for GitHub's side of GitHub sign-in: a real HTTP server on a
//! loopback port that speaks GitHub's documented OAuth web flow and the
//! REST answers sign-in reads, so the control node's client runs unchanged
//! against it (its `[github]` URLs point here; see [`GithubStub::config_toml`]).
//!
//! - `GET /login/oauth/authorize?client_id&redirect_uri&scope&state`: the
//!   person approves at once (GitHub would show its consent page): a 302
//!   back to `redirect_uri` with `code` and the same `state`; in deny mode
//!   with `error=access_denied`; a `redirect_uri` outside the registered
//!   callback (when one is set) goes to the callback with
//!   `error=redirect_uri_mismatch`, as GitHub does.
//! - `POST /login/oauth/access_token` (form: client_id, client_secret,
//!   code, redirect_uri): `{"access_token","token_type":"bearer","scope"}`
//!   as JSON when asked with `Accept: application/json`, else form-encoded;
//!   refusals (`incorrect_client_credentials`, `bad_verification_code`,
//!   `redirect_uri_mismatch`) come with HTTP 200, as GitHub sends them.
//!   Codes are single-use and tied to the client and redirect URI.
//! - `GET /user`, `/user/emails` (needs the `user:email` scope, else 404
//!   as GitHub answers), `/user/orgs` (paged with `per_page`/`page` and a
//!   `Link` header): they check `Authorization: Bearer <token>` (or
//!   `token <token>`) and answer 401 "Bad credentials" otherwise.
//!
//! - `POST /repos/{owner}/{repo}/statuses/{sha}` (commit statuses, for
//!   `[notify.github]`; see [`GithubStub::notify_toml`]): stricter than
//!   GitHub, it refuses what GitHub's documentation does not show: a token
//!   other than `Authorization: Bearer <status token>` (401), a missing
//!   `User-Agent` (403, as GitHub), an `Accept` other than
//!   `application/vnd.github+json` or an `X-GitHub-Api-Version` other than
//!   `2022-11-28` (400), a body that is not a JSON object of `state`,
//!   `target_url`, `description` and `context` (400), a state outside
//!   pending/success/failure/error, a description over 140 characters or
//!   a SHA that is not 40 hex digits (422 "Validation Failed", as GitHub).
//!   Accepted statuses are kept ([`GithubStub::statuses`]) and answered
//!   201 with GitHub's JSON; [`GithubStub::fail_statuses`] scripts answers
//!   (500, 403 rate limit, …) before that.
//!
//! The stub signs in one configurable [`StubUser`], records every request
//! it sees ([`Seen`]) so tests can check the state, scopes and credentials
//! sent, and stops when dropped. It runs on its own thread and runtime, so
//! a synchronous test and a tokio test use it the same way.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde_json::{json, Value};

/// The person the stub signs in, as GitHub knows them.
#[derive(Debug, Clone)]
pub struct StubUser {
    pub id: u64,
    pub login: String,
    /// The profile's display name (GitHub's `name`, null when unset).
    pub name: Option<String>,
    /// The profile's public email (`email` in `/user`, null when hidden).
    pub public_email: Option<String>,
    pub emails: Vec<StubEmail>,
    /// Logins of the organizations the user belongs to.
    pub orgs: Vec<String>,
}

/// One entry of `/user/emails`.
#[derive(Debug, Clone)]
pub struct StubEmail {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

impl StubUser {
    /// A user named "`{login}` (test)" with a primary verified
    /// `{login}@example.com` and no organizations.
    pub fn new(id: u64, login: &str) -> StubUser {
        StubUser {
            id,
            login: login.to_string(),
            name: Some(format!("{login} (test)")),
            public_email: None,
            emails: vec![StubEmail {
                email: format!("{login}@example.com"),
                primary: true,
                verified: true,
            }],
            orgs: Vec::new(),
        }
    }

    pub fn name(mut self, name: Option<&str>) -> StubUser {
        self.name = name.map(str::to_string);
        self
    }

    /// Replaces the email addresses: `(address, primary, verified)`.
    pub fn emails(mut self, emails: &[(&str, bool, bool)]) -> StubUser {
        self.emails = emails
            .iter()
            .map(|&(e, primary, verified)| StubEmail {
                email: e.to_string(),
                primary,
                verified,
            })
            .collect();
        self
    }

    pub fn orgs(mut self, orgs: &[&str]) -> StubUser {
        self.orgs = orgs.iter().map(|o| o.to_string()).collect();
        self
    }
}

/// One request the stub saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The form body's fields (the token request).
    pub form: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, for a JSON request (commit statuses).
    pub body: String,
}

impl Seen {
    /// A query or form parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(&self.form)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// GitHub's OAuth endpoints and REST API on `127.0.0.1:<port>`.
pub struct GithubStub {
    /// `http://127.0.0.1:<port>`: also the API's base URL.
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A code's or a token's grant: who approved which client, where to.
#[derive(Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    user: StubUser,
}

struct Shared {
    /// The stub's own URL, for the URLs its answers carry.
    base: String,
    client_id: String,
    client_secret: String,
    user: StubUser,
    deny: bool,
    /// The OAuth app's registered callback URL; `None`: any is accepted.
    callback: Option<String>,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, Grant>,
    seen: Vec<Seen>,
    /// The token that may write commit statuses.
    status_token: String,
    /// Answers to give to status posts before accepting them.
    status_script: VecDeque<u16>,
    statuses: Vec<StubStatus>,
}

/// A commit status the stub accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubStatus {
    /// owner/name
    pub repo: String,
    pub sha: String,
    pub state: String,
    pub target_url: Option<String>,
    pub description: Option<String>,
    /// GitHub's default is "default".
    pub context: String,
}

type St = Arc<Mutex<Shared>>;

impl GithubStub {
    /// Starts the stub with a fresh client id and secret, signing in
    /// `octocat` (id 583231, primary verified `octocat@example.com`).
    pub fn start() -> GithubStub {
        let client_id = format!("Iv1.{}", random_hex(8));
        let client_secret = random_hex(20);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the GitHub stub");
        let addr = listener.local_addr().expect("the GitHub stub's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!("http://{addr}");
        let shared = Arc::new(Mutex::new(Shared {
            base: url.clone(),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            user: StubUser::new(583231, "octocat").name(Some("The Octocat")),
            deny: false,
            callback: None,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            seen: Vec::new(),
            status_token: format!("ghp_{}", random_hex(18)),
            status_script: VecDeque::new(),
            statuses: Vec::new(),
        }));
        let router = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/user", get(user))
            .route("/user/emails", get(emails))
            .route("/user/orgs", get(orgs))
            .route("/repos/{owner}/{repo}/statuses/{sha}", post(create_status))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("github-stub".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the GitHub stub's runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    let serve = std::future::IntoFuture::into_future(axum::serve(listener, router));
                    // Stopping drops the runtime, and every connection with
                    // it: a client's idle keep-alive cannot hold a test up.
                    tokio::select! {
                        r = serve => r.expect("the GitHub stub's server"),
                        _ = stopped => {}
                    }
                });
            })
            .expect("start the GitHub stub's thread");
        GithubStub {
            url,
            client_id,
            client_secret,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/login/oauth/authorize", self.url)
    }

    pub fn token_url(&self) -> String {
        format!("{}/login/oauth/access_token", self.url)
    }

    pub fn api_url(&self) -> String {
        self.url.clone()
    }

    /// A control node's `[github]` section for this stub, then `extra`
    /// lines (`orgs = ["acme"]`, `default_role = "maintainer"`).
    pub fn config_toml(&self, extra: &[&str]) -> String {
        let mut s = format!(
            "[github]\nclient_id = \"{}\"\nclient_secret = \"{}\"\nauthorize_url = \"{}\"\n\
             token_url = \"{}\"\napi_url = \"{}\"\n",
            self.client_id,
            self.client_secret,
            self.authorize_url(),
            self.token_url(),
            self.api_url()
        );
        for l in extra {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Who the next approvals sign in (codes already given keep theirs).
    pub fn set_user(&self, user: StubUser) {
        self.lock().user = user;
    }

    /// Deny mode: the person clicks "Cancel" on GitHub's consent page.
    pub fn deny(&self, on: bool) {
        self.lock().deny = on;
    }

    /// The OAuth app's registered callback URL (`None`: accept any
    /// `redirect_uri`).
    pub fn set_callback(&self, url: Option<&str>) {
        self.lock().callback = url.map(str::to_string);
    }

    /// The token `[notify.github]` must send to post commit statuses.
    pub fn status_token(&self) -> String {
        self.lock().status_token.clone()
    }

    /// A control node's `[notify.github]` section for this stub, then
    /// `extra` lines (`per_job = true`).
    pub fn notify_toml(&self, extra: &[&str]) -> String {
        let mut s = format!(
            "[notify.github]\ntoken = \"{}\"\napi_url = \"{}\"\n",
            self.status_token(),
            self.api_url()
        );
        for l in extra {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// The next status posts are answered with these codes (500: a
    /// server error; 403: a rate limit, with `x-ratelimit-remaining: 0`;
    /// 422, 404, 401: GitHub's refusals), in order, before any is accepted.
    pub fn fail_statuses(&self, codes: &[u16]) {
        self.lock().status_script.extend(codes.iter().copied());
    }

    /// The commit statuses accepted so far, in order.
    pub fn statuses(&self) -> Vec<StubStatus> {
        self.lock().statuses.clone()
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The requests to `path`, in order.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.lock()
            .seen
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }
}

impl Drop for GithubStub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A panicking test must not make every later request panic too.
fn lock(s: &St) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn record(
    s: &St,
    method: &str,
    path: &str,
    query: &[(String, String)],
    form: &[(String, String)],
    headers: &HeaderMap,
) {
    record_body(s, method, path, query, form, headers, "");
}

fn record_body(
    s: &St,
    method: &str,
    path: &str,
    query: &[(String, String)],
    form: &[(String, String)],
    headers: &HeaderMap,
    body: &str,
) {
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).to_string(),
            )
        })
        .collect();
    lock(s).seen.push(Seen {
        method: method.into(),
        path: path.into(),
        query: query.to_vec(),
        form: form.to_vec(),
        headers,
        body: body.to_string(),
    });
}

fn param<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// 20 hex digits, like GitHub's codes.
fn random_hex(bytes: usize) -> String {
    let mut s = String::new();
    while s.len() < bytes * 2 {
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        s.push_str(&format!("{r:016x}"));
    }
    s.truncate(bytes * 2);
    s
}

/// `base` with `params` added to its query.
fn with_query(base: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut u = url::Url::parse(base).ok()?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    Some(u.into())
}

fn found(location: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn json_answer(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

async fn authorize(
    State(s): State<St>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    record(&s, "GET", "/login/oauth/authorize", &q, &[], &headers);
    let mut st = lock(&s);
    if param(&q, "client_id") != Some(st.client_id.as_str()) {
        // GitHub shows a 404 page for an unknown client.
        return (StatusCode::NOT_FOUND, "Not Found: no such OAuth app").into_response();
    }
    let state = param(&q, "state").unwrap_or("");
    let asked = param(&q, "redirect_uri");
    let redirect = match (&st.callback, asked) {
        (Some(cb), Some(r)) if !r.starts_with(cb.as_str()) => {
            let to = with_query(
                cb,
                &[
                    ("error", "redirect_uri_mismatch"),
                    (
                        "error_description",
                        "The redirect_uri MUST match the registered callback URL for this application.",
                    ),
                    ("error_uri", "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#redirect-uri-mismatch"),
                    ("state", state),
                ],
            );
            return to.map_or_else(
                || (StatusCode::BAD_REQUEST, "bad callback URL").into_response(),
                found,
            );
        }
        (_, Some(r)) => r.to_string(),
        (Some(cb), None) => cb.clone(),
        (None, None) => {
            return (
                StatusCode::BAD_REQUEST,
                "no redirect_uri and no callback URL",
            )
                .into_response()
        }
    };
    let back = if st.deny {
        with_query(
            &redirect,
            &[
                ("error", "access_denied"),
                ("error_description", "The user has denied your application access."),
                ("error_uri", "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied"),
                ("state", state),
            ],
        )
    } else {
        let code = random_hex(10);
        let scopes = param(&q, "scope")
            .unwrap_or("")
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let grant = Grant {
            client_id: st.client_id.clone(),
            redirect_uri: redirect.clone(),
            scopes,
            user: st.user.clone(),
        };
        st.codes.insert(code.clone(), grant);
        let mut params = vec![("code", code.as_str())];
        if param(&q, "state").is_some() {
            params.push(("state", state));
        }
        with_query(&redirect, &params)
    };
    back.map_or_else(
        || (StatusCode::BAD_REQUEST, "redirect_uri is not a URL").into_response(),
        found,
    )
}

async fn access_token(
    State(s): State<St>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    record(
        &s,
        "POST",
        "/login/oauth/access_token",
        &[],
        &form,
        &headers,
    );
    let json = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let fields = exchange(&mut lock(&s), &form);
    // GitHub answers refusals with 200 too, in the format asked for.
    if json {
        let obj: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        json_answer(StatusCode::OK, Value::Object(obj))
    } else {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body,
        )
            .into_response()
    }
}

/// The token endpoint's answer fields: a token, or an OAuth error.
fn exchange(st: &mut Shared, form: &[(String, String)]) -> Vec<(&'static str, String)> {
    let refuse = |error: &str, description: &str, anchor: &str| {
        vec![
            ("error", error.to_string()),
            ("error_description", description.to_string()),
            ("error_uri", format!("https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#{anchor}")),
        ]
    };
    if param(form, "client_id") != Some(st.client_id.as_str())
        || param(form, "client_secret") != Some(st.client_secret.as_str())
    {
        return refuse(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            "incorrect-client-credentials",
        );
    }
    // Single use: a code is gone once presented, whatever the outcome.
    let grant = param(form, "code").and_then(|c| st.codes.remove(c));
    let Some(grant) = grant.filter(|g| g.client_id == st.client_id) else {
        return refuse(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            "bad-verification-code",
        );
    };
    if param(form, "redirect_uri").is_some_and(|r| r != grant.redirect_uri) {
        return refuse(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
            "redirect-uri-mismatch",
        );
    }
    let token = format!("gho_{}", random_hex(18));
    let scope = grant.scopes.join(",");
    st.tokens.insert(token.clone(), grant);
    vec![
        ("access_token", token),
        ("token_type", "bearer".to_string()),
        ("scope", scope),
    ]
}

/// The grant of the request's token, or what GitHub's 401 says.
fn authorized(
    s: &St,
    path: &str,
    q: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Grant, &'static str> {
    record(s, "GET", path, q, &[], headers);
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|a| a.to_str().ok())
        .ok_or("Requires authentication")?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))
        .unwrap_or("");
    lock(s).tokens.get(token).cloned().ok_or("Bad credentials")
}

fn unauthorized(message: &str) -> Response {
    json_answer(
        StatusCode::UNAUTHORIZED,
        json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": "401"}),
    )
}

async fn user(State(s): State<St>, headers: HeaderMap) -> Response {
    let g = match authorized(&s, "/user", &[], &headers) {
        Ok(g) => g,
        Err(m) => return unauthorized(m),
    };
    let u = &g.user;
    let base = lock(&s).base.clone();
    json_answer(
        StatusCode::OK,
        json!({
            "login": u.login,
            "id": u.id,
            "node_id": format!("U_kgDO{:08X}", u.id),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", u.id),
            "gravatar_id": "",
            "url": format!("{base}/users/{}", u.login),
            "html_url": format!("https://github.com/{}", u.login),
            "repos_url": format!("{base}/users/{}/repos", u.login),
            "organizations_url": format!("{base}/users/{}/orgs", u.login),
            "type": "User",
            "user_view_type": "private",
            "site_admin": false,
            "name": u.name,
            "company": null,
            "blog": "",
            "location": null,
            "email": u.public_email,
            "hireable": null,
            "bio": null,
            "twitter_username": null,
            "notification_email": u.public_email,
            "public_repos": 8,
            "public_gists": 1,
            "followers": 20,
            "following": 0,
            "created_at": "2011-01-25T18:44:36Z",
            "updated_at": "2024-12-03T10:15:27Z",
            "private_gists": 0,
            "total_private_repos": 0,
            "owned_private_repos": 0,
            "disk_usage": 10000,
            "collaborators": 0,
            "two_factor_authentication": true,
            "plan": {"name": "free", "space": 976562499, "collaborators": 0, "private_repos": 10000}
        }),
    )
}

async fn emails(State(s): State<St>, headers: HeaderMap) -> Response {
    let g = match authorized(&s, "/user/emails", &[], &headers) {
        Ok(g) => g,
        Err(m) => return unauthorized(m),
    };
    // GitHub answers 404, not 403, for a token without the scope.
    if !g.scopes.iter().any(|s| s == "user:email" || s == "user") {
        return json_answer(
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/users/emails#list-email-addresses-for-the-authenticated-user", "status": "404"}),
        );
    }
    let list: Vec<Value> = g
        .user
        .emails
        .iter()
        .map(|e| {
            json!({
                "email": e.email,
                "primary": e.primary,
                "verified": e.verified,
                "visibility": if e.primary { Value::from("private") } else { Value::Null },
            })
        })
        .collect();
    json_answer(StatusCode::OK, Value::Array(list))
}

async fn orgs(
    State(s): State<St>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let g = match authorized(&s, "/user/orgs", &q, &headers) {
        Ok(g) => g,
        Err(m) => return unauthorized(m),
    };
    let num =
        |k: &str, default: usize| param(&q, k).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (per_page, page) = (num("per_page", 30).clamp(1, 100), num("page", 1).max(1));
    let base = lock(&s).base.clone();
    let all = &g.user.orgs;
    let list: Vec<Value> = all
        .iter()
        .enumerate()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(i, login)| {
            let id = 1000 + i as u64;
            json!({
                "login": login,
                "id": id,
                "node_id": format!("O_kgDO{id:08X}"),
                "url": format!("{base}/orgs/{login}"),
                "repos_url": format!("{base}/orgs/{login}/repos"),
                "events_url": format!("{base}/orgs/{login}/events"),
                "hooks_url": format!("{base}/orgs/{login}/hooks"),
                "issues_url": format!("{base}/orgs/{login}/issues"),
                "members_url": format!("{base}/orgs/{login}/members{{/member}}"),
                "public_members_url": format!("{base}/orgs/{login}/public_members{{/member}}"),
                "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
                "description": null
            })
        })
        .collect();
    let mut r = json_answer(StatusCode::OK, Value::Array(list));
    if page * per_page < all.len() {
        let next = format!(
            "<{base}/user/orgs?per_page={per_page}&page={}>; rel=\"next\"",
            page + 1
        );
        if let Ok(v) = header::HeaderValue::from_str(&next) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

fn github_error(status: StatusCode, message: &str, doc: &str) -> Response {
    json_answer(
        status,
        json!({"message": message, "documentation_url": doc, "status": status.as_u16().to_string()}),
    )
}

const STATUS_DOC: &str = "https://docs.github.com/rest/commits/statuses#create-a-commit-status";

/// 422 as GitHub words a failed validation of a status.
fn invalid_status(field: &str, message: &str) -> Response {
    json_answer(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Status", "code": "custom", "field": field, "message": message}],
            "documentation_url": STATUS_DOC,
            "status": "422"
        }),
    )
}

async fn create_status(
    State(s): State<St>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/statuses/{sha}");
    let text = String::from_utf8_lossy(&body).into_owned();
    record_body(&s, "POST", &path, &[], &[], &headers, &text);
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if h("user-agent").is_none_or(|a| a.is_empty()) {
        return (
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).",
        )
            .into_response();
    }
    let token = lock(&s).status_token.clone();
    match h("authorization") {
        None => return unauthorized("Requires authentication"),
        Some(a) if a != format!("Bearer {token}") => return unauthorized("Bad credentials"),
        Some(_) => {}
    }
    if h("accept").as_deref() != Some("application/vnd.github+json") {
        return github_error(
            StatusCode::BAD_REQUEST,
            "the stand-in wants Accept: application/vnd.github+json, as GitHub documents",
            STATUS_DOC,
        );
    }
    if let Some(v) = h("x-github-api-version").filter(|v| v != "2022-11-28") {
        return github_error(
            StatusCode::BAD_REQUEST,
            &format!("API version {v} is not supported."),
            "https://docs.github.com/rest/about-the-rest-api/api-versions",
        );
    }
    if h("x-github-api-version").is_none() {
        return github_error(
            StatusCode::BAD_REQUEST,
            "the stand-in wants X-GitHub-Api-Version: 2022-11-28, as GitHub documents",
            STATUS_DOC,
        );
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON", STATUS_DOC);
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !["state", "target_url", "description", "context"].contains(&k.as_str()))
    {
        return github_error(
            StatusCode::BAD_REQUEST,
            &format!("the stand-in does not know the field {k:?}"),
            STATUS_DOC,
        );
    }
    // A field that is there must be a string (or null).
    let text_field = |k: &str| -> Result<Option<String>, String> {
        match fields.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(_) => Err(k.to_string()),
        }
    };
    let fields4 = (|| {
        Ok::<_, String>((
            text_field("state")?,
            text_field("target_url")?,
            text_field("description")?,
            text_field("context")?,
        ))
    })();
    let (state, target_url, description, context) = match fields4 {
        Ok(f) => f,
        Err(k) => return invalid_status(&k, &format!("{k} is not a string")),
    };
    let Some(state) =
        state.filter(|s| ["pending", "success", "failure", "error"].contains(&s.as_str()))
    else {
        return invalid_status("state", "state is not included in the list");
    };
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 140)
    {
        return invalid_status(
            "description",
            "description is too long (maximum is 140 characters)",
        );
    }
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return json_answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": format!("No commit found for SHA: {sha}"), "documentation_url": STATUS_DOC, "status": "422"}),
        );
    }
    let mut st = lock(&s);
    if let Some(code) = st.status_script.pop_front() {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = match code {
            403 => github_error(
                status,
                "API rate limit exceeded for user ID 583231.",
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            ),
            404 => github_error(status, "Not Found", STATUS_DOC),
            401 => github_error(status, "Bad credentials", "https://docs.github.com/rest"),
            422 => invalid_status("state", "state is not included in the list"),
            _ => json_answer(status, json!({"message": "Server Error"})),
        };
        if code == 403 {
            r.headers_mut().insert(
                "x-ratelimit-remaining",
                header::HeaderValue::from_static("0"),
            );
        }
        return r;
    }
    let context = context.unwrap_or_else(|| "default".to_string());
    st.statuses.push(StubStatus {
        repo: format!("{owner}/{repo}"),
        sha: sha.clone(),
        state: state.clone(),
        target_url: target_url.clone(),
        description: description.clone(),
        context: context.clone(),
    });
    let id = 1_000_000 + st.statuses.len() as u64;
    let base = st.base.clone();
    let user = st.user.clone();
    drop(st);
    let url = format!("{base}/repos/{owner}/{repo}/statuses/{sha}");
    let mut r = json_answer(
        StatusCode::CREATED,
        json!({
            "url": url,
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", user.id),
            "id": id,
            "node_id": format!("SC_kwDO{id:08X}"),
            "state": state,
            "description": description,
            "target_url": target_url,
            "context": context,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "creator": {
                "login": user.login,
                "id": user.id,
                "type": "User",
                "site_admin": false
            }
        }),
    );
    if let Ok(v) = header::HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

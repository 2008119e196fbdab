//! GitHub sign-in's client (`kha_control::github_login`) against the
//! GitHub stand-in ([`GithubStub`]): a real HTTP exchange on loopback, the
//! browser's part (the authorize redirect) done with a plain GET.

use kha_control::api::auth::GithubIdentity;
use kha_control::api::ApiError;
use kha_control::config::{Config, GithubConfig};
use kha_control::github_login::GithubLogin;
use kha_tests::*;
use std::collections::HashMap;

const CALLBACK: &str = "http://127.0.0.1:7701/auth/github/callback";

fn config(stub: &GithubStub, extra: &[&str]) -> GithubConfig {
    Config::from_toml(&stub.config_toml(extra))
        .expect("the stub's [github] section parses")
        .github
        .expect("a [github] section")
}

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .query_pairs()
        .into_owned()
        .collect()
}

/// What the browser does: follow the authorize URL to the stub, which
/// answers with a redirect to the callback; returns that redirect's query.
fn approve(stub: &GithubStub, gh: &GithubLogin, state: &str) -> HashMap<String, String> {
    let url = gh.authorize_url(state);
    let path = url
        .strip_prefix(&stub.url)
        .unwrap_or_else(|| panic!("{url} is not the stub's"));
    let r = http_get(&stub.url, path);
    assert_eq!(r.status, 302, "{}", r.text());
    let to = r.header("location").expect("a Location header");
    assert!(to.starts_with(&format!("{CALLBACK}?")), "{to}");
    query(to)
}

#[tokio::test]
async fn a_good_sign_in_gives_the_identity_with_orgs() {
    let stub = GithubStub::start();
    stub.set_user(
        StubUser::new(4242, "alice-gh")
            .name(Some("Alice Liddell"))
            .emails(&[
                ("old@example.org", false, true),
                ("alice@example.org", true, true),
                ("new@example.org", false, false),
            ])
            .orgs(&["acme", "kha-ci"]),
    );
    let gh = GithubLogin::new(&config(&stub, &["orgs = [\"acme\"]"]), CALLBACK).unwrap();

    let url = gh.authorize_url("st-123/=&");
    assert!(
        url.starts_with(&format!("{}?", stub.authorize_url())),
        "{url}"
    );
    let q = query(&url);
    assert_eq!(q["client_id"], stub.client_id);
    assert_eq!(q["redirect_uri"], CALLBACK);
    assert_eq!(q["scope"], "read:user user:email read:org");
    assert_eq!(q["state"], "st-123/=&");
    assert!(!url.contains(&stub.client_secret));

    let back = approve(&stub, &gh, "st-123/=&");
    assert_eq!(back["state"], "st-123/=&");
    let got = gh.identity(&back["code"]).await.unwrap();
    assert_eq!(
        got,
        GithubIdentity {
            id: 4242,
            login: "alice-gh".into(),
            name: "Alice Liddell".into(),
            email: "alice@example.org".into(),
            orgs: vec!["acme".into(), "kha-ci".into()],
        }
    );

    // What GitHub saw: the flow's parameters, the credentials in the form
    // as GitHub documents them, JSON asked for, the token as a bearer.
    let seen = stub.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/login/oauth/authorize",
            "/login/oauth/access_token",
            "/user",
            "/user/emails",
            "/user/orgs"
        ]
    );
    assert_eq!(seen[0].param("state"), Some("st-123/=&"));
    assert_eq!(
        seen[0].param("scope"),
        Some("read:user user:email read:org")
    );
    let t = &seen[1];
    assert_eq!(t.method, "POST");
    assert_eq!(t.param("client_id"), Some(stub.client_id.as_str()));
    assert_eq!(t.param("client_secret"), Some(stub.client_secret.as_str()));
    assert_eq!(t.param("code"), Some(back["code"].as_str()));
    assert_eq!(t.param("redirect_uri"), Some(CALLBACK));
    assert_eq!(t.param("grant_type"), Some("authorization_code"));
    assert_eq!(t.header("accept"), Some("application/json"));
    for api in &seen[2..] {
        let auth = api.header("authorization").unwrap();
        assert!(auth.starts_with("Bearer gho_"), "{}: {auth}", api.path);
        assert_eq!(api.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(api.header("user-agent"), Some("kha"));
    }
    assert_eq!(seen[4].param("per_page"), Some("100"));

    // A code is good once.
    let e = gh.identity(&back["code"]).await.unwrap_err();
    assert!(matches!(e, ApiError::Unauthenticated(_)), "{e:?}");
}

#[tokio::test]
async fn orgs_are_read_only_when_configured() {
    let stub = GithubStub::start();
    stub.set_user(StubUser::new(7, "bob").name(None).orgs(&["acme"]));
    let gh = GithubLogin::new(&config(&stub, &[]), CALLBACK).unwrap();
    let code = approve(&stub, &gh, "s")["code"].clone();
    let got = gh.identity(&code).await.unwrap();
    assert_eq!(got.login, "bob");
    assert_eq!(got.name, "", "no display name");
    assert_eq!(got.email, "bob@example.com");
    assert!(got.orgs.is_empty());
    assert!(stub.seen_at("/user/orgs").is_empty());
}

#[tokio::test]
async fn every_page_of_orgs_is_read() {
    let stub = GithubStub::start();
    let many: Vec<String> = (0..230).map(|i| format!("org-{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    stub.set_user(StubUser::new(8, "carol").orgs(&refs));
    let gh = GithubLogin::new(&config(&stub, &["orgs = [\"org-229\"]"]), CALLBACK).unwrap();
    let code = approve(&stub, &gh, "s")["code"].clone();
    let got = gh.identity(&code).await.unwrap();
    assert_eq!(got.orgs, many);
    let pages: Vec<_> = stub
        .seen_at("/user/orgs")
        .iter()
        .map(|s| s.param("page").unwrap_or("").to_string())
        .collect();
    assert_eq!(pages, ["1", "2", "3"]);
}

#[tokio::test]
async fn a_wrong_client_secret_says_so_without_the_secret() {
    let stub = GithubStub::start();
    let mut cfg = config(&stub, &[]);
    cfg.client_secret = "not-the-secret-0123456789".into();
    let gh = GithubLogin::new(&cfg, CALLBACK).unwrap();
    let code = approve(&stub, &gh, "s")["code"].clone();
    let e = gh.identity(&code).await.unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, ApiError::Unavailable(_)), "{e:?}");
    assert!(m.starts_with("GitHub's token endpoint answered incorrect_client_credentials (The client_id and/or client_secret passed are incorrect.)"), "{m}");
    assert!(
        m.contains("check [github] client_id and client_secret"),
        "{m}"
    );
    assert!(!m.contains("not-the-secret") && !m.contains(&code), "{m}");
    assert!(stub.seen_at("/user").is_empty());
}

#[tokio::test]
async fn a_bad_code_says_to_sign_in_again() {
    let stub = GithubStub::start();
    let gh = GithubLogin::new(&config(&stub, &[]), CALLBACK).unwrap();
    let e = gh.identity("0123456789abcdef0123").await.unwrap_err();
    assert!(matches!(e, ApiError::Unauthenticated(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "GitHub's token endpoint answered bad_verification_code (The code passed is incorrect or \
         expired.): the sign-in code is stale or used; sign in with GitHub again"
    );
}

#[tokio::test]
async fn a_callback_url_github_does_not_know_is_named() {
    let stub = GithubStub::start();
    let gh = GithubLogin::new(&config(&stub, &[]), CALLBACK).unwrap();
    let code = approve(&stub, &gh, "s")["code"].clone();
    let other = GithubLogin::new(&config(&stub, &[]), "http://127.0.0.1:1/elsewhere").unwrap();
    let e = other.identity(&code).await.unwrap_err();
    assert!(e.to_string().contains("redirect_uri_mismatch"), "{e}");
    assert!(
        e.to_string().contains("public_url + /auth/github/callback"),
        "{e}"
    );
}

#[test]
fn a_denied_sign_in_comes_back_with_access_denied_and_the_state() {
    let stub = GithubStub::start();
    stub.deny(true);
    let gh = GithubLogin::new(&config(&stub, &[]), CALLBACK).unwrap();
    let back = approve(&stub, &gh, "st-9");
    assert_eq!(back["error"], "access_denied");
    assert_eq!(
        back["error_description"],
        "The user has denied your application access."
    );
    assert_eq!(back["state"], "st-9");
    assert!(!back.contains_key("code"));
}

#[tokio::test]
async fn an_unreachable_github_is_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stub = GithubStub::start();
    let mut cfg = config(&stub, &[]);
    cfg.token_url = format!("http://127.0.0.1:{port}/login/oauth/access_token");
    let gh = GithubLogin::new(&cfg, CALLBACK).unwrap();
    let e = gh.identity("code").await.unwrap_err();
    assert!(matches!(e, ApiError::Unavailable(_)), "{e:?}");
    assert!(
        e.to_string().starts_with(&format!(
            "cannot reach GitHub's token endpoint {}: ",
            cfg.token_url
        )),
        "{e}"
    );
}

#[tokio::test]
async fn an_api_that_refuses_the_token_is_named() {
    let stub = GithubStub::start();
    let mut cfg = config(&stub, &[]);
    // The token comes from the stub, the API is another stub that has not
    // issued it: GitHub's 401 "Bad credentials".
    let other = GithubStub::start();
    cfg.api_url = other.api_url();
    let gh = GithubLogin::new(&cfg, CALLBACK).unwrap();
    let code = approve(&stub, &gh, "s")["code"].clone();
    let e = gh.identity(&code).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "GitHub's API answered GET {}/user with 401 Unauthorized: Bad credentials",
            other.url
        )
    );
}

/// The stand-in's own GitHub habits, which the client above must cope with.
#[test]
fn the_stub_answers_as_github_does() {
    let stub = GithubStub::start();
    let r = http_get(
        &stub.url,
        &format!(
            "/login/oauth/authorize?client_id={}&redirect_uri=http%3A%2F%2Fx%2Fcb&scope=read%3Auser&state=s",
            stub.client_id
        ),
    );
    let code = query(r.header("location").unwrap())["code"].clone();
    let form = format!(
        "client_id={}&client_secret={}&code={code}",
        stub.client_id, stub.client_secret
    );
    let form_type = ("Content-Type", "application/x-www-form-urlencoded");
    // Without `Accept: application/json`, GitHub answers form-encoded.
    let r = http_request(
        &stub.url,
        "POST",
        "/login/oauth/access_token",
        &[form_type],
        form.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let answer: HashMap<String, String> =
        url::form_urlencoded::parse(&r.body).into_owned().collect();
    assert!(answer["access_token"].starts_with("gho_"), "{}", r.text());
    assert_eq!(answer["token_type"], "bearer");
    assert_eq!(answer["scope"], "read:user");
    let bearer = format!("Bearer {}", answer["access_token"]);
    // A used code, as JSON, with HTTP 200.
    let r = http_request(
        &stub.url,
        "POST",
        "/login/oauth/access_token",
        &[form_type, ("Accept", "application/json")],
        form.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["error"], "bad_verification_code");
    // The API: the user with the token, 404 for emails without the
    // scope, 401 without a token.
    let r = http_request(
        &stub.url,
        "GET",
        "/user",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(
        (r.status, r.json()["login"].as_str()),
        (200, Some("octocat"))
    );
    let r = http_request(
        &stub.url,
        "GET",
        "/user/emails",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = http_get(&stub.url, "/user");
    assert_eq!(
        (r.status, r.json()["message"].as_str()),
        (401, Some("Requires authentication"))
    );
    // A redirect_uri outside the registered callback goes to the callback.
    stub.set_callback(Some("http://x/cb"));
    let r = http_get(
        &stub.url,
        &format!(
            "/login/oauth/authorize?client_id={}&redirect_uri=http%3A%2F%2Fevil%2Fcb&state=s2",
            stub.client_id
        ),
    );
    let to = r.header("location").unwrap();
    assert!(
        to.starts_with("http://x/cb?error=redirect_uri_mismatch&"),
        "{to}"
    );
    assert_eq!(query(to)["state"], "s2");
}

//! GitHub sign-in, the client side of GitHub's OAuth web flow: the URL a
//! browser is sent to, and the code it comes back with turned into who the
//! person is on GitHub ([`GithubIdentity`]). The HTTP routes
//! (`/auth/github`, `/auth/github/callback`) and what an identity becomes in
//! kha (`api::auth::github_user`) live elsewhere; this module only talks to
//! GitHub.
//!
//! The code exchange goes through the `oauth2` crate; GitHub's REST API
//! (`/user`, `/user/emails`, `/user/orgs`) through the same reqwest client.
//! The access token lives only inside [`GithubLogin::identity`]: it is
//! never stored, logged or put in an error, and neither are the code or the
//! client secret. Every URL comes from [`GithubConfig`], so GitHub
//! Enterprise Server and the tests' stand-in (`tests/src/github_stub.rs`)
//! work the same way.

use crate::api::auth::GithubIdentity;
use crate::api::ApiError;
use crate::config::GithubConfig;
use kha_core::view::Role;
use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// What kha asks GitHub for: the profile, the email addresses (to pick the
/// primary verified one) and organization memberships (for `orgs`).
pub const SCOPES: [&str; 3] = ["read:user", "user:email", "read:org"];

/// A sign-in that takes longer than this on GitHub's side fails.
const TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `/user/orgs` is paged; 10 pages of 100 is more organizations than anyone
/// signing in to a CI server belongs to.
const ORGS_PER_PAGE: usize = 100;
const ORGS_MAX_PAGES: usize = 10;

type OauthClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// GitHub sign-in for one OAuth app: built once at start from `[github]`.
pub struct GithubLogin {
    oauth: OauthClient,
    http: reqwest::Client,
    /// `api_url` without a trailing slash.
    api_url: String,
    token_url: String,
    /// Whether to read organization memberships (`[github] orgs` is set).
    read_orgs: bool,
}

impl fmt::Debug for GithubLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubLogin")
            .field("client_id", &self.oauth.client_id().as_str())
            .field("token_url", &self.token_url)
            .field("api_url", &self.api_url)
            .field("read_orgs", &self.read_orgs)
            .finish_non_exhaustive()
    }
}

impl GithubLogin {
    /// Checks `[github]` and builds the client; `redirect_url` is where
    /// GitHub sends the browser back (`{base}/auth/github/callback`), and
    /// must be the OAuth app's callback URL or under it.
    pub fn new(cfg: &GithubConfig, redirect_url: &str) -> Result<GithubLogin, ApiError> {
        if cfg.client_id.trim().is_empty() {
            return Err(invalid(
                "client_id is empty: set it to the OAuth app's client id".into(),
            ));
        }
        if cfg.client_secret.expose().trim().is_empty() {
            return Err(invalid(
                "client_secret is empty: set it to the OAuth app's client secret".into(),
            ));
        }
        // A role that shows private projects would go to every GitHub
        // account in the world unless sign-in is limited to organisations.
        if cfg.default_role == Role::Admin {
            return Err(invalid(
                "default_role = \"admin\" would make every new GitHub user an admin: give admin by hand (`kha user set-role NAME admin`)".into(),
            ));
        }
        if cfg.default_role >= Role::Viewer && cfg.orgs.is_empty() {
            return Err(invalid(format!(
                "default_role = \"{}\" without orgs would give every GitHub account that role: set orgs, or use \"none\"",
                cfg.default_role
            )));
        }
        let auth_url = AuthUrl::new(web_url("authorize_url", &cfg.authorize_url)?)
            .map_err(|e| invalid(format!("authorize_url: {e}")))?;
        let token_url = TokenUrl::new(web_url("token_url", &cfg.token_url)?)
            .map_err(|e| invalid(format!("token_url: {e}")))?;
        let redirect = RedirectUrl::new(web_url("the callback URL", redirect_url)?)
            .map_err(|e| invalid(format!("the callback URL {redirect_url:?}: {e}")))?;
        let api_url = web_url("api_url", &cfg.api_url)?
            .trim_end_matches('/')
            .to_string();
        let oauth = BasicClient::new(ClientId::new(cfg.client_id.clone()))
            .set_client_secret(ClientSecret::new(cfg.client_secret.expose().to_string()))
            // GitHub documents client_id and client_secret as form fields
            // of the token request, not HTTP basic auth.
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(auth_url)
            .set_token_uri(token_url)
            .set_redirect_uri(redirect);
        let http = reqwest::Client::builder()
            // Following redirects would send the code or the token to
            // wherever a redirect points (oauth2's advice against SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("kha")
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| {
                ApiError::Internal(format!("cannot set up an HTTP client: {}", chain(&e)))
            })?;
        Ok(GithubLogin {
            oauth,
            http,
            api_url,
            token_url: cfg.token_url.clone(),
            read_orgs: !cfg.orgs.is_empty(),
        })
    }

    /// The URL to send the browser to, for this `state` (which the caller
    /// keeps, and checks when GitHub sends the browser back with it).
    pub fn authorize_url(&self, state: &str) -> String {
        let (url, _) = self
            .oauth
            .authorize_url(|| CsrfToken::new(state.to_string()))
            .add_scopes(SCOPES.iter().map(|s| Scope::new(s.to_string())))
            .url();
        url.into()
    }

    /// Turns the `code` GitHub gave the browser into the signed-in person:
    /// the code → an access token (oauth2), then `GET /user`,
    /// `/user/emails`, and `/user/orgs` when `orgs` is configured. Errors
    /// say what GitHub answered: `Unauthenticated` for a code it refused
    /// (stale, used, or forged: sign in again), `Unavailable` for anything
    /// else (unreachable, wrong client secret, callback URL mismatch).
    pub async fn identity(&self, code: &str) -> Result<GithubIdentity, ApiError> {
        let token = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error(e))?;
        let token = token.access_token();
        let user: ApiUser = self.get(token, "/user").await?;
        let emails: Vec<ApiEmail> = self.get(token, "/user/emails").await?;
        let mut orgs = Vec::new();
        if self.read_orgs {
            for page in 1..=ORGS_MAX_PAGES {
                let path = format!("/user/orgs?per_page={ORGS_PER_PAGE}&page={page}");
                let got: Vec<ApiOrg> = self.get(token, &path).await?;
                let last = got.len() < ORGS_PER_PAGE;
                orgs.extend(got.into_iter().map(|o| o.login));
                if last {
                    break;
                }
            }
        }
        tracing::debug!(login = %user.login, github_id = user.id, orgs = orgs.len(), "GitHub identity read");
        Ok(GithubIdentity {
            id: user.id,
            login: user.login,
            name: user.name.unwrap_or_default(),
            email: pick_email(&emails),
            orgs,
        })
    }

    /// What went wrong with the code exchange, in words, with what GitHub
    /// said, and never the answer's raw body (a token could be in it).
    fn token_error<RE: std::error::Error + 'static>(
        &self,
        e: RequestTokenError<RE, BasicErrorResponse>,
    ) -> ApiError {
        let url = &self.token_url;
        match e {
            RequestTokenError::ServerResponse(r) => oauth_error(OauthError {
                error: r.error().to_string(),
                error_description: r.error_description().cloned(),
            }),
            // GitHub answers errors with HTTP 200, which oauth2 reads as a
            // token and fails to parse: read it as an error answer here.
            RequestTokenError::Parse(e, body) => match serde_json::from_slice(&body) {
                Ok(err) => oauth_error(err),
                Err(_) => ApiError::Unavailable(format!(
                    "GitHub's token endpoint {url} answered neither a token nor an OAuth error \
                     ({:?} error at {}); check [github] token_url",
                    e.inner().classify(),
                    e.path()
                )),
            },
            RequestTokenError::Request(e) => ApiError::Unavailable(format!(
                "cannot reach GitHub's token endpoint {url}: {}",
                chain(&e)
            )),
            RequestTokenError::Other(m) => {
                ApiError::Unavailable(format!("GitHub's token endpoint {url} answered: {m}"))
            }
        }
    }

    /// GET `{api_url}{path}` with the user's token, as GitHub's REST API
    /// documents it.
    async fn get<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        path: &str,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.api_url);
        let unreachable = |e: reqwest::Error| {
            ApiError::Unavailable(format!("cannot reach GitHub's API at {url}: {}", chain(&e)))
        };
        let resp = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .bearer_auth(token.secret())
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let said = serde_json::from_slice::<ApiMessage>(&body)
                .map(|m| format!(": {}", m.message))
                .unwrap_or_default();
            return Err(ApiError::Unavailable(format!(
                "GitHub's API answered GET {url} with {status}{said}"
            )));
        }
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::Unavailable(format!(
                "GitHub's API answered GET {url} with something kha cannot read: {e}"
            ))
        })
    }
}

fn invalid(m: String) -> ApiError {
    ApiError::Invalid(format!("[github] {m}"))
}

/// `u` if it is an absolute http(s) URL.
fn web_url(key: &str, u: &str) -> Result<String, ApiError> {
    match oauth2::url::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.has_host() => Ok(u.to_string()),
        Ok(_) => Err(invalid(format!("{key} {u:?} is not an http(s) URL"))),
        Err(e) => Err(invalid(format!("{key} {u:?} is not a URL: {e}"))),
    }
}

/// An OAuth error answer (RFC 6749 §5.2), as GitHub sends it.
#[derive(Deserialize)]
struct OauthError {
    error: String,
    error_description: Option<String>,
}

fn oauth_error(e: OauthError) -> ApiError {
    let said = match &e.error_description {
        Some(d) => format!("{} ({d})", e.error),
        None => e.error.clone(),
    };
    match e.error.as_str() {
        "bad_verification_code" => ApiError::Unauthenticated(format!(
            "GitHub's token endpoint answered {said}: the sign-in code is stale or used; sign in with GitHub again"
        )),
        "incorrect_client_credentials" => ApiError::Unavailable(format!(
            "GitHub's token endpoint answered {said}: check [github] client_id and client_secret"
        )),
        "redirect_uri_mismatch" => ApiError::Unavailable(format!(
            "GitHub's token endpoint answered {said}: the OAuth app's callback URL must match \
             public_url + /auth/github/callback"
        )),
        _ => ApiError::Unavailable(format!("GitHub's token endpoint answered {said}")),
    }
}

/// The primary address if it is verified, else the first verified one:
/// an unverified address proves nothing about who owns it.
fn pick_email(emails: &[ApiEmail]) -> String {
    emails
        .iter()
        .find(|e| e.primary && e.verified)
        .or_else(|| emails.iter().find(|e| e.verified))
        .map(|e| e.email.clone())
        .unwrap_or_default()
}

/// An error and its causes on one line ("error sending request: connection
/// refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The fields of GitHub's `GET /user` that kha uses.
#[derive(Deserialize)]
struct ApiUser {
    id: u64,
    login: String,
    name: Option<String>,
}

/// One entry of `GET /user/emails`.
#[derive(Deserialize)]
struct ApiEmail {
    email: String,
    primary: bool,
    verified: bool,
}

/// One entry of `GET /user/orgs`.
#[derive(Deserialize)]
struct ApiOrg {
    login: String,
}

/// GitHub's error body (`{"message": "Bad credentials", …}`).
#[derive(Deserialize)]
struct ApiMessage {
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GithubConfig {
        crate::config::Config::from_toml(
            "[github]\nclient_id = \"Iv1.abc\"\nclient_secret = \"s3cr3t\"\norgs = [\"acme\"]",
        )
        .unwrap()
        .github
        .unwrap()
    }

    #[test]
    fn authorize_url_carries_the_flow_parameters() {
        let gh = GithubLogin::new(&cfg(), "https://ci.example.org/auth/github/callback").unwrap();
        let url = oauth2::url::Url::parse(&gh.authorize_url("st&te=1")).unwrap();
        assert_eq!(url.origin().ascii_serialization(), "https://github.com");
        assert_eq!(url.path(), "/login/oauth/authorize");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "Iv1.abc");
        assert_eq!(
            q["redirect_uri"],
            "https://ci.example.org/auth/github/callback"
        );
        assert_eq!(q["scope"], "read:user user:email read:org");
        assert_eq!(q["state"], "st&te=1");
        assert!(!url.as_str().contains("s3cr3t"));
        assert!(!format!("{gh:?}").contains("s3cr3t"));
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        type Change = fn(&mut GithubConfig);
        let cases: [(&str, Change, &str); 7] = [
            (
                "admin",
                |c| c.default_role = Role::Admin,
                "would make every new GitHub user an admin",
            ),
            (
                "viewer for all",
                |c| {
                    c.default_role = Role::Viewer;
                    c.orgs.clear()
                },
                "without orgs would give every GitHub account that role",
            ),
            ("client_id", |c| c.client_id.clear(), "client_id is empty"),
            (
                "secret",
                |c| c.client_secret = "".into(),
                "client_secret is empty",
            ),
            (
                "token_url",
                |c| c.token_url = "github.com/x".into(),
                "token_url \"github.com/x\" is not a URL",
            ),
            (
                "api_url",
                |c| c.api_url = "ftp://example.org".into(),
                "api_url \"ftp://example.org\" is not an http(s) URL",
            ),
            (
                "authorize_url",
                |c| c.authorize_url = "https://exa mple.org".into(),
                "authorize_url",
            ),
        ];
        for (what, change, want) in cases {
            let mut c = cfg();
            change(&mut c);
            let e =
                GithubLogin::new(&c, "https://ci.example.org/auth/github/callback").unwrap_err();
            assert!(matches!(e, ApiError::Invalid(_)), "{what}: {e:?}");
            assert!(e.to_string().starts_with("[github] "), "{what}: {e}");
            assert!(e.to_string().contains(want), "{what}: {e}");
        }
        let e = GithubLogin::new(&cfg(), "http://0.0.0.0:7701x/auth/github/callback").unwrap_err();
        assert!(e.to_string().contains("callback URL"), "{e}");
    }

    #[test]
    fn oauth_errors_say_what_github_said_and_what_to_do() {
        let cases = [
            ("bad_verification_code", "sign in with GitHub again", true),
            (
                "incorrect_client_credentials",
                "client_id and client_secret",
                false,
            ),
            ("redirect_uri_mismatch", "callback URL", false),
            (
                "unsupported_grant_type",
                "answered unsupported_grant_type (why)",
                false,
            ),
        ];
        for (code, want, unauthenticated) in cases {
            let e = oauth_error(OauthError {
                error: code.into(),
                error_description: Some("why".into()),
            });
            assert!(e.to_string().contains(&format!("{code} (why)")), "{e}");
            assert!(e.to_string().contains(want), "{e}");
            assert_eq!(
                matches!(e, ApiError::Unauthenticated(_)),
                unauthenticated,
                "{e:?}"
            );
        }
    }

    #[test]
    fn the_primary_verified_email_is_chosen() {
        let e = |email: &str, primary, verified| ApiEmail {
            email: email.into(),
            primary,
            verified,
        };
        let cases: [(Vec<ApiEmail>, &str); 5] = [
            (vec![e("a@x", false, true), e("p@x", true, true)], "p@x"),
            (
                vec![
                    e("p@x", true, false),
                    e("b@x", false, false),
                    e("c@x", false, true),
                ],
                "c@x",
            ),
            (vec![e("p@x", true, false)], ""),
            (vec![], ""),
            (vec![e("a@x", false, true), e("b@x", false, true)], "a@x"),
        ];
        for (emails, want) in cases {
            assert_eq!(pick_email(&emails), want);
        }
    }
}

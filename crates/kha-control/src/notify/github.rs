//! GitHub commit statuses (`POST /repos/{owner}/{repo}/statuses/{sha}`,
//! docs.github.com/rest/commits/statuses): pending when a build starts,
//! then success, failure or error. Posting the same state twice is
//! harmless (the newest status of a context wins), so a retry needs no
//! idempotency key.

use super::config::GithubStatusConfig;
use super::webhook::{error_chain, first_bytes};
use super::{Delivery, Failure, Sent, Target};
use anyhow::Context;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// GitHub's limit on a status's description.
pub const MAX_DESCRIPTION: usize = 140;
const TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The states GitHub accepts.
const STATES: [&str; 4] = ["pending", "success", "failure", "error"];

/// Posts commit statuses with the configured token.
pub struct Statuses {
    http: reqwest::Client,
    api_url: String,
    /// `Bearer <token>`, marked sensitive.
    auth: reqwest::header::HeaderValue,
}

impl Statuses {
    pub fn new(cfg: &GithubStatusConfig) -> anyhow::Result<Statuses> {
        let api_url = cfg.api_url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&api_url)
            .with_context(|| format!("[notify.github] api_url {api_url:?}"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "[notify.github] api_url must be an http(s) URL"
        );
        anyhow::ensure!(
            !cfg.token.is_empty(),
            "[notify.github] token is empty: give a token that may write commit statuses"
        );
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", cfg.token.expose()))
                .map_err(|_| {
                    anyhow::anyhow!("[notify.github] token holds characters a header cannot")
                })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            // A redirect would carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("kha")
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("setting up the commit statuses' HTTP client")?;
        Ok(Statuses {
            http,
            api_url,
            auth,
        })
    }

    pub async fn send(&self, d: &Delivery) -> Result<Sent, Failure> {
        let Target::GithubStatus {
            repo,
            sha,
            state,
            context,
            description,
            target_url,
        } = &d.target
        else {
            return Err(Failure::Permanent(format!(
                "not a commit status: {}",
                d.target.channel()
            )));
        };
        let (owner, name) = repo
            .split_once('/')
            .filter(|(o, n)| path_word(o) && path_word(n))
            .ok_or_else(|| Failure::Permanent(format!("{repo:?} is not a GitHub owner/name")))?;
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Failure::Permanent(format!(
                "{sha:?} is not a commit's full SHA-1"
            )));
        }
        if !STATES.contains(&state.as_str()) {
            return Err(Failure::Permanent(format!(
                "{state:?} is not a commit status's state ({})",
                STATES.join(", ")
            )));
        }
        let mut body = Map::new();
        body.insert("state".into(), json!(state));
        if !target_url.is_empty() {
            body.insert("target_url".into(), json!(target_url));
        }
        if !description.is_empty() {
            body.insert("description".into(), json!(shorten(description)));
        }
        if !context.is_empty() {
            body.insert("context".into(), json!(context));
        }
        let url = format!("{}/repos/{owner}/{name}/statuses/{sha}", self.api_url);
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, self.auth.clone())
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(Value::Object(body).to_string())
            .send()
            .await
            .map_err(|e| Failure::Retry(describe(&e)))?;
        let status = resp.status();
        let code = status.as_u16();
        let head = format!("{code} {}", status.canonical_reason().unwrap_or(""))
            .trim_end()
            .to_string();
        if status.is_success() {
            return Ok(head);
        }
        let rate_limited = code == 429
            || (code == 403
                && (resp
                    .headers()
                    .get("x-ratelimit-remaining")
                    .is_some_and(|v| v.as_bytes() == b"0")
                    || resp.headers().contains_key(reqwest::header::RETRY_AFTER)));
        let shown = first_bytes(resp).await;
        // GitHub words a secondary rate limit only in the body.
        let rate_limited = rate_limited || (code == 403 && shown.contains("rate limit"));
        let answer = if shown.is_empty() {
            format!("GitHub answered {head}")
        } else {
            format!("GitHub answered {head}: {shown}")
        };
        if status.is_server_error() || rate_limited {
            Err(Failure::Retry(answer))
        } else {
            Err(Failure::Permanent(answer))
        }
    }
}

/// An owner's or a repository's name: nothing that would change the path.
fn path_word(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// At most [`MAX_DESCRIPTION`] characters, with `…` when cut.
fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_DESCRIPTION {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_DESCRIPTION - 1).collect();
    out.push('…');
    out
}

/// A failed request, without its URL.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("GitHub did not answer within {}s", TIMEOUT.as_secs());
    }
    let what = if e.is_connect() {
        "cannot connect to GitHub"
    } else {
        "request to GitHub failed"
    };
    format!("{what}{}", error_chain(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_fit_github() {
        assert_eq!(shorten("The build passed."), "The build passed.");
        let long = "é".repeat(200);
        let s = shorten(&long);
        assert_eq!(s.chars().count(), MAX_DESCRIPTION);
        assert!(s.ends_with('…'));
        assert_eq!(shorten(&"x".repeat(140)), "x".repeat(140));
    }

    #[test]
    fn repository_names_stay_in_the_path() {
        for (s, ok) in [
            ("octocat", true),
            ("hello-world.rs", true),
            ("a_b", true),
            ("..", false),
            ("", false),
            ("a/b", false),
            ("a?b", false),
            ("a%2Fb", false),
        ] {
            assert_eq!(path_word(s), ok, "{s}");
        }
    }
}

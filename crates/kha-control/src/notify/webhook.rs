//! Webhooks: an HTTP POST of kha's JSON ([`Notice`]) or Travis's
//! `payload` form, signed.
//!
//! Headers, for receivers:
//! - `X-Kha-Event` (`build_finished`, …) and `X-Kha-Delivery`: the
//!   delivery's key, the same on every retry, so a receiver can drop a
//!   repeat;
//! - `X-Kha-Signature-256: sha256=<hex>`: HMAC-SHA256 of the body with the
//!   project's webhook secret (GitHub's scheme), when the project has one;
//! - Travis's `Travis-Repo-Slug`, and `Signature`: base64 of the
//!   RSA-PKCS1v15-SHA1 signature of the payload JSON, when the control node
//!   has a signing key (receivers check it with the public key served at
//!   `/api/v1/config`);
//! - `Authorization: Basic …` from the URL's userinfo, which is taken out
//!   of the URL itself.
//!
//! Redirects are not followed (the body and its signature would go where
//! the redirect says). Answers name only the receiver's host: a URL's path
//! or query often holds a token, and never reaches `kha build show`.

use super::config::WebhooksConfig;
use super::{Delivery, Failure, Notice, Sent, Target, WebhookFormat};
use anyhow::Context;
use base64::Engine;
use hmac::{Hmac, Mac};
use kha_core::time::iso8601;
use kha_core::{Millis, Secret};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How much of a refusing receiver's body the answer keeps.
const BODY_SHOWN: usize = 200;

/// Posts webhooks.
pub struct Webhooks {
    http: reqwest::Client,
    timeout: Duration,
    /// Travis's signing key.
    key: Option<PKey<Private>>,
}

impl Webhooks {
    pub fn new(cfg: &WebhooksConfig) -> anyhow::Result<Webhooks> {
        anyhow::ensure!(
            cfg.timeout_secs.is_finite() && cfg.timeout_secs > 0.0,
            "[notify.webhooks] timeout_secs must be a positive number of seconds"
        );
        let timeout = Duration::from_secs_f64(cfg.timeout_secs);
        let key = match &cfg.rsa_private_key {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("reading the webhook signing key {}", path.display())
                })?;
                let key = PKey::private_key_from_pem(&pem).with_context(|| {
                    format!(
                        "{}: not a PEM private key (make one with `openssl genrsa -out {} 2048`)",
                        path.display(),
                        path.display()
                    )
                })?;
                anyhow::ensure!(
                    key.rsa().is_ok(),
                    "{}: the webhook signing key must be an RSA key (Travis's scheme)",
                    path.display()
                );
                Some(key)
            }
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("kha")
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .build()
            .context("setting up the webhooks' HTTP client")?;
        Ok(Webhooks { http, timeout, key })
    }

    /// The public half of the signing key (`-----BEGIN PUBLIC KEY-----`),
    /// for `/api/v1/config`; None without a key.
    pub fn public_key_pem(&self) -> Option<String> {
        let pem = self.key.as_ref()?.public_key_to_pem().ok()?;
        String::from_utf8(pem).ok()
    }

    /// `secret`: the project's webhook secret, for the HMAC-SHA256 header.
    pub async fn send(&self, d: &Delivery, secret: &Secret) -> Result<Sent, Failure> {
        let Target::Webhook { url, format } = &d.target else {
            return Err(Failure::Permanent(format!(
                "not a webhook target: {}",
                d.target.channel()
            )));
        };
        let (url, basic) = split_userinfo(url).map_err(Failure::Permanent)?;
        let host = match (url.host_str(), url.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        };
        let (payload, body, content_type) = match format {
            WebhookFormat::Kha => {
                let json = serde_json::to_vec(&d.notice)
                    .map_err(|e| Failure::Permanent(format!("cannot encode the notice: {e}")))?;
                (json.clone(), json, "application/json")
            }
            WebhookFormat::Travis => {
                let json = travis_payload(&d.notice).to_string();
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("payload", &json)
                    .finish();
                (
                    json.into_bytes(),
                    body.into_bytes(),
                    "application/x-www-form-urlencoded",
                )
            }
        };
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header("X-Kha-Event", &d.notice.event)
            .header("X-Kha-Delivery", &d.key);
        let slug = &d.notice.build.repository_slug;
        if !slug.is_empty() && reqwest::header::HeaderValue::from_str(slug).is_ok() {
            req = req.header("Travis-Repo-Slug", slug);
        }
        if let Some((user, password)) = basic {
            req = req.basic_auth(user, password);
        }
        if !secret.is_empty() {
            req = req.header("X-Kha-Signature-256", hmac_header(secret, &body)?);
        }
        if let Some(key) = &self.key {
            let sig = rsa_sha1(key, &payload)
                .map_err(|e| Failure::Permanent(format!("cannot sign the payload: {e}")))?;
            req = req.header("Signature", sig);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Retry(self.describe(&e, &host)))?;
        let status = resp.status();
        let head = format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_string();
        if status.is_success() {
            return Ok(head);
        }
        if status.is_redirection() {
            return Err(Failure::Permanent(format!(
                "{host} answered {head}: redirects are not followed; give the webhook's final URL"
            )));
        }
        let shown = first_bytes(resp).await;
        let answer = if shown.is_empty() {
            format!("{host} answered {head}")
        } else {
            format!("{host} answered {head}: {shown}")
        };
        let code = status.as_u16();
        if status.is_server_error() || code == 429 || code == 408 {
            Err(Failure::Retry(answer))
        } else {
            Err(Failure::Permanent(answer))
        }
    }

    /// A failed request, without its URL (it may hold a token).
    fn describe(&self, e: &reqwest::Error, host: &str) -> String {
        if e.is_timeout() {
            return format!(
                "{host} did not answer within {}s",
                self.timeout.as_secs_f64()
            );
        }
        let what = if e.is_connect() {
            "cannot connect to"
        } else {
            "request to"
        };
        format!("{what} {host} failed{}", error_chain(e))
    }
}

/// The URL without its userinfo, and the userinfo (%-decoded) for basic
/// auth.
type Basic = Option<(String, Option<String>)>;

fn split_userinfo(raw: &str) -> Result<(url::Url, Basic), String> {
    // Not the URL itself: unparsed, its password cannot be taken out.
    let mut url = url::Url::parse(raw).map_err(|e| format!("bad webhook URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "bad webhook URL {}: only http and https",
            super::redact_userinfo(raw)
        ));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let basic = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        Some((decode(url.username()), url.password().map(decode)))
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, basic))
}

/// `sha256=<hex of HMAC-SHA256(body, secret)>`, GitHub's format.
fn hmac_header(secret: &Secret, body: &[u8]) -> Result<String, Failure> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .map_err(|e| Failure::Permanent(format!("cannot sign with the project's secret: {e}")))?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// Travis's `Signature`: RSASSA-PKCS1-v1_5 with SHA-1 over the exact
/// payload, base64 without line breaks.
fn rsa_sha1(key: &PKey<Private>, payload: &[u8]) -> Result<String, openssl::error::ErrorStack> {
    let mut signer = openssl::sign::Signer::new(MessageDigest::sha1(), key)?;
    signer.update(payload)?;
    let sig = signer.sign_to_vec()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sig))
}

/// `: cause: its cause…` of a reqwest error, whose own text (which names
/// the URL) is left out.
pub(super) fn error_chain(e: &reqwest::Error) -> String {
    let mut s = String::new();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The start of a refusing server's body, as one line of text.
pub(super) async fn first_bytes(mut resp: reqwest::Response) -> String {
    let mut got = Vec::new();
    while got.len() < BODY_SHOWN {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            _ => break,
        }
    }
    got.truncate(BODY_SHOWN);
    let text = String::from_utf8_lossy(&got);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one_line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Travis's name of a build's (`build`) or job's state: kha's `running`
/// is Travis's `started`, a queued build is Travis's `created`.
fn travis_state(state: &str, build: bool) -> &str {
    match state {
        "running" => "started",
        "queued" if build => "created",
        s => s,
    }
}

/// Travis's `status`/`result`: 0 passed, 1 failed or errored, else null.
fn travis_result(state: &str) -> Value {
    match state {
        "passed" => json!(0),
        "failed" | "errored" => json!(1),
        _ => Value::Null,
    }
}

fn date(ms: Millis) -> Value {
    if ms == 0 {
        Value::Null
    } else {
        Value::String(iso8601(ms))
    }
}

fn or_null(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

/// kha has no numeric repository ids: a stable one from the project's
/// name, below 2^31 so every JSON reader holds it.
fn repository_id(project: &str) -> u64 {
    let h = Sha256::digest(project.as_bytes());
    u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]) >> 1)
}

/// Travis's webhook payload (travis-tasks `webhook/payload.rb`) from a
/// notice. Fields kha does not know are null (`committed_at`,
/// `pull_request_title`) or `{}` (`config`; a job's `config` holds its
/// matrix values).
pub fn travis_payload(n: &Notice) -> Value {
    let b = &n.build;
    let repo_id = repository_id(&b.project);
    let (owner, name) = match b.repository_slug.split_once('/') {
        Some((o, n)) => (o.to_string(), n.to_string()),
        None => (String::new(), b.repository_slug.clone()),
    };
    let matrix: Vec<Value> = b
        .jobs
        .iter()
        .map(|j| {
            let config: serde_json::Map<String, Value> = j
                .matrix
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({
                "id": j.id,
                "repository_id": repo_id,
                "parent_id": b.id,
                "number": j.number,
                "state": travis_state(&j.state, false),
                "config": config,
                "status": travis_result(&j.state),
                "result": travis_result(&j.state),
                "commit": b.commit,
                "branch": b.branch,
                "message": b.message,
                "compare_url": or_null(&b.compare_url),
                "started_at": date(j.started_ms),
                "finished_at": date(j.finished_ms),
                "committed_at": Value::Null,
                "author_name": b.author_name,
                "author_email": b.author_email,
                "committer_name": b.committer_name,
                "committer_email": b.committer_email,
                "allow_failure": j.allow_failure,
            })
        })
        .collect();
    json!({
        "id": b.id,
        "number": b.number,
        "config": {},
        "type": b.event_type,
        "state": travis_state(&b.state, true),
        "status": travis_result(&b.state),
        "result": travis_result(&b.state),
        "status_message": b.status_message,
        "result_message": b.status_message,
        "started_at": date(b.started_ms),
        "finished_at": date(b.finished_ms),
        "duration": b.duration_secs,
        "build_url": b.build_url,
        "commit_id": b.id,
        "commit": b.commit,
        "base_commit": b.commit,
        "head_commit": b.commit,
        "branch": b.branch,
        "message": b.message,
        "compare_url": or_null(&b.compare_url),
        "committed_at": Value::Null,
        "author_name": b.author_name,
        "author_email": b.author_email,
        "committer_name": b.committer_name,
        "committer_email": b.committer_email,
        "pull_request": b.event_type == "pull_request",
        "pull_request_number": b.pull_request,
        "pull_request_title": Value::Null,
        "tag": b.tag,
        "repository": {
            "id": repo_id,
            "name": name,
            "owner_name": owner,
            "url": or_null(&b.repository_url),
        },
        "matrix": matrix,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{BuildFacts, JobFacts};
    use super::*;

    #[test]
    fn travis_results() {
        for (state, want) in [
            ("passed", json!(0)),
            ("failed", json!(1)),
            ("errored", json!(1)),
            ("canceled", Value::Null),
            ("started", Value::Null),
            ("created", Value::Null),
        ] {
            assert_eq!(travis_result(state), want, "{state}");
        }
    }

    #[test]
    fn travis_payload_has_travis_keys() {
        let n = Notice {
            version: 1,
            event: "build_finished".into(),
            build: BuildFacts {
                id: 12,
                number: "12".into(),
                project: "demo".into(),
                repository_slug: "acme/demo".into(),
                repository_url: "https://github.com/acme/demo".into(),
                branch: "main".into(),
                commit: "a".repeat(40),
                event_type: "push".into(),
                state: "failed".into(),
                status_message: "Broken".into(),
                started_ms: 1_700_000_000_000,
                finished_ms: 1_700_000_060_000,
                duration_secs: Some(60),
                jobs: vec![JobFacts {
                    id: 30,
                    number: "12.1".into(),
                    state: "passed".into(),
                    matrix: vec![("env".into(), "A=1".into())],
                    ..JobFacts::default()
                }],
                ..BuildFacts::default()
            },
            job: None,
        };
        let p = travis_payload(&n);
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "id",
            "number",
            "config",
            "type",
            "state",
            "status",
            "result",
            "status_message",
            "result_message",
            "started_at",
            "finished_at",
            "duration",
            "build_url",
            "commit_id",
            "commit",
            "base_commit",
            "head_commit",
            "branch",
            "message",
            "compare_url",
            "committed_at",
            "author_name",
            "author_email",
            "committer_name",
            "committer_email",
            "pull_request",
            "pull_request_number",
            "pull_request_title",
            "tag",
            "repository",
            "matrix",
        ] {
            assert!(keys.contains(&k), "{k} missing");
        }
        assert_eq!(keys.len(), 31);
        assert_eq!(p["status"], json!(1));
        assert_eq!(p["status_message"], "Broken");
        assert_eq!(p["started_at"], "2023-11-14T22:13:20Z");
        assert_eq!(p["pull_request"], false);
        assert_eq!(p["repository"]["owner_name"], "acme");
        assert_eq!(p["repository"]["name"], "demo");
        assert_eq!(p["matrix"][0]["parent_id"], 12);
        assert_eq!(p["matrix"][0]["result"], 0);
        assert_eq!(p["matrix"][0]["config"]["env"], "A=1");
        assert_eq!(
            p["matrix"][0]["repository_id"], p["repository"]["id"],
            "one repository"
        );
    }

    #[test]
    fn userinfo_leaves_the_url() {
        let (url, basic) = split_userinfo("https://us%40r:p%3Aw@hooks.example/x?t=1").unwrap();
        assert_eq!(url.as_str(), "https://hooks.example/x?t=1");
        assert_eq!(basic, Some(("us@r".into(), Some("p:w".into()))));
        let (_, none) = split_userinfo("http://127.0.0.1:9/").unwrap();
        assert_eq!(none, None);
        let e = split_userinfo("ftp://u:secret@x/").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}

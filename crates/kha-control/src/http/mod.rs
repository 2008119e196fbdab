//! HTTP: webhooks (GitHub's and a generic one) and a health check.
//!
//! A webhook is checked completely (project, signature, payload) before
//! anything is created, answered at once, and acted on afterwards, so a
//! slow fetch never makes GitHub time the delivery out.

use crate::store::records::Project;
use crate::trigger::{Request, Triggered, Triggerer};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::{info, warn};

type HmacSha256 = Hmac<sha2::Sha256>;

pub fn router(triggers: Arc<Triggerer>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/hooks/github", post(github))
        .route("/hooks/generic/{project}", post(generic))
        .layer(DefaultBodyLimit::max(25 * 1024 * 1024))
        .with_state(triggers)
}

fn reply(code: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    (code, m).into_response()
}

/// Does `sig` ("sha256=<hex>") sign `body` with `secret`? Constant time.
pub fn signature_ok(secret: &str, body: &[u8], sig: &str) -> bool {
    let Some(hex_sig) = sig.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(want) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&want).is_ok()
}

fn find_project(triggers: &Triggerer, repo: &Value) -> Option<Project> {
    let full = repo["full_name"].as_str().unwrap_or_default();
    let urls: Vec<&str> = ["clone_url", "html_url", "ssh_url", "git_url", "url"]
        .iter()
        .filter_map(|k| repo[*k].as_str())
        .collect();
    let norm = |u: &str| {
        u.trim_end_matches('/')
            .trim_end_matches(".git")
            .to_ascii_lowercase()
    };
    let projects = triggers.sched.store.list_projects().ok()?;
    projects.into_iter().find(|p| {
        (!full.is_empty() && p.github_repo.eq_ignore_ascii_case(full))
            || urls.iter().any(|u| norm(u) == norm(&p.repo_url))
    })
}

async fn github(
    State(triggers): State<Arc<Triggerer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if event.is_empty() {
        return reply(StatusCode::BAD_REQUEST, "no X-GitHub-Event header");
    }
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("malformed JSON payload: {e}"),
            )
        }
    };
    if !payload["repository"].is_object() {
        return reply(StatusCode::BAD_REQUEST, "the payload names no repository");
    }
    let Some(project) = find_project(&triggers, &payload["repository"]) else {
        let name = payload["repository"]["full_name"].as_str().unwrap_or("?");
        return reply(
            StatusCode::NOT_FOUND,
            format!("no project for repository {name}"),
        );
    };
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signature_ok(&project.webhook_secret.0, &body, sig) {
        warn!(project = %project.name, event, "webhook with a bad or missing signature");
        return reply(
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256",
        );
    }
    match event.as_str() {
        "ping" => reply(StatusCode::OK, "pong"),
        "push" => push(triggers, project, &payload),
        "pull_request" => pull_request(triggers, project, &payload),
        other => reply(StatusCode::OK, format!("event {other} ignored")),
    }
}

fn push(triggers: Arc<Triggerer>, project: Project, p: &Value) -> Response {
    let Some(r) = p["ref"].as_str() else {
        return reply(StatusCode::BAD_REQUEST, "push payload without ref");
    };
    let (name, tag) = match (r.strip_prefix("refs/heads/"), r.strip_prefix("refs/tags/")) {
        (Some(b), _) => (b.to_string(), false),
        (_, Some(t)) => (t.to_string(), true),
        _ => return reply(StatusCode::OK, format!("ref {r} ignored")),
    };
    if p["deleted"].as_bool() == Some(true) {
        if let Err(e) = triggers.branch_deleted(&project.name, &name) {
            return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        return reply(StatusCode::OK, format!("{name} deleted"));
    }
    if tag && !project.build_tags {
        return reply(
            StatusCode::OK,
            format!("tag {name} ignored: the project does not build tags"),
        );
    }
    let Some(after) = p["after"].as_str().filter(|a| crate::vcs::is_full_oid(a)) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "push payload without a valid `after` commit",
        );
    };
    let mut req = Request::new(&project.name, &name, "push");
    req.commit = Some(after.to_string());
    req.tag = tag;
    spawn_trigger(triggers, project, req);
    reply(StatusCode::ACCEPTED, format!("building {name} at {after}"))
}

fn pull_request(triggers: Arc<Triggerer>, project: Project, p: &Value) -> Response {
    let action = p["action"].as_str().unwrap_or("");
    let Some(number) = p["number"]
        .as_u64()
        .or_else(|| p["pull_request"]["number"].as_u64())
    else {
        return reply(
            StatusCode::BAD_REQUEST,
            "pull_request payload without a number",
        );
    };
    match action {
        "opened" | "synchronize" | "reopened" => {
            let pr = &p["pull_request"];
            let (Some(head), Some(base)) = (
                pr["head"]["sha"]
                    .as_str()
                    .filter(|s| crate::vcs::is_full_oid(s)),
                pr["base"]["ref"].as_str(),
            ) else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "pull_request payload without head.sha or base.ref",
                );
            };
            let mut req = Request::new(&project.name, base, "pull_request");
            req.commit = Some(head.to_string());
            req.pr_number = number;
            spawn_trigger(triggers, project, req);
            reply(
                StatusCode::ACCEPTED,
                format!("building pull request #{number} at {head}"),
            )
        }
        "closed" => {
            crate::task::spawn("pr-closed", async move {
                let n = triggers.cancel_pull_request(&project, number).await;
                info!(project = %project.name, number, canceled = n, "pull request closed");
            });
            reply(
                StatusCode::ACCEPTED,
                format!("pull request #{number} closed: canceling its queued builds"),
            )
        }
        other => reply(
            StatusCode::OK,
            format!("pull_request action {other} ignored"),
        ),
    }
}

fn spawn_trigger(triggers: Arc<Triggerer>, project: Project, req: Request) {
    crate::task::spawn("webhook-build", async move {
        match triggers.trigger(&project, &req).await {
            Ok(Triggered::Created(b)) => {
                info!(project = %project.name, build_id = b.id, event = %req.event, "webhook build")
            }
            Ok(other) => {
                info!(project = %project.name, event = %req.event, result = ?other_kind(&other), "webhook: nothing new to build")
            }
            Err(e) => {
                warn!(project = %project.name, branch = %req.branch, error = %e, "webhook build failed")
            }
        }
    });
}

fn other_kind(t: &Triggered) -> &'static str {
    match t {
        Triggered::Created(_) => "created",
        Triggered::Existing(_) => "already built",
        Triggered::NotBuilt { why, .. } => why,
    }
}

/// `POST /hooks/generic/<project>` with `Authorization: Bearer <secret>`;
/// optional `branch` and `commit` as query parameters or a JSON body.
async fn generic(
    State(triggers): State<Arc<Triggerer>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let project = match triggers.sched.store.get_project(&name) {
        Ok(Some(p)) => p,
        Ok(None) => return reply(StatusCode::NOT_FOUND, format!("no project {name:?}")),
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !crate::auth::hash_eq(
        &crate::auth::hash(token),
        &crate::auth::hash(&project.webhook_secret.0),
    ) {
        return reply(
            StatusCode::UNAUTHORIZED,
            "bad or missing token (Authorization: Bearer <the project's webhook secret>)",
        );
    }
    let json: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return reply(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")),
        }
    };
    let field = |k: &str| {
        q.get(k)
            .cloned()
            .or_else(|| json[k].as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
    };
    let branch = field("branch").unwrap_or_else(|| project.default_branch.clone());
    let mut req = Request::new(&project.name, &branch, "generic");
    req.commit = field("commit");
    spawn_trigger(triggers, project, req);
    reply(StatusCode::ACCEPTED, format!("building {branch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        // From GitHub's documentation of webhook validation.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_ok(
            "It's a Secret to Everybody",
            b"Hello, World!",
            sig
        ));
        assert!(!signature_ok(
            "It's a Secret to Everybody",
            b"Hello, World?",
            sig
        ));
        assert!(!signature_ok("other", b"Hello, World!", sig));
        assert!(!signature_ok(
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha1=757107"
        ));
        assert!(!signature_ok(
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=zz"
        ));
        assert!(!signature_ok(
            "It's a Secret to Everybody",
            b"Hello, World!",
            ""
        ));
    }
}

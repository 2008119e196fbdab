//! GitHub's webhooks: `ping`, `push` (branches, tags, deletions) and
//! `pull_request` (opened / synchronize / reopened build `refs/pull/N/head`;
//! closed cancels its queued builds), signed with HMAC-SHA256 (checked in
//! constant time). What the sender is told is a [`HookAnswer`]; `http/`
//! turns it into a response.

use super::{answer, HookAnswer, HookStatus, Request};
use crate::app::App;
use crate::store::records::Project;
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::sync::Arc;
use tracing::{info, warn};

type HmacSha256 = Hmac<sha2::Sha256>;

/// A delivery from GitHub: its `X-GitHub-Event`, `X-Hub-Signature-256`
/// and body. Checked completely (project, signature, payload) before
/// anything is created; a build starts in the background.
pub fn handle(app: &Arc<App>, event: &str, sig: &str, body: &[u8]) -> HookAnswer {
    if event.is_empty() {
        return answer(HookStatus::BadRequest, "no X-GitHub-Event header");
    }
    let payload: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return answer(
                HookStatus::BadRequest,
                format!("malformed JSON payload: {e}"),
            )
        }
    };
    if !payload["repository"].is_object() {
        return answer(HookStatus::BadRequest, "the payload names no repository");
    }
    let Some(project) = find_project(app, &payload["repository"]) else {
        let name = payload["repository"]["full_name"].as_str().unwrap_or("?");
        return answer(
            HookStatus::NotFound,
            format!("no project for repository {name}"),
        );
    };
    if !signature_ok(project.webhook_secret.expose(), body, sig) {
        warn!(project = %project.name, event, "webhook with a bad or missing signature");
        if project.private {
            // A private project does not exist for whoever lacks its secret.
            let name = payload["repository"]["full_name"].as_str().unwrap_or("?");
            return answer(
                HookStatus::NotFound,
                format!("no project for repository {name}"),
            );
        }
        return answer(
            HookStatus::Unauthorized,
            "bad or missing X-Hub-Signature-256",
        );
    }
    match event {
        "ping" => answer(HookStatus::Ok, "pong"),
        "push" => push(app, project, &payload),
        "pull_request" => pull_request(app, project, &payload),
        other => answer(HookStatus::Ok, format!("event {other} ignored")),
    }
}

fn push(app: &Arc<App>, project: Project, p: &Value) -> HookAnswer {
    let Some(r) = p["ref"].as_str() else {
        return answer(HookStatus::BadRequest, "push payload without ref");
    };
    let (name, tag) = match (r.strip_prefix("refs/heads/"), r.strip_prefix("refs/tags/")) {
        (Some(b), _) => (b.to_string(), false),
        (_, Some(t)) => (t.to_string(), true),
        _ => return answer(HookStatus::Ok, format!("ref {r} ignored")),
    };
    if p["deleted"].as_bool() == Some(true) {
        if let Err(e) = app.triggers.branch_deleted(&project.name, &name) {
            return answer(HookStatus::Failed, e.to_string());
        }
        return answer(HookStatus::Ok, format!("{name} deleted"));
    }
    if tag && !project.build_tags {
        return answer(
            HookStatus::Ok,
            format!("tag {name} ignored: the project does not build tags"),
        );
    }
    let Some(after) = p["after"].as_str().filter(|a| crate::vcs::is_full_oid(a)) else {
        return answer(
            HookStatus::BadRequest,
            "push payload without a valid `after` commit",
        );
    };
    let mut req = Request::new(&project.name, &name, "push");
    req.commit = Some(after.to_string());
    req.tag = tag;
    super::spawn_build(app, project, req);
    answer(HookStatus::Accepted, format!("building {name} at {after}"))
}

fn pull_request(app: &Arc<App>, project: Project, p: &Value) -> HookAnswer {
    let action = p["action"].as_str().unwrap_or("");
    let Some(number) = p["number"]
        .as_u64()
        .or_else(|| p["pull_request"]["number"].as_u64())
    else {
        return answer(
            HookStatus::BadRequest,
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
                return answer(
                    HookStatus::BadRequest,
                    "pull_request payload without head.sha or base.ref",
                );
            };
            let mut req = Request::new(&project.name, base, "pull_request");
            req.commit = Some(head.to_string());
            req.pr_number = number;
            // GitHub names both repositories; a head repository that is
            // gone (a deleted fork) is a fork too.
            let base_repo = pr["base"]["repo"]["full_name"].as_str().unwrap_or_default();
            req.fork = match pr["head"]["repo"]["full_name"].as_str() {
                Some(head_repo) => {
                    !head_repo.eq_ignore_ascii_case(base_repo) || base_repo.is_empty()
                }
                None => true,
            };
            super::spawn_build(app, project, req);
            answer(
                HookStatus::Accepted,
                format!("building pull request #{number} at {head}"),
            )
        }
        "closed" => {
            let triggers = app.triggers.clone();
            app.spawn("pr-closed", async move {
                let n = triggers.cancel_pull_request(&project, number).await;
                info!(project = %project.name, number, canceled = n, "pull request closed");
            });
            answer(
                HookStatus::Accepted,
                format!("pull request #{number} closed: canceling its queued builds"),
            )
        }
        other => answer(
            HookStatus::Ok,
            format!("pull_request action {other} ignored"),
        ),
    }
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

fn find_project(app: &App, repo: &Value) -> Option<Project> {
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
    let projects = app.store.list_projects().ok()?;
    projects.into_iter().find(|p| {
        (!full.is_empty() && p.github_repo.eq_ignore_ascii_case(full))
            || urls.iter().any(|u| norm(u) == norm(&p.repo_url))
    })
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

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

/// The one answer to a delivery no project's secret signs, whether or not
/// a project exists for its repository: an unsigned request learns nothing.
fn unsigned() -> HookAnswer {
    answer(
        HookStatus::Unauthorized,
        "bad or missing X-Hub-Signature-256: sign with the project's webhook secret",
    )
}

/// A delivery from GitHub: its `X-GitHub-Event`, `X-Hub-Signature-256`
/// and body; `named`: the project its URL names (`/hooks/github/<project>`),
/// else the project is the one whose webhook secret signs the body.
///
/// The signature is checked first, against the named project's secret or
/// every project's (each distinct secret once), before the body is parsed
/// or anything about a project is said. Then the payload is checked
/// completely; a build starts in the background.
pub fn handle(
    app: &Arc<App>,
    named: Option<&str>,
    event: &str,
    sig: &str,
    body: &[u8],
) -> HookAnswer {
    let Some(want) = parse_signature(sig) else {
        return unsigned();
    };
    let candidates = match named {
        Some(name) => match app.store.get_project(name) {
            Ok(p) => p.into_iter().collect(),
            Err(e) => return answer(HookStatus::Failed, e.to_string()),
        },
        None => match app.store.list_projects() {
            Ok(ps) => ps,
            Err(e) => return answer(HookStatus::Failed, e.to_string()),
        },
    };
    let signed = if named.is_some() {
        signed_by(candidates, body, &want)
    } else {
        // The bare URL costs one HMAC of the body per distinct secret:
        // one such check at a time, so unsigned deliveries can take at
        // most one core (the per-project URL never waits here).
        static BARE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = BARE.lock().unwrap_or_else(|p| p.into_inner());
        signed_by(candidates, body, &want)
    };
    if signed.is_empty() {
        warn!(
            event,
            project = named.unwrap_or(""),
            "webhook with a bad or missing signature"
        );
        return unsigned();
    }
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
    // A named project is the one meant; otherwise the signing projects
    // are asked which of them is this repository's.
    let project = if named.is_some() {
        signed.into_iter().next()
    } else {
        find_project(signed, &payload["repository"])
    };
    let Some(project) = project else {
        let name = payload["repository"]["full_name"].as_str().unwrap_or("?");
        return answer(
            HookStatus::NotFound,
            format!("no project for repository {name} has this webhook secret"),
        );
    };
    match event {
        "ping" => answer(HookStatus::Ok, "pong"),
        "push" => push(app, project, &payload),
        "pull_request" => pull_request(app, project, &payload),
        other => answer(HookStatus::Ok, format!("event {other} ignored")),
    }
}

/// The projects among `candidates` whose webhook secret signs `body`;
/// each distinct secret is tried once. A project without a secret is
/// never a match.
fn signed_by(candidates: Vec<Project>, body: &[u8], want: &[u8]) -> Vec<Project> {
    let mut verdicts: std::collections::HashMap<String, bool> = Default::default();
    candidates
        .into_iter()
        .filter(|p| {
            let secret = p.webhook_secret.expose();
            !secret.is_empty()
                && *verdicts
                    .entry(secret.to_string())
                    .or_insert_with(|| mac_ok(secret, body, want))
        })
        .collect()
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
    if let Err(why) = kha_core::validate_ref_name(&name) {
        return answer(HookStatus::BadRequest, why);
    }
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
    req.sender = p["sender"]["login"].as_str().unwrap_or_default().into();
    req.before = p["before"].as_str().unwrap_or_default().into();
    super::spawn_build(app, project, req, format!("building {name} at {after}"))
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
            req.sender = p["sender"]["login"].as_str().unwrap_or_default().into();
            req.before = pr["base"]["sha"].as_str().unwrap_or_default().into();
            // GitHub names both repositories; a head repository that is
            // gone (a deleted fork) is a fork too.
            let head_repo = pr["head"]["repo"]["full_name"].as_str();
            let base_repo = pr["base"]["repo"]["full_name"].as_str().unwrap_or_default();
            req.pull_request = Some(kha_core::travis::PullRequest {
                number,
                head_repo: head_repo.unwrap_or_default().into(),
                head_branch: pr["head"]["ref"].as_str().unwrap_or_default().into(),
                head_sha: head.to_string(),
                draft: pr["draft"].as_bool().unwrap_or(false),
                fork: kha_core::travis::is_fork(base_repo, head_repo),
            });
            super::spawn_build(
                app,
                project,
                req,
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

/// The digest of a `sha256=<hex>` signature header; None if malformed.
fn parse_signature(sig: &str) -> Option<Vec<u8>> {
    let want = hex::decode(sig.strip_prefix("sha256=")?.trim()).ok()?;
    (want.len() == 32).then_some(want)
}

/// Is `want` the HMAC-SHA256 of `body` under `secret`? Constant time.
fn mac_ok(secret: &str, body: &[u8], want: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(want).is_ok()
}

/// Does `sig` ("sha256=<hex>") sign `body` with `secret`? Constant time.
pub fn signature_ok(secret: &str, body: &[u8], sig: &str) -> bool {
    parse_signature(sig).is_some_and(|want| mac_ok(secret, body, &want))
}

fn find_project(projects: Vec<Project>, repo: &Value) -> Option<Project> {
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
        // Only a whole SHA-256 digest is a signature worth hashing a body for.
        for (sig, ok) in [
            (sig, true),
            ("sha256=757107ea", false),
            (&format!("{sig}00")[..], false),
            ("sha256=", false),
            (
                "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                false,
            ),
        ] {
            assert_eq!(parse_signature(sig).is_some(), ok, "{sig}");
        }
    }
}

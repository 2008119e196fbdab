//! The generic hook: `POST /hooks/generic/<project>` with the project's
//! webhook secret as a bearer token, and optional `branch` and `commit` as
//! query parameters or a JSON body (what `deploy/post-receive` and other
//! forges' hooks send).

use super::{answer, HookAnswer, HookStatus, Request};
use crate::app::App;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// `POST /hooks/generic/<project>` with `Authorization: Bearer <secret>`;
/// optional `branch` and `commit` as query parameters or a JSON body.
pub fn handle(
    app: &Arc<App>,
    name: &str,
    token: &str,
    q: &HashMap<String, String>,
    body: &[u8],
) -> HookAnswer {
    // A project that is not there and a wrong token get one answer: the
    // hook does not tell who lacks the secret which projects exist.
    let refused = || {
        answer(
            HookStatus::Unauthorized,
            "bad or missing token (Authorization: Bearer <the project's webhook secret>)",
        )
    };
    let project = match app.store.get_project(name) {
        Ok(Some(p)) => p,
        Ok(None) => return refused(),
        Err(e) => return answer(HookStatus::Failed, e.to_string()),
    };
    if !crate::auth::hash_eq(
        &crate::auth::hash(token),
        &crate::auth::hash(project.webhook_secret.expose()),
    ) {
        return refused();
    }
    let json: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return answer(HookStatus::BadRequest, format!("malformed JSON body: {e}")),
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
    super::spawn_build(app, project, req, format!("building {branch}"))
}

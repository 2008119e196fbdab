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
    let project = match app.store.get_project(name) {
        Ok(Some(p)) => p,
        Ok(None) => return answer(HookStatus::NotFound, format!("no project {name:?}")),
        Err(e) => return answer(HookStatus::Failed, e.to_string()),
    };
    if !crate::auth::hash_eq(
        &crate::auth::hash(token),
        &crate::auth::hash(project.webhook_secret.expose()),
    ) {
        // A private project does not exist for whoever lacks its secret.
        if project.private {
            return answer(HookStatus::NotFound, format!("no project {name:?}"));
        }
        return answer(
            HookStatus::Unauthorized,
            "bad or missing token (Authorization: Bearer <the project's webhook secret>)",
        );
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
    super::spawn_build(app, project, req);
    answer(HookStatus::Accepted, format!("building {branch}"))
}

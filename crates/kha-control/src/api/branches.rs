//! A project's branches and tags: head, last build, what came of the head;
//! and one branch's status (what a badge shows).

use super::{projects, ApiError, Principal};
use crate::app::App;
use kha_core::view::{self, BranchStatus};

pub fn list(app: &App, who: &Principal, project: &str) -> Result<Vec<view::Branch>, ApiError> {
    projects::visible(app, who, project)?;
    let mut out = Vec::new();
    for b in app.store.list_branches(project)? {
        let status = if b.deleted {
            BranchStatus::Deleted
        } else {
            match b.not_built.as_str() {
                "skipped" => BranchStatus::Skipped,
                "filtered" => BranchStatus::Filtered,
                _ => match app.store.get_build(b.last_build)? {
                    Some(build) => BranchStatus::Built(build.state),
                    None => BranchStatus::None,
                },
            }
        };
        out.push(view::Branch {
            name: b.name,
            head: b.head,
            tag: b.tag,
            last_build_id: b.last_build,
            state: status,
            deleted: b.deleted,
            updated_ms: b.updated_ms,
        });
    }
    Ok(out)
}

/// What came of `branch`'s head (the default branch's when `branch` is
/// empty); `None` when kha has never seen the branch.
pub fn status(
    app: &App,
    who: &Principal,
    project: &str,
    branch: &str,
) -> Result<Option<BranchStatus>, ApiError> {
    let p = projects::visible(app, who, project)?;
    let branch = if branch.is_empty() {
        p.default_branch.as_str()
    } else {
        branch
    };
    Ok(list(app, who, project)?
        .into_iter()
        .find(|b| b.name == branch)
        .map(|b| b.state))
}

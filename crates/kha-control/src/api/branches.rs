//! A project's branches and tags: head, last build, what came of the head.

use super::{projects, ApiError, Principal};
use crate::app::App;
use kha_core::view::{self, BranchStatus};

pub fn list(app: &App, who: &Principal, project: &str) -> Result<Vec<view::Branch>, ApiError> {
    who.require_reader()?;
    projects::record(app, project)?;
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

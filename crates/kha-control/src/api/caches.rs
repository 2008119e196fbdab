//! A project's build cache: its archives (viewers) and clearing them
//! (maintainers), like Travis's `travis cache` and `travis cache --delete`.

use super::{audit, projects, ApiError, Principal};
use crate::app::App;
use crate::cache::{Archive, CacheError};
use kha_core::view::Role;

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

pub fn list(app: &App, who: &Principal, project: &str) -> Result<Vec<Archive>, ApiError> {
    projects::visible(app, who, project)?;
    Ok(app.caches.list(project)?)
}

/// Removes the project's archives (only `branch`'s when given): how many,
/// and their bytes.
pub async fn clear(
    app: &App,
    who: &Principal,
    project: &str,
    branch: Option<&str>,
) -> Result<(usize, u64), ApiError> {
    let p = projects::visible(app, who, project)?;
    who.require(&p, Role::Maintainer, "clearing its cache")?;
    let (n, bytes) = app.caches.clear(project, branch).await?;
    audit::record(
        app,
        who,
        "cache.clear",
        project,
        &format!("branch={} removed={n}", branch.unwrap_or("*")),
    );
    Ok((n, bytes))
}

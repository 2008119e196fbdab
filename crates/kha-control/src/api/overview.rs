//! The front page: every project the caller may see with its default
//! branch's last build (their starred projects first, as Travis listed
//! "repositories I'm interested in"), the jobs running now and the jobs
//! waiting.

use super::{queue, views, ApiError, Principal, Visibility};
use crate::app::App;
use kha_core::view::{ActiveJob, Overview, ProjectSummary};

pub fn get(app: &App, who: &Principal) -> Result<Overview, ApiError> {
    let mut projects = Vec::new();
    let stars = who.user().map(|u| u.stars.clone()).unwrap_or_default();
    for p in app.store.list_projects()? {
        if !who.can_see(&p) {
            continue;
        }
        let last = app
            .store
            .list_branches(&p.name)?
            .into_iter()
            .find(|b| b.name == p.default_branch && !b.tag && b.last_build > 0)
            .map(|b| b.last_build);
        let last_build = match last {
            Some(id) => match app.store.get_build(id)? {
                Some(b) => Some(views::build(app, b)?),
                None => None,
            },
            None => None,
        };
        projects.push(ProjectSummary {
            starred: stars.contains(&p.name),
            project: views::project(p),
            last_build,
        });
    }
    // Stable: within each group, the store's (name) order stays.
    projects.sort_by_key(|s| !s.starred);
    let mut seen = Visibility::new(app, who);
    let mut running = Vec::new();
    let mut ids: Vec<u64> = app
        .sched
        .sessions_view()
        .into_values()
        .flat_map(|s| s.running)
        .collect();
    ids.sort_unstable();
    for id in ids {
        let Some(j) = app.store.get_job(id)? else {
            continue;
        };
        if !seen.project(&j.project)? {
            continue;
        }
        let branch = views::branch_of(app, &j)?;
        running.push(ActiveJob {
            project: j.project.clone(),
            build_id: j.build,
            branch,
            job: views::job(app, j),
        });
    }
    Ok(Overview {
        projects,
        running,
        queued: queue::list(app, who)?,
    })
}

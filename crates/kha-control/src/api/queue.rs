//! What waits for a builder, in the order it will be offered, and why each
//! job waits: the question kha's peers answer worst.

use super::{views, ApiError, Principal, Visibility};
use crate::app::App;
use kha_core::view::QueuedJob;
use kha_core::JobState;

pub fn list(app: &App, who: &Principal) -> Result<Vec<QueuedJob>, ApiError> {
    let mut out = Vec::new();
    let mut seen = Visibility::new(app, who);
    for (id, reason) in app.sched.waiting() {
        let Some(j) = app.store.get_job(id)? else {
            continue;
        };
        if !seen.project(&j.project)? {
            continue;
        }
        if j.state != JobState::Queued {
            continue;
        }
        let branch = views::branch_of(app, &j)?;
        out.push(QueuedJob {
            project: j.project.clone(),
            build_id: j.build,
            branch,
            reason,
            job: views::job(app, j),
        });
    }
    Ok(out)
}

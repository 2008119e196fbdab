//! Scheduled builds (Travis's cron, `kha cron`): a task that looks every
//! second for schedules whose next run has come and starts each like an
//! API build of its branch's head, as a `cron` build (`TRAVIS_EVENT_TYPE=cron`;
//! built whether or not that commit was, skip markers aside:
//! [`Request::scheduled`]). When it runs next is `kha_core::schedule`'s
//! decision; a schedule that came due while the control node was down is
//! due at its first look after the start, and runs once.
//!
//! A run is claimed before it starts: the next run time is on disk before
//! the build is made, so a crash in between loses that run rather than
//! making it twice.

use crate::store::records::Schedule;
use crate::trigger::{Request, TriggerError, Triggered, Triggerer};
use kha_core::schedule::{self, Cadence};
use kha_core::Millis;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often due schedules are looked for (they have minute precision).
const TICK: Duration = Duration::from_secs(1);

pub async fn run(triggers: Arc<Triggerer>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        run_due(&triggers, &shutdown).await;
    }
}

/// Runs every schedule that is due now, one after another; returns each
/// one's id and outcome.
pub async fn run_due(triggers: &Triggerer, shutdown: &CancellationToken) -> Vec<(u64, String)> {
    let store = &triggers.sched.store;
    let now = triggers.sched.clock.now();
    let due: Vec<Schedule> = match store.list_schedules() {
        Ok(all) => all.into_iter().filter(|s| s.next_run_ms <= now).collect(),
        Err(e) => {
            warn!(error = %e, "cannot list the schedules");
            return vec![];
        }
    };
    let mut done = Vec::new();
    for s in due {
        if shutdown.is_cancelled() {
            break;
        }
        match run_one(triggers, &s, now).await {
            Ok(Some(outcome)) => done.push((s.id, outcome)),
            Ok(None) => {}
            Err(e) => {
                warn!(schedule = s.id, project = %s.project, branch = %s.branch, error = %e, "cannot run a scheduled build")
            }
        }
    }
    done
}

/// Claims and runs one due schedule; its outcome, or `None` if it was
/// removed meanwhile.
async fn run_one(
    triggers: &Triggerer,
    s: &Schedule,
    now: Millis,
) -> Result<Option<String>, TriggerError> {
    let store = &triggers.sched.store;
    // Checked when it was added; a record that no longer reads (written by
    // a newer kha?) waits a day rather than being tried every second.
    let next = match Cadence::new(&s.interval, &s.cron) {
        Ok(c) => c.next_run(s.next_run_ms, now),
        Err(_) => now + schedule::DAY_MS,
    };
    let claimed = store.update_schedule(s.id, |r| {
        r.next_run_ms = next;
        r.last_run_ms = now;
        r.last_outcome = "starting".into();
        r.last_build = 0;
    })?;
    if claimed.is_none() {
        return Ok(None);
    }
    store.durable().await?;
    let (outcome, build) = attempt(triggers, s, now).await?;
    info!(schedule = s.id, project = %s.project, branch = %s.branch, outcome = %outcome, next_run = %kha_core::time::iso8601(next), "scheduled build");
    store.update_schedule(s.id, |r| {
        r.last_outcome = outcome.clone();
        r.last_build = build;
    })?;
    store.durable().await?;
    Ok(Some(outcome))
}

/// What a run does: the outcome as people read it, and the build made.
async fn attempt(
    triggers: &Triggerer,
    s: &Schedule,
    now: Millis,
) -> Result<(String, u64), TriggerError> {
    let store = &triggers.sched.store;
    let Some(project) = store.get_project(&s.project)? else {
        return Ok((format!("failed: project {} is gone", s.project), 0));
    };
    if s.dont_run_if_recent_build_exists {
        let newest = newest_other_build(triggers, s, now)?;
        if schedule::skip_for_recent_build(true, newest, now) {
            return Ok((
                format!("skipped: a build of {} ran in the last 24 h", s.branch),
                0,
            ));
        }
    }
    let req = Request::new(&project.name, &s.branch, "cron");
    Ok(match triggers.trigger(&project, &req).await {
        Ok(Triggered::Created(b) | Triggered::Existing(b)) => {
            (format!("started build {}", b.id), b.id)
        }
        Ok(Triggered::NotBuilt { why, .. }) => (
            match why {
                "condition" => {
                    "not built: the `if:` of its .travis.yml is false for a cron build".into()
                }
                "skipped" => "not built: a skip marker".into(),
                _ => format!(
                    "not built: the branch filters of its .travis.yml exclude {}",
                    s.branch
                ),
            },
            0,
        ),
        // The branch is gone, the remote unreachable, …: said on the
        // schedule, tried again at its next run.
        Err(e @ (TriggerError::Vcs(_) | TriggerError::Invalid(_))) => (format!("failed: {e}"), 0),
        Err(e) => return Err(e),
    })
}

/// When the newest build of the schedule's branch other than a cron build
/// (or a pull request's) was created, looking back 24 hours.
fn newest_other_build(
    triggers: &Triggerer,
    s: &Schedule,
    now: Millis,
) -> Result<Option<Millis>, TriggerError> {
    let store = &triggers.sched.store;
    // Newest first; ids follow creation, so the first build older than
    // the window ends the look.
    for id in store.project_build_ids(&s.project).take(10_000) {
        let Some(b) = store.get_build(id?)? else {
            continue;
        };
        if now.saturating_sub(b.created_ms) >= schedule::RECENT_BUILD_MS {
            break;
        }
        if b.branch == s.branch && b.pr_number == 0 && b.event != "cron" {
            return Ok(Some(b.created_ms));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;

//! Polling: each project's remote is asked for its heads at the project's
//! interval (cheap: a ref listing), and fetched only when a head moved. A
//! new head on a branch (or tag, if the project builds tags) becomes a
//! build; a branch gone from the remote is marked deleted.

use crate::store::records::Project;
use crate::trigger::{Request, Triggerer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub async fn run(triggers: Arc<Triggerer>, shutdown: CancellationToken) {
    let mut due: HashMap<String, u64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let projects = match triggers.sched.store.list_projects() {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot list projects to poll");
                continue;
            }
        };
        let now = triggers.sched.clock.now();
        due.retain(|name, _| projects.iter().any(|p| &p.name == name));
        for p in projects.iter().filter(|p| p.poll_interval_secs > 0) {
            if due.get(&p.name).is_some_and(|&d| d > now) {
                continue;
            }
            due.insert(p.name.clone(), now + p.poll_interval_secs * 1000);
            if let Err(e) = poll(&triggers, p).await {
                warn!(project = %p.name, error = %e, "poll failed");
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }
}

/// Polls one project now. Returns how many builds it started.
pub async fn poll(
    triggers: &Triggerer,
    p: &Project,
) -> Result<usize, crate::trigger::TriggerError> {
    let (m, url, creds) = (
        triggers.vcs.for_project(p),
        p.repo_url.clone(),
        p.credentials.clone(),
    );
    let remote = tokio::task::spawn_blocking(move || m.list_remote(&url, creds.as_ref()))
        .await
        .map_err(|e| crate::vcs::VcsError::Fetch {
            url: p.repo_url.clone(),
            msg: e.to_string(),
        })??;
    let store = &triggers.sched.store;
    let known: HashMap<String, _> = store
        .list_branches(&p.name)?
        .into_iter()
        .map(|b| (b.name.clone(), b))
        .collect();
    let mut changed = Vec::new();
    for (refname, head) in &remote {
        let (name, tag) = match (
            refname.strip_prefix("refs/heads/"),
            refname.strip_prefix("refs/tags/"),
        ) {
            (Some(b), _) => (b, false),
            (_, Some(t)) if p.build_tags => (t, true),
            _ => continue,
        };
        match known.get(name) {
            Some(b) if &b.head == head && !b.deleted => {}
            // The old head makes the push's commit range.
            Some(b) if !b.deleted => {
                changed.push((name.to_string(), head.clone(), tag, b.head.clone()))
            }
            _ => changed.push((name.to_string(), head.clone(), tag, String::new())),
        }
    }
    for (name, b) in &known {
        let r = if b.tag {
            format!("refs/tags/{name}")
        } else {
            format!("refs/heads/{name}")
        };
        if !b.deleted && !remote.contains_key(&r) {
            triggers.branch_deleted(&p.name, name)?;
        }
    }
    if changed.is_empty() {
        debug!(project = %p.name, "no new heads");
        return Ok(0);
    }
    let (m, name, url, creds) = (
        triggers.vcs.for_project(p),
        p.name.clone(),
        p.repo_url.clone(),
        p.credentials.clone(),
    );
    tokio::task::spawn_blocking(move || m.fetch(&name, &url, creds.as_ref()))
        .await
        .map_err(|e| crate::vcs::VcsError::Fetch {
            url: p.repo_url.clone(),
            msg: e.to_string(),
        })??;
    let mut started = 0;
    for (branch, head, tag, before) in changed {
        info!(project = %p.name, branch = ?branch, head = %head, "new head");
        let mut req = Request::new(&p.name, &branch, "poll");
        req.commit = Some(head);
        req.tag = tag;
        req.fetch = false;
        req.before = before;
        match triggers.trigger(p, &req).await {
            Ok(crate::trigger::Triggered::Created(_)) => started += 1,
            Ok(_) => {}
            Err(e) => {
                warn!(project = %p.name, branch = ?branch, error = %e, "cannot build the new head")
            }
        }
    }
    Ok(started)
}

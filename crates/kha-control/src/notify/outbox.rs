//! The outbox: two tasks of the control node.
//!
//! The **decider** reads the event stream from its cursor. For each build
//! event it decides the deliveries ([`decide`]) and stores them with the
//! cursor past the event in one transaction, then waits for that to be on
//! disk before anything is attempted: a decision is made once, and never
//! lost, whatever moment the process dies at.
//!
//! The **sender** attempts due deliveries, at most `max_in_flight` at once,
//! each under `attempt_timeout_secs`, off the build path: a dead or slow
//! server only makes its own deliveries wait. Deliveries to the same target
//! for the same build (and commit statuses of one context) go in the order
//! they were decided, so a late "pending" cannot overwrite "success". A
//! failed attempt is retried with doubling backoff until
//! `give_up_after_secs`, then recorded as failed with the last answer. A
//! delivery whose attempt was cut short by a crash is attempted again after
//! the restart, with the same idempotency key.

use super::decide::{self, Server};
use super::{
    email, github, hooks, irc, plugin, webhook, xmpp, Delivery, DeliveryState, Failure, Sent,
    Target,
};
use crate::app::App;
use crate::store::events::SubscribeError;
use crate::store::Store;
use kha_core::event::{Event, EventFilter, EventKind};
use kha_core::Millis;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// Every channel's sender.
pub struct Senders {
    email: Option<email::Mailer>,
    xmpp: Option<xmpp::Xmpp>,
    irc: irc::Irc,
    pub webhooks: webhook::Webhooks,
    github: Option<github::Statuses>,
    pub plugins: plugin::Plugins,
    pub hooks: hooks::Hooks,
}

impl Senders {
    pub fn new(cfg: &super::NotifyConfig) -> anyhow::Result<Senders> {
        Ok(Senders {
            email: cfg.email.as_ref().map(email::Mailer::new).transpose()?,
            xmpp: cfg.xmpp.as_ref().map(xmpp::Xmpp::new).transpose()?,
            irc: irc::Irc::new(&cfg.irc),
            webhooks: webhook::Webhooks::new(&cfg.webhooks)?,
            github: cfg.github.as_ref().map(github::Statuses::new).transpose()?,
            plugins: plugin::Plugins::new(cfg),
            hooks: hooks::Hooks::new(cfg),
        })
    }

    async fn send(&self, store: &Store, d: &Delivery) -> Result<Sent, Failure> {
        let missing = |what: &str| {
            Err(Failure::Permanent(format!(
                "{what} is not configured on the control node"
            )))
        };
        match &d.target {
            Target::Email { .. } => match &self.email {
                Some(m) => m.send(d).await,
                None => missing("no SMTP relay ([notify.email])"),
            },
            Target::Xmpp { .. } => match &self.xmpp {
                Some(x) => x.send(d).await,
                None => missing("no XMPP account ([notify.xmpp])"),
            },
            Target::Irc { .. } => self.irc.send(d).await,
            Target::Webhook { .. } => {
                let secret = store
                    .get_project(&d.project)
                    .map_err(|e| Failure::Retry(e.to_string()))?
                    .map(|p| p.webhook_secret)
                    .unwrap_or_default();
                self.webhooks.send(d, &secret).await
            }
            Target::GithubStatus { .. } => match &self.github {
                Some(g) => g.send(d).await,
                None => missing("no GitHub token ([notify.github])"),
            },
            Target::Plugin { .. } => self.plugins.send(d).await,
            Target::Hook { .. } => self.hooks.send(d).await,
        }
    }
}

/// What goes in order: one target of one build (commit statuses: one
/// context of one commit).
fn order_key(d: &Delivery) -> String {
    match &d.target {
        Target::GithubStatus {
            repo, sha, context, ..
        } => format!("github {repo} {sha} {context}"),
        t => format!("{} {} {}", d.build_id, t.channel(), t.describe()),
    }
}

/// A delivery waiting for its next attempt.
struct Due {
    next_ms: Millis,
    order: String,
}

pub struct Outbox {
    pub senders: Senders,
    /// By id (the order they were decided in).
    due: Mutex<BTreeMap<u64, Due>>,
    in_flight: Mutex<HashSet<u64>>,
    wake: tokio::sync::Notify,
}

/// The events deliveries are decided from.
fn kinds(per_job: bool) -> Vec<EventKind> {
    let mut k = vec![
        EventKind::BuildCreated,
        EventKind::BuildStarted,
        EventKind::BuildFinished,
        EventKind::BuildRestarted,
    ];
    if per_job {
        k.extend([EventKind::JobStarted, EventKind::JobFinished]);
    }
    k
}

impl Outbox {
    pub fn new(cfg: &super::NotifyConfig) -> anyhow::Result<Outbox> {
        Ok(Outbox {
            senders: Senders::new(cfg)?,
            due: Mutex::new(BTreeMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn lock_due(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Due>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn schedule(&self, d: &Delivery) {
        self.lock_due().insert(
            d.id,
            Due {
                next_ms: d.next_ms,
                order: order_key(d),
            },
        );
    }

    /// Starts the decider and the sender.
    pub fn start(app: &Arc<App>) {
        let a = app.clone();
        app.spawn("notify-decider", async move {
            loop {
                match decider(&a).await {
                    Ok(()) => break,
                    Err(e) => {
                        warn!(error = %e, "notifications: cannot read the event stream; again in 1 s");
                        tokio::select! {
                            _ = a.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        });
        let a = app.clone();
        app.spawn("notify-sender", async move { sender(a).await });
    }
}

/// Reads the event stream and stores the deliveries each event gives.
async fn decider(app: &Arc<App>) -> anyhow::Result<()> {
    let store = &app.store;
    let cursor = match store.notify_cursor()? {
        Some(c) => c,
        None => {
            // A first start notifies of what happens from now on, not of
            // the history the stream still holds.
            let c = app.events.published();
            store.set_notify_cursor(c)?;
            c
        }
    };
    let per_job = app.cfg.notify.github.as_ref().is_some_and(|g| g.per_job);
    let filter = EventFilter {
        kinds: kinds(per_job),
        ..EventFilter::default()
    };
    let mut sub = app.events.subscribe(cursor + 1, filter.clone());
    loop {
        let next = tokio::select! {
            _ = app.shutdown.cancelled() => return Ok(()),
            n = sub.next(true) => n,
        };
        match next {
            Ok(Some(e)) => decide_event(app, &e).await?,
            Ok(None) => return Ok(()),
            Err(SubscribeError::Pruned { first }) => {
                warn!(
                    first,
                    "notifications fell behind the event stream's retention; events before {first} are not notified"
                );
                store.set_notify_cursor(first.saturating_sub(1))?;
                sub = app.events.subscribe(first, filter.clone());
            }
            Err(SubscribeError::Closed) => return Ok(()),
            Err(SubscribeError::Store(e)) => return Err(e.into()),
        }
    }
}

async fn decide_event(app: &Arc<App>, e: &Event) -> anyhow::Result<()> {
    let store = &app.store;
    let Some(mut b) = store.get_build(e.build_id)? else {
        return skip(app, e);
    };
    let Some(project) = store.get_project(&b.project)? else {
        return skip(app, e);
    };
    // A build is told of once per run: with fast_finish a finished build
    // may move on to another final state (failed, then canceled), which is
    // not a second end. A restart starts a new run.
    let finished = match e.kind {
        EventKind::BuildFinished if store.notified_finish(b.id)? => return skip(app, e),
        EventKind::BuildFinished => Some(true),
        EventKind::BuildRestarted => Some(false),
        _ => None,
    };
    // Decide from the state the event tells of, not a later one.
    if let Some(s) = e.build_state {
        b.state = s;
    }
    let mut jobs = Vec::with_capacity(b.jobs.len());
    for &id in &b.jobs {
        if let Some(j) = store.get_job(id)? {
            jobs.push(j);
        }
    }
    let job = jobs.iter().find(|j| j.id == e.job_id && e.job_id > 0);
    let web_url = app.web_url();
    let outbox = &app.notify;
    let decided = {
        let has_hook = |name: &str| outbox.senders.hooks.find(name).is_some();
        let cfg = &app.cfg.notify;
        let server = Server {
            web_url: &web_url,
            email: cfg.email.is_some(),
            github: cfg.github.as_ref().map(|g| (g.context.as_str(), g.per_job)),
            has_hook: &has_hook,
        };
        decide::decide(&server, e.kind, &project, &b, &jobs, job)
    };
    if decided.is_empty() {
        if let Some(f) = finished {
            store.set_notified_finish(b.id, f)?;
        }
        return skip(app, e);
    }
    let now = app.clock.now();
    let mut ds = Vec::with_capacity(decided.len());
    for (i, d) in decided.into_iter().enumerate() {
        ds.push(Delivery {
            id: store.next_id()?,
            key: format!("kha-{}-{}", e.seq, i + 1),
            build_id: b.id,
            project: b.project.clone(),
            target: d.target,
            notice: d.notice,
            message: d.message,
            state: DeliveryState::Pending,
            attempts: 0,
            created_ms: now,
            next_ms: now,
            updated_ms: now,
            answer: String::new(),
        });
    }
    store.add_deliveries(&ds, e.seq, finished.map(|f| (b.id, f)))?;
    store.durable().await?;
    for d in &ds {
        outbox.schedule(d);
    }
    outbox.wake.notify_one();
    Ok(())
}

/// An event that gives nothing: the cursor moves past it (not flushed: a
/// restart that reads it again decides nothing again), so a restart does
/// not read a long quiet stretch again, nor decide old events with new
/// settings.
fn skip(app: &App, e: &Event) -> anyhow::Result<()> {
    app.store.set_notify_cursor(e.seq)?;
    Ok(())
}

/// The wait before retry number `attempts` (1: the first retry).
pub fn backoff(cfg: &super::NotifyConfig, attempts: u32) -> Duration {
    let secs = cfg.first_retry_secs * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    Duration::from_secs_f64(secs.min(cfg.max_retry_secs).max(0.0))
}

async fn sender(app: Arc<App>) {
    let outbox = &app.notify;
    match app.store.due_deliveries() {
        Ok(ds) => {
            if !ds.is_empty() {
                info!(deliveries = ds.len(), "notifications: resuming deliveries");
            }
            for d in &ds {
                outbox.schedule(d);
            }
        }
        Err(e) => warn!(error = %e, "notifications: cannot read the outbox"),
    }
    let limit = app.cfg.notify.max_in_flight.max(1);
    loop {
        let now = app.clock.now();
        let mut next_wake: Option<Millis> = None;
        let mut start = Vec::new();
        {
            let due = outbox.lock_due();
            let in_flight = outbox.lock_in_flight();
            let mut busy = HashSet::new();
            for (&id, d) in due.iter() {
                // The first of each order key goes; later ones wait for it.
                if !busy.insert(d.order.as_str()) || in_flight.contains(&id) {
                    continue;
                }
                if d.next_ms > now {
                    next_wake = Some(next_wake.map_or(d.next_ms, |w| w.min(d.next_ms)));
                    continue;
                }
                if in_flight.len() + start.len() >= limit {
                    break;
                }
                start.push(id);
            }
        }
        for id in start {
            outbox.lock_in_flight().insert(id);
            let a = app.clone();
            app.spawn("notify-attempt", async move {
                attempt(&a, id).await;
                a.notify.lock_in_flight().remove(&id);
                a.notify.wake.notify_one();
            });
        }
        let sleep = next_wake
            .map(|w| Duration::from_millis(w.saturating_sub(now)))
            .unwrap_or(Duration::from_secs(5))
            .min(Duration::from_secs(5));
        tokio::select! {
            _ = app.shutdown.cancelled() => break,
            _ = outbox.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// One attempt of delivery `id`, its outcome stored.
async fn attempt(app: &Arc<App>, id: u64) {
    let outbox = &app.notify;
    let cfg = &app.cfg.notify;
    let mut d = match app.store.get_delivery(id) {
        Ok(Some(d)) if !d.state.is_final() => d,
        Ok(_) => {
            outbox.lock_due().remove(&id);
            return;
        }
        Err(e) => {
            warn!(id, error = %e, "notifications: cannot read a delivery; again in 5 s");
            if let Some(due) = outbox.lock_due().get_mut(&id) {
                due.next_ms = app.clock.now() + 5_000;
            }
            return;
        }
    };
    // Hooks and plugins have their own timeout (which kills them); the
    // outbox's must not cut them short first.
    let secs = match d.target {
        Target::Hook { .. } | Target::Plugin { .. } => {
            cfg.attempt_timeout_secs.max(cfg.hook_timeout_secs + 5.0)
        }
        // An IRC or XMPP session waits on the server at several steps
        // (welcome, join, echo), each bounded inside; cutting it short
        // after the message went out would send it again on the retry.
        Target::Irc { .. } | Target::Xmpp { .. } => cfg.attempt_timeout_secs.max(180.0),
        _ => cfg.attempt_timeout_secs,
    };
    let limit = Duration::from_secs_f64(secs.max(0.1));
    // Encrypted values are decrypted into a copy that is sent, never
    // stored; their plaintext is scrubbed from the answer that is.
    let result = match super::secure::reveal(&app.sched.keys, &d) {
        Err(f) => Err(f),
        Ok(revealed) => {
            let (sent, hidden) = match &revealed {
                Some((copy, hidden)) => (copy, Some(hidden)),
                None => (&d, None),
            };
            let r = match tokio::time::timeout(limit, outbox.senders.send(&app.store, sent)).await {
                Ok(r) => r,
                Err(_) => Err(Failure::Retry(format!(
                    "no answer within {} s",
                    limit.as_secs_f64()
                ))),
            };
            match hidden {
                None => r,
                Some(h) => match r {
                    Ok(a) => Ok(h.scrub(&a)),
                    Err(Failure::Retry(a)) => Err(Failure::Retry(h.scrub(&a))),
                    Err(Failure::Permanent(a)) => Err(Failure::Permanent(h.scrub(&a))),
                },
            }
        }
    };
    let now = app.clock.now();
    d.attempts += 1;
    d.updated_ms = now;
    match result {
        Ok(answer) => {
            d.state = DeliveryState::Sent;
            d.answer = answer;
        }
        Err(Failure::Permanent(why)) => {
            d.state = DeliveryState::Failed;
            d.answer = why;
        }
        Err(Failure::Retry(why)) => {
            let age = now.saturating_sub(d.created_ms);
            if age >= cfg.give_up_after_secs.saturating_mul(1000) {
                d.state = DeliveryState::Failed;
                d.answer = format!(
                    "gave up after {} attempts in {} s: {why}",
                    d.attempts,
                    age / 1000
                );
            } else {
                d.state = DeliveryState::Retrying;
                d.next_ms = now + backoff(cfg, d.attempts).as_millis() as u64;
                d.answer = why;
            }
        }
    }
    match d.state {
        DeliveryState::Sent => info!(id, key = %d.key, channel = %d.target.channel(), "delivered"),
        DeliveryState::Failed => {
            warn!(id, key = %d.key, channel = %d.target.channel(), answer = %d.answer, "delivery failed")
        }
        _ => {}
    }
    if let Err(e) = app.store.put_delivery(&d) {
        warn!(id, error = %e, "notifications: cannot record a delivery");
    }
    if let Err(e) = app.store.durable().await {
        warn!(id, error = %e, "notifications: cannot flush a delivery");
    }
    if d.state.is_final() {
        outbox.lock_due().remove(&id);
    } else {
        outbox.schedule(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let cfg = crate::notify::NotifyConfig::default();
        let secs: Vec<u64> = (1..=10).map(|n| backoff(&cfg, n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        assert_eq!(backoff(&cfg, 1000).as_secs(), 600);
    }
}

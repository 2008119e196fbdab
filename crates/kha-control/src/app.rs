//! The control node as one value: its store, logs, scheduler, mirrors,
//! triggers, event stream and settings, handed to every interface (gRPC,
//! HTTP) and to every background task. Nothing reaches through another
//! module's fields to get at these: they are here.
//!
//! Every task the control node runs is spawned through [`App::spawn`]: it is
//! named, traced, and tracked, so shutdown waits for it (a webhook build in
//! flight is recorded before the last flush).

use crate::config::Config;
use crate::github_login::GithubLogin;
use crate::scheduler::Scheduler;
use crate::store::events::EventLog;
use crate::store::logs::LogStore;
use crate::store::Store;
use crate::trigger::Triggerer;
use crate::vcs::Systems;
use anyhow::Context;
use kha_core::event::{Event, EventKind};
use kha_core::{Clock, JobId, SystemClock};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

pub struct App {
    pub cfg: Config,
    pub store: Store,
    pub logs: Arc<LogStore>,
    pub sched: Arc<Scheduler>,
    /// The projects' repositories (git mirrors).
    pub vcs: Arc<Systems>,
    pub triggers: Arc<Triggerer>,
    pub events: Arc<EventLog>,
    pub clock: Arc<dyn Clock>,
    /// SHA-256 of the admin token.
    pub admin_hash: String,
    /// GitHub sign-in, when `[github]` is configured.
    pub github: Option<GithubLogin>,
    /// Sign-in failures and one-time CLI codes (memory only).
    pub auth: crate::api::auth::AuthState,
    /// The HTTP listener's bound address, once it listens (the configured
    /// one may be port 0).
    pub http_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Notifications, commit statuses and hooks (the outbox).
    pub notify: crate::notify::outbox::Outbox,
    /// The build cache (`crate::cache`).
    pub caches: crate::cache::CacheStore,
    /// What `/metrics` serves.
    pub metrics: crate::metrics::Metrics,
    pub shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl App {
    /// Opens the data directory (database, logs, mirrors, admin token).
    /// Must be called inside a tokio runtime.
    pub fn open(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Arc<App>> {
        Self::open_with_clock(cfg, shutdown, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        cfg: Config,
        shutdown: CancellationToken,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<App>> {
        let github = github_login(&cfg)?;
        let data = cfg.data_dir.clone();
        std::fs::create_dir_all(&data)
            .with_context(|| format!("creating data dir {}", data.display()))?;
        info!(data_dir = %data.display(), "opening the store");
        let store = Store::open_with_cache(&data.join("db"), cfg.db_cache_mib << 20)
            .context("opening the database")?;
        let logs = Arc::new(
            LogStore::open(data.join("logs"), cfg.log_cap_bytes)
                .context("opening the log directory")?,
        );
        let admin_hash = crate::auth::hash(&crate::admin_token(&data)?);
        let vcs = Arc::new(Systems::new(&data));
        let sched = Scheduler::new(store.clone(), logs.clone(), clock.clone(), cfg.clone())?;
        let triggers = Arc::new(Triggerer::new(sched.clone(), vcs.clone()));
        let notify = crate::notify::outbox::Outbox::new(&cfg.notify)
            .context("setting up notifications ([notify])")?;
        let caches = crate::cache::CacheStore::open(data.join("cache"), &store, cfg.cache.clone())
            .context("opening the build cache")?;
        let metrics = crate::metrics::Metrics::new(sched.clone(), logs.clone(), store.clone());
        Ok(Arc::new(App {
            metrics,
            caches,
            notify,
            events: store.events.clone(),
            cfg,
            store,
            logs,
            sched,
            vcs,
            triggers,
            clock,
            admin_hash,
            github,
            auth: Default::default(),
            http_addr: Default::default(),
            shutdown,
            tasks: TaskTracker::new(),
        }))
    }

    /// Where people reach the web UI: `public_url`, else the HTTP
    /// listener's bound address.
    pub fn web_url(&self) -> String {
        match self.http_addr.get() {
            Some(a) if self.cfg.public_url.is_empty() => format!("http://{a}"),
            _ => self.cfg.base_url(None),
        }
    }

    /// Spawns a task that shutdown waits for.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .spawn(fut.instrument(tracing::info_span!("task", name)));
    }

    /// Starts the background work: the scheduler's sweep, polling,
    /// scheduled builds, event publication and retention, and the coalesced
    /// log-growth events.
    pub fn start(self: &Arc<Self>) {
        let app = self.clone();
        self.spawn("sweeper", async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = app.shutdown.cancelled() => break,
                    _ = tick.tick() => app.sched.sweep().await,
                }
            }
        });
        self.spawn(
            "poller",
            crate::trigger::poll::run(self.triggers.clone(), self.shutdown.clone()),
        );
        self.spawn(
            "cron",
            crate::trigger::cron::run(self.triggers.clone(), self.shutdown.clone()),
        );
        let app = self.clone();
        self.spawn("events", async move { app.event_upkeep().await });
        let app = self.clone();
        self.spawn("metrics", async move {
            app.metrics
                .follow_events(&app.events, &app.logs, app.shutdown.clone())
                .await
        });
        let app = self.clone();
        self.spawn("log-retention", async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = app.shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (store, logs, server, now) = (
                    app.store.clone(),
                    app.logs.clone(),
                    app.cfg.logs,
                    app.clock.now(),
                );
                let pass = tokio::task::spawn_blocking(move || {
                    crate::retention::full_pass(&store, &logs, &server, now)
                });
                match pass.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "the log retention pass failed"),
                    Err(e) => warn!(error = %e, "the log retention pass failed"),
                }
            }
        });
        crate::notify::outbox::Outbox::start(self);
    }

    /// Publishes events nobody flushed for (every change that answers
    /// someone flushes at once; this catches the rest), reports log growth
    /// as coalesced `job_log` events, and prunes the stream.
    async fn event_upkeep(&self) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.log_event_ms.max(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported: HashMap<JobId, u64> = HashMap::new();
        let mut last_prune = 0;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = self.clock.now();
            self.log_events(&mut reported, now);
            if self.events.written() > self.events.published() {
                if let Err(e) = self.store.durable().await {
                    warn!(error = %e, "cannot flush events");
                }
            }
            if now.saturating_sub(last_prune) >= 60_000 {
                last_prune = now;
                match self.events.prune(
                    self.cfg.events_keep,
                    self.cfg.events_max_age_secs * 1000,
                    now,
                ) {
                    Ok(0) => {}
                    Ok(n) => info!(
                        pruned = n,
                        first = self.events.first_retained(),
                        "events pruned"
                    ),
                    Err(e) => warn!(error = %e, "cannot prune events"),
                }
                let (idle, max) = (
                    self.cfg.session_idle_secs.saturating_mul(1000),
                    self.cfg.session_max_secs.saturating_mul(1000),
                );
                let stale = |s: &crate::store::records::Session| {
                    now.saturating_sub(s.last_seen_ms) > idle
                        || now.saturating_sub(s.created_ms) > max
                };
                if let Err(e) = self.store.remove_sessions(stale) {
                    warn!(error = %e, "cannot remove ended sessions");
                }
            }
        }
    }

    /// One `job_log` event per running job whose log grew since the last.
    fn log_events(&self, reported: &mut HashMap<JobId, u64>, now: u64) {
        let live = self.logs.live_lengths();
        let ids: std::collections::HashSet<JobId> = live.iter().map(|(j, _)| *j).collect();
        reported.retain(|j, _| ids.contains(j));
        for (job, len) in live {
            if reported.get(&job).is_some_and(|&r| r >= len) || len == 0 {
                continue;
            }
            let Ok(Some(j)) = self.store.get_job(job) else {
                continue;
            };
            if j.state.is_final() {
                continue;
            }
            let mut e = Event::new(EventKind::JobLog);
            e.project = j.project;
            e.build_id = j.build;
            e.job_id = j.id;
            e.job_number = j.number;
            e.job_state = Some(j.state);
            e.epoch = j.epoch;
            e.log_len = len;
            match self.store.record_event(e, now) {
                Ok(()) => {
                    reported.insert(job, len);
                }
                Err(err) => warn!(job_id = job, error = %err, "cannot record log growth"),
            }
        }
    }

    /// Waits for every tracked task (at most `limit`), then makes the
    /// store durable one last time.
    pub async fn stop(&self, limit: Duration) {
        self.tasks.close();
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                left = self.tasks.len(),
                "some tasks did not stop in time; stopping anyway"
            );
        }
        if let Err(e) = self.store.durable().await {
            warn!(error = %e, "last flush failed");
        }
    }
}

/// GitHub sign-in from `[github]`, checked before anything is opened: a bad
/// setting stops the start with what to fix.
fn github_login(cfg: &Config) -> anyhow::Result<Option<GithubLogin>> {
    let Some(gh) = &cfg.github else {
        return Ok(None);
    };
    if cfg.public_url.is_empty() {
        warn!(
            "GitHub sign-in without public_url: GitHub will send browsers back to {}, \
             which must be the OAuth app's callback URL; set public_url",
            cfg.base_url(None)
        );
    }
    let redirect = format!("{}/auth/github/callback", cfg.base_url(None));
    let login = GithubLogin::new(gh, &redirect).map_err(|e| anyhow::anyhow!("{e}"))?;
    info!(callback = %redirect, "GitHub sign-in on");
    Ok(Some(login))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_github_section_is_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::from_toml(
            "[github]\nclient_id = \"Iv1.x\"\nclient_secret = \"s\"\ntoken_url = \"github.com/token\"",
        )
        .unwrap();
        cfg.data_dir = dir.path().join("data");
        let e = App::open(cfg.clone(), CancellationToken::new())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "[github] token_url \"github.com/token\" is not a URL: relative URL without a base"
        );
        assert!(!cfg.data_dir.exists(), "nothing is opened before the check");

        cfg.github.as_mut().unwrap().token_url = "https://github.example/token".into();
        cfg.public_url = "https://ci.example.org/".into();
        let app = App::open(cfg, CancellationToken::new()).unwrap();
        let url = app.github.as_ref().unwrap().authorize_url("s");
        assert!(
            url.contains("redirect_uri=https%3A%2F%2Fci.example.org%2Fauth%2Fgithub%2Fcallback"),
            "{url}"
        );

        let cfg = Config {
            data_dir: dir.path().join("data2"),
            ..Config::default()
        };
        let app = App::open(cfg, CancellationToken::new()).unwrap();
        assert!(app.github.is_none(), "off without [github]");
    }
}

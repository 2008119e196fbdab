//! The scheduler: the job queue, offers, leases and builder sessions, and
//! every job transition that follows from them.
//!
//! sled is the truth; this module keeps an in-memory index of it (queues per
//! project, live leases with their deadlines, connected sessions) that is
//! rebuilt from sled at start. Every transition is written in one sled
//! transaction and made durable before anyone is told about it.
//!
//! Fairness: projects take turns (round robin); within a project, jobs go in
//! queue order, skipping only jobs no connected builder can take.

use crate::config::Config;
use crate::store::logs::LogStore;
use crate::store::records::{Build, Job};
use crate::store::{LeaseEffect, QueueEffect, Store, StoreError, QUEUE_NORMAL_BASE};
use kha_core::lease::LeaseError;
use kha_core::{Clock, Epoch, JobId, JobOutcome, JobState, Labels, Lease, LeaseTable, Millis};
use kha_proto::agent::{self, control_message::Msg, ControlMessage};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(
        "log of job {job} has {stored} bytes, the builder reports {reported}: send the rest first"
    )]
    LogShort {
        job: JobId,
        stored: u64,
        reported: u64,
    },
    #[error("log of job {job} does not match the builder's hash")]
    LogHash { job: JobId },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// How long the leases of a builder whose connection broke (its session
/// ended without GoingAway) last: a builder process that dies (kill -9, OOM,
/// crash) closes its connection at once, and its jobs should run again
/// elsewhere at once, not a whole lease later. A builder that is alive and
/// reconnects within this grace keeps its jobs (its Hello renews them);
/// after it, they have run again elsewhere and its Welcome says to stop
/// them. A builder that goes silent without closing its connection is
/// still found out by its lease.
pub const DROPPED_SESSION_GRACE_MS: u64 = 0;

/// After a restart, builders get this long on top of a lease to come back:
/// their reconnect backoff may have grown while the control node was away.
const RESTART_GRACE_MS: u64 = 10_000;

pub type Outbound = mpsc::Sender<Result<ControlMessage, tonic::Status>>;

/// A connected builder.
pub struct Session {
    /// Distinguishes this connection from an earlier one of the same builder.
    pub conn: u64,
    pub tx: Outbound,
    /// Ends the session's stream (revocation, replacement, shutdown).
    pub close: CancellationToken,
    pub name: String,
    pub labels: Labels,
    pub slots: u32,
    pub free: u32,
    pub draining: bool,
    pub version: String,
}

/// What `kha builder list` shows of a connected builder.
pub struct SessionView {
    pub slots: u32,
    pub draining: bool,
    pub running: Vec<JobId>,
    pub labels: Vec<String>,
}

struct PendingOffer {
    builder: String,
    epoch: Epoch,
    deadline: Millis,
}

#[derive(Default)]
struct Inner {
    queues: BTreeMap<String, VecDeque<JobId>>,
    /// Requirements and project of queued jobs.
    queued: HashMap<JobId, (String, Labels)>,
    /// The project served last, for round robin.
    last_served: Option<String>,
    offers: HashMap<JobId, PendingOffer>,
    /// Builders that refused a job: it is not offered to them again.
    refused: HashMap<JobId, HashSet<String>>,
    leases: LeaseTable,
    /// Running jobs asked to stop, with the time past which they are
    /// recorded as canceled whatever their builder says.
    canceling: HashMap<JobId, Millis>,
    /// The control node's backstop on each running job's timeout.
    backstops: HashMap<JobId, Millis>,
    sessions: HashMap<String, Session>,
}

pub struct Scheduler {
    pub store: Store,
    pub logs: Arc<LogStore>,
    pub clock: Arc<dyn Clock>,
    pub cfg: Config,
    inner: Mutex<Inner>,
    next_conn: std::sync::atomic::AtomicU64,
}

fn send(s: &Session, m: Msg) -> bool {
    s.tx.try_send(Ok(ControlMessage { msg: Some(m) })).is_ok()
}

/// Tells a builder to go (and when to come back), and ends its stream.
fn goodbye(s: &Session, reconnect_after_ms: u64, reason: &str) {
    send(
        s,
        Msg::Disconnect(agent::Disconnect {
            reconnect_after_ms,
            reason: reason.into(),
        }),
    );
    s.close.cancel();
}

impl Scheduler {
    /// Rebuilds the in-memory index from the store. Leases found there get a
    /// fresh deadline: their builders get one lease period to come back.
    pub fn new(
        store: Store,
        logs: Arc<LogStore>,
        clock: Arc<dyn Clock>,
        cfg: Config,
    ) -> Result<Arc<Scheduler>, SchedError> {
        let mut inner = Inner::default();
        let now = clock.now();
        for (_, job_id) in store.queued_jobs()? {
            if let Some(job) = store.get_job(job_id)? {
                inner
                    .queues
                    .entry(job.project.clone())
                    .or_default()
                    .push_back(job_id);
                inner
                    .queued
                    .insert(job_id, (job.project.clone(), job.requires.clone()));
            }
        }
        for l in store.leases()? {
            if let Some(job) = store.get_job(l.job)? {
                inner.backstops.insert(l.job, now + backstop(&job));
                if job.cancel_requested {
                    inner.canceling.insert(l.job, now + cfg.lease_ms());
                }
            }
            inner.leases.insert(Lease {
                job: l.job,
                epoch: l.epoch,
                builder: l.builder,
                deadline: now + cfg.lease_ms() + RESTART_GRACE_MS,
            });
        }
        info!(
            queued = inner.queued.len(),
            leases = inner.leases.len(),
            "scheduler state loaded"
        );
        Ok(Arc::new(Scheduler {
            store,
            logs,
            clock,
            cfg,
            inner: Mutex::new(inner),
            next_conn: std::sync::atomic::AtomicU64::new(1),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---------------------------------------------------------------- queue

    /// Makes freshly created (already durable) queued jobs available.
    pub fn enqueue(&self, jobs: &[Job]) {
        {
            let mut inner = self.lock();
            for j in jobs.iter().filter(|j| j.state == JobState::Queued) {
                inner
                    .queues
                    .entry(j.project.clone())
                    .or_default()
                    .push_back(j.id);
                inner
                    .queued
                    .insert(j.id, (j.project.clone(), j.requires.clone()));
            }
        }
        self.dispatch();
    }

    /// A queue key behind every job queued so far.
    pub fn normal_key(&self) -> Result<u64, SchedError> {
        Ok(QUEUE_NORMAL_BASE + self.store.next_id()?)
    }

    /// A queue key ahead of every normal one (for jobs put back).
    fn front_key(&self) -> Result<u64, SchedError> {
        Ok(QUEUE_NORMAL_BASE - self.store.next_id()?)
    }

    /// Offers queued jobs to builders with credit, projects taking turns.
    pub fn dispatch(&self) {
        let mut inner = self.lock();
        let now = self.clock.now();
        loop {
            if !inner.sessions.values().any(|s| s.free > 0 && !s.draining) {
                return;
            }
            let mut order: Vec<String> = inner.queues.keys().cloned().collect();
            if let Some(last) = &inner.last_served {
                let split = order.iter().position(|p| p > last).unwrap_or(order.len());
                order.rotate_left(split);
            }
            let mut pick: Option<(String, usize, JobId, String)> = None;
            'projects: for project in &order {
                let Some(q) = inner.queues.get(project) else {
                    continue;
                };
                for (idx, &job) in q.iter().enumerate() {
                    let Some((_, req)) = inner.queued.get(&job) else {
                        continue;
                    };
                    let refused = inner.refused.get(&job);
                    let builder = inner
                        .sessions
                        .iter()
                        .filter(|(id, s)| {
                            s.free > 0
                                && !s.draining
                                && s.labels.satisfies(req)
                                && !refused.is_some_and(|r| r.contains(*id))
                        })
                        .max_by_key(|(_, s)| s.free)
                        .map(|(id, _)| id.clone());
                    if let Some(b) = builder {
                        pick = Some((project.clone(), idx, job, b));
                        break 'projects;
                    }
                }
            }
            let Some((project, idx, job_id, builder)) = pick else {
                return;
            };
            if let Some(q) = inner.queues.get_mut(&project) {
                q.remove(idx);
                if q.is_empty() {
                    inner.queues.remove(&project);
                }
            }
            inner.last_served = Some(project);
            let job = match self.store.get_job(job_id) {
                Ok(Some(j)) if j.state == JobState::Queued => j,
                Ok(_) => {
                    inner.queued.remove(&job_id);
                    continue;
                }
                Err(e) => {
                    warn!(job_id, error = %e, "cannot read queued job; leaving it queued");
                    Self::requeue_front_mem(&mut inner, job_id);
                    return;
                }
            };
            let epoch = job.epoch + 1;
            let offer = Msg::Offer(agent::Offer {
                job_id,
                epoch,
                spec: Some(job_spec(&job)),
            });
            let sent = match inner.sessions.get_mut(&builder) {
                Some(s) => {
                    s.free -= 1;
                    send(s, offer)
                }
                None => false,
            };
            if sent {
                debug!(job_id, epoch, builder_id = %builder, "offered");
                inner.offers.insert(
                    job_id,
                    PendingOffer {
                        builder,
                        epoch,
                        deadline: now + kha_core::limits::OFFER_TIMEOUT_MS,
                    },
                );
            } else {
                warn!(builder_id = %builder, "session outbound full or gone; closing it");
                if let Some(s) = inner.sessions.remove(&builder) {
                    s.close.cancel();
                }
                inner
                    .queues
                    .entry(job.project.clone())
                    .or_default()
                    .push_front(job_id);
            }
        }
    }

    fn requeue_front_mem(inner: &mut Inner, job: JobId) {
        if let Some((project, _)) = inner.queued.get(&job) {
            let project = project.clone();
            inner.queues.entry(project).or_default().push_front(job);
        }
    }

    // ------------------------------------------------------------- sessions

    /// Registers a builder's session, replacing (and closing) an older one.
    /// Returns the connection number and the verdicts for the jobs it says
    /// it is running.
    pub fn session_opened(
        &self,
        builder: &str,
        mut session: Session,
        running: &[(JobId, Epoch)],
    ) -> (u64, Vec<agent::ResumeVerdict>) {
        let conn = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        session.conn = conn;
        let now = self.clock.now();
        let ttl = self.cfg.lease_ms();
        let mut inner = self.lock();
        let kept = inner.leases.renew(builder, running, now, ttl);
        let verdicts = running
            .iter()
            .map(|&(job_id, epoch)| {
                let keep =
                    kept.contains(&(job_id, epoch)) && !inner.canceling.contains_key(&job_id);
                let reason = if keep {
                    String::new()
                } else if inner.canceling.contains_key(&job_id) {
                    "canceled".into()
                } else {
                    match inner.leases.check(job_id, epoch, builder) {
                        Err(e) => format!("{e}: stop it"),
                        Ok(_) => "stop it".into(),
                    }
                };
                agent::ResumeVerdict {
                    job_id,
                    epoch,
                    keep,
                    reason,
                }
            })
            .collect();
        if let Some(old) = inner.sessions.insert(builder.to_string(), session) {
            old.close.cancel();
        }
        // Offers made on the old connection will never be answered.
        Self::withdraw_offers(&mut inner, builder);
        (conn, verdicts)
    }

    /// Puts the jobs offered to `builder` back at the front of their queues.
    fn withdraw_offers(inner: &mut Inner, builder: &str) {
        let stale: Vec<JobId> = inner
            .offers
            .iter()
            .filter(|(_, o)| o.builder == builder)
            .map(|(j, _)| *j)
            .collect();
        for j in stale {
            inner.offers.remove(&j);
            Self::requeue_front_mem(inner, j);
        }
    }

    /// The session's connection broke under it (see
    /// [`DROPPED_SESSION_GRACE_MS`]): brings the builder's lease deadlines
    /// forward, unless a newer session of the same builder is open already.
    /// Returns whether it did (call [`Scheduler::sweep`] then).
    pub fn session_dropped(&self, builder: &str, conn: u64) -> bool {
        let mut inner = self.lock();
        if inner.sessions.get(builder).is_none_or(|s| s.conn != conn) {
            return false;
        }
        let deadline = self.clock.now() + DROPPED_SESSION_GRACE_MS;
        inner.leases.shorten(builder, deadline);
        info!(builder_id = %builder, "builder connection dropped; its jobs run again elsewhere");
        true
    }

    /// The session's stream ended. Its leases run on until their deadline:
    /// the builder may come back and resume.
    pub fn session_closed(&self, builder: &str, conn: u64) {
        {
            let mut inner = self.lock();
            if inner.sessions.get(builder).is_some_and(|s| s.conn == conn) {
                inner.sessions.remove(builder);
                Self::withdraw_offers(&mut inner, builder);
            }
        }
        self.dispatch();
    }

    pub fn set_credit(&self, builder: &str, free: u32) {
        {
            let mut inner = self.lock();
            let outstanding = inner
                .offers
                .values()
                .filter(|o| o.builder == builder)
                .count() as u32;
            if let Some(s) = inner.sessions.get_mut(builder) {
                s.free = free.saturating_sub(outstanding);
            }
        }
        self.dispatch();
    }

    pub fn set_draining(&self, builder: &str, notify: bool) {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get_mut(builder) {
            s.draining = true;
            if notify {
                send(s, Msg::Drain(agent::DrainNotice {}));
            }
        }
    }

    /// Ends a builder's session and brings its leases' deadlines to now, so
    /// its jobs are run again elsewhere at the next sweep.
    pub fn evict(&self, builder: &str, reason: &str) {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.remove(builder) {
            goodbye(&s, 0, reason);
        }
        let now = self.clock.now();
        inner.leases.shorten(builder, now);
    }

    /// Ends one builder's session (it may come back).
    fn close_session(&self, builder: &str, reason: &str) {
        if let Some(s) = self.lock().sessions.remove(builder) {
            goodbye(&s, kha_core::limits::RECONNECT_AFTER_MS, reason);
        }
    }

    /// Tells every builder to go and closes every session (shutdown).
    pub fn disconnect_all(&self, reason: &str) {
        let mut inner = self.lock();
        for (_, s) in inner.sessions.drain() {
            goodbye(&s, kha_core::limits::RECONNECT_AFTER_MS, reason);
        }
    }

    /// Heartbeat: renews the builder's leases and answers with the jobs it
    /// should be running.
    pub fn heartbeat(&self, builder: &str, running: &[(JobId, Epoch)]) -> Vec<agent::JobRef> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner
            .leases
            .renew(builder, running, now, self.cfg.lease_ms());
        inner
            .leases
            .held_by(builder)
            .into_iter()
            .filter(|(j, _)| !inner.canceling.contains_key(j))
            .map(|(job_id, epoch)| agent::JobRef { job_id, epoch })
            .collect()
    }

    /// The connected builders.
    pub fn sessions_view(&self) -> HashMap<String, SessionView> {
        let inner = self.lock();
        inner
            .sessions
            .iter()
            .map(|(id, s)| {
                let view = SessionView {
                    slots: s.slots,
                    draining: s.draining,
                    running: inner
                        .leases
                        .held_by(id)
                        .into_iter()
                        .map(|(j, _)| j)
                        .collect(),
                    labels: s.labels.to_vec(),
                };
                (id.clone(), view)
            })
            .collect()
    }

    pub fn is_connected(&self, builder: &str) -> bool {
        self.lock().sessions.contains_key(builder)
    }

    /// Why a queued job is not running: the requirements no connected
    /// builder meets, or "" when some builder could take it.
    pub fn unmatched(&self, job: JobId) -> Option<String> {
        let inner = self.lock();
        let (_, req) = inner.queued.get(&job)?;
        let able: Vec<&Session> = inner
            .sessions
            .values()
            .filter(|s| s.labels.satisfies(req))
            .collect();
        Some(if able.iter().any(|s| !s.draining) {
            String::new()
        } else if !able.is_empty() {
            "waiting: every builder that could run it is draining".into()
        } else {
            format!("waiting: no connected builder has {req}")
        })
    }

    // --------------------------------------------------------- offers/leases

    /// A builder accepted an offer: store the lease, then tell it to start.
    pub async fn accept(&self, builder: &str, job_id: JobId, epoch: Epoch) {
        let valid = {
            let mut inner = self.lock();
            match inner.offers.get(&job_id) {
                Some(o) if o.builder == builder && o.epoch == epoch => {
                    inner.offers.remove(&job_id);
                    true
                }
                _ => false,
            }
        };
        if !valid {
            self.send_to(
                builder,
                Msg::Revoke(agent::Revoke {
                    job_id,
                    epoch,
                    reason: "the offer was withdrawn".into(),
                }),
            );
            return;
        }
        let now = self.clock.now();
        let b = builder.to_string();
        let r = self.store.transition(job_id, now, |j| {
            if j.state != JobState::Queued {
                return Err(StoreError::Rejected(format!("job {} is {}", j.id, j.state)));
            }
            j.state = JobState::Running;
            j.epoch = epoch;
            j.attempts += 1;
            j.builder = b.clone();
            j.started_ms = now;
            j.finished_ms = 0;
            j.cancel_requested = false;
            j.detail.clear();
            Ok((LeaseEffect::Set, QueueEffect::Remove))
        });
        let job = match r {
            Ok((job, _)) => job,
            Err(e) => {
                debug!(job_id, error = %e, "accept refused");
                self.lock().queued.remove(&job_id);
                self.send_to(
                    builder,
                    Msg::Revoke(agent::Revoke {
                        job_id,
                        epoch,
                        reason: e.to_string(),
                    }),
                );
                return;
            }
        };
        if let Err(e) = self.logs.reset(job_id) {
            warn!(job_id, error = %e, "cannot reset the job's log");
        }
        if let Err(e) = self.store.durable().await {
            warn!(job_id, error = %e, "lease not durable; the job stays with its lease and may be lost");
        }
        {
            let mut inner = self.lock();
            inner.queued.remove(&job_id);
            inner.refused.remove(&job_id);
            inner.leases.insert(Lease {
                job: job_id,
                epoch,
                builder: builder.to_string(),
                deadline: now + self.cfg.lease_ms(),
            });
            inner.backstops.insert(job_id, now + backstop(&job));
        }
        info!(job_id, epoch, builder_id = %builder, "job started");
        let credentials = match self.store.get_project(&job.project) {
            Ok(Some(p)) => p.credentials.map(|c| agent::GitCredentials {
                username: c.username,
                password: c.password.0,
            }),
            _ => None,
        };
        self.send_to(
            builder,
            Msg::Granted(agent::Granted {
                job_id,
                epoch,
                credentials,
            }),
        );
    }

    /// A builder refused an offer: the job goes back to the front.
    pub fn reject(&self, builder: &str, job_id: JobId, epoch: Epoch, reason: &str) {
        {
            let mut inner = self.lock();
            match inner.offers.get(&job_id) {
                Some(o) if o.builder == builder && o.epoch == epoch => {}
                _ => return,
            }
            inner.offers.remove(&job_id);
            info!(job_id, builder_id = %builder, reason, "offer rejected");
            if reason != "busy" {
                inner
                    .refused
                    .entry(job_id)
                    .or_default()
                    .insert(builder.to_string());
            }
            Self::requeue_front_mem(&mut inner, job_id);
        }
        self.dispatch();
    }

    fn send_to(&self, builder: &str, m: Msg) {
        let inner = self.lock();
        if let Some(s) = inner.sessions.get(builder) {
            send(s, m);
        }
    }

    /// Checks that `builder` holds the lease `(job, epoch)`.
    pub fn check_lease(&self, builder: &str, job: JobId, epoch: Epoch) -> Result<(), LeaseError> {
        self.lock().leases.check(job, epoch, builder).map(|_| ())
    }

    /// Records a job's result after verifying its log.
    pub async fn finish(
        &self,
        builder: &str,
        req: &agent::FinishJobRequest,
    ) -> Result<(), SchedError> {
        let (job_id, epoch) = (req.job_id, req.epoch);
        let outcome =
            JobOutcome::try_from(req.outcome()).map_err(|e| SchedError::Invalid(e.to_string()))?;
        if let Err(e) = self.check_lease(builder, job_id, epoch) {
            // Idempotent: the same result again is fine.
            if let Some(j) = self.store.get_job(job_id)? {
                if j.epoch == epoch && j.builder == builder && j.state.is_final() {
                    return Ok(());
                }
            }
            return Err(e.into());
        }
        let (len, sha) = self.logs.digest(job_id).await?;
        if len != req.total_len {
            return Err(SchedError::LogShort {
                job: job_id,
                stored: len,
                reported: req.total_len,
            });
        }
        if !req.sha256.eq_ignore_ascii_case(&sha) {
            return Err(SchedError::LogHash { job: job_id });
        }
        let canceling = self.lock().canceling.contains_key(&job_id);
        let state = match (outcome.final_state(), canceling) {
            (None, true) => Some(JobState::Canceled),
            (s, _) => s,
        };
        match state {
            Some(state) => {
                self.finalize(job_id, epoch, state, &req.detail, Some((len, sha)))
                    .await?;
            }
            None => {
                self.requeue_or_give_up(
                    job_id,
                    epoch,
                    &format!("builder could not run it: {}", req.detail),
                    JobState::Errored,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Moves a running job to a final state and drops its lease.
    async fn finalize(
        &self,
        job_id: JobId,
        epoch: Epoch,
        state: JobState,
        detail: &str,
        log: Option<(u64, String)>,
    ) -> Result<(), SchedError> {
        let now = self.clock.now();
        let (job, build) = self.store.transition(job_id, now, |j| {
            if j.epoch != epoch || j.state != JobState::Running {
                return Err(StoreError::Rejected(format!(
                    "job {} is {} at epoch {}, not running at epoch {epoch}",
                    j.id, j.state, j.epoch
                )));
            }
            j.state = j
                .state
                .transition(state)
                .map_err(|e| StoreError::Rejected(e.to_string()))?;
            j.finished_ms = now;
            j.detail = detail.to_string();
            if let Some((len, sha)) = &log {
                j.log_len = *len;
                j.log_sha256 = sha.clone();
            }
            Ok((LeaseEffect::Remove, QueueEffect::Keep))
        })?;
        self.store.durable().await?;
        {
            let mut inner = self.lock();
            inner.leases.remove(job_id);
            inner.canceling.remove(&job_id);
            inner.backstops.remove(&job_id);
        }
        if log.is_none() {
            let len = self.logs.len(job_id);
            let _ = self.store.transition(job_id, now, |j| {
                j.log_len = len;
                Ok((LeaseEffect::Keep, QueueEffect::Keep))
            });
        }
        self.logs.finish(job_id);
        info!(job_id, epoch, state = %job.state, build_id = build.id, build_state = %build.state, "job finished");
        self.dispatch();
        Ok(())
    }

    /// A job's lease was lost (or its builder could not run it): run it
    /// again as a new epoch, or record it as `give_up` after too many tries.
    async fn requeue_or_give_up(
        &self,
        job_id: JobId,
        epoch: Epoch,
        why: &str,
        give_up: JobState,
    ) -> Result<(), SchedError> {
        let now = self.clock.now();
        let front = self.front_key()?;
        let max = self.cfg.max_attempts;
        let (job, _) = self.store.transition(job_id, now, |j| {
            if j.epoch != epoch || j.state != JobState::Running {
                return Err(StoreError::Rejected(format!("job {} moved on", j.id)));
            }
            j.detail = why.to_string();
            if j.attempts >= max {
                j.state = give_up;
                j.finished_ms = now;
                j.detail = format!("{why} ({} attempts)", j.attempts);
                Ok((LeaseEffect::Remove, QueueEffect::Keep))
            } else {
                j.state = JobState::Queued;
                Ok((LeaseEffect::Remove, QueueEffect::Insert(front)))
            }
        })?;
        self.store.durable().await?;
        {
            let mut inner = self.lock();
            inner.leases.remove(job_id);
            inner.backstops.remove(&job_id);
            inner.canceling.remove(&job_id);
            if job.state == JobState::Queued {
                inner
                    .queued
                    .insert(job_id, (job.project.clone(), job.requires.clone()));
                inner
                    .queues
                    .entry(job.project.clone())
                    .or_default()
                    .push_front(job_id);
            }
        }
        if job.state == JobState::Queued {
            info!(job_id, epoch, why, "job requeued");
        } else {
            self.logs.finish(job_id);
            warn!(job_id, epoch, why, "job given up");
        }
        self.dispatch();
        Ok(())
    }

    // --------------------------------------------------------------- cancel

    /// Cancels a job: at once if queued, through its builder if running.
    pub async fn cancel_job(&self, job_id: JobId) -> Result<(), SchedError> {
        let now = self.clock.now();
        let grace = self.cfg.cancel_grace_ms;
        let (job, _) = self.store.transition(job_id, now, |j| match j.state {
            JobState::Queued => {
                j.state = JobState::Canceled;
                j.finished_ms = now;
                j.detail = "canceled before it started".into();
                Ok((LeaseEffect::Keep, QueueEffect::Remove))
            }
            JobState::Running => {
                j.cancel_requested = true;
                Ok((LeaseEffect::Keep, QueueEffect::Keep))
            }
            _ => Ok((LeaseEffect::Keep, QueueEffect::Keep)),
        })?;
        self.store.durable().await?;
        let mut inner = self.lock();
        match job.state {
            JobState::Canceled => {
                inner.queued.remove(&job_id);
                for q in inner.queues.values_mut() {
                    q.retain(|&j| j != job_id);
                }
                inner.queues.retain(|_, q| !q.is_empty());
                if let Some(o) = inner.offers.remove(&job_id) {
                    if let Some(s) = inner.sessions.get(&o.builder) {
                        send(
                            s,
                            Msg::Revoke(agent::Revoke {
                                job_id,
                                epoch: o.epoch,
                                reason: "canceled".into(),
                            }),
                        );
                    }
                }
                drop(inner);
                self.logs.finish(job_id);
            }
            JobState::Running => {
                inner
                    .canceling
                    .insert(job_id, now + grace + self.cfg.lease_ms());
                if let Some(s) = inner.sessions.get(&job.builder) {
                    send(
                        s,
                        Msg::Cancel(agent::Cancel {
                            job_id,
                            epoch: job.epoch,
                            grace_ms: grace,
                            reason: "canceled".into(),
                        }),
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Puts every job of a finished build back in the queue.
    pub async fn restart_build(&self, build: &Build) -> Result<(), SchedError> {
        let now = self.clock.now();
        let mut requeued = Vec::new();
        for &job_id in &build.jobs {
            let key = self.normal_key()?;
            let (job, _) = self.store.transition(job_id, now, |j| {
                j.state = j
                    .state
                    .transition(JobState::Queued)
                    .map_err(|e| StoreError::Rejected(e.to_string()))?;
                j.attempts = 0;
                j.detail.clear();
                j.builder.clear();
                j.started_ms = 0;
                j.finished_ms = 0;
                j.cancel_requested = false;
                j.log_len = 0;
                j.log_sha256.clear();
                Ok((LeaseEffect::Keep, QueueEffect::Insert(key)))
            })?;
            self.logs.reset(job_id)?;
            requeued.push(job);
        }
        self.store.durable().await?;
        self.enqueue(&requeued);
        Ok(())
    }

    // ---------------------------------------------------------------- sweep

    /// Expires offers, leases, cancels and timeouts. Run about every 100 ms.
    pub async fn sweep(&self) {
        let now = self.clock.now();
        let (expired, cancels, timeouts) = {
            let mut inner = self.lock();
            let late: Vec<JobId> = inner
                .offers
                .iter()
                .filter(|(_, o)| o.deadline <= now)
                .map(|(j, _)| *j)
                .collect();
            for j in late {
                inner.offers.remove(&j);
                Self::requeue_front_mem(&mut inner, j);
            }
            let expired = inner.leases.take_expired(now);
            let cancels: Vec<(JobId, Epoch)> = inner
                .canceling
                .iter()
                .filter(|(_, &d)| d <= now)
                .filter_map(|(j, _)| inner.leases.get(*j).map(|l| (*j, l.epoch)))
                .collect();
            let timeouts: Vec<(JobId, Epoch, String)> = inner
                .backstops
                .iter()
                .filter(|(_, &d)| d <= now)
                .filter_map(|(j, _)| {
                    inner
                        .leases
                        .get(*j)
                        .map(|l| (*j, l.epoch, l.builder.clone()))
                })
                .collect();
            (expired, cancels, timeouts)
        };
        for l in expired {
            let canceling = self.lock().canceling.contains_key(&l.job);
            let r = if canceling {
                self.finalize(
                    l.job,
                    l.epoch,
                    JobState::Canceled,
                    "canceled; the builder did not confirm",
                    None,
                )
                .await
            } else {
                self.requeue_or_give_up(
                    l.job,
                    l.epoch,
                    &format!("builder {} stopped answering", l.builder),
                    JobState::Lost,
                )
                .await
            };
            if let Err(e) = r {
                debug!(job_id = l.job, error = %e, "expired lease");
            }
        }
        for (job, epoch) in cancels {
            // A builder that never confirmed a cancel may be wedged: end its
            // session; when it returns, Welcome tells it to stop the job.
            if let Some(b) = self.lock().leases.get(job).map(|l| l.builder.clone()) {
                warn!(job_id = job, builder_id = %b, "cancel not confirmed in time; evicting the builder's session");
                self.close_session(&b, "a cancel was not confirmed in time");
            }
            if let Err(e) = self
                .finalize(
                    job,
                    epoch,
                    JobState::Canceled,
                    "canceled; the builder did not confirm in time",
                    None,
                )
                .await
            {
                debug!(job_id = job, error = %e, "cancel backstop");
            }
        }
        for (job, epoch, builder) in timeouts {
            self.send_to(
                &builder,
                Msg::Cancel(agent::Cancel {
                    job_id: job,
                    epoch,
                    grace_ms: 0,
                    reason: "timed out".into(),
                }),
            );
            if let Err(e) = self
                .finalize(
                    job,
                    epoch,
                    JobState::TimedOut,
                    "timed out (recorded by the control node)",
                    None,
                )
                .await
            {
                debug!(job_id = job, error = %e, "timeout backstop");
            }
        }
        self.dispatch();
    }
}

/// When the control node gives up on a running job's own timeout.
fn backstop(job: &Job) -> Millis {
    job.spec.timeout_secs * 1000 + kha_core::limits::TIMEOUT_BACKSTOP_MS
}

/// The wire form of what a builder needs to run a job.
pub fn job_spec(job: &Job) -> agent::JobSpec {
    let mut spec = agent::JobSpec {
        build_id: job.build,
        number: job.number,
        project: job.project.clone(),
        repo_url: job.spec.repo_url.clone(),
        branch: job.spec.branch.clone(),
        commit: job.spec.commit.clone(),
        env: job.spec.env.clone(),
        timeout_secs: job.spec.timeout_secs,
        image: job.spec.image.clone(),
        ..Default::default()
    };
    let mut phases = kha_core::travis::Phases::default();
    for (name, cmds) in &job.spec.phases {
        if let Some(slot) = phases.get_mut(name) {
            *slot = cmds.clone();
        }
    }
    spec.set_phases(phases);
    spec
}

#[cfg(test)]
mod tests;

//! The scheduler: the job queue, offers, leases and builder sessions, and
//! every job transition that follows from them.
//!
//! sled is the truth; this module keeps an in-memory index of it (queues per
//! project, live leases with their deadlines, connected sessions) that is
//! rebuilt from sled at start. Every transition is written in one sled
//! transaction and made durable before anyone is told about it. sled is
//! never read or written while the index's mutex is held.
//!
//! The rooms:
//! - this file: the [`Scheduler`] value, its in-memory index and the error
//!   type, and the rebuild from sled at start;
//! - `pick`: the fairness pick, a pure function (projects take turns; within
//!   a project jobs go in queue order, skipping only jobs no builder can
//!   take);
//! - `queue`: queues per project, enqueue, dispatch (offers), restarts;
//! - `sessions`: connected builders (open, close, drop, credit, drain,
//!   evict, heartbeat) and the views of them;
//! - `leases`: answers to offers (accept, reject), results (finish), the end
//!   of a run (finalize, requeue) and cancels;
//! - `stages`: the index following a build's stages (the next stage's jobs
//!   queued, later stages' canceled, by the store in the transaction that
//!   ended a stage);
//! - `sweep`: where offers, leases, cancels and timeouts expire.

mod leases;
mod pick;
mod queue;
mod sessions;
mod spec;
mod stages;
mod sweep;
mod waiting;

use crate::config::Config;
use crate::store::logs::LogStore;
use crate::store::records::Job;
use crate::store::{Store, StoreError};
use kha_core::lease::LeaseError;
use kha_core::{BuildId, Clock, Epoch, JobId, Labels, Lease, LeaseTable, Millis};
use kha_proto::agent::{self, control_message::Msg, ControlMessage};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use sessions::DROPPED_SESSION_GRACE_MIN_MS;
pub use spec::{job_spec, needs_secrets};

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

/// After a restart, builders get this long on top of a lease to come back:
/// their reconnect backoff may have grown while the control node was away.
const RESTART_GRACE_MS: u64 = 10_000;

/// A session's messages to its builder. Boxed: a channel allocates its
/// slots 32 at a time, and a `ControlMessage` is 576 bytes inline, so each
/// of a thousand sessions held 18 KiB for the slots alone.
pub type Outbound = mpsc::Sender<Box<ControlMessage>>;

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
    /// An admin trusts it with encrypted variables.
    pub trusted: bool,
}

/// What `kha builder list` shows of a connected builder.
pub struct SessionView {
    pub slots: u32,
    pub draining: bool,
    pub running: Vec<JobId>,
    pub labels: Vec<String>,
}

/// A job offered to a builder that has not answered yet. The entry is made
/// when the job is picked, before its record is read (outside the lock), so
/// that the slot is taken; `epoch` is `None` until the offer is sent.
struct PendingOffer {
    builder: String,
    epoch: Option<Epoch>,
    deadline: Millis,
}

/// What the index keeps of a queued job (and of a running one, for the
/// projects' limits).
#[derive(Debug, Clone)]
struct Queued {
    /// Shared with the other jobs indexed with the same project and
    /// requirements (a build's jobs mostly are): 10,000 queued jobs kept a
    /// copy each, 3.6 MiB of the control node's heap.
    project: Arc<str>,
    requires: Arc<Labels>,
    /// It has encrypted variables: only a trusted builder may take it.
    secrets: bool,
    build: BuildId,
    /// The branch its build is of (shared as `project` is), for "one build
    /// of a branch at a time".
    branch: Arc<str>,
    /// Its place in its project's queue (`kha_core::priority`).
    priority: u8,
}

#[cfg(test)]
impl Queued {
    /// A job of build 1 on branch "master", of normal priority.
    fn for_test(project: &str, requires: Labels, secrets: bool) -> Queued {
        Queued {
            project: project.into(),
            requires: requires.into(),
            secrets,
            build: 1,
            branch: "master".into(),
            priority: kha_core::priority::NORMAL,
        }
    }
}

/// A project's rules for how many of its jobs run at once; projects
/// without any have no entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectRules {
    /// At most this many running (or offered) jobs; 0: no limit.
    pub max_running: u32,
    /// A branch's later build waits for its earlier one.
    pub one_build_per_branch: bool,
}

impl ProjectRules {
    pub fn of(p: &crate::store::records::Project) -> ProjectRules {
        ProjectRules {
            max_running: p.max_running_jobs,
            one_build_per_branch: p.one_build_per_branch,
        }
    }
}

#[derive(Default)]
struct Inner {
    queues: BTreeMap<String, VecDeque<JobId>>,
    /// Requirements and project of queued jobs.
    queued: HashMap<JobId, Queued>,
    /// The same of leased jobs, moved here from `queued` when their lease
    /// is stored; an entry whose lease is gone counts for nothing (and is
    /// dropped by the sweep).
    running: HashMap<JobId, Queued>,
    /// The projects with limits on their running jobs.
    rules: HashMap<String, ProjectRules>,
    /// The project served last, for round robin.
    last_served: Option<String>,
    offers: HashMap<JobId, PendingOffer>,
    /// Jobs whose offer a builder accepted, while their lease is stored:
    /// out of `offers`, not yet in `leases`, still holding a slot.
    accepting: HashSet<JobId>,
    /// Builders that refused a job, with the reason each gave: it is not
    /// offered to them again.
    refused: HashMap<JobId, HashMap<String, String>>,
    /// Jobs a builder handed back as an infrastructure error: refused by
    /// it (in `refused`) until this time, then offered to it again.
    handed_back: HashMap<JobId, (String, Millis)>,
    leases: LeaseTable,
    /// Running jobs asked to stop, with the time past which they are
    /// recorded as canceled whatever their builder says.
    canceling: HashMap<JobId, Millis>,
    /// The control node's backstop on each running job's timeout.
    backstops: HashMap<JobId, Millis>,
    sessions: HashMap<String, Session>,
    /// The project, requirements and branch of the job indexed last, for
    /// the next one to share.
    shared: Option<(Arc<str>, Arc<Labels>, Arc<str>)>,
}

impl Inner {
    /// Puts a job known to the index back at the front of its project's
    /// queue (behind the jobs of a higher priority).
    fn requeue_front(&mut self, job: JobId) {
        if let Some(q) = self.queued.get(&job) {
            let (project, priority) = (q.project.to_string(), q.priority);
            self.place(&project, job, priority, true);
        }
    }

    /// Puts a job in its project's queue: among the jobs of its priority,
    /// at the front or the back. Both ends are checked first, so the
    /// common case (every job of one priority) costs no walk.
    fn place(&mut self, project: &str, job: JobId, priority: u8, front: bool) {
        let q = match self.queues.get_mut(project) {
            Some(q) => q,
            None => self.queues.entry(project.to_string()).or_default(),
        };
        let of = |j: &JobId| self.queued.get(j).map_or(0, |q| q.priority);
        let at = if front {
            q.iter().position(|j| of(j) <= priority).unwrap_or(q.len())
        } else {
            q.iter()
                .rposition(|j| of(j) >= priority)
                .map_or(0, |i| i + 1)
        };
        q.insert(at, job);
    }

    /// What the index keeps of a job, sharing the strings of the job
    /// indexed before it where they are the same.
    fn entry_of(&mut self, job: &Job) -> Queued {
        let (project, requires, branch) = match &self.shared {
            Some((p, r, b))
                if **p == *job.project && **r == job.requires && **b == *job.spec.branch =>
            {
                (p.clone(), r.clone(), b.clone())
            }
            Some((p, r, _)) if **p == *job.project && **r == job.requires => {
                (p.clone(), r.clone(), job.spec.branch.as_str().into())
            }
            _ => (
                job.project.as_str().into(),
                Arc::new(job.requires.clone()),
                job.spec.branch.as_str().into(),
            ),
        };
        self.shared = Some((project.clone(), requires.clone(), branch.clone()));
        Queued {
            project,
            requires,
            secrets: needs_secrets(job),
            build: job.build,
            branch,
            priority: job.priority,
        }
    }

    /// Adds a queued job to the index, at the back or the front of its
    /// project's queue (among the jobs of its priority).
    fn index_queued(&mut self, job: &Job, front: bool) {
        let q = self.entry_of(job);
        self.queued.insert(job.id, q);
        self.place(&job.project, job.id, job.priority, front);
    }

    /// The jobs that hold a slot: offered, being accepted, or running.
    fn active(&self) -> impl Iterator<Item = &Queued> {
        let offered = self
            .offers
            .keys()
            .chain(&self.accepting)
            .filter_map(|j| self.queued.get(j));
        let running = self
            .running
            .iter()
            .filter(|(j, _)| self.leases.get(**j).is_some())
            .map(|(_, q)| q);
        offered.chain(running)
    }

    /// What the projects' rules hold back now.
    fn gate(&self) -> pick::Gate<'_> {
        let mut gate = pick::Gate::default();
        if self.rules.is_empty() {
            return gate;
        }
        let mut busy: HashMap<&str, u32> = HashMap::new();
        for q in self.active() {
            let Some(r) = self.rules.get(&*q.project) else {
                continue;
            };
            *busy.entry(&q.project).or_default() += 1;
            if r.one_build_per_branch {
                gate.claim(&q.project, &q.branch, q.build, true);
            }
        }
        for (p, n) in busy {
            if let Some(r) = self.rules.get(p) {
                if r.max_running > 0 && n >= r.max_running {
                    gate.full.insert(p, (r.max_running, n));
                }
            }
        }
        for (p, r) in &self.rules {
            if !r.one_build_per_branch {
                continue;
            }
            for q in self.queues.get(p).into_iter().flatten() {
                if let Some(q) = self.queued.get(q) {
                    gate.claim(&q.project, &q.branch, q.build, false);
                }
            }
        }
        gate
    }
}

pub struct Scheduler {
    pub store: Store,
    pub logs: Arc<LogStore>,
    pub clock: Arc<dyn Clock>,
    pub cfg: Config,
    /// The projects' key pairs, for the encrypted variables of grants.
    pub keys: Arc<crate::secrets::KeyStore>,
    inner: Mutex<Inner>,
    next_conn: std::sync::atomic::AtomicU64,
    /// Leases that expired (`kha_lease_expiries_total`).
    pub lease_expiries: prometheus_client::metrics::counter::Counter,
}

/// What `/metrics` reads of the scheduler at a scrape.
#[derive(Debug, Default)]
pub struct SchedStats {
    pub builders: u32,
    pub free: u32,
    pub busy: u32,
    /// Slots of draining builders.
    pub draining: u32,
    pub running: u32,
    /// Queued jobs (not offered) by the labels they require.
    pub queue_depth: Vec<(String, u64)>,
}

/// Queues a message on a builder's session. A full or closed outbound
/// channel is logged with what was lost; the callers decide what else to do
/// (the protocol's timers cover every message lost this way).
fn send(builder: &str, s: &Session, m: Msg) -> bool {
    let kind = msg_kind(&m);
    match s.tx.try_send(Box::new(ControlMessage { msg: Some(m) })) {
        Ok(()) => true,
        Err(e) => {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "full",
                mpsc::error::TrySendError::Closed(_) => "closed",
            };
            warn!(builder_id = %builder, message = kind, outbound = why, "message to builder not sent");
            false
        }
    }
}

fn msg_kind(m: &Msg) -> &'static str {
    match m {
        Msg::Welcome(_) => "welcome",
        Msg::Offer(_) => "offer",
        Msg::Granted(_) => "granted",
        Msg::HeartbeatAck(_) => "heartbeat-ack",
        Msg::Cancel(_) => "cancel",
        Msg::Drain(_) => "drain",
        Msg::Disconnect(_) => "disconnect",
        Msg::Revoke(_) => "revoke",
    }
}

/// Tells a builder to go (and when to come back), and ends its stream
/// either way.
fn goodbye(builder: &str, s: &Session, reconnect_after_ms: u64, reason: &str) {
    let told = send(
        builder,
        s,
        Msg::Disconnect(agent::Disconnect {
            reconnect_after_ms,
            reason: reason.into(),
        }),
    );
    if !told {
        info!(builder_id = %builder, reason, "closing the session without a goodbye");
    }
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
                inner.index_queued(&job, false);
            }
        }
        for l in store.leases()? {
            if let Some(job) = store.get_job(l.job)? {
                let entry = inner.entry_of(&job);
                inner.running.insert(l.job, entry);
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
        for p in store.list_projects()? {
            let rules = ProjectRules::of(&p);
            if rules != ProjectRules::default() {
                inner.rules.insert(p.name, rules);
            }
        }
        info!(
            queued = inner.queued.len(),
            leases = inner.leases.len(),
            "scheduler state loaded"
        );
        let keys = Arc::new(crate::secrets::KeyStore::new(&cfg.data_dir));
        Ok(Arc::new(Scheduler {
            store,
            logs,
            clock,
            keys,
            cfg,
            inner: Mutex::new(inner),
            next_conn: std::sync::atomic::AtomicU64::new(1),
            lease_expiries: Default::default(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queue and the builders as `/metrics` shows them.
    pub fn stats(&self) -> SchedStats {
        let inner = self.lock();
        let mut s = SchedStats {
            builders: inner.sessions.len() as u32,
            running: inner.leases.len() as u32,
            ..SchedStats::default()
        };
        for b in inner.sessions.values() {
            if b.draining {
                s.draining += b.slots;
            } else {
                s.free += b.free;
                s.busy += b.slots.saturating_sub(b.free);
            }
        }
        // Jobs of one label set share their `requires` (see `entry_of`):
        // counted by pointer, named once per set.
        let mut by: HashMap<*const Labels, (u64, &Labels)> = HashMap::new();
        for q in inner
            .queues
            .values()
            .flatten()
            .filter_map(|j| inner.queued.get(j))
        {
            by.entry(Arc::as_ptr(&q.requires))
                .or_insert((0, &q.requires))
                .0 += 1;
        }
        let mut named: BTreeMap<String, u64> = BTreeMap::new();
        for (n, labels) in by.into_values() {
            *named.entry(labels.to_string()).or_default() += n;
        }
        s.queue_depth = named.into_iter().collect();
        s
    }

    /// Sets a project's rules for its running jobs (none: the default)
    /// and offers what they now let through.
    pub fn set_rules(&self, project: &str, rules: ProjectRules) {
        {
            let mut inner = self.lock();
            if rules == ProjectRules::default() {
                inner.rules.remove(project);
            } else {
                inner.rules.insert(project.to_string(), rules);
            }
        }
        self.dispatch();
    }

    /// Gives queued jobs a new priority (their records already have it):
    /// each moves to the back of the jobs of that priority in its queue.
    pub fn reprioritize(&self, jobs: &[JobId], priority: u8) {
        {
            let mut inner = self.lock();
            for &job in jobs {
                let Some(q) = inner.queued.get_mut(&job) else {
                    continue;
                };
                q.priority = priority;
                let project = q.project.to_string();
                let Some(queue) = inner.queues.get_mut(&project) else {
                    // Offered: it keeps its offer.
                    continue;
                };
                let Some(at) = queue.iter().position(|j| *j == job) else {
                    continue;
                };
                queue.remove(at);
                inner.place(&project, job, priority, false);
            }
        }
        self.dispatch();
    }

    /// A job's log is complete: its followers are told, it is compressed,
    /// and when its build is over, the project's retention policy runs
    /// (both in the background).
    fn log_over(&self, job: JobId, build: &crate::store::records::Build) {
        self.logs.finish(job);
        let logs = self.logs.clone();
        let store = self.store.clone();
        let server = self.cfg.logs;
        let (project, over, now) = (
            build.project.clone(),
            build.state.is_final(),
            self.clock.now(),
        );
        tokio::task::spawn_blocking(move || {
            match logs.compress(job) {
                Ok(Some((plain, packed))) => {
                    tracing::debug!(job_id = job, plain, packed, "log compressed")
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(job_id = job, error = %e, "cannot compress the log; it stays as it is")
                }
            }
            if !over {
                return;
            }
            let plan = store
                .get_project(&project)
                .map_err(SchedError::from)
                .and_then(|p| match p {
                    Some(p) => {
                        crate::retention::plan_project(&store, &logs, &p, &server, now, false)
                    }
                    None => Ok(vec![]),
                });
            match plan {
                Ok(plan) => {
                    crate::retention::apply(&logs, &plan);
                }
                Err(e) => {
                    warn!(project = %project, error = %e, "cannot apply the log retention policy")
                }
            }
        });
    }

    /// Sends one message to a builder if it is connected.
    fn send_to(&self, builder: &str, m: Msg) {
        let inner = self.lock();
        match inner.sessions.get(builder) {
            // A lost message is logged by `send`; every message sent this
            // way is backed by a timer (offer expiry, lease, cancel backstop).
            Some(s) => {
                send(builder, s, m);
            }
            None => {
                info!(builder_id = %builder, message = msg_kind(&m), "builder not connected; message not sent")
            }
        }
    }
}

/// When the control node gives up on a running job's own timeout.
fn backstop(job: &Job) -> Millis {
    job.spec.timeout_secs * 1000 + kha_core::limits::TIMEOUT_BACKSTOP_MS
}

#[cfg(test)]
mod tests;

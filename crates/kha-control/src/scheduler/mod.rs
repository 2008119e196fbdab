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
use kha_core::{Clock, Epoch, JobId, Labels, Lease, LeaseTable, Millis};
use kha_proto::agent::{self, control_message::Msg, ControlMessage};
use std::collections::{BTreeMap, HashMap, VecDeque};
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

/// What the index keeps of a queued job.
#[derive(Debug, Clone)]
struct Queued {
    /// Shared with the other jobs indexed with the same project and
    /// requirements (a build's jobs mostly are): 10,000 queued jobs kept a
    /// copy each, 3.6 MiB of the control node's heap.
    project: Arc<str>,
    requires: Arc<Labels>,
    /// It has encrypted variables: only a trusted builder may take it.
    secrets: bool,
}

#[derive(Default)]
struct Inner {
    queues: BTreeMap<String, VecDeque<JobId>>,
    /// Requirements and project of queued jobs.
    queued: HashMap<JobId, Queued>,
    /// The project served last, for round robin.
    last_served: Option<String>,
    offers: HashMap<JobId, PendingOffer>,
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
    /// The project and requirements of the job indexed last, for the next
    /// one to share.
    shared: Option<(Arc<str>, Arc<Labels>)>,
}

impl Inner {
    /// Puts a job known to the index back at the front of its project's
    /// queue.
    fn requeue_front(&mut self, job: JobId) {
        if let Some(q) = self.queued.get(&job) {
            let project = q.project.to_string();
            self.queues.entry(project).or_default().push_front(job);
        }
    }

    /// Adds a queued job to the index, at the back or the front of its
    /// project's queue.
    fn index_queued(&mut self, job: &Job, front: bool) {
        let q = match self.queues.get_mut(&job.project) {
            Some(q) => q,
            None => self.queues.entry(job.project.clone()).or_default(),
        };
        if front {
            q.push_front(job.id);
        } else {
            q.push_back(job.id);
        }
        let (project, requires) = match &self.shared {
            Some((p, r)) if **p == *job.project && **r == job.requires => (p.clone(), r.clone()),
            _ => {
                let s: (Arc<str>, _) =
                    (job.project.as_str().into(), Arc::new(job.requires.clone()));
                self.shared = Some(s.clone());
                s
            }
        };
        self.queued.insert(
            job.id,
            Queued {
                project,
                requires,
                secrets: needs_secrets(job),
            },
        );
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
        let keys = Arc::new(crate::secrets::KeyStore::new(&cfg.data_dir));
        Ok(Arc::new(Scheduler {
            store,
            logs,
            clock,
            keys,
            cfg,
            inner: Mutex::new(inner),
            next_conn: std::sync::atomic::AtomicU64::new(1),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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

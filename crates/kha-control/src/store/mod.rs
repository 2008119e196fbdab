//! The control node's state in sled, one tree per kind, keys big-endian so
//! range scans give order. Every state change is a sled transaction; callers
//! await [`Store::durable`] before acknowledging anything to anyone, and
//! concurrent waiters share one flush (group commit). Job transitions run on
//! the store's writer thread ([`Store::transition_durable`]), batched under
//! one flush.

pub mod dump;
pub mod events;
pub mod gate;
mod jobs;
pub mod logs;
mod marks;
mod outbox;
pub mod records;
mod schedules;
mod stages;
mod users;
mod writer;

use events::EventLog;
use kha_core::event::{Event, EventKind};
use kha_core::{BuildId, JobId, Millis};
use records::{decode, encode, Branch, Builder, EnrolmentToken, Project};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
pub use writer::Durable;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sled(sled::Error),
    #[error("corrupt record in {tree}: {msg}")]
    Corrupt { tree: &'static str, msg: String },
    #[error("{0}")]
    Rejected(String),
    #[error("the database is shutting down")]
    Closed,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e)
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}

/// The exit status of a control node whose database failed to write
/// (`EX_TEMPFAIL`): its supervisor starts it again.
pub const EXIT_STORAGE: i32 = 75;

/// After an I/O error (a full disk, a failing one) sled refuses every
/// later operation of the process with that same error, even once the
/// disk has room again: nothing could be written, no job could finish. A
/// new process recovers the database from its last flush, and everything
/// acknowledged was flushed, so the control node exits for its supervisor
/// (systemd's `Restart=`) to start it again, and says why. Checked on the
/// writer's flushes, which every acknowledged write waits for (not on
/// opening: a database still locked by another process is an error to
/// report, not a reason to exit).
pub fn storage_check(e: &sled::Error) {
    if let sled::Error::Io(io) = e {
        tracing::error!(
            error = %io,
            "the database could not write to disk, and cannot go on in this process: \
             exiting so that a restart recovers it from its last flush (status {EXIT_STORAGE})"
        );
        std::process::exit(EXIT_STORAGE);
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What a job transition does besides changing the job record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEffect {
    Keep,
    Set,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueEffect {
    Keep,
    /// Queue the job under this key (lower keys go first).
    Insert(u64),
    Remove,
}

/// Queue keys: jobs put back after trouble go in front of every normal one.
pub const QUEUE_NORMAL_BASE: u64 = 1 << 63;

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    projects: sled::Tree,
    builds: sled::Tree,
    project_builds: sled::Tree,
    jobs: sled::Tree,
    /// Each build's job marks (`marks`).
    build_marks: sled::Tree,
    queue: sled::Tree,
    leases: sled::Tree,
    builders: sled::Tree,
    tokens: sled::Tree,
    dedup: sled::Tree,
    branches: sled::Tree,
    meta: sled::Tree,
    users: sled::Tree,
    sessions: sled::Tree,
    api_tokens: sled::Tree,
    audit: sled::Tree,
    deliveries: sled::Tree,
    delivery_builds: sled::Tree,
    delivery_due: sled::Tree,
    notify_meta: sled::Tree,
    /// Scheduled builds by id (`schedules`).
    schedules: sled::Tree,
    pub events: Arc<EventLog>,
    /// To the writer thread (`writer`): flushes and durable transitions.
    writer_tx: mpsc::UnboundedSender<writer::Op>,
    /// Tests: every flush fails, as on a disk that refuses writes.
    flush_broken: Arc<AtomicBool>,
    /// Every write passes it; a backup pauses it (`gate`).
    gate: Arc<gate::Gate>,
    /// Added to sled's generated ids: a restored database starts its ids
    /// past those of the one it was copied from (`ID_BASE`).
    id_base: u64,
}

const SCHEMA_VERSION: u64 = 1;
const COUNTER_BUILD: &str = "next_build_id";
const COUNTER_JOB: &str = "next_job_id";
const COUNTER_SCHEDULE: &str = "next_schedule_id";
/// In `meta`: where [`Store::next_id`] starts (set by a restore).
pub(crate) const ID_BASE: &str = "id_base";

pub(super) fn corrupt(tree: &'static str) -> impl Fn(String) -> StoreError {
    move |msg| StoreError::Corrupt { tree, msg }
}

pub(super) fn abort<T>(
    e: StoreError,
) -> std::result::Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(e))
}

pub(super) fn tx_get<T: for<'de> serde::Deserialize<'de>>(
    t: &TransactionalTree,
    tree: &'static str,
    key: &[u8],
) -> std::result::Result<Option<T>, ConflictableTransactionError<StoreError>> {
    match t.get(key)? {
        None => Ok(None),
        Some(v) => match decode(&v) {
            Ok(r) => Ok(Some(r)),
            Err(msg) => abort(StoreError::Corrupt { tree, msg }),
        },
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` and starts its flusher. Must
    /// be called inside a tokio runtime.
    pub fn open(dir: &Path) -> Result<Store> {
        Self::open_with_cache(dir, crate::config::DB_CACHE_MIB << 20)
    }

    /// [`Store::open`], keeping at most about `cache_bytes` of records in
    /// memory (sled's page cache; its default is 1 GiB, which a busy node
    /// fills with every record it ever touched).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Store> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Durability comes from our own group-committed flushes.
            .flush_every_ms(None)
            .open()?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_be_bytes() => {}
            Some(v) => {
                return Err(StoreError::Rejected(format!(
                    "database schema {v:?} is not {SCHEMA_VERSION}: this kha-control cannot read it"
                )))
            }
        }
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let gate = Arc::new(gate::Gate::default());
        let events = Arc::new(EventLog::open(db.open_tree("events")?, gate.clone())?);
        let id_base =
            match meta.get(ID_BASE)? {
                None => 0,
                Some(v) => v.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| {
                    StoreError::Corrupt {
                        tree: "meta",
                        msg: ID_BASE.into(),
                    }
                })?,
            };
        let store = Store {
            projects: db.open_tree("projects")?,
            builds: db.open_tree("builds")?,
            project_builds: db.open_tree("project_builds")?,
            jobs: db.open_tree("jobs")?,
            build_marks: db.open_tree("build_marks")?,
            queue: db.open_tree("queue")?,
            leases: db.open_tree("leases")?,
            builders: db.open_tree("builders")?,
            tokens: db.open_tree("tokens")?,
            dedup: db.open_tree("dedup")?,
            branches: db.open_tree("branches")?,
            users: db.open_tree("users")?,
            sessions: db.open_tree("sessions")?,
            api_tokens: db.open_tree("api_tokens")?,
            audit: db.open_tree("audit")?,
            deliveries: db.open_tree("deliveries")?,
            delivery_builds: db.open_tree("delivery_builds")?,
            delivery_due: db.open_tree("delivery_due")?,
            notify_meta: db.open_tree("notify_meta")?,
            schedules: db.open_tree("schedules")?,
            meta,
            events,
            writer_tx,
            flush_broken: Arc::new(AtomicBool::new(false)),
            gate,
            id_base,
            db,
        };
        store.init_counter(COUNTER_BUILD, &store.builds)?;
        store.init_counter(COUNTER_JOB, &store.jobs)?;
        store.init_counter(COUNTER_SCHEDULE, &store.schedules)?;
        // The writer's handle must not keep its own channel open, or the
        // thread (and the database) would outlive every other handle.
        let mut own = store.clone();
        own.writer_tx = mpsc::unbounded_channel().0;
        writer::spawn(own, writer_rx).map_err(|e| {
            StoreError::Rejected(format!("cannot start the store's writer thread: {e}"))
        })?;
        Ok(store)
    }

    /// Tests: from now on every flush fails, as on a disk that refuses
    /// writes (transitions are still applied, as sled applies them).
    #[cfg(test)]
    pub fn break_flushes(&self) {
        self.flush_broken
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// [`Store::transition`] on the writer thread, answered once it is on
    /// disk: one flush serves every transition and waiter of a batch, and
    /// the async workers never run the transaction. The outer error is the
    /// transition's (nothing written); [`Durable::flushed`] says whether the
    /// flush after it succeeded.
    pub async fn transition_durable<F>(&self, job_id: JobId, now: Millis, f: F) -> Result<Durable>
    where
        F: Fn(&mut records::Job) -> std::result::Result<(LeaseEffect, QueueEffect), StoreError>
            + Send
            + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.writer_tx
            .send(writer::Op::Transition {
                job: job_id,
                now,
                change: Box::new(f),
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The build cache's index (`crate::cache` owns its records).
    pub fn caches_tree(&self) -> Result<sled::Tree> {
        Ok(self.db.open_tree("caches")?)
    }

    /// Waits until everything written before this call is on disk. Callers
    /// that arrive while a flush runs share the next one (`writer`).
    pub async fn durable(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.writer_tx
            .send(writer::Op::Flush(tx))
            .map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Rejected(format!("flush failed: {e}"))),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// A fresh, never reused number for ordering (queue keys): it may jump
    /// after a restart, so it is never shown to anyone.
    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    pub fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()? + 1 + self.id_base)
    }

    /// The next build id: dense (1, 2, 3, …), also across restarts.
    pub fn next_build_id(&self) -> Result<BuildId> {
        self.bump(COUNTER_BUILD)
    }

    /// The next job id: dense, also across restarts.
    pub fn next_job_id(&self) -> Result<JobId> {
        self.bump(COUNTER_JOB)
    }

    fn bump(&self, key: &str) -> Result<u64> {
        let _gate = self.gate.enter();
        let v = self.meta.update_and_fetch(key, |old| {
            let n = old
                .and_then(|o| o.try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        v.and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .ok_or_else(|| StoreError::Corrupt {
                tree: "meta",
                msg: format!("counter {key}"),
            })
    }

    /// Starts an id counter past the ids a database from before the
    /// counters holds (those came from sled's generate_id).
    fn init_counter(&self, key: &str, tree: &sled::Tree) -> Result<()> {
        let _gate = self.gate.enter();
        if self.meta.get(key)?.is_some() {
            return Ok(());
        }
        let max = match tree.last()? {
            Some((k, _)) => k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
        };
        self.meta.insert(key, &max.to_be_bytes())?;
        Ok(())
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    pub fn meta_set(&self, key: &str, value: &[u8]) -> Result<()> {
        let _gate = self.gate.enter();
        self.meta.insert(key, value)?;
        Ok(())
    }

    // ---- projects

    pub fn add_project(&self, p: &Project) -> Result<bool> {
        let _gate = self.gate.enter();
        let r = self.projects.compare_and_swap(
            p.name.as_bytes(),
            None as Option<&[u8]>,
            Some(encode(p)),
        )?;
        Ok(r.is_ok())
    }

    pub fn get_project(&self, name: &str) -> Result<Option<Project>> {
        self.projects
            .get(name)?
            .map(|v| decode(&v).map_err(corrupt("projects")))
            .transpose()
    }

    /// Replaces a project's record (settings changed).
    pub fn put_project(&self, p: &Project) -> Result<()> {
        let _gate = self.gate.enter();
        self.projects.insert(p.name.as_bytes(), encode(p))?;
        Ok(())
    }

    pub fn list_projects(&self) -> Result<Vec<Project>> {
        self.projects
            .iter()
            .values()
            .map(|v| decode(&v?).map_err(corrupt("projects")))
            .collect()
    }

    pub fn remove_project(&self, name: &str) -> Result<bool> {
        let _gate = self.gate.enter();
        Ok(self.projects.remove(name)?.is_some())
    }

    // ---- branches

    pub fn get_branch(&self, project: &str, name: &str) -> Result<Option<Branch>> {
        self.branches
            .get(branch_key(project, name))?
            .map(|v| decode(&v).map_err(corrupt("branches")))
            .transpose()
    }

    /// Writes a branch record, with a `branch_moved` or `branch_deleted`
    /// event when its head moved or it went away.
    pub fn put_branch(&self, project: &str, b: &Branch, now: Millis) -> Result<()> {
        let _gate = self.gate.enter();
        let key = branch_key(project, &b.name);
        let writer = self.events.writer();
        let written = (&self.branches, self.events.tree()).transaction(|(tbr, tev)| {
            let old = tx_get::<Branch>(tbr, "branches", &key)?;
            tbr.insert(key.as_slice(), encode(b))?;
            let kind = match &old {
                _ if b.deleted => {
                    (!old.as_ref().is_some_and(|o| o.deleted)).then_some(EventKind::BranchDeleted)
                }
                Some(o) if o.head == b.head && !o.deleted => None,
                _ => Some(EventKind::BranchMoved),
            };
            let evs: Vec<Event> = kind
                .map(|k| {
                    let mut e = Event::new(k);
                    e.project = project.to_string();
                    e.branch = b.name.clone();
                    e.commit = b.head.clone();
                    e.build_id = b.last_build;
                    e
                })
                .into_iter()
                .collect();
            writer.stage(tev, &evs, now)
        })?;
        writer.committed(written);
        Ok(())
    }

    /// A project's branches and tags, by name.
    pub fn list_branches(&self, project: &str) -> Result<Vec<Branch>> {
        self.branches
            .scan_prefix(project_prefix(project))
            .values()
            .map(|v| decode(&v?).map_err(corrupt("branches")))
            .collect()
    }

    // ---- builders and enrolment tokens

    pub fn put_builder(&self, b: &Builder) -> Result<()> {
        let _gate = self.gate.enter();
        self.builders.insert(b.id.as_bytes(), encode(b))?;
        Ok(())
    }

    /// Records when a builder was last seen, atomically with respect to
    /// other changes of its record.
    pub fn touch_builder(&self, id: &str, now: Millis) -> Result<()> {
        let _gate = self.gate.enter();
        self.builders.fetch_and_update(id, |old| {
            let old = old?;
            match decode::<Builder>(old) {
                Ok(mut b) => {
                    b.last_seen_ms = now;
                    Some(encode(&b))
                }
                Err(_) => Some(old.to_vec()),
            }
        })?;
        Ok(())
    }

    /// Appends an event that changes no record (a builder came or went).
    pub fn record_event(&self, e: Event, now: Millis) -> Result<()> {
        let _gate = self.gate.enter();
        let writer = self.events.writer();
        let written = self
            .events
            .tree()
            .transaction(|tev| writer.stage(tev, std::slice::from_ref(&e), now))?;
        writer.committed(written);
        Ok(())
    }

    /// Writes a builder's record and, in the same transaction, an event
    /// about it.
    pub fn put_builder_with_event(&self, b: &Builder, kind: EventKind, now: Millis) -> Result<()> {
        let _gate = self.gate.enter();
        let mut e = Event::new(kind);
        e.builder = b.id.clone();
        let writer = self.events.writer();
        let written = (&self.builders, self.events.tree()).transaction(|(tbl, tev)| {
            tbl.insert(b.id.as_bytes(), encode(b))?;
            writer.stage(tev, std::slice::from_ref(&e), now)
        })?;
        writer.committed(written);
        Ok(())
    }

    pub fn get_builder(&self, id: &str) -> Result<Option<Builder>> {
        self.builders
            .get(id)?
            .map(|v| decode(&v).map_err(corrupt("builders")))
            .transpose()
    }

    pub fn list_builders(&self) -> Result<Vec<Builder>> {
        self.builders
            .iter()
            .values()
            .map(|v| decode(&v?).map_err(corrupt("builders")))
            .collect()
    }

    pub fn put_token(&self, t: &EnrolmentToken) -> Result<()> {
        let _gate = self.gate.enter();
        self.tokens.insert(t.id.as_bytes(), encode(t))?;
        Ok(())
    }

    pub fn list_tokens(&self) -> Result<Vec<EnrolmentToken>> {
        self.tokens
            .iter()
            .values()
            .map(|v| decode(&v?).map_err(corrupt("tokens")))
            .collect()
    }
}

pub(super) fn project_prefix(project: &str) -> Vec<u8> {
    let mut k = project.as_bytes().to_vec();
    k.push(0);
    k
}

/// Newest first: the build id is stored inverted.
pub(super) fn project_build_key(project: &str, id: BuildId) -> Vec<u8> {
    let mut k = project_prefix(project);
    k.extend_from_slice(&(u64::MAX - id).to_be_bytes());
    k
}

fn branch_key(project: &str, name: &str) -> Vec<u8> {
    let mut k = project_prefix(project);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(super) fn dedup_key(project: &str, branch: &str, commit: &str) -> Vec<u8> {
    [project.as_bytes(), branch.as_bytes(), commit.as_bytes()].join(&0u8)
}

pub type SharedStore = Arc<Store>;

#[cfg(test)]
mod stage_tests;
#[cfg(test)]
mod tests;

//! The control node's state in sled, one tree per kind, keys big-endian so
//! range scans give order. Every state change is a sled transaction; callers
//! await [`Store::durable`] before acknowledging anything to anyone, and
//! concurrent waiters share one flush (group commit).

pub mod logs;
pub mod records;

use kha_core::{BuildId, BuildState, JobId, JobState, Millis};
use records::{decode, encode, Branch, Build, Builder, EnrolmentToken, Job, LeaseRec, Project};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in {tree}: {msg}")]
    Corrupt { tree: &'static str, msg: String },
    #[error("{0}")]
    Rejected(String),
    #[error("the database is shutting down")]
    Closed,
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
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
    queue: sled::Tree,
    leases: sled::Tree,
    builders: sled::Tree,
    tokens: sled::Tree,
    dedup: sled::Tree,
    branches: sled::Tree,
    meta: sled::Tree,
    flush_tx: mpsc::UnboundedSender<oneshot::Sender<std::result::Result<(), String>>>,
}

const SCHEMA_VERSION: u64 = 1;

fn corrupt(tree: &'static str) -> impl Fn(String) -> StoreError {
    move |msg| StoreError::Corrupt { tree, msg }
}

fn abort<T>(e: StoreError) -> std::result::Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_get<T: for<'de> serde::Deserialize<'de>>(
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
        let db = sled::Config::new()
            .path(dir)
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
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let store = Store {
            projects: db.open_tree("projects")?,
            builds: db.open_tree("builds")?,
            project_builds: db.open_tree("project_builds")?,
            jobs: db.open_tree("jobs")?,
            queue: db.open_tree("queue")?,
            leases: db.open_tree("leases")?,
            builders: db.open_tree("builders")?,
            tokens: db.open_tree("tokens")?,
            dedup: db.open_tree("dedup")?,
            branches: db.open_tree("branches")?,
            meta,
            flush_tx,
            db,
        };
        crate::task::spawn("store-flusher", group_commit(store.db.clone(), flush_rx));
        Ok(store)
    }

    /// Waits until everything written before this call is on disk. Callers
    /// that arrive while a flush runs share the next one.
    pub async fn durable(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.flush_tx.send(tx).map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Rejected(format!("flush failed: {e}"))),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// A fresh, never reused id.
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()? + 1)
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    pub fn meta_set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.meta.insert(key, value)?;
        Ok(())
    }

    // ---- projects

    pub fn add_project(&self, p: &Project) -> Result<bool> {
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

    pub fn list_projects(&self) -> Result<Vec<Project>> {
        self.projects
            .iter()
            .values()
            .map(|v| decode(&v?).map_err(corrupt("projects")))
            .collect()
    }

    pub fn remove_project(&self, name: &str) -> Result<bool> {
        Ok(self.projects.remove(name)?.is_some())
    }

    // ---- branches

    pub fn get_branch(&self, project: &str, name: &str) -> Result<Option<Branch>> {
        self.branches
            .get(branch_key(project, name))?
            .map(|v| decode(&v).map_err(corrupt("branches")))
            .transpose()
    }

    pub fn put_branch(&self, project: &str, b: &Branch) -> Result<()> {
        self.branches
            .insert(branch_key(project, &b.name), encode(b))?;
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

    // ---- builds and jobs

    /// Looks up an earlier build of the same project, branch and commit.
    pub fn find_dedup(&self, project: &str, branch: &str, commit: &str) -> Result<Option<BuildId>> {
        Ok(self
            .dedup
            .get(dedup_key(project, branch, commit))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Writes a new build and its jobs, queueing every job still `Queued`,
    /// in one transaction.
    pub fn create_build(&self, build: &Build, jobs: &[Job]) -> Result<()> {
        let pb_key = project_build_key(&build.project, build.id);
        let dd_key = dedup_key(&build.project, &build.branch, &build.commit);
        (
            &self.builds,
            &self.jobs,
            &self.queue,
            &self.project_builds,
            &self.dedup,
        )
            .transaction(|(tb, tj, tq, tpb, tdd)| {
                tb.insert(&build.id.to_be_bytes(), encode(build))?;
                for j in jobs {
                    tj.insert(&j.id.to_be_bytes(), encode(j))?;
                    if j.state == JobState::Queued && j.queue_key != 0 {
                        tq.insert(&j.queue_key.to_be_bytes(), &j.id.to_be_bytes())?;
                    }
                }
                tpb.insert(pb_key.as_slice(), &[])?;
                tdd.insert(dd_key.as_slice(), &build.id.to_be_bytes())?;
                Ok(())
            })?;
        Ok(())
    }

    pub fn get_build(&self, id: BuildId) -> Result<Option<Build>> {
        self.builds
            .get(id.to_be_bytes())?
            .map(|v| decode(&v).map_err(corrupt("builds")))
            .transpose()
    }

    pub fn put_build(&self, b: &Build) -> Result<()> {
        self.builds.insert(b.id.to_be_bytes(), encode(b))?;
        Ok(())
    }

    pub fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.jobs
            .get(id.to_be_bytes())?
            .map(|v| decode(&v).map_err(corrupt("jobs")))
            .transpose()
    }

    /// A project's builds (of one branch, if given), newest first: page
    /// `page` (1-based) of `per_page`, and how many there are in all.
    pub fn list_builds(
        &self,
        project: &str,
        branch: Option<&str>,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<Build>, u64)> {
        let skip = (page.max(1) as usize - 1) * per_page as usize;
        let mut total = 0u64;
        let mut out = Vec::new();
        for id in self.project_build_ids(project) {
            let id = id?;
            let wanted = total as usize >= skip && out.len() < per_page as usize;
            if branch.is_none() && !wanted {
                total += 1;
                continue;
            }
            let Some(b) = self.get_build(id)? else {
                continue;
            };
            if branch.is_some_and(|br| br != b.branch) {
                continue;
            }
            if wanted {
                out.push(b);
            }
            total += 1;
        }
        Ok((out, total))
    }

    /// A project's build ids, newest first.
    pub fn project_build_ids(&self, project: &str) -> impl Iterator<Item = Result<BuildId>> {
        let prefix = project_prefix(project);
        let n = prefix.len();
        self.project_builds
            .scan_prefix(&prefix)
            .keys()
            .map(move |k| {
                let k = k?;
                let inv: [u8; 8] = k[n..].try_into().map_err(|_| StoreError::Corrupt {
                    tree: "project_builds",
                    msg: "bad key".into(),
                })?;
                Ok(u64::MAX - u64::from_be_bytes(inv))
            })
    }

    /// Applies `f` to a job and, in the same transaction, the lease and
    /// queue effects it returns and the build's derived state. Returns the
    /// job and build as written. `f` may run more than once (on conflict).
    pub fn transition<F>(&self, job_id: JobId, now: Millis, f: F) -> Result<(Job, Build)>
    where
        F: Fn(&mut Job) -> std::result::Result<(LeaseEffect, QueueEffect), StoreError>,
    {
        let r = (&self.jobs, &self.builds, &self.queue, &self.leases).transaction(
            |(tj, tb, tq, tl)| {
                let key = job_id.to_be_bytes();
                let Some(mut job) = tx_get::<Job>(tj, "jobs", &key)? else {
                    return abort(StoreError::Rejected(format!("job {job_id} does not exist")));
                };
                let (lease, queue) = match f(&mut job) {
                    Ok(x) => x,
                    Err(e) => return abort(e),
                };
                match lease {
                    LeaseEffect::Keep => {}
                    LeaseEffect::Set => {
                        let rec = LeaseRec {
                            job: job.id,
                            epoch: job.epoch,
                            builder: job.builder.clone(),
                        };
                        tl.insert(&key, encode(&rec))?;
                    }
                    LeaseEffect::Remove => {
                        tl.remove(&key)?;
                    }
                }
                match queue {
                    QueueEffect::Keep => {}
                    QueueEffect::Insert(q) => {
                        if job.queue_key != 0 {
                            tq.remove(&job.queue_key.to_be_bytes())?;
                        }
                        job.queue_key = q;
                        tq.insert(&q.to_be_bytes(), &key)?;
                    }
                    QueueEffect::Remove => {
                        if job.queue_key != 0 {
                            tq.remove(&job.queue_key.to_be_bytes())?;
                        }
                        job.queue_key = 0;
                    }
                }
                tj.insert(&key, encode(&job))?;
                let bkey = job.build.to_be_bytes();
                let Some(mut build) = tx_get::<Build>(tb, "builds", &bkey)? else {
                    return abort(StoreError::Rejected(format!(
                        "build {} of job {job_id} does not exist",
                        job.build
                    )));
                };
                let mut states = Vec::with_capacity(build.jobs.len());
                for &jid in &build.jobs {
                    if jid == job.id {
                        states.push((job.state, job.allow_failure));
                    } else if let Some(j) =
                        tx_get::<records::JobStateOnly>(tj, "jobs", &jid.to_be_bytes())?
                    {
                        states.push((j.state, j.allow_failure));
                    }
                }
                let state = BuildState::derive_with(&states, build.fast_finish);
                if state != build.state {
                    build.state = state;
                    build.finished_ms = if state.is_final() { now } else { 0 };
                    tb.insert(&bkey, encode(&build))?;
                }
                Ok((job, build))
            },
        )?;
        Ok(r)
    }

    /// Queued jobs in queue order.
    pub fn queued_jobs(&self) -> Result<Vec<(u64, JobId)>> {
        self.queue
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let k: [u8; 8] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: "queue",
                    msg: "bad key".into(),
                })?;
                let v: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: "queue",
                    msg: "bad value".into(),
                })?;
                Ok((u64::from_be_bytes(k), u64::from_be_bytes(v)))
            })
            .collect()
    }

    pub fn leases(&self) -> Result<Vec<LeaseRec>> {
        self.leases
            .iter()
            .values()
            .map(|v| decode(&v?).map_err(corrupt("leases")))
            .collect()
    }

    // ---- builders and enrolment tokens

    pub fn put_builder(&self, b: &Builder) -> Result<()> {
        self.builders.insert(b.id.as_bytes(), encode(b))?;
        Ok(())
    }

    /// Records when a builder was last seen, atomically with respect to
    /// other changes of its record.
    pub fn touch_builder(&self, id: &str, now: Millis) -> Result<()> {
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

/// One flush serves every waiter that arrived before it started.
async fn group_commit(
    db: sled::Db,
    mut rx: mpsc::UnboundedReceiver<oneshot::Sender<std::result::Result<(), String>>>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let db2 = db.clone();
        let r = match tokio::task::spawn_blocking(move || db2.flush()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        for w in waiters {
            let _ = w.send(r.clone());
        }
    }
}

fn project_prefix(project: &str) -> Vec<u8> {
    let mut k = project.as_bytes().to_vec();
    k.push(0);
    k
}

/// Newest first: the build id is stored inverted.
fn project_build_key(project: &str, id: BuildId) -> Vec<u8> {
    let mut k = project_prefix(project);
    k.extend_from_slice(&(u64::MAX - id).to_be_bytes());
    k
}

fn branch_key(project: &str, name: &str) -> Vec<u8> {
    let mut k = project_prefix(project);
    k.extend_from_slice(name.as_bytes());
    k
}

fn dedup_key(project: &str, branch: &str, commit: &str) -> Vec<u8> {
    [project.as_bytes(), branch.as_bytes(), commit.as_bytes()].join(&0u8)
}

pub type SharedStore = Arc<Store>;

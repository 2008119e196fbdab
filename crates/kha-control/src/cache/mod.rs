//! The build cache, kept on the control node: one gzip'd tar per
//! (project, group, slug) under `<data>/cache/<project>/`, indexed in the
//! sled tree `caches`.
//!
//! Why here: builders run on contributed machines anywhere and talk only
//! gRPC to the control node, so the control node is the one place every
//! builder of a project can reach; a shared store (S3, NFS) would be a
//! second service to run and to give every builder credentials for.
//! Archives travel on their own streams (`FetchCache`, `PushCache`), so
//! they never hold up a session, and are checked against the job's lease
//! like logs.
//!
//! The rules (groups, fallback order, LRU eviction) are kha-core's
//! (`kha_core::cache`); this module is their storage. `transfer.rs` is the
//! job-scoped side builders call.

pub mod transfer;

pub use transfer::{fetch_for_job, Incoming, PushOutcome};

use crate::store::{Store, StoreError};
use kha_core::cache::{evict, Held};
use kha_core::Millis;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `[cache]` in control.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Largest archive (compressed bytes) a job may store; a bigger one is
    /// refused with a line in the job's log, and the job goes on.
    pub max_archive_bytes: u64,
    /// Most bytes of archives one project keeps; past it, the least
    /// recently used go.
    pub max_project_bytes: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_archive_bytes: kha_core::limits::DEFAULT_CACHE_MAX_ARCHIVE_BYTES,
            max_project_bytes: kha_core::limits::DEFAULT_CACHE_MAX_PROJECT_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cache i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt cache record: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for CacheError {
    fn from(e: sled::Error) -> Self {
        CacheError::Store(e.into())
    }
}

/// One stored archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archive {
    pub project: String,
    /// The branch or tag it was stored by, or `PR.N`.
    pub group: String,
    pub slug: String,
    pub size: u64,
    /// SHA-256 of the tar's contents without modification times.
    pub fingerprint: String,
    /// SHA-256 of the stored (compressed) bytes.
    pub sha256: String,
    /// File name under `<data>/cache/<project>/`.
    pub file: String,
    pub created_ms: Millis,
    pub used_ms: Millis,
}

pub struct CacheStore {
    dir: PathBuf,
    index: sled::Tree,
    store: Store,
    pub settings: CacheSettings,
    /// Serialises the commit of a new archive (rename, index, eviction),
    /// so two jobs storing the same key leave one consistent record.
    commit: tokio::sync::Mutex<()>,
    seq: AtomicU64,
}

fn key(project: &str, group: &str, slug: &str) -> Vec<u8> {
    format!("{project}\0{group}\0{slug}").into_bytes()
}

fn decode(v: &[u8]) -> Result<Archive, CacheError> {
    serde_json::from_slice(v).map_err(|e| CacheError::Corrupt(e.to_string()))
}

impl CacheStore {
    pub fn open(
        dir: PathBuf,
        store: &Store,
        settings: CacheSettings,
    ) -> Result<CacheStore, CacheError> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        // Partial uploads of an earlier life are of no use.
        for e in std::fs::read_dir(dir.join("tmp"))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        Ok(CacheStore {
            index: store.caches_tree()?,
            store: store.clone(),
            dir,
            settings,
            commit: tokio::sync::Mutex::new(()),
            seq: AtomicU64::new(0),
        })
    }

    fn path(&self, a: &Archive) -> PathBuf {
        self.dir.join(&a.project).join(&a.file)
    }

    /// A fresh path for an upload in progress.
    pub(crate) fn temp_path(&self) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("tmp")
            .join(format!("{}-{n}.part", std::process::id()))
    }

    /// The project's archives, by group then slug.
    pub fn list(&self, project: &str) -> Result<Vec<Archive>, CacheError> {
        let mut out = Vec::new();
        for kv in self.index.scan_prefix(format!("{project}\0").as_bytes()) {
            out.push(decode(&kv?.1)?);
        }
        Ok(out)
    }

    /// The first of `groups` holding an archive for `slug`, marked used.
    pub fn find(
        &self,
        project: &str,
        groups: &[String],
        slug: &str,
        now: Millis,
    ) -> Result<Option<(Archive, std::fs::File)>, CacheError> {
        for g in groups {
            let k = key(project, g, slug);
            let Some(v) = self.index.get(&k)? else {
                continue;
            };
            let mut a = decode(&v)?;
            let file = match std::fs::File::open(self.path(&a)) {
                Ok(f) => f,
                // Its file is gone (removed by hand): forget it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.index.remove(&k)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            a.used_ms = now;
            // Only if the entry is still the one read: a commit that
            // replaced it meanwhile (and removed this file, which stays
            // readable through `file`) must not be undone.
            let used = serde_json::to_vec(&a).map_err(|e| CacheError::Corrupt(e.to_string()))?;
            let _ = self.index.compare_and_swap(&k, Some(&v), Some(used))?;
            return Ok(Some((a, file)));
        }
        Ok(None)
    }

    /// Makes the upload at `temp` the archive of its key, replacing the
    /// one there, then removes the project's least recently used archives
    /// past `max_project_bytes`. Returns how many were evicted.
    pub(crate) async fn commit(&self, temp: &Path, mut a: Archive) -> Result<usize, CacheError> {
        let _guard = self.commit.lock().await;
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        a.file = format!(
            "{}-{}-{n}.tgz",
            &a.sha256[..a.sha256.len().min(16)],
            a.created_ms
        );
        std::fs::create_dir_all(self.dir.join(&a.project))?;
        std::fs::rename(temp, self.path(&a))?;
        let k = key(&a.project, &a.group, &a.slug);
        let bytes = serde_json::to_vec(&a).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        if let Some(old) = self.index.insert(&k, bytes)? {
            let old = decode(&old)?;
            self.remove_file(&old);
        }
        let held = self.list(&a.project)?;
        let keep = held
            .iter()
            .position(|h| h.group == a.group && h.slug == a.slug);
        let sizes: Vec<Held> = held
            .iter()
            .map(|h| Held {
                size: h.size,
                used_ms: h.used_ms,
            })
            .collect();
        let gone = evict(&sizes, self.settings.max_project_bytes, keep);
        for i in &gone {
            let h = &held[*i];
            self.index.remove(key(&h.project, &h.group, &h.slug))?;
            self.remove_file(h);
            tracing::info!(project = %h.project, group = %h.group, slug = %h.slug, size = h.size, "cache archive evicted (least recently used)");
        }
        self.store.durable().await?;
        Ok(gone.len())
    }

    /// Removes the project's archives (only `group`'s when given).
    /// Returns how many and their bytes.
    pub async fn clear(
        &self,
        project: &str,
        group: Option<&str>,
    ) -> Result<(usize, u64), CacheError> {
        let _guard = self.commit.lock().await;
        let (mut n, mut bytes) = (0, 0);
        for a in self.list(project)? {
            if group.is_some_and(|g| g != a.group) {
                continue;
            }
            self.index.remove(key(&a.project, &a.group, &a.slug))?;
            self.remove_file(&a);
            n += 1;
            bytes += a.size;
        }
        self.store.durable().await?;
        Ok((n, bytes))
    }

    fn remove_file(&self, a: &Archive) {
        match std::fs::remove_file(self.path(a)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(project = %a.project, file = %a.file, error = %e, "cannot remove a cache archive");
            }
            _ => {}
        }
    }
}

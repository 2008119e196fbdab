//! What a builder does with the cache for a job it holds the lease of:
//! fetch the archive Travis's fallback order finds ([`fetch_for_job`]),
//! and store a new one ([`Incoming`]: begun with the archive's header,
//! written chunk by chunk to a temporary file while it is hashed, checked
//! against the header and committed).

use super::{Archive, CacheError};
use crate::app::App;
use kha_core::cache::{fetch_groups, push_group};
use kha_core::{Epoch, JobId};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The caller does not hold the job's lease (any more).
    #[error("{0}")]
    Lease(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl From<std::io::Error> for TransferError {
    fn from(e: std::io::Error) -> Self {
        TransferError::Cache(CacheError::Io(e))
    }
}

impl From<crate::store::StoreError> for TransferError {
    fn from(e: crate::store::StoreError) -> Self {
        TransferError::Cache(CacheError::Store(e))
    }
}

/// A job's place in the cache: its project, where it looks, where it
/// stores.
struct Scope {
    project: String,
    slug: String,
    fetch: Vec<String>,
    push: String,
}

fn scope(app: &App, builder: &str, job_id: JobId, epoch: Epoch) -> Result<Scope, TransferError> {
    app.sched
        .check_lease(builder, job_id, epoch)
        .map_err(|e| TransferError::Lease(e.to_string()))?;
    let job = app
        .store
        .get_job(job_id)?
        .ok_or_else(|| TransferError::Lease(format!("job {job_id} does not exist")))?;
    let Some(cache) = job.spec.cache.as_ref() else {
        return Err(TransferError::Invalid(format!(
            "job {job_id} caches nothing (its .travis.yml has no cache:)"
        )));
    };
    let build = app
        .store
        .get_build(job.build)?
        .ok_or_else(|| TransferError::Invalid(format!("build {} does not exist", job.build)))?;
    let default_branch = app
        .store
        .get_project(&job.project)?
        .map(|p| p.default_branch)
        .unwrap_or_default();
    Ok(Scope {
        fetch: fetch_groups(&build.branch, build.pr_number, &default_branch),
        push: push_group(&build.branch, build.pr_number),
        project: job.project,
        slug: cache.slug.clone(),
    })
}

/// The archive the job should restore, opened, if there is one.
pub fn fetch_for_job(
    app: &App,
    builder: &str,
    job_id: JobId,
    epoch: Epoch,
) -> Result<Option<(Archive, std::fs::File)>, TransferError> {
    let s = scope(app, builder, job_id, epoch)?;
    Ok(app
        .caches
        .find(&s.project, &s.fetch, &s.slug, app.clock.now())?)
}

/// What became of a pushed archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Stored { evicted: usize },
    TooLarge { size: u64, max: u64 },
}

/// An upload in progress; its temporary file goes if it is dropped
/// before [`Incoming::finish`].
pub struct Incoming {
    archive: Archive,
    temp: PathBuf,
    file: Option<std::fs::File>,
    hasher: Sha256,
    received: u64,
}

impl Incoming {
    /// Starts storing the archive `header` describes, or says it is too
    /// large before a byte is sent.
    pub fn begin(
        app: &App,
        builder: &str,
        header: &kha_proto::agent::CacheArchive,
    ) -> Result<Result<Incoming, PushOutcome>, TransferError> {
        let s = scope(app, builder, header.job_id, header.epoch)?;
        let max = app.caches.settings.max_archive_bytes;
        if header.size > max {
            return Ok(Err(PushOutcome::TooLarge {
                size: header.size,
                max,
            }));
        }
        if header.sha256.len() != 64 || !header.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TransferError::Invalid(
                "sha256 must be 64 hex digits".into(),
            ));
        }
        let temp = app.caches.temp_path();
        let file = std::fs::File::create(&temp)?;
        let now = app.clock.now();
        Ok(Ok(Incoming {
            archive: Archive {
                project: s.project,
                group: s.push,
                slug: s.slug,
                size: header.size,
                fingerprint: header.fingerprint.clone(),
                sha256: header.sha256.to_ascii_lowercase(),
                file: String::new(),
                created_ms: now,
                used_ms: now,
            },
            temp,
            file: Some(file),
            hasher: Sha256::new(),
            received: 0,
        }))
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), TransferError> {
        self.received += data.len() as u64;
        if self.received > self.archive.size {
            return Err(TransferError::Invalid(format!(
                "more bytes than the {} the archive's header announced",
                self.archive.size
            )));
        }
        self.hasher.update(data);
        if let Some(f) = self.file.as_mut() {
            f.write_all(data)?;
        }
        Ok(())
    }

    /// Checks length and hash, then stores the archive.
    pub async fn finish(mut self, app: &App) -> Result<PushOutcome, TransferError> {
        if self.received != self.archive.size {
            return Err(TransferError::Invalid(format!(
                "the archive ended after {} of {} bytes",
                self.received, self.archive.size
            )));
        }
        let sha = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if sha != self.archive.sha256 {
            return Err(TransferError::Invalid(
                "the archive's SHA-256 does not match its header".into(),
            ));
        }
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        let evicted = app.caches.commit(&self.temp, self.archive.clone()).await?;
        tracing::info!(project = %self.archive.project, group = %self.archive.group, slug = %self.archive.slug, size = self.archive.size, "cache archive stored");
        Ok(PushOutcome::Stored { evicted })
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // After a commit the file was renamed away: nothing to remove.
        let _ = std::fs::remove_file(&self.temp);
    }
}

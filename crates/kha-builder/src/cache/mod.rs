//! The build cache on the builder: the archive the control node has for
//! a job is fetched into the workspace before the run (`FetchCache`), the
//! driver unpacks it in the container before `before_install` and packs
//! the cached directories again after `script` and `before_cache`
//! (`crate::driver`), and the new archive is sent back (`PushCache`) when
//! its fingerprint differs from the restored one. Nothing here fails a
//! job: every trouble is a line in its log, as on Travis ("the failure to
//! upload the cache does not mark the job a failure").

pub mod archive;
pub mod shell;

use crate::AgentClient;
use kha_proto::agent::{cache_chunk, CacheArchive, CacheChunk, CacheRequest, CacheStoreResult};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio_stream::StreamExt;

/// Where the cache's files live in the workspace (the container sees the
/// workspace at `/workspace`).
pub const DIR: &str = ".kha/cache";
/// The archive to unpack before `before_install` (uncompressed).
pub const RESTORE: &str = "restore.tar";
/// The archive the driver packs after `before_cache`.
pub const SAVE: &str = "save.tar";
/// Written by the driver once `SAVE` is complete.
pub const SAVED: &str = "saved";

/// One job's dealings with the cache.
pub struct JobCache {
    pub client: AgentClient,
    pub job_id: u64,
    pub epoch: u64,
    /// `<workspace>/.kha/cache`.
    pub dir: PathBuf,
}

/// What a restore came to: the restored archive's fingerprint, and the
/// line for the job's log.
pub struct Restored {
    pub fingerprint: Option<String>,
    pub note: String,
}

impl JobCache {
    pub fn new(client: AgentClient, job_id: u64, epoch: u64, workspace: &Path) -> JobCache {
        JobCache {
            client,
            job_id,
            epoch,
            dir: workspace.join(DIR),
        }
    }

    /// Makes a fresh `.kha/cache` directory: the checkout decides what is
    /// in the workspace, and a `.kha` or `.kha/cache` of its own that is a
    /// symbolic link would send the builder's writes elsewhere on the host.
    fn fresh_dir(&self) -> std::io::Result<()> {
        let kha = self.dir.parent().unwrap_or(&self.dir);
        let meta = std::fs::symlink_metadata(kha)?;
        if !meta.is_dir() {
            return Err(std::io::Error::other(
                ".kha in the workspace is not a directory",
            ));
        }
        crate::remove_dir(&self.dir)?;
        std::fs::create_dir(&self.dir)
    }

    /// Fetches the job's archive and leaves it, uncompressed, at
    /// `.kha/cache/restore.tar` for the driver.
    pub async fn restore(&self) -> Restored {
        match self.fetch().await {
            Ok(Some((group, size, fp))) => Restored {
                fingerprint: Some(fp),
                note: format!("cache: restoring the archive of {group} ({size} bytes)"),
            },
            Ok(None) => Restored {
                fingerprint: None,
                note: "cache: no archive for this job yet".into(),
            },
            Err(e) => Restored {
                fingerprint: None,
                note: format!("cache: cannot fetch the archive ({e}); going on without it"),
            },
        }
    }

    /// (group, size, fingerprint) of the archive fetched, if any.
    async fn fetch(&self) -> Result<Option<(String, u64, String)>, String> {
        self.fresh_dir().map_err(|e| e.to_string())?;
        let req = CacheRequest {
            job_id: self.job_id,
            epoch: self.epoch,
        };
        let mut stream = self
            .client
            .clone()
            .fetch_cache(req)
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let header = match stream.next().await {
            None => return Ok(None),
            Some(Err(s)) => return Err(s.message().to_string()),
            Some(Ok(CacheChunk {
                part: Some(cache_chunk::Part::Archive(a)),
            })) => a,
            Some(Ok(_)) => return Err("the answer does not start with the archive's header".into()),
        };
        let gz = self.dir.join("restore.tgz");
        let mut file = std::fs::File::create(&gz).map_err(|e| e.to_string())?;
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        let mut got: u64 = 0;
        while let Some(m) = stream.next().await {
            let m = m.map_err(|s| s.message().to_string())?;
            let Some(cache_chunk::Part::Data(d)) = m.part else {
                return Err("a second header in the archive".into());
            };
            got += d.len() as u64;
            if got > header.size {
                return Err("more bytes than announced".into());
            }
            sha2::Digest::update(&mut h, &d);
            file.write_all(&d).map_err(|e| e.to_string())?;
        }
        drop(file);
        if got != header.size || hex::encode(sha2::Digest::finalize(h)) != header.sha256 {
            return Err("the archive arrived incomplete or damaged".into());
        }
        let tar = self.dir.join(RESTORE);
        let fp = tokio::task::spawn_blocking(move || {
            archive::decompress(&gz, &tar)?;
            std::fs::remove_file(&gz)?;
            archive::fingerprint(std::fs::File::open(&tar)?)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok(Some((header.group, header.size, fp)))
    }

    /// Sends the archive the driver packed, if it did and it changed.
    /// Returns the line for the job's log, if there is one to say.
    pub async fn save(&self, restored: Option<&str>, max_bytes: u64) -> Option<String> {
        let tar = self.dir.join(SAVE);
        // The job could have replaced the directories by symbolic links
        // into the host: only real ones count.
        let kha = self.dir.parent().unwrap_or(&self.dir);
        if !real_dir(kha) || !real_dir(&self.dir) || !regular_file(&self.dir.join(SAVED)) {
            return None;
        }
        if !regular_file(&tar) {
            return Some("cache: the archive is not a regular file; not stored".into());
        }
        let (gz, restored) = (self.dir.join("save.tgz"), restored.map(str::to_string));
        let packed = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let fp = archive::fingerprint(crate::open_regular(&tar)?)?;
            if restored.as_deref() == Some(fp.as_str()) {
                return Ok(None);
            }
            let (size, sha) = archive::compress(crate::open_regular(&tar)?, &gz)?;
            Ok(Some((fp, size, sha)))
        })
        .await;
        let (fp, size, sha) = match packed {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => return Some("cache: unchanged; not stored again".into()),
            Ok(Err(e)) => return Some(format!("cache: cannot read the archive ({e}); not stored")),
            Err(e) => return Some(format!("cache: cannot read the archive ({e}); not stored")),
        };
        if size > max_bytes {
            return Some(format!(
                "cache: the archive is {size} bytes, over the limit of {max_bytes} bytes; not stored"
            ));
        }
        let header = CacheArchive {
            job_id: self.job_id,
            epoch: self.epoch,
            group: String::new(),
            size,
            fingerprint: fp,
            sha256: sha,
        };
        match self.push(header, self.dir.join("save.tgz")).await {
            Ok((CacheStoreResult::Stored, _)) => {
                Some(format!("cache: stored the archive ({size} bytes)"))
            }
            Ok((_, detail)) => Some(format!("cache: {detail}")),
            Err(e) => Some(format!("cache: cannot store the archive ({e})")),
        }
    }

    async fn push(
        &self,
        header: CacheArchive,
        gz: PathBuf,
    ) -> Result<(CacheStoreResult, String), String> {
        let (tx, rx) = tokio::sync::mpsc::channel::<CacheChunk>(4);
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Read;
            let first = CacheChunk {
                part: Some(cache_chunk::Part::Archive(header)),
            };
            if tx.blocking_send(first).is_err() {
                return Ok(());
            }
            let mut f = std::fs::File::open(&gz)?;
            let mut buf = vec![0u8; kha_core::limits::MAX_CHUNK_BYTES];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                let m = CacheChunk {
                    part: Some(cache_chunk::Part::Data(buf[..n].to_vec())),
                };
                if tx.blocking_send(m).is_err() {
                    return Ok(());
                }
            }
        });
        let answer = self
            .client
            .clone()
            .push_cache(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        }
        let r = answer.map_err(|s| s.message().to_string())?.into_inner();
        Ok((r.result(), r.detail))
    }
}

fn real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// A regular file at `p` itself, not through a symbolic link.
fn regular_file(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
}

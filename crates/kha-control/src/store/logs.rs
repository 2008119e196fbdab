//! Job logs live beside sled, one append-only file per job: its length is the
//! committed offset. Chunks are appended only at that length, a batch is
//! synced once before it is acknowledged, and live followers are woken
//! through a watch channel per job.
//!
//! A finished job's log is compressed (`{job}.log.zst`, see [`seekable`]):
//! zstd frames of [`seekable::FRAME`] bytes of log each and zstd's seek
//! table, so a range or a tail decompresses only the frames it covers, and
//! `zstd -d` reads the file whole. The compressed file is in place before
//! the plain one goes, so a reader always finds one of them.

use kha_core::logs::{classify_chunk, ChunkAction};
use kha_core::JobId;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What followers see: the committed length and whether the job is over.
pub type LogWatch = watch::Receiver<(u64, bool)>;

struct LiveLog {
    state: watch::Sender<(u64, bool)>,
    /// One writer at a time per job (a builder may reconnect while its old
    /// stream is still draining).
    write: tokio::sync::Mutex<()>,
    /// SHA-256 of the committed bytes and their count, kept as they are
    /// appended, so that the result's check need not read the whole log
    /// back (200 MB: ~0.4 s). None when the log did not start empty in this
    /// process (a restart): `digest` then reads the file.
    hash: Mutex<Option<(u64, Sha256)>>,
}

pub struct LogStore {
    dir: PathBuf,
    /// Hard limit of a stored log: the builder's cap plus room for its
    /// truncation marker.
    hard_cap: u64,
    live: Mutex<HashMap<JobId, Arc<LiveLog>>>,
    /// Held while a compressed log takes the plain one's place, and while
    /// a reset removes a job's files: a job restarted as its last log is
    /// compressed keeps its new log.
    swap: Mutex<()>,
    /// Bytes appended to logs since the control node started.
    ingested: std::sync::atomic::AtomicU64,
}

/// The result of appending a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub committed: u64,
    pub truncated: bool,
    /// A chunk started past the committed end.
    pub gap: bool,
}

impl LogStore {
    pub fn open(dir: PathBuf, cap: u64) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(&dir)?;
        // Compressions a stop cut short: their plain logs are still there
        // (compressed again by the next full retention pass).
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".log.zst.tmp"))
            {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(LogStore {
            dir,
            hard_cap: cap + 4096,
            live: Mutex::new(HashMap::new()),
            swap: Mutex::new(()),
            ingested: Default::default(),
        })
    }

    pub fn path(&self, job: JobId) -> PathBuf {
        self.dir.join(format!("{job}.log"))
    }

    /// Where a job's log is kept once it is compressed.
    pub fn compressed_path(&self, job: JobId) -> PathBuf {
        self.dir.join(format!("{job}.log.zst"))
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The length of a job's log as printed (compressed or not).
    pub fn len(&self, job: JobId) -> u64 {
        match std::fs::metadata(self.path(job)) {
            Ok(m) => m.len(),
            Err(_) => seekable::Table::read(&self.compressed_path(job))
                .map(|t| t.total())
                .unwrap_or(0),
        }
    }

    /// Bytes appended to logs since the control node started.
    pub fn ingested(&self) -> u64 {
        self.ingested.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a job has a log on disk, compressed or not.
    pub fn exists(&self, job: JobId) -> bool {
        self.path(job).exists() || self.compressed_path(job).exists()
    }

    /// Bytes a job's log takes on disk, with its earlier attempts'.
    pub fn disk_bytes(&self, job: JobId) -> u64 {
        let size = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        size(self.path(job))
            + size(self.compressed_path(job))
            + self.attempts(job).iter().map(|(_, n)| n).sum::<u64>()
    }

    /// Compresses a finished job's log in place of the plain one; returns
    /// its length and the compressed file's, or `None` when there is no
    /// plain log (none printed, or compressed already).
    pub fn compress(&self, job: JobId) -> std::io::Result<Option<(u64, u64)>> {
        use std::os::unix::fs::MetadataExt;
        let plain = self.path(job);
        let zst = self.compressed_path(job);
        let tmp = self.dir.join(format!("{job}.log.zst.tmp"));
        let id = |m: std::fs::Metadata| (m.ino(), m.len());
        let before = match std::fs::metadata(&plain) {
            Ok(m) if m.len() == 0 => return Ok(None),
            Ok(m) => id(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let sizes = match seekable::compress(&plain, &tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            r => r?,
        };
        let _swap = self.swap.lock().unwrap_or_else(|p| p.into_inner());
        // Started over meanwhile (a restart): the new log stays.
        if std::fs::metadata(&plain).ok().map(id) != Some(before) || sizes.0 != before.1 {
            std::fs::remove_file(&tmp)?;
            return Ok(None);
        }
        std::fs::rename(&tmp, &zst)?;
        std::fs::remove_file(&plain)?;
        Ok(Some(sizes))
    }

    /// Removes a job's log and its earlier attempts' (the retention
    /// policy); returns the bytes freed.
    pub fn remove(&self, job: JobId) -> std::io::Result<u64> {
        let mut freed = 0;
        let attempts = self.attempts(job);
        let paths = [self.path(job), self.compressed_path(job)]
            .into_iter()
            .chain(attempts.iter().map(|(n, _)| self.attempt_path(job, *n)));
        for p in paths {
            let len = std::fs::metadata(&p).map_or(0, |m| m.len());
            match std::fs::remove_file(&p) {
                Ok(()) => freed += len,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(freed)
    }

    fn live(&self, job: JobId) -> Arc<LiveLog> {
        let mut live = match self.live.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        live.entry(job)
            .or_insert_with(|| {
                let len = self.len(job);
                Arc::new(LiveLog {
                    state: watch::Sender::new((len, false)),
                    write: tokio::sync::Mutex::new(()),
                    hash: Mutex::new((len == 0).then(|| (0, Sha256::new()))),
                })
            })
            .clone()
    }

    /// The committed length of every log still being written.
    pub fn live_lengths(&self) -> Vec<(JobId, u64)> {
        let live = match self.live.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        live.iter()
            .map(|(&job, l)| (job, l.state.borrow().0))
            .collect()
    }

    /// Followers of a job's log. `done` turns true when the job finishes.
    pub fn subscribe(&self, job: JobId) -> LogWatch {
        self.live(job).state.subscribe()
    }

    /// Appends chunks `(offset, data)` at the committed end, syncs once, and
    /// returns the new committed length.
    pub async fn append(
        &self,
        job: JobId,
        chunks: Vec<(u64, Vec<u8>)>,
    ) -> std::io::Result<Appended> {
        let live = self.live(job);
        let _guard = live.write.lock().await;
        let path = self.path(job);
        let hard_cap = self.hard_cap;
        // Safe to take out: appends of one job hold `write`.
        let mut hash = live.hash.lock().ok().and_then(|mut h| h.take());
        let (r, hash) = tokio::task::spawn_blocking(move || {
            let r = (|| -> std::io::Result<Appended> {
                let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
                let mut committed = f.metadata()?.len();
                let mut out = Appended {
                    committed,
                    truncated: false,
                    gap: false,
                };
                let mut wrote = false;
                for (offset, data) in chunks {
                    match classify_chunk(committed, offset, data.len()) {
                        ChunkAction::Duplicate => {}
                        ChunkAction::Gap => {
                            out.gap = true;
                            break;
                        }
                        ChunkAction::Append { skip } => {
                            let room = hard_cap.saturating_sub(committed) as usize;
                            let new = &data[skip..];
                            let take = new.len().min(room);
                            if take < new.len() {
                                out.truncated = true;
                            }
                            if take > 0 {
                                f.write_all(&new[..take])?;
                                if let Some((n, h)) = hash.as_mut() {
                                    if *n == committed {
                                        h.update(&new[..take]);
                                        *n += take as u64;
                                    }
                                }
                                committed += take as u64;
                                wrote = true;
                            }
                        }
                    }
                }
                if wrote {
                    f.sync_data()?;
                }
                out.committed = committed;
                Ok(out)
            })();
            (r, hash)
        })
        .await
        .map_err(std::io::Error::other)?;
        if let Ok(mut h) = live.hash.lock() {
            // Unless a reset started the log over meanwhile.
            if h.is_none() {
                *h = hash;
            }
        }
        let r = r?;
        let before = live.state.borrow().0;
        self.ingested.fetch_add(
            r.committed.saturating_sub(before),
            std::sync::atomic::Ordering::Relaxed,
        );
        live.state.send_modify(|s| s.0 = r.committed);
        Ok(r)
    }

    /// Where the log of a job's earlier attempt `n` (1, 2, …) is kept.
    pub fn attempt_path(&self, job: JobId, n: u32) -> PathBuf {
        self.dir.join(format!("{job}.attempt-{n}.log"))
    }

    /// The kept logs of a job's earlier attempts: their numbers and
    /// lengths, oldest first.
    pub fn attempts(&self, job: JobId) -> Vec<(u32, u64)> {
        (1..)
            .map_while(|n| {
                let len = std::fs::metadata(self.attempt_path(job, n)).ok()?.len();
                Some((n, len))
            })
            .collect()
    }

    /// Empties a job's log: a new attempt starts it over. What a run that
    /// was cut short printed (its builder lost, its lease expired) is kept
    /// as that attempt's log when `keep` is set: it is often what says why.
    /// Without `keep` (a restart), the earlier attempts' logs go too.
    pub fn reset(&self, job: JobId, keep: bool) -> std::io::Result<()> {
        let _swap = self.swap.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path(job);
        let kept = keep && std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) && {
            let n = self.attempts(job).len() as u32 + 1;
            std::fs::rename(&path, self.attempt_path(job, n))?;
            true
        };
        if !kept {
            // A restart starts the job over, its earlier attempts too.
            let earlier = if keep { vec![] } else { self.attempts(job) };
            for p in [path, self.compressed_path(job)]
                .into_iter()
                .chain(earlier.iter().map(|(n, _)| self.attempt_path(job, *n)))
            {
                match std::fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        let live = self.live(job);
        if let Ok(mut h) = live.hash.lock() {
            *h = Some((0, Sha256::new()));
        }
        live.state.send_modify(|s| *s = (0, false));
        Ok(())
    }

    /// Writes a whole log at once (a config error shown as the job's log).
    pub fn write_all(&self, job: JobId, text: &[u8]) -> std::io::Result<()> {
        let mut f = File::create(self.path(job))?;
        f.write_all(text)?;
        f.sync_data()?;
        Ok(())
    }

    /// Marks a job's log complete and wakes its followers.
    pub fn finish(&self, job: JobId) {
        let live = {
            let mut map = match self.live.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            map.remove(&job)
        };
        if let Some(live) = live {
            live.state.send_modify(|s| s.1 = true);
        }
    }

    /// Length and lower-case hex SHA-256 of a job's stored log.
    pub async fn digest(&self, job: JobId) -> std::io::Result<(u64, String)> {
        let path = self.path(job);
        let live = match self.live.lock() {
            Ok(l) => l.get(&job).cloned(),
            Err(p) => p.into_inner().get(&job).cloned(),
        };
        let kept = live.and_then(|l| l.hash.lock().ok().and_then(|h| h.clone()));
        if let Some((n, h)) = kept {
            if n == self.len(job) {
                return Ok((n, hex::encode(h.finalize())));
            }
        }
        let zst = self.compressed_path(job);
        tokio::task::spawn_blocking(move || {
            let mut f: Box<dyn Read> = match File::open(&path) {
                Ok(f) => Box::new(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match seekable::Reader::open(&zst) {
                        Ok(r) => Box::new(r),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Ok((0, hex::encode(Sha256::digest(b""))))
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut len = 0u64;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                len += n as u64;
            }
            Ok((len, hex::encode(h.finalize())))
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Reads up to `max` bytes of a job's log from `offset`.
    pub async fn read(&self, job: JobId, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
        let path = self.path(job);
        let zst = self.compressed_path(job);
        tokio::task::spawn_blocking(move || {
            let mut f = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return match seekable::read_range(&zst, offset, max) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
                        r => r,
                    };
                }
                Err(e) => return Err(e),
            };
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(max.min(1 << 20));
            f.take(max as u64).read_to_end(&mut buf)?;
            Ok(buf)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

pub mod seekable;

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(logs: &LogStore, job: JobId, text: &[u8]) {
        logs.append(job, vec![(0, text.to_vec())]).await.unwrap();
    }

    #[tokio::test]
    async fn a_new_attempt_keeps_the_last_ones_log_and_a_restart_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::open(dir.path().to_path_buf(), 1 << 20).unwrap();
        // Nothing printed yet: nothing to keep.
        logs.reset(7, true).unwrap();
        assert!(logs.attempts(7).is_empty());
        put(&logs, 7, b"first try\n").await;
        logs.reset(7, true).unwrap();
        put(&logs, 7, b"second\n").await;
        logs.reset(7, true).unwrap();
        assert_eq!(logs.attempts(7), [(1, 10), (2, 7)]);
        assert_eq!(
            std::fs::read(logs.attempt_path(7, 1)).unwrap(),
            b"first try\n"
        );
        assert_eq!(std::fs::read(logs.attempt_path(7, 2)).unwrap(), b"second\n");
        assert!(!logs.path(7).exists());
        put(&logs, 7, b"third\n").await;
        assert_eq!(logs.digest(7).await.unwrap().0, 6);
        logs.reset(7, false).unwrap();
        assert!(logs.attempts(7).is_empty());
        assert!(!logs.path(7).exists());
    }
}

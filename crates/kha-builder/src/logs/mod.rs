//! A job's output goes to a spool file on disk first, then to the control
//! node over its own `StreamLogs` stream. The spool holds everything from the
//! last acknowledged byte on, so nothing is lost when the stream or the
//! control node goes away: the shipper reconnects and resends from the
//! control node's committed offset.

use crate::backoff::Backoff;
use crate::AgentClient;
use kha_core::limits::TRUNCATION_MARKER;
use kha_core::mask::Masker;
use kha_core::{Epoch, JobId};
use kha_proto::agent::LogChunk;
use sha2::{Digest, Sha256};
use std::io::{SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// What the shipper watches: bytes written so far, and whether the job's
/// output is complete.
pub type Written = watch::Receiver<(u64, bool)>;

/// The spool writer. Enforces the log cap: past it, a marker is written
/// once and the rest is discarded (the job keeps running).
pub struct Spool {
    file: std::fs::File,
    len: u64,
    cap: u64,
    truncated: bool,
    /// The last byte written was a newline (or nothing was written).
    at_line_start: bool,
    hash: Sha256,
    tx: watch::Sender<(u64, bool)>,
    /// Secret values masked as `[secure]` before anything is written, so
    /// none leaves the builder (`kha_core::mask`).
    masker: Masker,
}

impl Spool {
    pub fn create(path: &std::path::Path, cap: u64) -> std::io::Result<(Spool, Written)> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        let (tx, rx) = watch::channel((0, false));
        Ok((
            Spool {
                file,
                len: 0,
                cap,
                truncated: false,
                at_line_start: true,
                hash: Sha256::new(),
                tx,
                masker: Masker::default(),
            },
            rx,
        ))
    }

    fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)?;
        if let Some(&last) = data.last() {
            self.at_line_start = last == b'\n';
        }
        self.hash.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Masks these values in everything written from now on.
    pub fn mask<V: AsRef<[u8]>>(&mut self, values: impl IntoIterator<Item = V>) {
        self.masker = Masker::new(values);
    }

    /// Appends output (blocking), secret values masked.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.masker.is_empty() {
            return self.write_masked(data);
        }
        let shown = self.masker.push(data);
        self.write_masked(&shown)
    }

    fn write_masked(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.truncated {
            return Ok(());
        }
        let room = self.cap.saturating_sub(self.len) as usize;
        if data.len() <= room {
            self.put(data)?;
        } else {
            self.put(&data[..room])?;
            self.put(TRUNCATION_MARKER.as_bytes())?;
            self.truncated = true;
        }
        let len = self.len;
        self.tx.send_modify(|s| s.0 = len);
        Ok(())
    }

    /// Appends a line from kha itself (timeouts, cancels, setup errors).
    pub fn note(&mut self, line: &str) {
        let text = format!("\n[kha] {line}\n");
        if let Err(e) = self.write(text.as_bytes()) {
            warn!(error = %e, "cannot write to the spool");
        }
    }

    /// Appends a line of kha's own that reads as part of the output
    /// (`kha: running builder hook …`): on a line of its own, without the
    /// blank line a note starts with.
    pub fn line(&mut self, line: &str) {
        let text = if self.at_line_start {
            format!("{line}\n")
        } else {
            format!("\n{line}\n")
        };
        if let Err(e) = self.write(text.as_bytes()) {
            warn!(error = %e, "cannot write to the spool");
        }
    }

    /// Marks the output complete; returns its length and SHA-256 (hex).
    /// Not synced: the spool only has to outlive a broken stream, not this
    /// process (a restarted builder discards every spool), and the shipper
    /// reads it back through the page cache.
    pub fn finish(mut self) -> (u64, String) {
        let rest = self.masker.finish();
        if let Err(e) = self.write_masked(&rest) {
            warn!(error = %e, "cannot write to the spool");
        }
        let len = self.len;
        self.tx.send_modify(|s| *s = (len, true));
        (len, hex::encode(self.hash.finalize()))
    }
}

/// Why shipping stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("the control node refused the log: {0}")]
    Refused(String),
    #[error("canceled")]
    Canceled,
}

/// The spool of a running job, shared by the code that writes the job's
/// output and kha's own notes into it; taken (finished) once the job ends.
#[derive(Clone)]
pub struct SharedSpool(Arc<Mutex<Option<Spool>>>);

impl SharedSpool {
    pub fn new(spool: Spool) -> SharedSpool {
        SharedSpool(Arc::new(Mutex::new(Some(spool))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Spool) -> T) -> Option<T> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.as_mut().map(f)
    }

    /// Appends the job's output (blocking). Output after `finish` is
    /// dropped.
    pub fn write(&self, data: &[u8]) -> std::io::Result<()> {
        self.with(|s| s.write(data)).unwrap_or(Ok(()))
    }

    /// Masks these values in everything written from now on.
    pub fn mask<V: AsRef<[u8]>>(&self, values: impl IntoIterator<Item = V>) {
        self.with(|s| s.mask(values));
    }

    /// Appends a line from kha itself.
    pub fn note(&self, line: &str) {
        self.with(|s| s.note(line));
    }

    /// Appends a line of kha's own on a line of its own.
    pub fn line(&self, line: &str) {
        self.with(|s| s.line(line));
    }

    /// Marks the output complete: its length and SHA-256 (hex); `None` if
    /// it was finished already.
    pub fn finish(&self) -> Option<(u64, String)> {
        let spool = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        spool.map(Spool::finish)
    }
}

/// Ships one job's spool to the control node until all of it is
/// acknowledged, over as many `StreamLogs` calls as it takes.
pub struct Shipper {
    pub client: AgentClient,
    pub job_id: JobId,
    pub epoch: Epoch,
    /// The spool file.
    pub spool: PathBuf,
    pub written: Written,
    /// The control node's committed offset, shared with the session (which
    /// reports it in Hello after a reconnect).
    pub acked: Arc<AtomicU64>,
    pub max_chunk: usize,
    /// Stops shipping (the job's lease is gone).
    pub stop: CancellationToken,
}

impl Shipper {
    pub async fn run(mut self) -> Result<(), ShipError> {
        let mut backoff = Backoff::call();
        loop {
            let (len, done) = *self.written.borrow();
            if done && self.acked.load(Ordering::SeqCst) >= len {
                return Ok(());
            }
            if self.stop.is_cancelled() {
                return Err(ShipError::Canceled);
            }
            match self.once().await {
                Ok(()) => return Ok(()),
                Err(Some(e)) => return Err(e),
                Err(None) => {
                    debug!(
                        job_id = self.job_id,
                        "log stream broke; resending from the last ack"
                    );
                    tokio::select! {
                        _ = self.stop.cancelled() => return Err(ShipError::Canceled),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    /// One `StreamLogs` call. `Err(None)`: try again; `Err(Some)`: give up.
    async fn once(&mut self) -> Result<(), Option<ShipError>> {
        let (job_id, epoch, max_chunk) = (self.job_id, self.epoch, self.max_chunk);
        let (tx, rx) = mpsc::channel::<LogChunk>(4);
        let mut acks = match self.client.stream_logs(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(s) => return Err(classify(s)),
        };
        let mut file = tokio::fs::File::open(&self.spool).await.map_err(|_| None)?;
        let mut pos = self.acked.load(Ordering::SeqCst);
        let mut buf = vec![0u8; max_chunk];
        loop {
            let (len, done) = *self.written.borrow_and_update();
            if done && self.acked.load(Ordering::SeqCst) >= len {
                return Ok(());
            }
            tokio::select! {
                _ = self.stop.cancelled() => return Err(Some(ShipError::Canceled)),
                permit = tx.reserve(), if pos < len => {
                    let Ok(permit) = permit else { return Err(None) };
                    let want = ((len - pos) as usize).min(max_chunk);
                    file.seek(SeekFrom::Start(pos)).await.map_err(|_| None)?;
                    let n = file.read(&mut buf[..want]).await.map_err(|_| None)?;
                    if n == 0 {
                        continue;
                    }
                    permit.send(LogChunk { job_id, epoch, offset: pos, data: buf[..n].to_vec() });
                    pos += n as u64;
                }
                ack = acks.message() => match ack {
                    Ok(Some(a)) => {
                        self.acked.fetch_max(a.committed_offset, Ordering::SeqCst);
                        if a.committed_offset > pos {
                            pos = a.committed_offset;
                        }
                    }
                    Ok(None) => return Err(None),
                    Err(s) => return Err(classify(s)),
                },
                // Once the spool is done (its sender may be gone, and
                // `changed` then returns at once), only acks are awaited:
                // waiting on it too spun the task at full speed between the
                // last chunk and its ack.
                _ = self.written.changed(), if pos >= len && !done => {}
            }
        }
    }
}

fn classify(s: tonic::Status) -> Option<ShipError> {
    match s.code() {
        tonic::Code::FailedPrecondition
        | tonic::Code::InvalidArgument
        | tonic::Code::Unauthenticated
        | tonic::Code::PermissionDenied => Some(ShipError::Refused(s.message().to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn spool_caps_with_a_marker() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.log");
        let (mut s, rx) = Spool::create(&p, 10).unwrap();
        s.write(b"12345").unwrap();
        s.write(b"67890abc").unwrap();
        s.write(b"more").unwrap();
        let (len, sha) = s.finish();
        let mut got = Vec::new();
        std::fs::File::open(&p)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        let want = format!("1234567890{TRUNCATION_MARKER}");
        assert_eq!(got, want.as_bytes());
        assert_eq!(len, want.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(want.as_bytes())));
        assert_eq!(*rx.borrow(), (len, true));
    }

    #[test]
    fn kha_lines_start_on_a_line_of_their_own() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.log");
        let (mut s, _rx) = Spool::create(&p, 1000).unwrap();
        s.line("kha: one");
        s.write(b"out\npartial").unwrap();
        s.line("kha: two");
        s.write(b"done\n").unwrap();
        s.line("kha: three");
        s.finish();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "kha: one\nout\npartial\nkha: two\ndone\nkha: three\n"
        );
    }

    #[test]
    fn secrets_are_masked_across_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut s, _w) = Spool::create(&path, 1 << 20).unwrap();
        s.mask(["hunter22"]);
        s.write(b"pw=hunt").unwrap();
        s.write(b"er22 ok\n").unwrap();
        s.note("hunter22 in a note");
        s.write(b"tail hunter2").unwrap();
        let (len, _) = s.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "pw=[secure] ok\n\n[kha] [secure] in a note\ntail hunter2"
        );
        assert_eq!(len, text.len() as u64);
    }
}

//! A job's output goes to a spool file on disk first, then to the control
//! node over its own `StreamLogs` stream. The spool holds everything from the
//! last acknowledged byte on, so nothing is lost when the stream or the
//! control node goes away: the shipper reconnects and resends from the
//! control node's committed offset.

use kha_core::limits::TRUNCATION_MARKER;
use kha_proto::agent::agent_service_client::AgentServiceClient;
use kha_proto::agent::LogChunk;
use sha2::{Digest, Sha256};
use std::io::{SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
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
    hash: Sha256,
    tx: watch::Sender<(u64, bool)>,
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
                hash: Sha256::new(),
                tx,
            },
            rx,
        ))
    }

    fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)?;
        self.hash.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Appends output (blocking).
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
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

    /// Marks the output complete; returns its length and SHA-256 (hex).
    /// Not synced: the spool only has to outlive a broken stream, not this
    /// process (a restarted builder discards every spool), and the shipper
    /// reads it back through the page cache.
    pub fn finish(self) -> (u64, String) {
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

/// Ships the spool to the control node until all of it is acknowledged.
#[allow(clippy::too_many_arguments)]
pub async fn ship(
    client: AgentServiceClient<Channel>,
    bearer: String,
    job_id: u64,
    epoch: u64,
    spool: PathBuf,
    mut written: Written,
    acked: Arc<AtomicU64>,
    max_chunk: usize,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), ShipError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (len, done) = *written.borrow();
        if done && acked.load(Ordering::SeqCst) >= len {
            return Ok(());
        }
        if stop.is_cancelled() {
            return Err(ShipError::Canceled);
        }
        match ship_once(
            &client,
            &bearer,
            job_id,
            epoch,
            &spool,
            &mut written,
            &acked,
            max_chunk,
            &stop,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(Some(e)) => return Err(e),
            Err(None) => {
                debug!(job_id, "log stream broke; resending from the last ack");
                tokio::select! {
                    _ = stop.cancelled() => return Err(ShipError::Canceled),
                    _ = tokio::time::sleep(jitter(backoff)) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Backoff with ±50 % jitter, so builders do not return in lockstep.
pub fn jitter(d: Duration) -> Duration {
    let f: f64 = 0.5 + rand::random::<f64>();
    d.mul_f64(f)
}

/// One `StreamLogs` call. `Err(None)`: try again; `Err(Some)`: give up.
#[allow(clippy::too_many_arguments)]
async fn ship_once(
    client: &AgentServiceClient<Channel>,
    bearer: &str,
    job_id: u64,
    epoch: u64,
    spool: &std::path::Path,
    written: &mut Written,
    acked: &AtomicU64,
    max_chunk: usize,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(), Option<ShipError>> {
    let (tx, rx) = mpsc::channel::<LogChunk>(4);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if let Ok(v) = bearer.parse() {
        req.metadata_mut().insert("authorization", v);
    }
    let mut client = client.clone();
    let mut acks = match client.stream_logs(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(classify(s)),
    };
    let mut file = tokio::fs::File::open(spool).await.map_err(|_| None)?;
    let mut pos = acked.load(Ordering::SeqCst);
    let mut buf = vec![0u8; max_chunk];
    loop {
        let (len, done) = *written.borrow_and_update();
        if done && acked.load(Ordering::SeqCst) >= len {
            return Ok(());
        }
        tokio::select! {
            _ = stop.cancelled() => return Err(Some(ShipError::Canceled)),
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
                    acked.fetch_max(a.committed_offset, Ordering::SeqCst);
                    if a.committed_offset > pos {
                        pos = a.committed_offset;
                    }
                }
                Ok(None) => return Err(None),
                Err(s) => return Err(classify(s)),
            },
            _ = written.changed(), if pos >= len => {}
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
}

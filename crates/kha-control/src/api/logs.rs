//! A job's log: read from an offset, and follow it while the job runs (the
//! bytes come from the log file, woken by its writer; the end comes when the
//! job reaches a final state).

use super::{ApiError, Principal};
use crate::app::App;
use kha_core::{JobId, JobState};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bytes of a log from `offset`; the last piece has `done` and, once the
/// job is over (or when not following), its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPiece {
    pub offset: u64,
    pub data: Vec<u8>,
    pub done: bool,
    pub state: Option<JobState>,
}

/// The kept log of earlier attempt `n` of a job (1 for the first), whole.
pub async fn attempt(
    app: &Arc<App>,
    who: &Principal,
    job: JobId,
    n: u32,
) -> Result<(Vec<u8>, JobState), ApiError> {
    let j = super::builds::job_record(app, who, job)?;
    let none = || ApiError::NotFound(format!("job {job} has no earlier attempt {n}"));
    if n == 0 {
        return Err(none());
    }
    match tokio::fs::read(app.logs.attempt_path(job, n)).await {
        Ok(bytes) => Ok((bytes, j.state)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(none()),
        Err(e) => Err(ApiError::Internal(format!(
            "reading attempt {n}'s log of job {job}: {e}"
        ))),
    }
}

/// Most bytes in one piece.
const PIECE: u64 = 256 * 1024;

/// Streams a job's log from `offset`: what is there, and with `follow`
/// everything it gets until the job ends.
pub fn follow(
    app: &Arc<App>,
    who: &Principal,
    job: JobId,
    offset: u64,
    follow: bool,
) -> Result<mpsc::Receiver<Result<LogPiece, ApiError>>, ApiError> {
    super::builds::job_record(app, who, job)?;
    let (tx, rx) = mpsc::channel(8);
    let app2 = app.clone();
    app.spawn("follow-log", async move {
        let app = app2;
        let mut pos = offset;
        let mut watch = app.logs.subscribe(job);
        loop {
            let (committed, mut done) = *watch.borrow_and_update();
            // The job may have ended before we subscribed.
            let (state, recorded) = match app.store.get_job(job) {
                Ok(Some(j)) => (j.state, j.log_len),
                Ok(None) => (JobState::Errored, 0),
                Err(e) => {
                    if tx.send(Err(e.into())).await.is_err() {
                        tracing::debug!(job_id = job, "log follower left");
                    }
                    return;
                }
            };
            if state.is_final() {
                done = true;
            }
            let end = if done { app.logs.len(job) } else { committed };
            if done && end == 0 && recorded > 0 && pos == 0 && !app.logs.exists(job) {
                // Removed by the retention policy: the job's record stays.
                let note = format!(
                    "kha: this log ({recorded} bytes) was removed by the log retention policy\n"
                );
                let piece = LogPiece {
                    offset: 0,
                    data: note.into_bytes(),
                    done: true,
                    state: Some(state),
                };
                if tx.send(Ok(piece)).await.is_err() {
                    tracing::debug!(job_id = job, "log follower left");
                }
                return;
            }
            while pos < end {
                let data = match app
                    .logs
                    .read(job, pos, (end - pos).min(PIECE) as usize)
                    .await
                {
                    Ok(d) if !d.is_empty() => d,
                    Ok(_) => break,
                    Err(e) => {
                        let err = ApiError::Internal(format!("reading the log of job {job}: {e}"));
                        if tx.send(Err(err)).await.is_err() {
                            tracing::debug!(job_id = job, "log follower left");
                        }
                        return;
                    }
                };
                let n = data.len() as u64;
                let piece = LogPiece {
                    offset: pos,
                    data,
                    done: false,
                    state: None,
                };
                if tx.send(Ok(piece)).await.is_err() {
                    return;
                }
                pos += n;
            }
            if done || !follow {
                let last = LogPiece {
                    offset: pos,
                    data: vec![],
                    done: true,
                    state: (state.is_final() || !follow).then_some(state),
                };
                if tx.send(Ok(last)).await.is_err() {
                    tracing::debug!(job_id = job, "log follower left before the end");
                }
                return;
            }
            tokio::select! {
                _ = app.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                changed = watch.changed() => {
                    if changed.is_err() {
                        // The log's live state went away: the job ended.
                        watch = app.logs.subscribe(job);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
            }
        }
    });
    Ok(rx)
}

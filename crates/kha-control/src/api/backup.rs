//! Backups of the running control node (`crate::backup`), for admins.

use super::{audit, ApiError, Principal};
use crate::app::App;
use crate::backup::Taken;
use std::path::PathBuf;
use std::sync::Arc;

/// The log retention pass (`crate::retention::collect`), or with
/// `dry_run` what it would remove.
pub async fn collect_logs(
    app: &Arc<App>,
    who: &Principal,
    dry_run: bool,
) -> Result<(Vec<String>, u64, u64), ApiError> {
    who.require_admin()?;
    let a = app.clone();
    let now = app.clock.now();
    let r = tokio::task::spawn_blocking(move || {
        crate::retention::collect(&a.store, &a.logs, &a.cfg.logs, now, dry_run)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the log retention pass stopped: {e}")))?
    .map_err(|e| ApiError::Internal(format!("the log retention pass failed: {e}")))?;
    if !dry_run {
        audit::record(
            app,
            who,
            "logs.collect",
            "",
            &format!("{} logs, {} bytes", r.1, r.2),
        );
    }
    Ok(r)
}

/// Takes a backup into `dir` on this machine. Writes are held back while
/// the database is copied; the copy runs off the async workers.
pub async fn take(app: &Arc<App>, who: &Principal, dir: &str) -> Result<Taken, ApiError> {
    who.require_admin()?;
    let dest = PathBuf::from(dir);
    if dir.is_empty() || !dest.is_absolute() {
        return Err(ApiError::Invalid(format!(
            "dir must be an absolute path on the control node's machine, not {dir:?}"
        )));
    }
    let a = app.clone();
    let now = app.clock.now();
    let taken = tokio::task::spawn_blocking(move || {
        crate::backup::take(&a.store, &a.cfg.data_dir, &dest, now)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the backup stopped: {e}")))?
    .map_err(|e| ApiError::Precondition(format!("{e:#}")))?;
    audit::record(
        app,
        who,
        "backup",
        dir,
        &format!(
            "{} records, {} logs, {} bytes; writes held back {} ms",
            taken.records, taken.logs, taken.bytes, taken.paused_ms
        ),
    );
    tracing::info!(
        dir,
        records = taken.records,
        logs = taken.logs,
        bytes = taken.bytes,
        paused_ms = taken.paused_ms,
        "backup taken"
    );
    Ok(taken)
}

//! The job's build cache steps (`crate::cache`): the archive fetched
//! before the run, the new one sent after it. Neither changes the job's
//! result; both say what they did in its log.

use super::{Job, Verdict};
use crate::cache::JobCache;
use crate::logs::SharedSpool;
use kha_core::JobOutcome;

/// The cache of a running job and the fingerprint of what it restored.
pub(super) struct Restored {
    cache: JobCache,
    fingerprint: Option<String>,
}

impl Job {
    /// Before the run: fetch the archive into the workspace.
    pub(super) async fn restore_cache(&self, spool: &SharedSpool) -> Option<Restored> {
        self.spec.cache.as_ref()?;
        let cache = JobCache::new(
            self.shared.client.clone(),
            self.id,
            self.epoch,
            &self.run.workspace,
        );
        let r = cache.restore().await;
        spool.note(&r.note);
        Some(Restored {
            cache,
            fingerprint: r.fingerprint,
        })
    }

    /// After the run: send the archive the driver packed, unless the job
    /// was stopped (canceled, timed out, its lease gone) on the way.
    pub(super) async fn save_cache(
        &self,
        restored: Option<Restored>,
        verdict: &Verdict,
        spool: &SharedSpool,
    ) {
        let (Some(r), Some(spec)) = (restored, self.spec.cache.as_ref()) else {
            return;
        };
        let stopped = matches!(
            verdict.outcome,
            JobOutcome::Canceled | JobOutcome::TimedOut | JobOutcome::Infrastructure
        );
        if stopped || self.control.reason().is_some() {
            return;
        }
        if let Some(line) = r
            .cache
            .save(r.fingerprint.as_deref(), spec.max_archive_bytes)
            .await
        {
            spool.note(&line);
        }
    }
}

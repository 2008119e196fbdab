//! Reporting a job's result to the control node, retried with backoff
//! until it is taken or refused for good.

use super::{Job, Verdict};
use crate::backoff::Backoff;
use kha_proto::agent::{FinishJobRequest, FinishRefusal, FinishRefusalKind, Outcome};
use tracing::{info, warn};

/// How many times a result is offered before the builder gives up (the
/// control node then times the lease out).
const FINISH_TRIES: u32 = 50;

impl Job {
    pub(super) async fn finish(&self, verdict: Verdict, total_len: u64, sha256: String) {
        let (job_id, epoch, outcome) = (self.id, self.epoch, verdict.outcome);
        let mut backoff = Backoff::call();
        for _ in 0..FINISH_TRIES {
            let req = FinishJobRequest {
                job_id,
                epoch,
                outcome: Outcome::from(outcome) as i32,
                total_len,
                sha256: sha256.clone(),
                detail: verdict.detail.clone(),
            };
            match self.shared.client.clone().finish_job(req).await {
                Ok(_) => {
                    info!(job_id, epoch, ?outcome, total_len, "job finished");
                    return;
                }
                // Not this builder's lease (any more), or the job moved on:
                // nothing to retry. An incomplete or mismatched log is
                // retried: the shipper sends the rest meanwhile.
                Err(s)
                    if s.code() == tonic::Code::FailedPrecondition
                        && FinishRefusal::of(&s)
                            .is_none_or(|r| r.kind() == FinishRefusalKind::StaleLease) =>
                {
                    warn!(job_id, epoch, error = %s.message(), "result refused");
                    return;
                }
                Err(s) => {
                    warn!(job_id, epoch, error = %s.message(), "cannot report the result yet; retrying");
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        warn!(
            job_id,
            epoch, "gave up reporting the result; the control node will time the lease out"
        );
    }
}

//! The sweep: where offers, leases, cancels and timeouts expire. It runs
//! about every 100 ms (and at once when a builder's connection drops):
//! - an offer not answered within `OFFER_TIMEOUT_MS` goes back to the front
//!   of its queue;
//! - a lease past its deadline (its builder stopped heartbeating, dropped
//!   its connection or was evicted) is requeued as a new epoch, or given up
//!   as lost after `max_attempts`; a job being canceled is recorded as
//!   canceled instead;
//! - a cancel not confirmed in time ends the builder's session and records
//!   the job as canceled;
//! - a job past its own timeout plus the backstop is recorded as timed out;
//! - a job a builder handed back is offered to it again after
//!   `HANDED_BACK_HOLD_MS`.

use super::Scheduler;
use kha_core::{Epoch, JobId, JobState};
use kha_proto::agent::{self, control_message::Msg};
use tracing::warn;

impl Scheduler {
    /// Expires offers, leases, cancels and timeouts. Run about every 100 ms.
    pub async fn sweep(&self) {
        let now = self.clock.now();
        let (expired, cancels, timeouts, released) = {
            let mut inner = self.lock();
            let late: Vec<JobId> = inner
                .offers
                .iter()
                .filter(|(_, o)| o.deadline <= now)
                .map(|(j, _)| *j)
                .collect();
            for j in late {
                if let Some(o) = inner.offers.remove(&j) {
                    if o.epoch.is_none() {
                        // Never sent: the slot it took is free again.
                        if let Some(s) = inner.sessions.get_mut(&o.builder) {
                            s.free += 1;
                        }
                    }
                }
                inner.requeue_front(j);
            }
            // Holds on handed-back jobs that are over: offered there again.
            let over: Vec<(JobId, String)> = inner
                .handed_back
                .iter()
                .filter(|(_, (_, until))| *until <= now)
                .map(|(j, (b, _))| (*j, b.clone()))
                .collect();
            for (j, b) in &over {
                inner.handed_back.remove(j);
                if let Some(by) = inner.refused.get_mut(j) {
                    by.remove(b);
                    if by.is_empty() {
                        inner.refused.remove(j);
                    }
                }
            }
            let expired = inner.leases.take_expired(now);
            if !expired.is_empty() {
                self.lease_expiries.inc_by(expired.len() as u64);
            }
            // Entries of running jobs whose lease went by a way that did
            // not drop them (they count for nothing meanwhile).
            if inner.running.len() > inner.leases.len() {
                let inner = &mut *inner;
                let leases = &inner.leases;
                inner.running.retain(|j, _| leases.get(*j).is_some());
            }
            let cancels: Vec<(JobId, Epoch)> = inner
                .canceling
                .iter()
                .filter(|(_, &d)| d <= now)
                .filter_map(|(j, _)| inner.leases.get(*j).map(|l| (*j, l.epoch)))
                .collect();
            let timeouts: Vec<(JobId, Epoch, String)> = inner
                .backstops
                .iter()
                .filter(|(_, &d)| d <= now)
                .filter_map(|(j, _)| {
                    inner
                        .leases
                        .get(*j)
                        .map(|l| (*j, l.epoch, l.builder.clone()))
                })
                .collect();
            (expired, cancels, timeouts, !over.is_empty())
        };
        if released {
            self.dispatch();
        }
        for l in expired {
            let canceling = self.lock().canceling.contains_key(&l.job);
            let r = if canceling {
                self.finalize(
                    l.job,
                    l.epoch,
                    JobState::Canceled,
                    "canceled; the builder did not confirm",
                    None,
                )
                .await
            } else {
                self.requeue_or_give_up(
                    l.job,
                    l.epoch,
                    &format!("builder {} stopped answering", l.builder),
                    JobState::Lost,
                )
                .await
            };
            if let Err(e) = r {
                warn!(job_id = l.job, error = %e, "expired lease not handled");
            }
        }
        for (job, epoch) in cancels {
            // A builder that never confirmed a cancel may be wedged: end its
            // session; when it returns, Welcome tells it to stop the job.
            // A statement of its own: the guard must be gone before
            // `close_session` locks again (in an `if let` scrutinee it would
            // live through the block: a deadlock of the whole node).
            let holder = self.lock().leases.get(job).map(|l| l.builder.clone());
            if let Some(b) = holder {
                warn!(job_id = job, builder_id = %b, "cancel not confirmed in time; evicting the builder's session");
                self.close_session(&b, "a cancel was not confirmed in time");
            }
            if let Err(e) = self
                .finalize(
                    job,
                    epoch,
                    JobState::Canceled,
                    "canceled; the builder did not confirm in time",
                    None,
                )
                .await
            {
                warn!(job_id = job, error = %e, "cancel backstop not recorded");
            }
        }
        for (job, epoch, builder) in timeouts {
            self.send_to(
                &builder,
                Msg::Cancel(agent::Cancel {
                    job_id: job,
                    epoch,
                    grace_ms: 0,
                    reason: "timed out".into(),
                }),
            );
            if let Err(e) = self
                .finalize(
                    job,
                    epoch,
                    JobState::TimedOut,
                    "timed out (recorded by the control node)",
                    None,
                )
                .await
            {
                warn!(job_id = job, error = %e, "timeout backstop not recorded");
            }
        }
        self.dispatch();
    }
}

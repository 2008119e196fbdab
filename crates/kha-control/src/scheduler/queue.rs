//! The queue: queued jobs per project, new and restarted jobs entering it,
//! and dispatch, which offers queued jobs to builders with credit.
//!
//! Dispatch picks under the index's lock (see `pick` for the fairness
//! rules), takes the builder's slot with an offer entry, reads the job from
//! sled outside the lock, then re-checks under the lock that the offer still
//! stands before sending it: a cancel, a closed session or an expiry may
//! have withdrawn it meanwhile, and whoever did put the job back.

use super::pick::{pick, PickInput, Slots};
use super::{job_spec, send, Inner, PendingOffer, SchedError, Scheduler};
use crate::store::records::{Build, Job};
use crate::store::QUEUE_NORMAL_BASE;
use kha_core::travis::BuildContext;
use kha_core::{JobId, JobState};
use kha_proto::agent::{self, control_message::Msg};
use tracing::{debug, warn};

impl Scheduler {
    /// Makes freshly created (already durable) queued jobs available.
    pub fn enqueue(&self, jobs: &[Job]) {
        {
            let mut inner = self.lock();
            for j in jobs.iter().filter(|j| j.state == JobState::Queued) {
                inner.index_queued(j, false);
            }
        }
        self.dispatch();
    }

    /// A queue key behind every job queued so far.
    pub fn normal_key(&self) -> Result<u64, SchedError> {
        Ok(QUEUE_NORMAL_BASE + self.store.next_id()?)
    }

    /// A queue key ahead of every normal one (for jobs put back).
    pub(super) fn front_key(&self) -> Result<u64, SchedError> {
        Ok(QUEUE_NORMAL_BASE - self.store.next_id()?)
    }

    /// Offers queued jobs to builders with credit, projects taking turns.
    pub fn dispatch(&self) {
        loop {
            let Some((job_id, builder)) = self.take_next() else {
                return;
            };
            // The sled reads of a dispatch (the job, its build's context),
            // outside the lock. Whether the context or the variables an
            // older record kept go into the offer is `job_spec`'s to decide.
            let read = self.store.get_job(job_id).and_then(|j| match j {
                Some(j) if j.state == JobState::Queued => {
                    let ctx = self.store.get_build_context(j.build)?;
                    Ok(Some((j, ctx.unwrap_or_default())))
                }
                j => Ok(j.map(|j| (j, BuildContext::default()))),
            });
            let mut inner = self.lock();
            let stands = inner
                .offers
                .get(&job_id)
                .is_some_and(|o| o.builder == builder && o.epoch.is_none());
            if !stands {
                continue;
            }
            let (job, ctx) = match read {
                Ok(Some((j, ctx))) if j.state == JobState::Queued => (j, ctx),
                Ok(_) => {
                    // Moved on in sled (canceled, started): no longer queued.
                    Self::give_back(&mut inner, job_id, &builder);
                    inner.queued.remove(&job_id);
                    continue;
                }
                Err(e) => {
                    warn!(job_id, error = %e, "cannot read queued job; leaving it queued");
                    Self::give_back(&mut inner, job_id, &builder);
                    inner.requeue_front(job_id);
                    return;
                }
            };
            let epoch = job.epoch + 1;
            let offer = Msg::Offer(agent::Offer {
                job_id,
                epoch,
                spec: Some(job_spec(&job, &ctx, &self.cfg.public_url)),
            });
            let sent = inner
                .sessions
                .get(&builder)
                .is_some_and(|s| send(&builder, s, offer));
            if sent {
                debug!(job_id, epoch, builder_id = %builder, "offered");
                if let Some(o) = inner.offers.get_mut(&job_id) {
                    o.epoch = Some(epoch);
                }
            } else {
                warn!(builder_id = %builder, "session outbound full or gone; closing it");
                inner.offers.remove(&job_id);
                if let Some(s) = inner.sessions.remove(&builder) {
                    s.close.cancel();
                }
                inner.requeue_front(job_id);
            }
        }
    }

    /// Picks the next job and its builder, takes the job off its queue and
    /// the builder's slot with an offer entry not yet sent.
    fn take_next(&self) -> Option<(JobId, String)> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let chosen = {
            let gate = inner.gate();
            let builders = inner.sessions.iter().map(|(id, s)| Slots {
                id,
                free: s.free,
                draining: s.draining,
                labels: &s.labels,
                trusted: s.trusted,
            });
            pick(&PickInput {
                queues: &inner.queues,
                last_served: inner.last_served.as_deref(),
                queued: &inner.queued,
                builders,
                refused: &inner.refused,
                gate: &gate,
            })?
        };
        if let Some(q) = inner.queues.get_mut(&chosen.project) {
            q.remove(chosen.index);
            if q.is_empty() {
                inner.queues.remove(&chosen.project);
            }
        }
        inner.last_served = Some(chosen.project);
        if let Some(s) = inner.sessions.get_mut(&chosen.builder) {
            s.free = s.free.saturating_sub(1);
        }
        inner.offers.insert(
            chosen.job,
            PendingOffer {
                builder: chosen.builder.clone(),
                epoch: None,
                deadline: now + kha_core::limits::OFFER_TIMEOUT_MS,
            },
        );
        Some((chosen.job, chosen.builder))
    }

    /// Drops an offer entry that was never sent and gives its slot back.
    fn give_back(inner: &mut Inner, job: JobId, builder: &str) {
        inner.offers.remove(&job);
        if let Some(s) = inner.sessions.get_mut(builder) {
            s.free += 1;
        }
    }

    /// Runs a finished build again: its finished jobs go back to the
    /// queue (with stages, the first stage's; the others wait again), in
    /// one transaction.
    pub async fn restart_build(&self, build: &Build) -> Result<(), SchedError> {
        let now = self.clock.now();
        let (_, jobs) = self.store.restart_build(build.id, now)?;
        for j in jobs.iter().filter(|j| j.state.is_pending()) {
            self.logs.reset(j.id, false)?;
        }
        self.store.durable().await?;
        self.enqueue(&jobs);
        Ok(())
    }
}

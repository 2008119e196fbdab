//! The index following a build's stages. The store queues a stage's jobs
//! (or cancels later stages' ones) in the transaction of the change that
//! ended the previous stage (`store/stages.rs`); this brings the in-memory
//! queue in line with what sled shows for the build's jobs afterwards.
//! It compares states rather than being told which jobs moved, so it is
//! level-triggered: calling it twice, or after anything else moved the
//! jobs, does no harm. A restart of the control node needs none of it:
//! the index is rebuilt from the queue tree.

use super::{send, Inner, Scheduler};
use crate::store::records::Build;
use kha_core::{JobId, JobState};
use kha_proto::agent::{self, control_message::Msg};
use tracing::{info, warn};

impl Scheduler {
    /// Indexes the build's jobs sled shows queued that the index does not
    /// hold, and drops those it holds that sled shows canceled.
    pub(super) fn follow_stages(&self, build: &Build) {
        if build.stages.len() < 2 {
            return;
        }
        let mut jobs = Vec::with_capacity(build.jobs.len());
        for &id in &build.jobs {
            match self.store.get_job(id) {
                Ok(Some(j)) => jobs.push(j),
                Ok(None) => {}
                Err(e) => warn!(job_id = id, error = %e, "cannot read a job of the build"),
            }
        }
        let mut queued = Vec::new();
        {
            let mut inner = self.lock();
            for j in &jobs {
                match j.state {
                    JobState::Queued
                        if !inner.queued.contains_key(&j.id)
                            && inner.leases.get(j.id).is_none() =>
                    {
                        inner.index_queued(j, false);
                        queued.push(j.number);
                    }
                    JobState::Canceled if inner.queued.contains_key(&j.id) => {
                        inner.forget_queued(j.id);
                    }
                    _ => {}
                }
            }
        }
        for j in jobs.iter().filter(|j| j.state == JobState::Canceled) {
            self.log_over(j.id, build);
        }
        if !queued.is_empty() {
            info!(build_id = build.id, jobs = ?queued, "next stage queued");
            self.dispatch();
        }
    }
}

impl Inner {
    /// Takes a job that is no longer queued out of the index: off its
    /// project's queue, and its offer withdrawn (a Revoke if it was sent,
    /// else the builder's slot given back).
    pub(super) fn forget_queued(&mut self, job_id: JobId) {
        self.queued.remove(&job_id);
        for q in self.queues.values_mut() {
            q.retain(|&j| j != job_id);
        }
        self.queues.retain(|_, q| !q.is_empty());
        if let Some(o) = self.offers.remove(&job_id) {
            if let Some(s) = self.sessions.get_mut(&o.builder) {
                match o.epoch {
                    // Lost, it is logged by `send`; the builder's
                    // accept is answered with a Revoke anyway.
                    Some(epoch) => {
                        send(
                            &o.builder,
                            s,
                            Msg::Revoke(agent::Revoke {
                                job_id,
                                epoch,
                                reason: "canceled".into(),
                            }),
                        );
                    }
                    // Not sent yet: the slot it took is free again.
                    None => s.free += 1,
                }
            }
        }
    }
}

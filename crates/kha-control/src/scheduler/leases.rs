//! Leases: a builder's answer to an offer (accept stores the lease and
//! grants it, reject puts the job back), its result (finish, after checking
//! the log), and how a run ends: finalized in a final state, or requeued as
//! a new epoch (given up after `max_attempts`). Cancels live here too, since
//! a running job is canceled through its lease holder. Leases expire in
//! `sweep`.

use super::{backstop, send, SchedError, Scheduler};
use crate::store::{LeaseEffect, QueueEffect, StoreError};
use kha_core::lease::LeaseError;
use kha_core::{Epoch, JobId, JobOutcome, JobState, Lease};
use kha_proto::agent::{self, control_message::Msg};
use tracing::{debug, info, warn};

/// How long a job a builder handed back as an infrastructure error is not
/// offered to that builder again.
pub const HANDED_BACK_HOLD_MS: u64 = 5_000;

impl Scheduler {
    /// A builder accepted an offer: store the lease, then tell it to start.
    pub async fn accept(&self, builder: &str, job_id: JobId, epoch: Epoch) {
        let (valid, untrusted) = {
            let mut inner = self.lock();
            match inner.offers.get(&job_id) {
                Some(o) if o.builder == builder && o.epoch == Some(epoch) => {
                    inner.offers.remove(&job_id);
                    // It holds its slot until its lease is stored (or it
                    // goes back to the queue).
                    inner.accepting.insert(job_id);
                    // Trust can be withdrawn between the offer and the
                    // accept: encrypted variables go only to a builder
                    // trusted now.
                    let secrets = inner.queued.get(&job_id).is_some_and(|q| q.secrets);
                    let trusted = inner.sessions.get(builder).is_some_and(|s| s.trusted);
                    (true, secrets && !trusted)
                }
                _ => (false, false),
            }
        };
        if !valid {
            self.revoke(builder, job_id, epoch, "the offer was withdrawn");
            return;
        }
        if untrusted {
            info!(job_id, builder_id = %builder, "offer withdrawn: the builder is no longer trusted with encrypted variables");
            self.revoke(
                builder,
                job_id,
                epoch,
                "the builder is no longer trusted with encrypted variables",
            );
            {
                let mut inner = self.lock();
                inner.accepting.remove(&job_id);
                inner.requeue_front(job_id);
            }
            self.dispatch();
            return;
        }
        let now = self.clock.now();
        let b = builder.to_string();
        let r = self
            .store
            .transition_durable(job_id, now, move |j| {
                if j.state != JobState::Queued {
                    return Err(StoreError::Rejected(format!("job {} is {}", j.id, j.state)));
                }
                j.state = JobState::Running;
                j.epoch = epoch;
                j.attempts += 1;
                j.builder = b.clone();
                j.started_ms = now;
                j.finished_ms = 0;
                j.cancel_requested = false;
                j.detail.clear();
                Ok((LeaseEffect::Set, QueueEffect::Remove))
            })
            .await;
        let (job, flushed) = match r {
            Ok(d) => (d.job, d.flushed),
            Err(e) => {
                debug!(job_id, error = %e, "accept refused");
                {
                    let mut inner = self.lock();
                    inner.accepting.remove(&job_id);
                    inner.queued.remove(&job_id);
                }
                self.revoke(builder, job_id, epoch, &e.to_string());
                return;
            }
        };
        // Before the grant: whatever an earlier epoch printed becomes that
        // attempt's log, and this one starts empty.
        if let Err(e) = self.logs.reset(job_id, true) {
            warn!(job_id, error = %e, "cannot reset the job's log");
        }
        // The index follows what sled shows, flushed or not: the job is
        // running under this lease. If the flush failed the lease expires at
        // once, so that the job runs again as a new epoch below (or at the
        // next sweep), whichever way sled's disk state turns out.
        let deadline = match &flushed {
            Ok(()) => now + self.cfg.lease_ms(),
            Err(_) => now,
        };
        {
            let mut inner = self.lock();
            inner.accepting.remove(&job_id);
            if let Some(q) = inner.queued.remove(&job_id) {
                inner.running.insert(job_id, q);
            }
            inner.refused.remove(&job_id);
            inner.handed_back.remove(&job_id);
            inner.leases.insert(Lease {
                job: job_id,
                epoch,
                builder: builder.to_string(),
                deadline,
            });
            inner.backstops.insert(job_id, now + backstop(&job));
        }
        if let Err(e) = flushed {
            // Granted promises a durable lease, which this is not: a crash
            // now could bring back the job as queued while the builder runs
            // it. So the builder drops the offer and the job goes back to
            // the queue as a new epoch, which fences this one off.
            warn!(job_id, epoch, builder_id = %builder, error = %e, "lease not durable; revoking it and requeueing the job");
            self.revoke(
                builder,
                job_id,
                epoch,
                "the control node could not store the lease",
            );
            if let Err(e) = self
                .requeue_or_give_up(
                    job_id,
                    epoch,
                    &format!("the control node could not store its lease: {e}"),
                    JobState::Errored,
                )
                .await
            {
                // If the transition itself failed, the expired lease stays
                // in the index and the sweep tries again.
                warn!(job_id, epoch, error = %e, "job not requeued durably");
            }
            return;
        }
        info!(job_id, epoch, builder_id = %builder, "job started");
        let credentials = match self.store.get_project(&job.project) {
            Ok(Some(p)) => p.credentials.map(|c| agent::GitCredentials {
                username: c.username,
                password: c.password.into_inner(),
            }),
            Ok(None) => None,
            Err(e) => {
                warn!(job_id, project = %job.project, error = %e, "cannot read the project's credentials; granting without them");
                None
            }
        };
        let (secure_vars, secure_notes) = self.secure_vars(&job);
        self.send_to(
            builder,
            Msg::Granted(agent::Granted {
                job_id,
                epoch,
                credentials,
                secure_vars,
                secure_notes,
            }),
        );
    }

    /// The job's encrypted variables, decrypted for its grant (they exist
    /// only in this message), and a note for each one that failed. A job
    /// whose build may not see them has none left in its spec.
    fn secure_vars(
        &self,
        job: &crate::store::records::Job,
    ) -> (Vec<agent::SecureVar>, Vec<String>) {
        if !super::needs_secrets(job) {
            return (vec![], vec![]);
        }
        let key = match self.keys.private(&job.project) {
            Ok(k) => k,
            Err(e) => {
                warn!(job_id = job.id, project = %job.project, error = %e, "cannot read the project's key");
                None
            }
        };
        let Some(key) = key else {
            return (
                vec![],
                vec!["kha: this project has no key on the control node: its encrypted variables are left out".into()],
            );
        };
        let s = crate::secrets::job_secrets(&job.spec.env, Some(&key));
        let vars = s
            .vars
            .into_iter()
            .map(|v| agent::SecureVar {
                name: v.name,
                value: v.value.into_inner(),
                position: v.position,
            })
            .collect();
        (
            vars,
            s.warnings
                .into_iter()
                .map(|w| format!("kha: {w}"))
                .collect(),
        )
    }

    /// Tells a builder to drop an offer (or stop the job) at `(job, epoch)`.
    fn revoke(&self, builder: &str, job_id: JobId, epoch: Epoch, reason: &str) {
        self.send_to(
            builder,
            Msg::Revoke(agent::Revoke {
                job_id,
                epoch,
                reason: reason.into(),
            }),
        );
    }

    /// A builder refused an offer: the job goes back to the front.
    /// `busy`: the builder had no free slot (offer it there again later);
    /// otherwise it cannot run the job and is not offered it again.
    pub fn reject(&self, builder: &str, job_id: JobId, epoch: Epoch, busy: bool, reason: &str) {
        {
            let mut inner = self.lock();
            match inner.offers.get(&job_id) {
                Some(o) if o.builder == builder && o.epoch == Some(epoch) => {}
                _ => return,
            }
            inner.offers.remove(&job_id);
            info!(job_id, builder_id = %builder, reason, "offer rejected");
            if !busy {
                inner
                    .refused
                    .entry(job_id)
                    .or_default()
                    .insert(builder.to_string(), reason.to_string());
            }
            inner.requeue_front(job_id);
        }
        self.dispatch();
    }

    /// Checks that `builder` holds the lease `(job, epoch)`.
    pub fn check_lease(&self, builder: &str, job: JobId, epoch: Epoch) -> Result<(), LeaseError> {
        self.lock().leases.check(job, epoch, builder).map(|_| ())
    }

    /// Records a job's result after verifying its log.
    pub async fn finish(
        &self,
        builder: &str,
        req: &agent::FinishJobRequest,
    ) -> Result<(), SchedError> {
        let (job_id, epoch) = (req.job_id, req.epoch);
        let outcome =
            JobOutcome::try_from(req.outcome()).map_err(|e| SchedError::Invalid(e.to_string()))?;
        if let Err(e) = self.check_lease(builder, job_id, epoch) {
            // Idempotent: the same result again is fine.
            if let Some(j) = self.store.get_job(job_id)? {
                if j.epoch == epoch && j.builder == builder && j.state.is_final() {
                    return Ok(());
                }
            }
            warn!(job_id, epoch, builder_id = %builder, error = %e, "result refused: the builder does not hold the job's lease");
            return Err(e.into());
        }
        let (len, sha) = self.logs.digest(job_id).await?;
        if len != req.total_len {
            return Err(SchedError::LogShort {
                job: job_id,
                stored: len,
                reported: req.total_len,
            });
        }
        if !req.sha256.eq_ignore_ascii_case(&sha) {
            return Err(SchedError::LogHash { job: job_id });
        }
        let canceling = self.lock().canceling.contains_key(&job_id);
        let state = match (outcome.final_state(), canceling) {
            (None, true) => Some(JobState::Canceled),
            (s, _) => s,
        };
        match state {
            Some(state) => {
                self.finalize(job_id, epoch, state, &req.detail, Some((len, sha)))
                    .await?;
            }
            None => {
                // Held back from this builder a while (a full disk, a
                // broken checkout): otherwise it would take the job back at
                // once and spend every attempt in milliseconds; another
                // builder may take it meanwhile, and a lone builder gets it
                // again after the hold (a passing hiccup). Set before the
                // requeue can offer it.
                let until = self.clock.now() + HANDED_BACK_HOLD_MS;
                {
                    let mut inner = self.lock();
                    inner
                        .refused
                        .entry(job_id)
                        .or_default()
                        .insert(builder.to_string(), req.detail.clone());
                    inner
                        .handed_back
                        .insert(job_id, (builder.to_string(), until));
                }
                self.requeue_or_give_up(
                    job_id,
                    epoch,
                    &format!("builder could not run it: {}", req.detail),
                    JobState::Errored,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Moves a running job to a final state and drops its lease.
    pub(super) async fn finalize(
        &self,
        job_id: JobId,
        epoch: Epoch,
        state: JobState,
        detail: &str,
        log: Option<(u64, String)>,
    ) -> Result<(), SchedError> {
        let now = self.clock.now();
        let (detail, written_log) = (detail.to_string(), log.clone());
        let d = self
            .store
            .transition_durable(job_id, now, move |j| {
                if j.epoch != epoch || j.state != JobState::Running {
                    return Err(StoreError::Rejected(format!(
                        "job {} is {} at epoch {}, not running at epoch {epoch}",
                        j.id, j.state, j.epoch
                    )));
                }
                j.state = j
                    .state
                    .transition(state)
                    .map_err(|e| StoreError::Rejected(e.to_string()))?;
                j.finished_ms = now;
                j.detail = detail.clone();
                if let Some((len, sha)) = &written_log {
                    j.log_len = *len;
                    j.log_sha256 = sha.clone();
                }
                Ok((LeaseEffect::Remove, QueueEffect::Keep))
            })
            .await?;
        d.flushed?;
        let (job, build) = (d.job, d.build);
        {
            let mut inner = self.lock();
            inner.leases.remove(job_id);
            inner.running.remove(&job_id);
            inner.canceling.remove(&job_id);
            inner.backstops.remove(&job_id);
        }
        if log.is_none() {
            let len = self.logs.len(job_id);
            let recorded = self.store.transition(job_id, now, |j| {
                j.log_len = len;
                Ok((LeaseEffect::Keep, QueueEffect::Keep))
            });
            if let Err(e) = recorded {
                warn!(job_id, len, error = %e, "cannot record the length of the job's log");
            }
        }
        self.log_over(job_id, &build);
        info!(job_id, epoch, state = %job.state, build_id = build.id, build_state = %build.state, "job finished");
        self.follow_stages(&build);
        self.dispatch();
        Ok(())
    }

    /// A job's lease was lost (or its builder could not run it): run it
    /// again as a new epoch, or record it as `give_up` after too many tries.
    ///
    /// The index follows the transition even when its flush fails, since
    /// sled already shows it: the job is offered again rather than left
    /// stuck, and no builder starts it before an accept's flush, which makes
    /// this transition durable too. The failed flush is still returned.
    pub(super) async fn requeue_or_give_up(
        &self,
        job_id: JobId,
        epoch: Epoch,
        why: &str,
        give_up: JobState,
    ) -> Result<(), SchedError> {
        let now = self.clock.now();
        let front = self.front_key()?;
        let max = self.cfg.max_attempts;
        let reason = why.to_string();
        let d = self
            .store
            .transition_durable(job_id, now, move |j| {
                if j.epoch != epoch || j.state != JobState::Running {
                    return Err(StoreError::Rejected(format!("job {} moved on", j.id)));
                }
                j.detail = reason.clone();
                if j.attempts >= max {
                    j.state = give_up;
                    j.finished_ms = now;
                    j.detail = format!("{reason} ({} attempts)", j.attempts);
                    Ok((LeaseEffect::Remove, QueueEffect::Keep))
                } else {
                    j.state = JobState::Queued;
                    Ok((LeaseEffect::Remove, QueueEffect::Insert(front)))
                }
            })
            .await?;
        let (job, build, flushed) = (d.job, d.build, d.flushed);
        {
            let mut inner = self.lock();
            inner.leases.remove(job_id);
            inner.running.remove(&job_id);
            inner.backstops.remove(&job_id);
            inner.canceling.remove(&job_id);
            if job.state == JobState::Queued {
                inner.index_queued(&job, true);
            } else {
                inner.refused.remove(&job_id);
                inner.handed_back.remove(&job_id);
            }
        }
        if job.state == JobState::Queued {
            info!(job_id, epoch, why, "job requeued");
        } else {
            self.log_over(job_id, &build);
            warn!(job_id, epoch, why, "job given up");
            self.follow_stages(&build);
        }
        self.dispatch();
        Ok(flushed?)
    }

    /// Cancels a job: at once if queued, through its builder if running.
    pub async fn cancel_job(&self, job_id: JobId) -> Result<(), SchedError> {
        let now = self.clock.now();
        let grace = self.cfg.cancel_grace_ms;
        let d = self
            .store
            .transition_durable(job_id, now, move |j| match j.state {
                JobState::Queued | JobState::Waiting => {
                    j.state = JobState::Canceled;
                    j.finished_ms = now;
                    j.detail = "canceled before it started".into();
                    Ok((LeaseEffect::Keep, QueueEffect::Remove))
                }
                JobState::Running => {
                    j.cancel_requested = true;
                    Ok((LeaseEffect::Keep, QueueEffect::Keep))
                }
                _ => Ok((LeaseEffect::Keep, QueueEffect::Keep)),
            })
            .await?;
        d.flushed?;
        let (job, build) = (d.job, d.build);
        let mut inner = self.lock();
        match job.state {
            JobState::Canceled => {
                inner.forget_queued(job_id);
                drop(inner);
                self.log_over(job_id, &build);
                self.follow_stages(&build);
            }
            JobState::Running => {
                inner
                    .canceling
                    .insert(job_id, now + grace + self.cfg.lease_ms());
                if let Some(s) = inner.sessions.get(&job.builder) {
                    // Lost, it is logged by `send`; the cancel backstop in
                    // the sweep records the job as canceled anyway.
                    send(
                        &job.builder,
                        s,
                        Msg::Cancel(agent::Cancel {
                            job_id,
                            epoch: job.epoch,
                            grace_ms: grace,
                            reason: "canceled".into(),
                        }),
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }
}

//! The session with the control node: Hello, credit, offers, heartbeats,
//! cancels, drain, and reconnection with jittered backoff. Jobs keep
//! running while the session is down; the next Hello lists them and the
//! control node says which to keep.

use crate::backoff::{jitter, Backoff};
use crate::driver::SecureVar;
use crate::job::{Grant, Job, JobControl, JobHandle, JobSecrets, StopReason};
use crate::toolchain::{pick, Choice};
use crate::workspace::Credentials;
use crate::Shared;
use kha_core::{Epoch, JobId, PROTOCOL_MINOR};
use kha_proto::agent::{builder_message::Msg as B, control_message::Msg as C, *};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};

/// What ends a session.
enum End {
    /// Try again after this long.
    Reconnect(Duration),
    /// Drained and idle, or told to stop: exit cleanly.
    Exit,
}

/// A refusal no retry will fix.
#[derive(Debug, thiserror::Error)]
#[error("the control node refused this builder: {0}")]
pub struct Refused(pub String);

/// State that outlives one connection.
pub struct Local {
    pub sigterms: u32,
    pub draining: bool,
    /// Offers accepted but not yet granted: their epoch, spec, and the
    /// image and toolchains picked for them.
    offered: HashMap<JobId, (Epoch, kha_core::JobSpec, Choice)>,
}

impl Local {
    pub fn new() -> Local {
        Local {
            sigterms: 0,
            draining: false,
            offered: HashMap::new(),
        }
    }
}

impl Default for Local {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs sessions until the builder is drained and idle. `signals` yields
/// once per SIGTERM/SIGINT: drain, then cancel jobs, then exit.
pub async fn run(
    shared: Arc<Shared>,
    protocol_major: u32,
    mut signals: mpsc::Receiver<()>,
) -> Result<(), Refused> {
    let mut local = Local::new();
    let mut backoff = Backoff::session();
    loop {
        match once(
            &shared,
            protocol_major,
            &mut local,
            &mut signals,
            &mut backoff,
        )
        .await?
        {
            End::Exit => return Ok(()),
            End::Reconnect(d) => {
                local.offered.clear();
                let wait = tokio::time::sleep(d);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        s = signals.recv() => {
                            if s.is_none() || on_signal(&shared, &mut local) {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Handles one SIGTERM. Returns true when the builder should exit now.
fn on_signal(shared: &Arc<Shared>, local: &mut Local) -> bool {
    local.sigterms += 1;
    match local.sigterms {
        1 => {
            info!("draining: no new jobs; running jobs finish (signal again to cancel them)");
            local.draining = true;
            idle(shared, local)
        }
        2 => {
            info!("canceling running jobs (signal again to exit at once)");
            for h in shared.jobs().values() {
                h.stop(StopReason::Shutdown);
            }
            // An accepted offer not granted yet is given up: its lease
            // expires on the control node and the job runs elsewhere.
            local.offered.clear();
            idle(shared, local)
        }
        _ => true,
    }
}

/// No job runs and no accepted offer waits for its grant: a draining
/// builder may leave. An accepted offer is a promise to run the job; the
/// control node answers it with a grant or a revoke.
fn idle(shared: &Shared, local: &Local) -> bool {
    shared.running().is_empty() && local.offered.is_empty()
}

fn msg(m: B) -> BuilderMessage {
    BuilderMessage { msg: Some(m) }
}

async fn once(
    shared: &Arc<Shared>,
    major: u32,
    local: &mut Local,
    signals: &mut mpsc::Receiver<()>,
    backoff: &mut Backoff,
) -> Result<End, Refused> {
    let retry = |b: &mut Backoff| End::Reconnect(b.next_delay());
    let (tx, rx) = mpsc::channel::<BuilderMessage>(64);
    let running: Vec<RunningJob> = shared
        .jobs()
        .iter()
        .map(|(&job_id, h)| RunningJob {
            job_id,
            epoch: h.epoch,
            committed_offset: h.control.acked.load(Ordering::SeqCst),
        })
        .collect();
    let hello = Hello {
        builder_id: shared.identity.builder_id.clone(),
        name: shared.cfg.name.clone(),
        protocol_major: major,
        protocol_minor: PROTOCOL_MINOR,
        features: vec![],
        labels: shared.labels.clone(),
        slots: shared.cfg.slots,
        running,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // Hello goes in before the call: the call returns only once the
    // control node answers, and it answers only after Hello. The channel
    // is new and has room, so this cannot fail.
    if tx.try_send(msg(B::Hello(hello))).is_err() {
        return Ok(retry(backoff));
    }
    let mut inbound = match shared.client.clone().session(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            return match s.code() {
                tonic::Code::Unauthenticated
                | tonic::Code::FailedPrecondition
                | tonic::Code::PermissionDenied => Err(Refused(s.message().to_string())),
                _ => {
                    warn!(error = %s.message(), "cannot open a session; retrying");
                    Ok(retry(backoff))
                }
            };
        }
    };
    let welcome = match inbound.message().await {
        Ok(Some(ControlMessage {
            msg: Some(C::Welcome(w)),
        })) => w,
        Ok(_) => return Ok(retry(backoff)),
        Err(s) => {
            return match s.code() {
                tonic::Code::Unauthenticated
                | tonic::Code::FailedPrecondition
                | tonic::Code::PermissionDenied => Err(Refused(s.message().to_string())),
                _ => Ok(retry(backoff)),
            }
        }
    };
    backoff.reset();
    shared.set_limits(welcome.max_chunk_bytes as usize, welcome.log_cap_bytes);
    for v in &welcome.verdicts {
        if !v.keep {
            if let Some(h) = shared.jobs().get(&v.job_id) {
                info!(job_id = v.job_id, reason = %v.reason, "control node says stop this job");
                h.stop(StopReason::Revoked);
            }
        }
    }
    if welcome.draining {
        local.draining = true;
    }
    info!(
        heartbeat_ms = welcome.heartbeat_ms,
        resumed = welcome.verdicts.iter().filter(|v| v.keep).count(),
        "session open"
    );
    let send = |m: B| tx.try_send(msg(m)).is_ok();
    if local.draining {
        send(B::Drain(DrainRequest {}));
    }
    send(B::Ready(Ready {
        free_slots: free(shared, local),
    }));
    let mut hb = tokio::time::interval(Duration::from_millis(welcome.heartbeat_ms.max(50)));
    hb.tick().await;
    loop {
        tokio::select! {
            m = inbound.message() => {
                let m = match m {
                    Ok(Some(ControlMessage { msg: Some(m) })) => m,
                    Ok(Some(_)) => continue,
                    Ok(None) => { warn!("session closed by the control node"); return Ok(retry(backoff)); }
                    Err(s) => {
                        if s.code() == tonic::Code::Unauthenticated {
                            return Err(Refused(s.message().to_string()));
                        }
                        warn!(error = %s.message(), "session broke; reconnecting");
                        return Ok(retry(backoff));
                    }
                };
                match m {
                    C::Welcome(_) => {}
                    C::Offer(o) => {
                        let reject = |kind: RejectReason, reason: String| {
                            let mut r = Reject { job_id: o.job_id, epoch: o.epoch, reason, kind: 0 };
                            r.set_kind(kind);
                            B::Reject(r)
                        };
                        let spec = match kha_core::JobSpec::try_from(o.spec.unwrap_or_default()) {
                            Ok(s) => s,
                            Err(e) => {
                                send(reject(RejectReason::CannotRun, e));
                                continue;
                            }
                        };
                        if local.draining {
                            send(reject(RejectReason::CannotRun, "draining".into()));
                        } else if spec.limits.network && shared.executor.kind() == "lxc" && !shared.cfg.job_network {
                            send(reject(RejectReason::CannotRun, "the job asks for network and this builder gives jobs none (job_network = false)".into()));
                        } else if free(shared, local) == 0 {
                            send(reject(RejectReason::Busy, "busy".into()));
                        } else {
                            match pick(&shared.inventory(), &spec.requires, spec.image()) {
                                Err(why) => {
                                    info!(job_id = o.job_id, reason = %why, "cannot run this job here");
                                    send(reject(RejectReason::CannotRun, why));
                                }
                                Ok(choice) => {
                                    local.offered.insert(o.job_id, (o.epoch, spec, choice));
                                    send(B::Accept(Accept { job_id: o.job_id, epoch: o.epoch }));
                                }
                            }
                        }
                    }
                    C::Granted(g) => {
                        match local.offered.remove(&g.job_id) {
                            Some((epoch, spec, choice)) if epoch == g.epoch => {
                                let secure = JobSecrets {
                                    vars: g.secure_vars.into_iter().map(|v| SecureVar { name: v.name, value: v.value.into(), position: v.position }).collect(),
                                    notes: g.secure_notes,
                                };
                                start(shared, g.job_id, epoch, spec, choice, g.credentials, secure)
                            }
                            _ => {
                                warn!(job_id = g.job_id, "grant for a job not offered");
                                shared.wake.notify_one();
                            }
                        }
                    }
                    C::Revoke(r) => {
                        if local.offered.remove(&r.job_id).is_some() {
                            // A draining builder may be waiting for this answer.
                            shared.wake.notify_one();
                        }
                        if let Some(h) = shared.jobs().get(&r.job_id) {
                            if h.epoch == r.epoch { h.stop(StopReason::Revoked); }
                        }
                        send(B::Ready(Ready { free_slots: free(shared, local) }));
                    }
                    C::Cancel(c) => {
                        if let Some(h) = shared.jobs().get(&c.job_id) {
                            if h.epoch == c.epoch {
                                info!(job_id = c.job_id, reason = %c.reason, "canceling job");
                                h.stop(StopReason::Canceled { grace_ms: c.grace_ms });
                            }
                        }
                        send(B::CancelAck(CancelAck { job_id: c.job_id, epoch: c.epoch }));
                    }
                    C::HeartbeatAck(a) => {
                        let should: HashSet<(u64, u64)> = a.should_run.iter().map(|r| (r.job_id, r.epoch)).collect();
                        for (&job, h) in shared.jobs().iter() {
                            if !should.contains(&(job, h.epoch)) {
                                info!(job_id = job, "not ours any more; stopping it");
                                h.stop(StopReason::Revoked);
                            }
                        }
                    }
                    C::Drain(_) => {
                        info!("an admin drained this builder");
                        local.draining = true;
                    }
                    C::Disconnect(d) => {
                        info!(reason = %d.reason, "control node asked us to reconnect later");
                        return Ok(End::Reconnect(jitter(Duration::from_millis(d.reconnect_after_ms.max(100)))));
                    }
                }
            }
            _ = hb.tick() => {
                let running = shared.running().into_iter().map(|(job_id, epoch)| JobRef { job_id, epoch }).collect();
                if !send(B::Heartbeat(Heartbeat { running, free_slots: free(shared, local) })) {
                    return Ok(retry(backoff));
                }
            }
            _ = shared.wake.notified() => {
                if local.draining && local.sigterms > 0 && idle(shared, local) {
                    send(B::GoingAway(GoingAway {}));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return Ok(End::Exit);
                }
                send(B::Ready(Ready { free_slots: free(shared, local) }));
            }
            s = signals.recv() => {
                if s.is_none() || on_signal(shared, local) {
                    send(B::GoingAway(GoingAway {}));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return Ok(End::Exit);
                }
                send(B::Drain(DrainRequest {}));
            }
        }
    }
}

fn free(shared: &Shared, local: &Local) -> u32 {
    if local.draining || shared.disk_low() {
        return 0;
    }
    shared
        .cfg
        .slots
        .saturating_sub((shared.jobs().len() + local.offered.len()) as u32)
}

/// Starts a granted job as a task of its own, owned by `shared.tasks`.
fn start(
    shared: &Arc<Shared>,
    job_id: JobId,
    epoch: Epoch,
    spec: kha_core::JobSpec,
    choice: Choice,
    creds: Option<GitCredentials>,
    secure: JobSecrets,
) {
    let control = JobControl::new();
    {
        let mut jobs = shared.jobs();
        jobs.insert(
            job_id,
            JobHandle {
                epoch,
                control: control.clone(),
            },
        );
        shared.metrics.set_busy(jobs.len());
    }
    info!(job_id, epoch, project = %spec.project, commit = %spec.commit, image = %choice.image, "job granted");
    let creds = creds.map(|c| Credentials {
        username: c.username,
        password: c.password.into(),
    });
    let job = Job::new(
        shared.clone(),
        (job_id, epoch),
        spec,
        Grant { creds, secure },
        control,
        choice,
    );
    shared.tasks.spawn("job", job.run());
}

//! Builder sessions: a builder's stream opening, closing or breaking, its
//! credit and draining, evictions, heartbeats (which renew its leases), and
//! the views `kha builder list` and `kha show` take of them.

use super::{goodbye, send, Inner, Scheduler, Session, SessionView};
use kha_core::{Epoch, JobId};
use kha_proto::agent::{self, control_message::Msg};
use std::collections::HashMap;
use tracing::info;

/// How long, at least, the leases of a builder whose connection broke (its
/// session ended without GoingAway) last: one heartbeat interval, and never
/// less than this. A builder process that dies (kill -9, OOM, crash) closes
/// its connection at once, and its jobs should run again elsewhere soon,
/// not a whole lease later. But a connection also breaks under a live
/// builder (a proxy or NAT dropping it, a network blip): that builder
/// reconnects at once (its backoff starts at 200 ms), and its Hello renews
/// its leases, so it keeps its jobs if it is back within the grace. With no
/// grace, every cut connection reran every job of its builder (three cuts:
/// the job lost). A builder that goes silent without closing its
/// connection is still found out by its lease.
pub const DROPPED_SESSION_GRACE_MIN_MS: u64 = 1_000;

impl Scheduler {
    /// Registers a builder's session, replacing (and closing) an older one.
    /// Returns the connection number and the verdicts for the jobs it says
    /// it is running.
    pub fn session_opened(
        &self,
        builder: &str,
        mut session: Session,
        running: &[(JobId, Epoch)],
    ) -> (u64, Vec<agent::ResumeVerdict>) {
        let conn = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        session.conn = conn;
        let now = self.clock.now();
        let ttl = self.cfg.lease_ms();
        let mut inner = self.lock();
        let kept = inner.leases.renew(builder, running, now, ttl);
        let verdicts = running
            .iter()
            .map(|&(job_id, epoch)| {
                let keep =
                    kept.contains(&(job_id, epoch)) && !inner.canceling.contains_key(&job_id);
                let reason = if keep {
                    String::new()
                } else if inner.canceling.contains_key(&job_id) {
                    "canceled".into()
                } else {
                    match inner.leases.check(job_id, epoch, builder) {
                        Err(e) => format!("{e}: stop it"),
                        Ok(_) => "stop it".into(),
                    }
                };
                agent::ResumeVerdict {
                    job_id,
                    epoch,
                    keep,
                    reason,
                }
            })
            .collect();
        if let Some(old) = inner.sessions.insert(builder.to_string(), session) {
            old.close.cancel();
        }
        // Offers made on the old connection will never be answered.
        Self::withdraw_offers(&mut inner, builder);
        // A builder that comes back may have what it lacked (an image made,
        // a toolchain installed): its earlier refusals no longer hold.
        inner.refused.retain(|_, by| {
            by.remove(builder);
            !by.is_empty()
        });
        (conn, verdicts)
    }

    /// Puts the jobs offered to `builder` back at the front of their queues.
    fn withdraw_offers(inner: &mut Inner, builder: &str) {
        let stale: Vec<JobId> = inner
            .offers
            .iter()
            .filter(|(_, o)| o.builder == builder)
            .map(|(j, _)| *j)
            .collect();
        for j in stale {
            inner.offers.remove(&j);
            inner.requeue_front(j);
        }
    }

    /// The session's connection broke under it (see
    /// [`DROPPED_SESSION_GRACE_MIN_MS`]): brings the builder's lease deadlines
    /// forward to the grace, unless a newer session of the same builder is open already.
    /// Returns whether it did (call [`Scheduler::sweep`] then).
    pub fn session_dropped(&self, builder: &str, conn: u64) -> bool {
        let mut inner = self.lock();
        if inner.sessions.get(builder).is_none_or(|s| s.conn != conn) {
            return false;
        }
        let grace = self.cfg.heartbeat_ms.max(DROPPED_SESSION_GRACE_MIN_MS);
        inner.leases.shorten(builder, self.clock.now() + grace);
        info!(builder_id = %builder, grace_ms = grace, "builder connection dropped; its jobs run again elsewhere unless it is back within the grace");
        true
    }

    /// The session's stream ended. Its leases run on until their deadline:
    /// the builder may come back and resume.
    pub fn session_closed(&self, builder: &str, conn: u64) {
        {
            let mut inner = self.lock();
            if inner.sessions.get(builder).is_some_and(|s| s.conn == conn) {
                inner.sessions.remove(builder);
                Self::withdraw_offers(&mut inner, builder);
            }
        }
        self.dispatch();
    }

    /// The builder says how many more jobs it can take; offers it has not
    /// answered yet count against them.
    pub fn set_credit(&self, builder: &str, free: u32) {
        {
            let mut inner = self.lock();
            let outstanding = inner
                .offers
                .values()
                .filter(|o| o.builder == builder)
                .count() as u32;
            if let Some(s) = inner.sessions.get_mut(builder) {
                s.free = free.saturating_sub(outstanding);
            }
        }
        self.dispatch();
    }

    /// No more offers go to this builder; `notify` tells it so.
    pub fn set_draining(&self, builder: &str, notify: bool) {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get_mut(builder) {
            s.draining = true;
            // A lost notice is logged by `send`; the builder is drained here
            // either way, and its next Welcome says so.
            if notify {
                send(builder, s, Msg::Drain(agent::DrainNotice {}));
            }
        }
    }

    /// An admin trusts the builder with encrypted variables, or no longer:
    /// jobs that need them go to it from now on, or not.
    pub fn set_trusted(&self, builder: &str, trusted: bool) {
        if let Some(s) = self.lock().sessions.get_mut(builder) {
            s.trusted = trusted;
        }
        self.dispatch();
    }

    /// Ends a builder's session and brings its leases' deadlines to now, so
    /// its jobs are run again elsewhere at the next sweep.
    pub fn evict(&self, builder: &str, reason: &str) {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.remove(builder) {
            goodbye(builder, &s, 0, reason);
        }
        let now = self.clock.now();
        inner.leases.shorten(builder, now);
    }

    /// Ends one builder's session (it may come back).
    pub(super) fn close_session(&self, builder: &str, reason: &str) {
        let session = self.lock().sessions.remove(builder);
        if let Some(s) = session {
            goodbye(builder, &s, kha_core::limits::RECONNECT_AFTER_MS, reason);
        }
    }

    /// Tells every builder to go and closes every session (shutdown).
    pub fn disconnect_all(&self, reason: &str) {
        let mut inner = self.lock();
        for (id, s) in inner.sessions.drain() {
            goodbye(&id, &s, kha_core::limits::RECONNECT_AFTER_MS, reason);
        }
    }

    /// Heartbeat: renews the builder's leases and answers with the jobs it
    /// should be running.
    ///
    /// The answer is queued on the session under the same lock that grants
    /// leases: an answer computed before a grant can then never reach the
    /// builder after that grant's `Granted` (which would tell it to stop a
    /// job it was just given). Returns what it answered.
    pub fn heartbeat(&self, builder: &str, running: &[(JobId, Epoch)]) -> Vec<agent::JobRef> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner
            .leases
            .renew(builder, running, now, self.cfg.lease_ms());
        let should_run: Vec<agent::JobRef> = inner
            .leases
            .held_by(builder)
            .into_iter()
            .filter(|(j, _)| !inner.canceling.contains_key(j))
            .map(|(job_id, epoch)| agent::JobRef { job_id, epoch })
            .collect();
        if let Some(s) = inner.sessions.get(builder) {
            let ack = agent::HeartbeatAck {
                should_run: should_run.clone(),
            };
            send(builder, s, Msg::HeartbeatAck(ack));
        }
        should_run
    }

    /// A message (of any kind) from `builder` arrived: it is alive, so the
    /// leases its last heartbeat confirmed are renewed now, before the work
    /// the message asks for, and before a heartbeat queued behind it is
    /// read (see [`kha_core::LeaseTable::touch`]).
    pub fn touch(&self, builder: &str) {
        let now = self.clock.now();
        let ttl = self.cfg.lease_ms();
        self.lock().leases.touch(builder, now, ttl);
    }

    /// The connected builders.
    pub fn sessions_view(&self) -> HashMap<String, SessionView> {
        let inner = self.lock();
        inner
            .sessions
            .iter()
            .map(|(id, s)| {
                let view = SessionView {
                    slots: s.slots,
                    draining: s.draining,
                    running: inner
                        .leases
                        .held_by(id)
                        .into_iter()
                        .map(|(j, _)| j)
                        .collect(),
                    labels: s.labels.to_vec(),
                };
                (id.clone(), view)
            })
            .collect()
    }

    pub fn is_connected(&self, builder: &str) -> bool {
        self.lock().sessions.contains_key(builder)
    }
}

//! The store's writer: one thread of its own that applies job transitions
//! and makes them durable, many at a time (group commit).
//!
//! A transition is a sled transaction (for a job of a 200-job build, reading
//! every job's state to derive the build's) and every transition holds the
//! event log's writer lock while it runs: run on the tokio workers, two of
//! them blocked each other there, and the session tasks (heartbeats, offers)
//! waited behind them, hundreds of milliseconds at 1,000 builders. Here they
//! run one after the other off the async workers, then one flush covers the
//! whole batch, and each is answered only after that flush (what is acked is
//! on disk). Plain flush requests ([`Store::durable`]) join the same batch.

use super::records::{Build, Job};
use super::{LeaseEffect, QueueEffect, Result, Store, StoreError};
use kha_core::{JobId, Millis};
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};

/// Why a flush failed, for every waiter of the batch.
pub(super) type FlushResult = std::result::Result<(), String>;

pub(super) type Change =
    Box<dyn Fn(&mut Job) -> std::result::Result<(LeaseEffect, QueueEffect), StoreError> + Send>;

pub(super) enum Op {
    /// Answer once everything written before is on disk.
    Flush(oneshot::Sender<FlushResult>),
    /// Apply a transition, then answer after the flush that covers it.
    Transition {
        job: JobId,
        now: Millis,
        change: Change,
        reply: oneshot::Sender<Result<Durable>>,
    },
}

/// A transition applied by the writer: the job and build as written, and
/// whether the flush that followed it succeeded. Sled shows the change
/// either way; only `flushed: Ok` may be acknowledged to anyone.
pub struct Durable {
    pub job: Job,
    pub build: Build,
    pub flushed: Result<()>,
}

/// The most operations in one batch: bounds how long the first of them
/// waits for its answer.
const MAX_BATCH: usize = 512;

/// Starts the writer thread. It ends when every [`Store`] handle (and so
/// every sender) is gone; `store` must not hold a sender of `rx`.
pub(super) fn spawn(store: Store, rx: mpsc::UnboundedReceiver<Op>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("kha-store-writer".into())
        .spawn(move || run(store, rx))
        .map(|_| ())
}

fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        ops.push(first);
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut waiters = Vec::new();
        let mut applied = Vec::new();
        for op in ops.drain(..) {
            match op {
                Op::Flush(w) => waiters.push(w),
                Op::Transition {
                    job,
                    now,
                    change,
                    reply,
                } => applied.push((reply, store.transition(job, now, &*change))),
            }
        }
        let upto = store.events.written();
        let r: FlushResult = if store.flush_broken.load(Ordering::Relaxed) {
            Err("the disk refuses writes (test)".into())
        } else {
            store.db.flush().map(|_| ()).map_err(|e| {
                super::storage_check(&e);
                e.to_string()
            })
        };
        if r.is_ok() {
            store.events.publish_upto(upto);
        }
        for w in waiters {
            // A waiter that went away (its caller was dropped) needs no answer.
            let _ = w.send(r.clone());
        }
        for (reply, t) in applied {
            let t = t.map(|(job, build)| Durable {
                job,
                build,
                flushed: r
                    .clone()
                    .map_err(|e| StoreError::Rejected(format!("flush failed: {e}"))),
            });
            let _ = reply.send(t);
        }
    }
}

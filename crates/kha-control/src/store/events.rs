//! The durable event stream (an outbox in sled). Every state change that
//! produces events writes them in the same sled transaction as the change,
//! numbered densely: writers take [`EventLog::writer`] so numbers are handed
//! out in commit order and a retried transaction reuses its numbers. Events
//! reach live subscribers only after the flush that made them durable
//! ([`EventLog::publish_upto`], called by the group commit), and a
//! subscriber that falls behind, or starts in the past, reads them back
//! from sled: a slow consumer never holds up a producer.
//!
//! Retention ([`EventLog::prune`]) drops the oldest events by count and age;
//! a subscriber that asks for a pruned range is told where the stream
//! starts now.

use super::records::{decode, encode};
use super::{Result, StoreError};
use kha_core::event::{Event, EventFilter};
use kha_core::Millis;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// Live subscribers see at most this many events they have not read yet
/// before they fall back to reading sled.
const LIVE_BUFFER: usize = 4096;
/// Events read from sled per batch.
const READ_BATCH: usize = 256;

pub struct EventLog {
    tree: sled::Tree,
    /// The next sequence number, held while a transaction that writes events
    /// runs.
    next: Mutex<u64>,
    /// Written (committed to sled, maybe not yet on disk) up to here.
    written: AtomicU64,
    /// Durable and sent to live subscribers up to here.
    published: AtomicU64,
    /// The oldest retained sequence number.
    first: AtomicU64,
    /// Written, waiting for their flush.
    pending: Mutex<VecDeque<Event>>,
    /// The store's write gate (`super::gate`), for pruning.
    gate: Arc<super::gate::Gate>,
    live: broadcast::Sender<Arc<Event>>,
}

/// Held while a transaction appends events: the numbers it uses start at
/// [`EventWriter::next`].
pub struct EventWriter<'a> {
    log: &'a EventLog,
    guard: MutexGuard<'a, u64>,
}

impl EventWriter<'_> {
    pub fn next(&self) -> u64 {
        *self.guard
    }

    /// Inside the transaction: writes `events` numbered from `next()`, with
    /// `now` as their time. Returns them as written.
    pub fn stage(
        &self,
        t: &TransactionalTree,
        events: &[Event],
        now: Millis,
    ) -> std::result::Result<Vec<Event>, ConflictableTransactionError<StoreError>> {
        let mut out = Vec::with_capacity(events.len());
        for (seq, e) in (*self.guard..).zip(events) {
            let mut e = e.clone();
            e.seq = seq;
            e.at_ms = now;
            t.insert(&seq.to_be_bytes(), encode(&e))?;
            out.push(e);
        }
        Ok(out)
    }

    /// After the transaction committed: the events it wrote wait for their
    /// flush.
    pub fn committed(mut self, events: Vec<Event>) {
        let Some(last) = events.last().map(|e| e.seq) else {
            return;
        };
        *self.guard = last + 1;
        self.log.lock_pending().extend(events);
        self.log.written.store(last, Ordering::Release);
    }
}

/// Why a subscription cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("events before {first} were pruned; the stream starts at {first} now")]
    Pruned { first: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the control node is shutting down")]
    Closed,
}

impl EventLog {
    pub fn open(tree: sled::Tree, gate: Arc<super::gate::Gate>) -> Result<EventLog> {
        let last = match tree.last()? {
            Some((k, _)) => seq_of(&k)?,
            None => 0,
        };
        let first = match tree.first()? {
            Some((k, _)) => seq_of(&k)?,
            None => last + 1,
        };
        Ok(EventLog {
            tree,
            gate,
            next: Mutex::new(last + 1),
            written: AtomicU64::new(last),
            // Whatever a restart finds in sled is on disk.
            published: AtomicU64::new(last),
            first: AtomicU64::new(first),
            pending: Mutex::new(VecDeque::new()),
            live: broadcast::channel(LIVE_BUFFER).0,
        })
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Takes the right to append events (see [`EventWriter`]).
    pub fn writer(&self) -> EventWriter<'_> {
        EventWriter {
            log: self,
            guard: self.next.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    fn lock_pending(&self) -> MutexGuard<'_, VecDeque<Event>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest sequence number written to sled (maybe not durable yet).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The newest sequence number subscribers may see.
    /// Live subscribers now.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// The oldest sequence number still kept.
    pub fn first_retained(&self) -> u64 {
        self.first.load(Ordering::Acquire)
    }

    /// A flush that began after `upto` was written has finished: everything
    /// up to it is durable; hand it to live subscribers.
    pub fn publish_upto(&self, upto: u64) {
        let ready: Vec<Event> = {
            let mut p = self.lock_pending();
            let n = p.iter().take_while(|e| e.seq <= upto).count();
            p.drain(..n).collect()
        };
        if let Some(last) = ready.last() {
            self.published.fetch_max(last.seq, Ordering::AcqRel);
        }
        for e in ready {
            // No receivers is fine: nobody is watching.
            if self.live.send(Arc::new(e)).is_err() {
                continue;
            }
        }
    }

    /// Stored events `from..=to`, at most `max`.
    pub fn read(&self, from: u64, to: u64, max: usize) -> Result<Vec<Event>> {
        if from > to {
            return Ok(vec![]);
        }
        self.tree
            .range(from.to_be_bytes()..=to.to_be_bytes())
            .values()
            .take(max)
            .map(|v| {
                decode(&v?).map_err(|msg| StoreError::Corrupt {
                    tree: "events",
                    msg,
                })
            })
            .collect()
    }

    /// Drops the oldest events beyond `keep` and those older than
    /// `max_age_ms` (never the newest). Returns how many went.
    pub fn prune(&self, keep: u64, max_age_ms: u64, now: Millis) -> Result<u64> {
        let _gate = self.gate.enter();
        let newest = self.published();
        // The newest is always kept: it tells a reader where the stream is.
        let mut cut = newest.saturating_sub(keep.max(1)) + 1;
        // Age: walk from the oldest while too old.
        if max_age_ms > 0 {
            for v in self.tree.iter().values() {
                let e: Event = decode(&v?).map_err(|msg| StoreError::Corrupt {
                    tree: "events",
                    msg,
                })?;
                if e.seq >= newest || now.saturating_sub(e.at_ms) <= max_age_ms {
                    break;
                }
                cut = cut.max(e.seq + 1);
            }
        }
        let first = self.first_retained();
        if cut <= first {
            return Ok(0);
        }
        let mut n = 0;
        let mut batch = sled::Batch::default();
        for k in self.tree.range(..cut.to_be_bytes()).keys() {
            batch.remove(k?);
            n += 1;
        }
        // First move the start, so no reader is sent to what is going.
        self.first.store(cut, Ordering::Release);
        self.tree.apply_batch(batch)?;
        Ok(n)
    }

    /// Reads the stream from `from` (see [`Subscription`]).
    pub fn subscribe(self: &Arc<Self>, from: u64, filter: EventFilter) -> Subscription {
        Subscription {
            rx: self.live.subscribe(),
            log: self.clone(),
            next: from.max(1),
            filter,
            buf: VecDeque::new(),
        }
    }
}

fn seq_of(k: &[u8]) -> Result<u64> {
    let b: [u8; 8] = k.try_into().map_err(|_| StoreError::Corrupt {
        tree: "events",
        msg: "bad key".into(),
    })?;
    Ok(u64::from_be_bytes(b))
}

/// One reader of the stream: the stored past first, then live events, with
/// no gap and no repeat between the two.
pub struct Subscription {
    log: Arc<EventLog>,
    /// Created before anything is read, so nothing published after the
    /// subscription began is missed.
    rx: broadcast::Receiver<Arc<Event>>,
    next: u64,
    filter: EventFilter,
    buf: VecDeque<Event>,
}

impl Subscription {
    /// The sequence number of the next event this subscription will look at.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next matching event, waiting for one if `wait`; `None` when not
    /// waiting and the stream has nothing more now.
    pub async fn next(&mut self, wait: bool) -> std::result::Result<Option<Event>, SubscribeError> {
        loop {
            while let Some(e) = self.buf.pop_front() {
                self.next = e.seq + 1;
                if self.filter.matches(&e) {
                    return Ok(Some(e));
                }
            }
            let published = self.log.published();
            if self.next <= published {
                let first = self.log.first_retained();
                if self.next < first {
                    return Err(SubscribeError::Pruned { first });
                }
                let batch = self.log.read(self.next, published, READ_BATCH)?;
                match batch.first() {
                    // Pruned while we read.
                    Some(e) if e.seq != self.next => {
                        return Err(SubscribeError::Pruned {
                            first: self.log.first_retained(),
                        })
                    }
                    None => {
                        return Err(SubscribeError::Pruned {
                            first: self.log.first_retained(),
                        })
                    }
                    Some(_) => {}
                }
                self.buf.extend(batch);
                continue;
            }
            if !wait {
                return Ok(None);
            }
            match self.rx.recv().await {
                Ok(e) if e.seq < self.next => {}
                Ok(e) if e.seq == self.next => {
                    self.next += 1;
                    if self.filter.matches(&e) {
                        return Ok(Some((*e).clone()));
                    }
                }
                // Ahead of us (published raced our read), or we lagged:
                // read sled again.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(SubscribeError::Closed),
            }
        }
    }
}

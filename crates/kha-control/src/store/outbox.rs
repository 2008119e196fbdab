//! The notification outbox: deliveries (`deliveries`, by id), their index
//! by build (`delivery_builds`: build ‖ id), the ones not yet final
//! (`delivery_due`), and how far the outbox has read the event stream
//! (`notify_meta`). Deliveries decided from one event are written with the
//! cursor past that event in one transaction.

use super::records::{decode, encode};
use super::{corrupt, Result, Store, StoreError};
use crate::notify::Delivery;
use kha_core::BuildId;
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

const CURSOR: &[u8] = b"cursor";

/// `finished` ‖ build id, in `notify_meta`.
fn finish_key(build: BuildId) -> Vec<u8> {
    let mut k = b"finished".to_vec();
    k.extend_from_slice(&build.to_be_bytes());
    k
}

fn build_key(build: BuildId, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&build.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

impl Store {
    /// The last event the outbox has handled; None before its first start.
    pub fn notify_cursor(&self) -> Result<Option<u64>> {
        Ok(self
            .notify_meta
            .get(CURSOR)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    pub fn set_notify_cursor(&self, seq: u64) -> Result<()> {
        let _gate = self.gate.enter();
        self.notify_meta.insert(CURSOR, &seq.to_be_bytes())?;
        Ok(())
    }

    /// Whether the build's end was told of since it last (re)started.
    pub fn notified_finish(&self, build: BuildId) -> Result<bool> {
        Ok(self.notify_meta.get(finish_key(build))?.is_some())
    }

    /// Marks (`true`) or clears (a restart) that the build's end was told.
    pub fn set_notified_finish(&self, build: BuildId, done: bool) -> Result<()> {
        let _gate = self.gate.enter();
        if done {
            self.notify_meta.insert(finish_key(build), &[])?;
        } else {
            self.notify_meta.remove(finish_key(build))?;
        }
        Ok(())
    }

    /// Stores `ds` (new, numbered) and moves the cursor to `seq`, and marks
    /// or clears a build's end as told (`finish`), at once.
    pub fn add_deliveries(
        &self,
        ds: &[Delivery],
        seq: u64,
        finish: Option<(BuildId, bool)>,
    ) -> Result<()> {
        let _gate = self.gate.enter();
        let r = (
            &self.deliveries,
            &self.delivery_builds,
            &self.delivery_due,
            &self.notify_meta,
        )
            .transaction(|(all, by_build, due, meta)| {
                for d in ds {
                    let id = d.id.to_be_bytes();
                    all.insert(&id, encode(d))?;
                    by_build.insert(&build_key(d.build_id, d.id), &[])?;
                    if !d.state.is_final() {
                        due.insert(&id, &[])?;
                    }
                }
                meta.insert(CURSOR, &seq.to_be_bytes())?;
                match finish {
                    Some((b, true)) => {
                        meta.insert(finish_key(b).as_slice(), &[])?;
                    }
                    Some((b, false)) => {
                        meta.remove(finish_key(b).as_slice())?;
                    }
                    None => {}
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            });
        r.map_err(StoreError::from)
    }

    /// Writes a delivery's new state; a final one leaves the due set.
    pub fn put_delivery(&self, d: &Delivery) -> Result<()> {
        let _gate = self.gate.enter();
        let r = (&self.deliveries, &self.delivery_due).transaction(|(all, due)| {
            let id = d.id.to_be_bytes();
            all.insert(&id, encode(d))?;
            if d.state.is_final() {
                due.remove(&id)?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        r.map_err(StoreError::from)
    }

    pub fn get_delivery(&self, id: u64) -> Result<Option<Delivery>> {
        self.deliveries
            .get(id.to_be_bytes())?
            .map(|v| decode(&v).map_err(corrupt("deliveries")))
            .transpose()
    }

    /// Every delivery not yet sent or failed, oldest first.
    pub fn due_deliveries(&self) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for k in self.delivery_due.iter().keys() {
            let k = k?;
            let id = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    tree: "delivery_due",
                    msg: "bad key".into(),
                })?;
            match self.get_delivery(id) {
                Ok(Some(d)) => out.push(d),
                Ok(None) => {}
                // One unreadable record does not hold up the others.
                Err(e) => tracing::warn!(id, error = %e, "skipping an unreadable delivery"),
            }
        }
        Ok(out)
    }

    /// A build's deliveries, oldest first.
    pub fn build_deliveries(&self, build: BuildId) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for k in self.delivery_builds.scan_prefix(build.to_be_bytes()).keys() {
            let k = k?;
            let id = <[u8; 8]>::try_from(&k[8..])
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    tree: "delivery_builds",
                    msg: "bad key".into(),
                })?;
            if let Some(d) = self.get_delivery(id)? {
                out.push(d);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{DeliveryState, Message, Notice, Target};

    fn delivery(id: u64, build: BuildId) -> Delivery {
        Delivery {
            id,
            key: format!("kha-{id}-1"),
            build_id: build,
            project: "p".into(),
            target: Target::Hook {
                name: "post-build".into(),
            },
            notice: Notice {
                version: 1,
                event: "build_finished".into(),
                build: Default::default(),
                job: None,
            },
            message: Message::default(),
            state: DeliveryState::Pending,
            attempts: 0,
            created_ms: 1,
            next_ms: 1,
            updated_ms: 1,
            answer: String::new(),
        }
    }

    #[tokio::test]
    async fn deliveries_and_the_cursor_move_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.notify_cursor().unwrap(), None);
        store
            .add_deliveries(
                &[delivery(10, 1), delivery(11, 2), delivery(12, 1)],
                7,
                Some((1, true)),
            )
            .unwrap();
        assert_eq!(store.notify_cursor().unwrap(), Some(7));
        assert!(store.notified_finish(1).unwrap() && !store.notified_finish(2).unwrap());
        store.set_notified_finish(1, false).unwrap();
        assert!(!store.notified_finish(1).unwrap());
        let ids = |v: Vec<Delivery>| v.iter().map(|d| d.id).collect::<Vec<_>>();
        assert_eq!(ids(store.due_deliveries().unwrap()), [10, 11, 12]);
        assert_eq!(ids(store.build_deliveries(1).unwrap()), [10, 12]);
        let mut d = store.get_delivery(10).unwrap().unwrap();
        d.state = DeliveryState::Retrying;
        store.put_delivery(&d).unwrap();
        assert_eq!(ids(store.due_deliveries().unwrap()), [10, 11, 12]);
        d.state = DeliveryState::Sent;
        store.put_delivery(&d).unwrap();
        assert_eq!(ids(store.due_deliveries().unwrap()), [11, 12]);
        assert_eq!(
            store.build_deliveries(1).unwrap()[0].state,
            DeliveryState::Sent
        );
    }
}

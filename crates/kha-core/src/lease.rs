//! Leases: which builder may run which job, at which fencing epoch, until
//! when. Every job-scoped call from a builder is checked here; a stale epoch
//! or another builder's call is refused.

use crate::{Epoch, JobId, Millis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub job: JobId,
    pub epoch: Epoch,
    pub builder: String,
    pub deadline: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("job {job} is not leased to anyone")]
    NoLease { job: JobId },
    #[error("job {job} epoch {given} is stale: the current epoch is {current}")]
    StaleEpoch {
        job: JobId,
        given: Epoch,
        current: Epoch,
    },
    #[error("job {job} is leased to another builder")]
    WrongBuilder { job: JobId },
}

/// The live leases, keyed by job, and indexed by builder: every heartbeat
/// asks for one builder's leases, which must not cost a scan of everyone's
/// (1,000 builders heartbeating over 2,000 leases took half a core).
#[derive(Debug, Default, Clone)]
pub struct LeaseTable {
    leases: HashMap<JobId, Lease>,
    by_builder: HashMap<String, BTreeSet<JobId>>,
    /// Leases whose builder's last heartbeat said it runs them: any later
    /// message of that builder renews them ([`LeaseTable::touch`]).
    confirmed: HashSet<JobId>,
}

impl LeaseTable {
    pub fn insert(&mut self, lease: Lease) {
        let (job, builder) = (lease.job, lease.builder.clone());
        self.confirmed.remove(&job);
        if let Some(old) = self.leases.insert(job, lease) {
            self.unindex(&old.builder, job);
        }
        self.by_builder.entry(builder).or_default().insert(job);
    }

    fn unindex(&mut self, builder: &str, job: JobId) {
        if let Some(jobs) = self.by_builder.get_mut(builder) {
            jobs.remove(&job);
            if jobs.is_empty() {
                self.by_builder.remove(builder);
            }
        }
    }

    pub fn get(&self, job: JobId) -> Option<&Lease> {
        self.leases.get(&job)
    }

    pub fn remove(&mut self, job: JobId) -> Option<Lease> {
        let lease = self.leases.remove(&job)?;
        self.confirmed.remove(&job);
        self.unindex(&lease.builder, job);
        Some(lease)
    }

    /// The jobs leased to one builder, in job order.
    fn jobs_of<'a>(&'a self, builder: &str) -> impl Iterator<Item = JobId> + 'a {
        self.by_builder
            .get(builder)
            .into_iter()
            .flat_map(|jobs| jobs.iter().copied())
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Is `(job, epoch)` leased to `builder`?
    pub fn check(&self, job: JobId, epoch: Epoch, builder: &str) -> Result<&Lease, LeaseError> {
        let lease = self.leases.get(&job).ok_or(LeaseError::NoLease { job })?;
        if lease.epoch != epoch {
            return Err(LeaseError::StaleEpoch {
                job,
                given: epoch,
                current: lease.epoch,
            });
        }
        if lease.builder != builder {
            return Err(LeaseError::WrongBuilder { job });
        }
        Ok(lease)
    }

    /// Renews the leases a builder reports in a heartbeat. Returns the
    /// `(job, epoch)` pairs that are really its own; anything else it runs
    /// must be stopped. What it reports becomes what its other messages
    /// renew ([`LeaseTable::touch`]); a lease of its that it does not report
    /// (a grant it never got) is renewed by nothing and expires.
    pub fn renew(
        &mut self,
        builder: &str,
        running: &[(JobId, Epoch)],
        now: Millis,
        ttl: Millis,
    ) -> Vec<(JobId, Epoch)> {
        if let Some(mine) = self.by_builder.get(builder) {
            for j in mine {
                self.confirmed.remove(j);
            }
        }
        let mut kept = Vec::new();
        for &(job, epoch) in running {
            if let Some(l) = self.leases.get_mut(&job) {
                if l.epoch == epoch && l.builder == builder {
                    l.deadline = l.deadline.max(now + ttl);
                    kept.push((job, epoch));
                    self.confirmed.insert(job);
                }
            }
        }
        kept
    }

    /// A message from `builder` arrived: it is alive, so the leases its
    /// last heartbeat confirmed are renewed, whatever queues behind it
    /// before its next heartbeat is read. Returns how many.
    pub fn touch(&mut self, builder: &str, now: Millis, ttl: Millis) -> usize {
        let Some(jobs) = self.by_builder.get(builder) else {
            return 0;
        };
        let mut n = 0;
        for job in jobs {
            if !self.confirmed.contains(job) {
                continue;
            }
            if let Some(l) = self.leases.get_mut(job) {
                l.deadline = l.deadline.max(now + ttl);
                n += 1;
            }
        }
        n
    }

    /// Extends every lease of one builder (a live session is proof enough).
    pub fn renew_all(&mut self, builder: &str, now: Millis, ttl: Millis) {
        let jobs: Vec<JobId> = self.jobs_of(builder).collect();
        for job in jobs {
            if let Some(l) = self.leases.get_mut(&job) {
                l.deadline = l.deadline.max(now + ttl);
            }
        }
    }

    /// Brings every lease of one builder forward to `deadline` at the latest.
    pub fn shorten(&mut self, builder: &str, deadline: Millis) {
        let jobs: Vec<JobId> = self.jobs_of(builder).collect();
        for job in jobs {
            if let Some(l) = self.leases.get_mut(&job) {
                l.deadline = l.deadline.min(deadline);
            }
        }
    }

    /// The jobs a builder should be running, in job order.
    pub fn held_by(&self, builder: &str) -> Vec<(JobId, Epoch)> {
        self.jobs_of(builder)
            .filter_map(|j| self.leases.get(&j).map(|l| (l.job, l.epoch)))
            .collect()
    }

    /// Removes and returns the leases whose deadline has passed.
    pub fn take_expired(&mut self, now: Millis) -> Vec<Lease> {
        let expired: Vec<JobId> = self
            .leases
            .values()
            .filter(|l| l.deadline <= now)
            .map(|l| l.job)
            .collect();
        let mut out: Vec<Lease> = expired.into_iter().filter_map(|j| self.remove(j)).collect();
        out.sort_unstable_by_key(|l| l.job);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, FakeClock};

    fn lease(job: JobId, epoch: Epoch, builder: &str, deadline: Millis) -> Lease {
        Lease {
            job,
            epoch,
            builder: builder.into(),
            deadline,
        }
    }

    #[test]
    fn fencing() {
        let mut t = LeaseTable::default();
        t.insert(lease(1, 2, "a", 100));
        assert!(t.check(1, 2, "a").is_ok());
        assert_eq!(
            t.check(1, 1, "a").unwrap_err(),
            LeaseError::StaleEpoch {
                job: 1,
                given: 1,
                current: 2
            }
        );
        assert_eq!(
            t.check(1, 2, "b").unwrap_err(),
            LeaseError::WrongBuilder { job: 1 }
        );
        assert_eq!(
            t.check(7, 1, "a").unwrap_err(),
            LeaseError::NoLease { job: 7 }
        );
    }

    #[test]
    fn heartbeats_keep_leases_alive_and_silence_expires_them() {
        let clock = FakeClock::new(1_000);
        let ttl = 300;
        let mut t = LeaseTable::default();
        t.insert(lease(1, 1, "a", clock.now() + ttl));
        t.insert(lease(2, 1, "b", clock.now() + ttl));
        for _ in 0..10 {
            clock.advance(100);
            // builder a reports job 1 plus a job it should not run
            let kept = t.renew("a", &[(1, 1), (2, 1), (3, 1)], clock.now(), ttl);
            assert_eq!(kept, vec![(1, 1)]);
            let expired = t.take_expired(clock.now());
            if clock.now() < 1_000 + ttl {
                assert!(expired.is_empty());
            } else if !expired.is_empty() {
                assert_eq!(expired, vec![lease(2, 1, "b", 1_300)]);
            }
        }
        assert!(t.get(2).is_none());
        assert!(t.get(1).is_some());
        assert_eq!(t.held_by("a"), vec![(1, 1)]);
    }

    #[test]
    fn stale_epoch_does_not_renew() {
        let mut t = LeaseTable::default();
        t.insert(lease(1, 3, "a", 10));
        assert!(t.renew("a", &[(1, 2)], 5, 100).is_empty());
        assert_eq!(t.get(1).unwrap().deadline, 10);
        assert_eq!(t.take_expired(10).len(), 1);
    }

    #[test]
    fn the_builder_index_follows_every_change() {
        let mut t = LeaseTable::default();
        t.insert(lease(3, 1, "a", 100));
        t.insert(lease(1, 1, "a", 100));
        t.insert(lease(2, 1, "b", 100));
        assert_eq!(t.held_by("a"), vec![(1, 1), (3, 1)]);
        // Handed to another builder at a new epoch.
        t.insert(lease(3, 2, "b", 100));
        assert_eq!(t.held_by("a"), vec![(1, 1)]);
        assert_eq!(t.held_by("b"), vec![(2, 1), (3, 2)]);
        t.remove(1);
        assert!(t.held_by("a").is_empty());
        assert!(!t.by_builder.contains_key("a"));
        assert_eq!(t.take_expired(100).len(), 2);
        assert!(t.held_by("b").is_empty() && t.is_empty() && t.by_builder.is_empty());
    }

    #[test]
    fn any_message_renews_only_what_the_last_heartbeat_confirmed() {
        let mut t = LeaseTable::default();
        t.insert(lease(1, 1, "a", 100));
        t.insert(lease(2, 1, "a", 100));
        t.insert(lease(3, 1, "b", 100));
        // Nothing confirmed yet: a message renews nothing.
        assert_eq!(t.touch("a", 50, 300), 0);
        assert_eq!(t.get(1).unwrap().deadline, 100);
        // The heartbeat reports job 1 only (job 2's grant was lost).
        t.renew("a", &[(1, 1)], 60, 300);
        assert_eq!(t.touch("a", 200, 300), 1);
        assert_eq!(t.get(1).unwrap().deadline, 500);
        assert_eq!(t.get(2).unwrap().deadline, 100);
        // Another builder's message renews none of a's.
        assert_eq!(t.touch("b", 300, 300), 0);
        assert_eq!(t.get(1).unwrap().deadline, 500);
        // A later heartbeat without job 1 withdraws its confirmation.
        t.renew("a", &[], 400, 300);
        assert_eq!(t.touch("a", 450, 300), 0);
        // Handed out again, a lease starts unconfirmed.
        t.renew("a", &[(1, 1)], 460, 300);
        t.insert(lease(1, 2, "a", 470));
        assert_eq!(t.touch("a", 480, 300), 0);
        assert_eq!(t.take_expired(500).len(), 3);
        assert!(t.confirmed.is_empty());
    }

    #[test]
    fn shorten_only_brings_deadlines_forward() {
        let mut t = LeaseTable::default();
        t.insert(lease(1, 1, "a", 1_000));
        t.insert(lease(2, 1, "a", 50));
        t.shorten("a", 100);
        assert_eq!(t.get(1).unwrap().deadline, 100);
        assert_eq!(t.get(2).unwrap().deadline, 50);
    }
}

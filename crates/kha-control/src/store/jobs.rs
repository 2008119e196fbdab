//! Builds and jobs in sled: a build and its jobs written in one
//! transaction, listing a project's builds newest first, and
//! [`Store::transition`]: a job's change with its lease, its queue entry,
//! its build's derived state and the events they give, all in one
//! transaction.

use super::records::{decode, encode, Build, BuildContextOnly, Job, LeaseRec};
use super::{
    abort, corrupt, dedup_key, project_build_key, project_prefix, tx_get, LeaseEffect, QueueEffect,
    Result, Store, StoreError,
};
use kha_core::event::{self, Event, EventKind};
use kha_core::{BuildId, JobId, JobState, Millis};
use sled::Transactional;

impl Store {
    /// Looks up an earlier build of the same project, branch and commit.
    pub fn find_dedup(&self, project: &str, branch: &str, commit: &str) -> Result<Option<BuildId>> {
        Ok(self
            .dedup
            .get(dedup_key(project, branch, commit))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Forgets which build a project, dedup name and commit gave, so that
    /// the commit can be built again (after a build that could not even
    /// fetch it).
    pub fn forget_dedup(&self, project: &str, name: &str, commit: &str) -> Result<()> {
        let _gate = self.gate.enter();
        self.dedup.remove(dedup_key(project, name, commit))?;
        Ok(())
    }

    /// Writes a new build and its jobs, queueing every job still `Queued`,
    /// in one transaction. With stages, the jobs of every stage after the
    /// first are held back as `waiting` first (`build` and `jobs` are
    /// updated to what is written).
    pub fn create_build(&self, build: &mut Build, jobs: &mut [Job], now: Millis) -> Result<()> {
        let _gate = self.gate.enter();
        super::stages::hold_later_stages(build, jobs);
        let (build, jobs) = (&*build, &*jobs);
        let pb_key = project_build_key(&build.project, build.id);
        let dd_key = dedup_key(
            &build.project,
            &super::records::dedup_name(&build.branch, build.pr_number),
            &build.commit,
        );
        let marks = super::marks::encode(
            &jobs
                .iter()
                .map(|j| super::marks::Mark::of(build, j))
                .collect::<Vec<_>>(),
        );
        let mut evs = vec![build_event(EventKind::BuildCreated, build)];
        for j in jobs {
            match j.state {
                JobState::Queued => evs.push(job_event(EventKind::JobQueued, j)),
                s if s.is_final() => evs.push(job_event(EventKind::JobFinished, j)),
                _ => {}
            }
        }
        if build.state.is_final() {
            evs.push(build_event(EventKind::BuildFinished, build));
        }
        let writer = self.events.writer();
        let written = (
            &self.builds,
            &self.jobs,
            &self.queue,
            &self.project_builds,
            &self.dedup,
            &self.build_marks,
            self.events.tree(),
        )
            .transaction(|(tb, tj, tq, tpb, tdd, tm, tev)| {
                tb.insert(&build.id.to_be_bytes(), encode(build))?;
                tm.insert(&build.id.to_be_bytes(), marks.as_slice())?;
                for j in jobs {
                    tj.insert(&j.id.to_be_bytes(), encode(j))?;
                    if j.state == JobState::Queued && j.queue_key != 0 {
                        tq.insert(&j.queue_key.to_be_bytes(), &j.id.to_be_bytes())?;
                    }
                }
                tpb.insert(pb_key.as_slice(), &[])?;
                tdd.insert(dd_key.as_slice(), &build.id.to_be_bytes())?;
                writer.stage(tev, &evs, now)
            })?;
        writer.committed(written);
        Ok(())
    }

    pub fn get_build(&self, id: BuildId) -> Result<Option<Build>> {
        self.build_as(id)
    }

    /// A build's context alone (what its jobs' `TRAVIS_*` variables come
    /// from); None for a build that is not there or has none.
    pub fn get_build_context(&self, id: BuildId) -> Result<Option<kha_core::travis::BuildContext>> {
        Ok(self
            .build_as::<BuildContextOnly>(id)?
            .and_then(|b| b.context))
    }

    /// A build record decoded as `T`: the whole [`Build`], or only the
    /// fields a caller reads.
    fn build_as<T: for<'de> serde::Deserialize<'de>>(&self, id: BuildId) -> Result<Option<T>> {
        self.builds
            .get(id.to_be_bytes())?
            .map(|v| decode(&v).map_err(corrupt("builds")))
            .transpose()
    }

    pub fn put_build(&self, b: &Build) -> Result<()> {
        let _gate = self.gate.enter();
        self.builds.insert(b.id.to_be_bytes(), encode(b))?;
        Ok(())
    }

    pub fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.jobs
            .get(id.to_be_bytes())?
            .map(|v| decode(&v).map_err(corrupt("jobs")))
            .transpose()
    }

    /// A project's builds (of one branch, if given), newest first: page
    /// `page` (1-based) of `per_page`, and how many there are in all.
    pub fn list_builds(
        &self,
        project: &str,
        branch: Option<&str>,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<Build>, u64)> {
        let skip = (page.max(1) as usize - 1) * per_page as usize;
        let mut total = 0u64;
        let mut out = Vec::new();
        for id in self.project_build_ids(project) {
            let id = id?;
            let wanted = total as usize >= skip && out.len() < per_page as usize;
            if branch.is_none() && !wanted {
                total += 1;
                continue;
            }
            let Some(b) = self.get_build(id)? else {
                continue;
            };
            if branch.is_some_and(|br| br != b.branch) {
                continue;
            }
            if wanted {
                out.push(b);
            }
            total += 1;
        }
        Ok((out, total))
    }

    /// A project's build ids, newest first.
    pub fn project_build_ids(&self, project: &str) -> impl Iterator<Item = Result<BuildId>> {
        let prefix = project_prefix(project);
        let n = prefix.len();
        self.project_builds
            .scan_prefix(&prefix)
            .keys()
            .map(move |k| {
                let k = k?;
                let inv: [u8; 8] = k[n..].try_into().map_err(|_| StoreError::Corrupt {
                    tree: "project_builds",
                    msg: "bad key".into(),
                })?;
                Ok(u64::MAX - u64::from_be_bytes(inv))
            })
    }

    /// Applies `f` to a job and, in the same transaction, the lease and
    /// queue effects it returns and the build's derived state. Returns the
    /// job and build as written. `f` may run more than once (on conflict).
    pub fn transition<F>(&self, job_id: JobId, now: Millis, f: F) -> Result<(Job, Build)>
    where
        F: Fn(&mut Job) -> std::result::Result<(LeaseEffect, QueueEffect), StoreError>,
    {
        let _gate = self.gate.enter();
        let writer = self.events.writer();
        let (job, build, written) = (
            &self.jobs,
            &self.builds,
            &self.queue,
            &self.leases,
            &self.build_marks,
            self.events.tree(),
        )
            .transaction(|(tj, tb, tq, tl, tm, tev)| {
                let key = job_id.to_be_bytes();
                let Some(mut job) = tx_get::<Job>(tj, "jobs", &key)? else {
                    return abort(StoreError::Rejected(format!("job {job_id} does not exist")));
                };
                let (job_before, cancel_before) = (job.state, job.cancel_requested);
                let (lease, queue) = match f(&mut job) {
                    Ok(x) => x,
                    Err(e) => return abort(e),
                };
                match lease {
                    LeaseEffect::Keep => {}
                    LeaseEffect::Set => {
                        let rec = LeaseRec {
                            job: job.id,
                            epoch: job.epoch,
                            builder: job.builder.clone(),
                        };
                        tl.insert(&key, encode(&rec))?;
                    }
                    LeaseEffect::Remove => {
                        tl.remove(&key)?;
                    }
                }
                match queue {
                    QueueEffect::Keep => {}
                    QueueEffect::Insert(q) => {
                        if job.queue_key != 0 {
                            tq.remove(&job.queue_key.to_be_bytes())?;
                        }
                        job.queue_key = q;
                        tq.insert(&q.to_be_bytes(), &key)?;
                    }
                    QueueEffect::Remove => {
                        if job.queue_key != 0 {
                            tq.remove(&job.queue_key.to_be_bytes())?;
                        }
                        job.queue_key = 0;
                    }
                }
                tj.insert(&key, encode(&job))?;
                let bkey = job.build.to_be_bytes();
                let Some(mut build) = tx_get::<Build>(tb, "builds", &bkey)? else {
                    return abort(StoreError::Rejected(format!(
                        "build {} of job {job_id} does not exist",
                        job.build
                    )));
                };
                let build_before = build.state;
                // The build's state, and with stages what the job's change
                // calls for (the next stage queued, later ones canceled),
                // in this same transaction.
                let trees = super::stages::Trees {
                    jobs: tj,
                    queue: tq,
                    marks: tm,
                };
                let (state, stage_events) = super::stages::follow(&trees, &build, Some(&job), now)?;
                if state != build.state {
                    build.state = state;
                    build.finished_ms = if state.is_final() { now } else { 0 };
                    tb.insert(&bkey, encode(&build))?;
                }
                let kinds = event::transition_events(
                    event::Snapshot {
                        job: job_before,
                        cancel_requested: cancel_before,
                        build: build_before,
                    },
                    event::Snapshot {
                        job: job.state,
                        cancel_requested: job.cancel_requested,
                        build: build.state,
                    },
                );
                let evs: Vec<Event> = kinds
                    .into_iter()
                    .map(|k| match k {
                        EventKind::BuildStarted
                        | EventKind::BuildFinished
                        | EventKind::BuildRestarted
                        | EventKind::BuildRequeued => build_event(k, &build),
                        k => job_event(k, &job),
                    })
                    .chain(stage_events)
                    .collect();
                let written = writer.stage(tev, &evs, now)?;
                Ok((job, build, written))
            })?;
        writer.committed(written);
        Ok((job, build))
    }

    /// Queued jobs in queue order.
    pub fn queued_jobs(&self) -> Result<Vec<(u64, JobId)>> {
        self.queue
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let k: [u8; 8] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: "queue",
                    msg: "bad key".into(),
                })?;
                let v: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: "queue",
                    msg: "bad value".into(),
                })?;
                Ok((u64::from_be_bytes(k), u64::from_be_bytes(v)))
            })
            .collect()
    }

    pub fn leases(&self) -> Result<Vec<LeaseRec>> {
        self.leases
            .iter()
            .values()
            .map(|v| decode(&v?).map_err(corrupt("leases")))
            .collect()
    }
}

pub(super) fn build_event(kind: EventKind, b: &Build) -> Event {
    let mut e = Event::new(kind);
    e.project = b.project.clone();
    e.build_id = b.id;
    e.build_state = Some(b.state);
    e.branch = b.branch.clone();
    e.commit = b.commit.clone();
    e
}

pub(super) fn job_event(kind: EventKind, j: &Job) -> Event {
    let mut e = Event::new(kind);
    e.project = j.project.clone();
    e.build_id = j.build;
    e.job_id = j.id;
    e.job_number = j.number;
    e.job_state = Some(j.state);
    e.builder = j.builder.clone();
    e.epoch = j.epoch;
    e.detail = j.detail.clone();
    e
}

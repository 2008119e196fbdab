//! The fairness pick: which queued job goes to which builder next. A pure
//! function of the scheduler's index, tested by a table in `tests.rs`.
//!
//! - Projects take turns (round robin): the first project considered is the
//!   one after the project served last, in name order, wrapping around;
//!   a project whose next job was asked to run next goes before them.
//! - A project at its limit of running jobs is passed over, and so are the
//!   jobs of a build that waits for an earlier build of its branch (the
//!   projects' rules, [`Gate`]).
//! - Within a project, jobs go in queue order, skipping only jobs no builder
//!   can take now; a project none of whose jobs can be taken is passed over.
//! - A builder can take a job when it has a free slot, is not draining, has
//!   every label the job requires and has not refused the job before.
//! - A job with encrypted variables goes only to a builder an admin trusts.
//! - Among the builders that can take a job, the one with the most free
//!   slots gets it (ties: the smallest name), which spreads the load.

use super::Queued;
use kha_core::{BuildId, JobId, Labels};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// What the projects' rules hold back now (`Inner::gate`).
#[derive(Debug, Default)]
pub(super) struct Gate<'a> {
    /// Projects at their limit of running jobs: the limit, and how many run.
    pub full: HashMap<&'a str, (u32, u32)>,
    /// For each branch held to one build at a time, the build whose jobs
    /// may go: the one running, else the oldest queued; and whether it is
    /// running.
    pub lanes: HashMap<(&'a str, &'a str), (BuildId, bool)>,
}

impl<'a> Gate<'a> {
    /// Notes a job of `build` on a branch held to one build at a time.
    pub fn claim(&mut self, project: &'a str, branch: &'a str, build: BuildId, running: bool) {
        let e = self
            .lanes
            .entry((project, branch))
            .or_insert((build, running));
        // A running build keeps its branch; among queued ones the oldest
        // goes first.
        if !e.1 && (running || build < e.0) {
            *e = (build, running);
        }
    }

    /// Whether a queued job may go now, as far as the rules say.
    pub fn lets(&self, q: &Queued) -> bool {
        !self.full.contains_key(&*q.project)
            && self
                .lanes
                .get(&(&*q.project, &*q.branch))
                .is_none_or(|(b, _)| *b == q.build)
    }
}

/// The order projects are considered in: round robin from the one after
/// the project served last, with the projects whose next job was asked to
/// run next moved ahead.
pub(super) fn project_order<'a>(
    queues: &'a BTreeMap<String, VecDeque<JobId>>,
    queued: &HashMap<JobId, Queued>,
    last_served: Option<&str>,
) -> Vec<&'a String> {
    let mut order: Vec<&String> = queues.keys().collect();
    if let Some(last) = last_served {
        let split = order.partition_point(|p| p.as_str() <= last);
        order.rotate_left(split);
    }
    let next = |p: &String| {
        queues
            .get(p)
            .and_then(|q| q.front())
            .and_then(|j| queued.get(j))
            .is_some_and(|q| q.priority >= kha_core::priority::NEXT)
    };
    if order.iter().any(|p| next(p)) {
        // Stable: the turns stay as they were within each group.
        order.sort_by_key(|p| !next(p));
    }
    order
}

/// What the pick needs to know of a connected builder.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slots<'a> {
    pub id: &'a str,
    pub free: u32,
    pub draining: bool,
    pub labels: &'a Labels,
    /// Trusted with encrypted variables.
    pub trusted: bool,
}

impl Slots<'_> {
    fn open(&self) -> bool {
        self.free > 0 && !self.draining
    }
}

/// Everything the pick looks at. `B` walks the connected builders; it is
/// walked again for each job considered, and walking it allocates nothing
/// (a control node with a thousand builders picks hundreds of times a
/// second).
pub(super) struct PickInput<'a, B> {
    /// The queues per project, each in queue order.
    pub queues: &'a BTreeMap<String, VecDeque<JobId>>,
    pub last_served: Option<&'a str>,
    /// Each queued job's project and requirements; a job missing here is
    /// passed over.
    pub queued: &'a HashMap<JobId, Queued>,
    pub builders: B,
    /// The builders that refused each job.
    pub refused: &'a HashMap<JobId, HashMap<String, String>>,
    pub gate: &'a Gate<'a>,
}

/// A job and the builder it goes to; `index` is the job's position in its
/// project's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pick {
    pub project: String,
    pub index: usize,
    pub job: JobId,
    pub builder: String,
}

/// The next job to offer and to whom, or `None` when no queued job can go
/// anywhere now.
pub(super) fn pick<'a, B>(input: &PickInput<'a, B>) -> Option<Pick>
where
    B: Iterator<Item = Slots<'a>> + Clone,
{
    let open = || input.builders.clone().filter(Slots::open);
    // No builder has a free slot: nothing can go anywhere.
    open().next()?;
    for project in project_order(input.queues, input.queued, input.last_served) {
        if input.gate.full.contains_key(project.as_str()) {
            continue;
        }
        let Some(queue) = input.queues.get(project) else {
            continue;
        };
        for (index, &job) in queue.iter().enumerate() {
            let Some(q) = input.queued.get(&job) else {
                continue;
            };
            if !input.gate.lets(q) {
                continue;
            }
            let refused = input.refused.get(&job);
            // Most free slots first, then the smallest name. A builder is
            // checked against the job only when it would beat the best one
            // so far: the checks (labels, refusals) cost more than the
            // comparison, and most builders lose it.
            let mut best: Option<Slots<'_>> = None;
            for b in open() {
                let beats = best.is_none_or(|c| {
                    b.free.cmp(&c.free).then_with(|| c.id.cmp(b.id)) == std::cmp::Ordering::Greater
                });
                if beats
                    && (b.trusted || !q.secrets)
                    && !refused.is_some_and(|r| r.contains_key(b.id))
                    && b.labels.satisfies(&q.requires)
                {
                    best = Some(b);
                }
            }
            if let Some(b) = best {
                return Some(Pick {
                    project: project.clone(),
                    index,
                    job,
                    builder: b.id.to_string(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn a_job_with_secrets_goes_only_to_a_trusted_builder() {
        let linux = Labels::parse(["os=linux"]).unwrap();
        let queues = BTreeMap::from([("p".to_string(), VecDeque::from([1, 2]))]);
        let queued = HashMap::from([
            (1, Queued::for_test("p", linux.clone(), true)),
            (2, Queued::for_test("p", linux.clone(), false)),
        ]);
        let refused = HashMap::new();
        let slots = |id, trusted| Slots {
            id,
            free: 1,
            draining: false,
            labels: &linux,
            trusted,
        };
        let pick_with = |builders: &[Slots<'_>]| {
            pick(&PickInput {
                queues: &queues,
                last_served: None,
                queued: &queued,
                builders: builders.iter().copied(),
                refused: &refused,
                gate: &Default::default(),
            })
            .map(|p| (p.job, p.builder))
        };
        // The untrusted builder passes over job 1 and takes job 2.
        assert_eq!(pick_with(&[slots("u", false)]), Some((2, "u".into())));
        assert_eq!(
            pick_with(&[slots("u", false), slots("t", true)]),
            Some((1, "t".into()))
        );
    }
}

//! Why a queued job waits: the answer the queue page, `kha build show` and
//! the API give for each job not yet running. The decision is pure
//! ([`why_waiting`], tested by a table); [`Scheduler::waiting`] takes a
//! snapshot of the queue and the connected builders under the lock and asks
//! it for every job.

use super::pick::{project_order, Gate};
use super::{Inner, Queued, Scheduler};
use kha_core::{JobId, Labels};

/// What the decision needs to know of one connected builder.
#[derive(Debug, Clone)]
pub struct BuilderSlots<'a> {
    pub labels: &'a Labels,
    pub slots: u32,
    pub free: u32,
    pub draining: bool,
    /// Trusted with encrypted variables.
    pub trusted: bool,
    /// It refused this job already (no image here has what it needs), and
    /// the reason it gave.
    pub refused: Option<&'a str>,
}

/// Why a job with these requirements is not running, or "" when a builder
/// could take it now (it is about to be offered).
pub fn why_waiting(required: &Labels, secrets: bool, builders: &[BuilderSlots<'_>]) -> String {
    if builders.is_empty() {
        return "no builder is connected".into();
    }
    let able: Vec<&BuilderSlots> = builders
        .iter()
        .filter(|b| b.labels.satisfies(required))
        .collect();
    if able.is_empty() {
        // Name what no builder offers at all; else the combination is missing.
        let mut nowhere: Vec<String> = Vec::new();
        for (k, v) in builders[0].labels.missing(required) {
            if builders[1..]
                .iter()
                .all(|b| b.labels.missing(required).contains(&(k, v)))
            {
                nowhere.push(format!("{k}={v}"));
            }
        }
        return if nowhere.is_empty() {
            format!("no connected builder offers all of {required}")
        } else {
            format!("no connected builder offers {}", nowhere.join(", "))
        };
    }
    let able: Vec<&BuilderSlots> = if secrets {
        let trusted: Vec<&BuilderSlots> = able.into_iter().filter(|b| b.trusted).collect();
        if trusted.is_empty() {
            return "it has encrypted variables and waits for a trusted builder (`kha builder trust ID`)".into();
        }
        trusted
    } else {
        able
    };
    let working: Vec<&&BuilderSlots> = able.iter().filter(|b| !b.draining).collect();
    if working.is_empty() {
        return "every builder that could run it is draining".into();
    }
    let willing: Vec<&&&BuilderSlots> = working.iter().filter(|b| b.refused.is_none()).collect();
    if willing.is_empty() {
        // The builder's own words say what is missing where.
        return match working
            .iter()
            .find_map(|b| b.refused.filter(|r| !r.is_empty()))
        {
            Some(why) => format!("every builder that could run it refused it: {why}"),
            None => "every builder that could run it refused it".into(),
        };
    }
    if willing.iter().any(|b| b.free > 0) {
        return String::new();
    }
    let slots: u32 = willing.iter().map(|b| b.slots).sum();
    format!(
        "all {slots} matching slot{} busy",
        if slots == 1 { " is" } else { "s are" }
    )
}

/// Why the projects' rules hold a queued job back, or `None`.
fn held_by_rules(gate: &Gate<'_>, q: &Queued) -> Option<String> {
    if let Some((limit, running)) = gate.full.get(&*q.project) {
        return Some(format!(
            "{} runs at most {limit} job{} at a time and {running} {} running",
            q.project,
            if *limit == 1 { "" } else { "s" },
            if *running == 1 { "is" } else { "are" },
        ));
    }
    match gate.lanes.get(&(&*q.project, &*q.branch)) {
        Some((build, running)) if *build != q.build => Some(format!(
            "build {build} of branch {} {} first ({} runs one build of a branch at a time)",
            q.branch,
            if *running { "runs" } else { "goes" },
            q.project,
        )),
        _ => None,
    }
}

impl Scheduler {
    /// Every queued job in the order they will be offered (projects taking
    /// turns, as dispatch does), with why each waits ("" for a job that is
    /// about to be offered, "offered to NAME" for one offered already).
    pub fn waiting(&self) -> Vec<(JobId, String)> {
        let inner = self.lock();
        let gate = inner.gate();
        let mut out = Vec::new();
        for job in round_robin(&inner) {
            let why = if let Some(o) = inner.offers.get(&job) {
                let name = inner
                    .sessions
                    .get(&o.builder)
                    .map_or(o.builder.as_str(), |s| s.name.as_str());
                format!("offered to {name}")
            } else {
                Self::reason_locked(&inner, &gate, job)
            };
            out.push((job, why));
        }
        out
    }

    /// Why one queued job waits; `None` when it is not queued.
    pub fn why_waiting(&self, job: JobId) -> Option<String> {
        let inner = self.lock();
        inner.queued.get(&job)?;
        Some(Self::reason_locked(&inner, &inner.gate(), job))
    }

    /// [`Scheduler::why_waiting`] for each of `jobs`, under one lock. Jobs
    /// that no builder refused share their answer with the jobs of the same
    /// requirements: each answer looks at every connected builder, and a
    /// build's jobs mostly require the same.
    pub fn why_waiting_many(&self, jobs: &[JobId]) -> Vec<Option<String>> {
        let inner = self.lock();
        let gate = inner.gate();
        let mut known: Vec<(&Labels, bool, String)> = Vec::new();
        jobs.iter()
            .map(|&job| {
                let q = inner.queued.get(&job)?;
                if let Some(why) = held_by_rules(&gate, q) {
                    return Some(why);
                }
                if inner.refused.contains_key(&job) {
                    return Some(Self::reason_locked(&inner, &gate, job));
                }
                if let Some((_, _, why)) = known
                    .iter()
                    .find(|(r, s, _)| **r == *q.requires && *s == q.secrets)
                {
                    return Some(why.clone());
                }
                let why = Self::reason_locked(&inner, &gate, job);
                known.push((&q.requires, q.secrets, why.clone()));
                Some(why)
            })
            .collect()
    }

    fn reason_locked(inner: &Inner, gate: &Gate<'_>, job: JobId) -> String {
        let Some(q) = inner.queued.get(&job) else {
            return String::new();
        };
        if let Some(why) = held_by_rules(gate, q) {
            return why;
        }
        let refused = inner.refused.get(&job);
        let builders: Vec<BuilderSlots> = inner
            .sessions
            .iter()
            .map(|(id, s)| BuilderSlots {
                labels: &s.labels,
                slots: s.slots,
                free: s.free,
                draining: s.draining,
                trusted: s.trusted,
                refused: refused.and_then(|r| r.get(id)).map(String::as_str),
            })
            .collect();
        why_waiting(&q.requires, q.secrets, &builders)
    }
}

/// The queued jobs, projects taking turns from the one after the project
/// served last (offered jobs, out of the queues, come first).
fn round_robin(inner: &Inner) -> Vec<JobId> {
    let mut out: Vec<JobId> = inner.offers.keys().copied().collect();
    out.sort_unstable();
    let names = project_order(&inner.queues, &inner.queued, inner.last_served.as_deref());
    let mut iters: Vec<_> = names
        .iter()
        .filter_map(|n| inner.queues.get(*n))
        .map(|q| q.iter())
        .collect();
    loop {
        let before = out.len();
        for it in iters.iter_mut() {
            if let Some(&j) = it.next() {
                out.push(j);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(l: &[&str]) -> Labels {
        Labels::parse(l.iter().copied()).unwrap()
    }

    #[test]
    fn reasons() {
        let linux = labels(&["os=linux", "arch=x86_64", "python=3.11,3.12"]);
        let mac = labels(&["os=osx", "arch=arm64", "python=3.13"]);
        let b = |l: &'static Labels, slots, free, draining, refused| BuilderSlots {
            labels: l,
            slots,
            free,
            draining,
            trusted: false,
            refused,
        };
        // Leak the label sets so the table can borrow them for 'static.
        let linux: &'static Labels = Box::leak(Box::new(linux));
        let mac: &'static Labels = Box::leak(Box::new(mac));
        let table: Vec<(&[&str], Vec<BuilderSlots>, &str)> = vec![
            (&["os=linux"], vec![], "no builder is connected"),
            (
                &["os=linux", "python=3.14"],
                vec![b(linux, 2, 2, false, None), b(mac, 1, 1, false, None)],
                "no connected builder offers python=3.14",
            ),
            (
                &["os=linux", "python=3.13"],
                vec![b(linux, 2, 2, false, None), b(mac, 1, 1, false, None)],
                "no connected builder offers all of os=linux,python=3.13",
            ),
            (
                &["os=linux", "python=3.12"],
                vec![b(linux, 2, 1, false, None)],
                "",
            ),
            (
                &["os=linux"],
                vec![b(linux, 6, 0, false, None)],
                "all 6 matching slots are busy",
            ),
            (
                &["os=linux"],
                vec![b(linux, 1, 0, false, None), b(mac, 4, 4, false, None)],
                "all 1 matching slot is busy",
            ),
            (
                &["os=linux"],
                vec![b(linux, 2, 2, true, None)],
                "every builder that could run it is draining",
            ),
            (
                &["os=linux"],
                vec![b(linux, 2, 2, false, Some(""))],
                "every builder that could run it refused it",
            ),
            (
                &["os=linux"],
                vec![b(
                    linux,
                    2,
                    2,
                    false,
                    Some("image arm64 has no otp_release=25"),
                )],
                "every builder that could run it refused it: image arm64 has no otp_release=25",
            ),
        ];
        for (req, builders, want) in table {
            assert_eq!(why_waiting(&labels(req), false, &builders), want, "{req:?}");
        }
    }

    #[test]
    fn jobs_with_secrets_wait_for_a_trusted_builder() {
        let linux: &'static Labels = Box::leak(Box::new(labels(&["os=linux"])));
        let b = |trusted, free| BuilderSlots {
            labels: linux,
            slots: 1,
            free,
            draining: false,
            trusted,
            refused: None,
        };
        let req = labels(&["os=linux"]);
        let waits =
            "it has encrypted variables and waits for a trusted builder (`kha builder trust ID`)";
        assert_eq!(why_waiting(&req, true, &[b(false, 1)]), waits);
        assert_eq!(why_waiting(&req, false, &[b(false, 1)]), "");
        assert_eq!(why_waiting(&req, true, &[b(false, 1), b(true, 1)]), "");
        assert_eq!(
            why_waiting(&req, true, &[b(false, 1), b(true, 0)]),
            "all 1 matching slot is busy"
        );
    }
}

//! The fairness pick as a table: the index the pick sees, and the job and
//! builder it should choose.

use super::*;

/// One row of the fairness table: the index the pick sees, and the job and
/// builder it should choose.
struct PickRow {
    what: &'static str,
    /// Projects and their queues, in queue order.
    queues: &'static [(&'static str, &'static [JobId])],
    last_served: Option<&'static str>,
    /// Jobs that require something other than `os=linux`.
    requires: &'static [(JobId, &'static [&'static str])],
    /// Builders: name, free slots, draining, labels.
    builders: &'static [(&'static str, u32, bool, &'static [&'static str])],
    /// Builders that refused a job.
    refused: &'static [(JobId, &'static str)],
    want: Option<(JobId, &'static str)>,
}

const LINUX: &[&str] = &["os=linux"];
const OSX: &[&str] = &["os=osx"];

#[test]
fn fairness_pick() {
    let table = [
        PickRow {
            what: "nothing queued",
            queues: &[],
            last_served: None,
            requires: &[],
            builders: &[("b1", 1, false, LINUX)],
            refused: &[],
            want: None,
        },
        PickRow {
            what: "no builder connected",
            queues: &[("a", &[1])],
            last_served: None,
            requires: &[],
            builders: &[],
            refused: &[],
            want: None,
        },
        PickRow {
            what: "within a project, queue order",
            queues: &[("a", &[2, 1])],
            last_served: None,
            requires: &[],
            builders: &[("b1", 1, false, LINUX)],
            refused: &[],
            want: Some((2, "b1")),
        },
        PickRow {
            what: "the first turn goes to the first project",
            queues: &[("a", &[1]), ("b", &[2])],
            last_served: None,
            requires: &[],
            builders: &[("b1", 1, false, LINUX)],
            refused: &[],
            want: Some((1, "b1")),
        },
        PickRow {
            what: "the project after the one served last",
            queues: &[("a", &[1]), ("b", &[2])],
            last_served: Some("a"),
            requires: &[],
            builders: &[("b1", 1, false, LINUX)],
            refused: &[],
            want: Some((2, "b1")),
        },
        PickRow {
            what: "after the last project, back to the first",
            queues: &[("a", &[1]), ("b", &[2])],
            last_served: Some("b"),
            requires: &[],
            builders: &[("b1", 1, false, LINUX)],
            refused: &[],
            want: Some((1, "b1")),
        },
        PickRow {
            what: "the project served last has emptied: the next one in name order",
            queues: &[("a", &[1]), ("c", &[3])],
            last_served: Some("b"),
            requires: &[],
            builders: &[("b1", 1, false, LINUX)],
            refused: &[],
            want: Some((3, "b1")),
        },
        PickRow {
            what: "a job no builder can take is skipped, the next one goes",
            queues: &[("a", &[1, 2])],
            last_served: None,
            requires: &[(1, OSX)],
            builders: &[("b1", 1, false, LINUX)],
            refused: &[],
            want: Some((2, "b1")),
        },
        PickRow {
            what: "a job some builder can take is not skipped",
            queues: &[("a", &[1, 2])],
            last_served: None,
            requires: &[(1, OSX)],
            builders: &[("b1", 1, false, LINUX), ("mac", 1, false, OSX)],
            refused: &[],
            want: Some((1, "mac")),
        },
        PickRow {
            what: "a project with nothing anyone can take passes its turn",
            queues: &[("a", &[1]), ("b", &[2])],
            last_served: None,
            requires: &[(1, OSX)],
            builders: &[("b1", 1, false, LINUX)],
            refused: &[],
            want: Some((2, "b1")),
        },
        PickRow {
            what: "nothing anyone can take anywhere",
            queues: &[("a", &[1])],
            last_served: None,
            requires: &[(1, OSX)],
            builders: &[("b1", 4, false, LINUX)],
            refused: &[],
            want: None,
        },
        PickRow {
            what: "every label required must be there",
            queues: &[("a", &[1])],
            last_served: None,
            requires: &[(1, &["os=linux", "arch=arm64"])],
            builders: &[
                ("b1", 4, false, LINUX),
                ("b2", 1, false, &["os=linux", "arch=arm64", "kvm=yes"]),
            ],
            refused: &[],
            want: Some((1, "b2")),
        },
        PickRow {
            what: "a draining builder gets nothing",
            queues: &[("a", &[1])],
            last_served: None,
            requires: &[],
            builders: &[("b1", 4, true, LINUX)],
            refused: &[],
            want: None,
        },
        PickRow {
            what: "a builder without a free slot gets nothing",
            queues: &[("a", &[1])],
            last_served: None,
            requires: &[],
            builders: &[("b1", 0, false, LINUX)],
            refused: &[],
            want: None,
        },
        PickRow {
            what: "a builder that refused the job is passed over",
            queues: &[("a", &[1])],
            last_served: None,
            requires: &[],
            builders: &[("b1", 3, false, LINUX), ("b2", 1, false, LINUX)],
            refused: &[(1, "b1")],
            want: Some((1, "b2")),
        },
        PickRow {
            what: "refused by every builder that could: the next job goes",
            queues: &[("a", &[1, 2])],
            last_served: None,
            requires: &[],
            builders: &[("b1", 3, false, LINUX)],
            refused: &[(1, "b1")],
            want: Some((2, "b1")),
        },
        PickRow {
            what: "the builder with the most free slots gets it",
            queues: &[("a", &[1])],
            last_served: None,
            requires: &[],
            builders: &[("b1", 1, false, LINUX), ("b2", 3, false, LINUX)],
            refused: &[],
            want: Some((1, "b2")),
        },
        PickRow {
            what: "equal free slots: the smallest name",
            queues: &[("a", &[1])],
            last_served: None,
            requires: &[],
            builders: &[("b2", 2, false, LINUX), ("b1", 2, false, LINUX)],
            refused: &[],
            want: Some((1, "b1")),
        },
        PickRow {
            what: "a draining builder with more slots does not win",
            queues: &[("a", &[1])],
            last_served: None,
            requires: &[],
            builders: &[("b1", 5, true, LINUX), ("b2", 1, false, LINUX)],
            refused: &[],
            want: Some((1, "b2")),
        },
    ];
    for row in table {
        let queues: BTreeMap<String, VecDeque<JobId>> = row
            .queues
            .iter()
            .map(|(p, jobs)| (p.to_string(), jobs.iter().copied().collect()))
            .collect();
        let queued: HashMap<JobId, Queued> = row
            .queues
            .iter()
            .flat_map(|(p, jobs)| jobs.iter().map(move |&j| (*p, j)))
            .map(|(p, j)| {
                let labels = row
                    .requires
                    .iter()
                    .find(|(r, _)| *r == j)
                    .map_or(LINUX, |(_, l)| *l);
                let q = Queued::for_test(p, Labels::parse(labels.iter().copied()).unwrap(), false);
                (j, q)
            })
            .collect();
        let labels: Vec<Labels> = row
            .builders
            .iter()
            .map(|(_, _, _, l)| Labels::parse(l.iter().copied()).unwrap())
            .collect();
        let builders: Vec<Slots<'_>> = row
            .builders
            .iter()
            .zip(&labels)
            .map(|(&(id, free, draining, _), labels)| Slots {
                id,
                free,
                draining,
                labels,
                trusted: false,
            })
            .collect();
        let mut refused: HashMap<JobId, HashMap<String, String>> = HashMap::new();
        for &(j, b) in row.refused {
            refused
                .entry(j)
                .or_default()
                .insert(b.to_string(), "cannot".to_string());
        }
        let got = pick(&PickInput {
            queues: &queues,
            last_served: row.last_served,
            queued: &queued,
            builders: builders.iter().copied(),
            refused: &refused,
            gate: &Default::default(),
        });
        let got = got.map(|Pick { job, builder, .. }| (job, builder));
        let want = row.want.map(|(j, b)| (j, b.to_string()));
        assert_eq!(got, want, "{}", row.what);
    }
}

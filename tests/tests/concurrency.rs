//! Concurrency limits and priorities on a running control node with three
//! real builders: a project limited to one running job runs its four jobs
//! one at a time while another project's jobs use the other slots, `kha
//! build show` says why the held jobs wait, a branch held to one build at
//! a time runs its builds in turn, and "run next" jumps the queue.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

/// Four jobs of about 2 s each.
const FOUR: &str = "language: shell\nenv:\n  - N=1\n  - N=2\n  - N=3\n  - N=4\nscript: sleep 2\n";
/// Three jobs of about 6 s each.
const THREE: &str = "language: shell\nenv:\n  - N=1\n  - N=2\n  - N=3\nscript: sleep 6\n";

/// (started, finished) of each job of a finished build.
fn spans(c: &Cluster, build: u64) -> Vec<(u64, u64)> {
    let b = c.wait_build(build, Duration::from_secs(120));
    assert_eq!(b["state"], "passed", "{b}");
    b["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["started_ms"].as_u64().unwrap(),
                j["finished_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn a_project_limited_to_one_job_runs_one_at_a_time_while_another_uses_the_free_slots() {
    let (busy, other) = (Repo::with_travis_yml(FOUR), Repo::with_travis_yml(THREE));
    let c = Fixture::new()
        .project("busy", &busy.url())
        .project("other", &other.url())
        .host_builder("a", 1)
        .host_builder("b", 1)
        .host_builder("c", 1)
        .start();
    c.kha_ok(&["project", "set", "busy", "--max-running-jobs", "1"]);
    assert!(c
        .kha_ok(&["project", "show", "busy"])
        .contains("at most 1 at a time"));
    let b = c.trigger("busy", None);
    let o = c.trigger("other", None);
    // While one of busy's jobs runs, the others say why they wait.
    let why = wait_for("a held job's reason", Duration::from_secs(30), || {
        let shown = c.kha_ok(&["build", "show", &b.to_string()]);
        shown
            .contains("busy runs at most 1 job at a time and 1 is running")
            .then_some(shown)
    });
    assert!(why.contains("waiting"), "{why}");
    let busy_spans = spans(&c, b);
    let other_spans = spans(&c, o);
    // busy's jobs never overlapped one another…
    for (i, a) in busy_spans.iter().enumerate() {
        for b in &busy_spans[i + 1..] {
            assert!(!overlap(*a, *b), "busy ran two at once: {busy_spans:?}");
        }
    }
    // …while other's ran beside them, two at a time on the other slots.
    let beside = other_spans
        .iter()
        .filter(|o| busy_spans.iter().any(|b| overlap(**o, *b)))
        .count();
    assert!(beside >= 2, "busy {busy_spans:?} other {other_spans:?}");
    let together = other_spans
        .iter()
        .enumerate()
        .any(|(i, a)| other_spans[i + 1..].iter().any(|b| overlap(*a, *b)));
    assert!(
        together,
        "other's jobs used the free slots together: {other_spans:?}"
    );
}

#[test]
fn one_build_of_a_branch_at_a_time_and_run_next() {
    let repo = Repo::with_travis_yml("language: shell\nscript: sleep 2\n");
    let c = Fixture::new()
        .project("p", &repo.url())
        .host_builder("a", 2)
        .start();
    c.kha_ok(&["project", "set", "p", "--one-build-per-branch"]);
    let first = c.trigger("p", None);
    let second = c.trigger("p", None);
    let why = wait_for("the later build's reason", Duration::from_secs(30), || {
        let shown = c.kha_ok(&["build", "show", &second.to_string()]);
        shown
            .contains("runs one build of a branch at a time")
            .then_some(shown)
    });
    assert!(why.contains(&format!("build {first}")), "{why}");
    let (a, b) = (spans(&c, first)[0], spans(&c, second)[0]);
    assert!(
        a.1 <= b.0,
        "the second build started after the first ended: {a:?} {b:?}"
    );

    // Run next: with the slots taken, a later build asked to run next
    // goes before an earlier one.
    c.kha_ok(&[
        "project",
        "set",
        "p",
        "--no-one-build-per-branch",
        "--max-running-jobs",
        "1",
    ]);
    let blocker = c.trigger("p", None);
    wait_for("the first build to run", Duration::from_secs(30), || {
        (c.build(blocker)["state"] == "running").then_some(())
    });
    let waiting = c.trigger("p", None);
    let urgent = c.trigger("p", None);
    assert!(c
        .kha_ok(&["build", "show", &urgent.to_string()])
        .contains("priority: default-branch"));
    let said = c.kha_ok(&["build", "prioritize", &urgent.to_string()]);
    assert!(said.contains("runs next"), "{said}");
    assert!(c
        .kha_ok(&["build", "show", &urgent.to_string()])
        .contains("priority: next"));
    let (blocker, waiting, urgent) = (
        spans(&c, blocker)[0],
        spans(&c, waiting)[0],
        spans(&c, urgent)[0],
    );
    assert!(blocker.1 <= urgent.0, "{blocker:?} {urgent:?}");
    assert!(
        urgent.1 <= waiting.0,
        "run next went first: {urgent:?} {waiting:?}"
    );
    // A finished build has nothing to move.
    let o = c.kha(&["build", "prioritize", &first.to_string()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing of it waits"));
}

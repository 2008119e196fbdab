//! End to end: the event stream as the CLI shows it, across a build, a live
//! follower, and a control node killed with SIGKILL and restarted.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every stored event, oldest first, as `kha events --json` prints them.
fn all_events(c: &Cluster) -> Vec<serde_json::Value> {
    c.kha_ok(&["events", "--json", "--from", "1"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn kinds_of(evs: &[serde_json::Value], pred: impl Fn(&serde_json::Value) -> bool) -> Vec<String> {
    evs.iter()
        .filter(|e| pred(e))
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

fn assert_dense(evs: &[serde_json::Value]) {
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, want,
        "sequence numbers are 1, 2, 3, … with no gap or repeat"
    );
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_build_is_told_in_order_live_and_afterwards() {
    let repo = Repo::with_travis_yml(
        "language: shell\nenv:\n  - N=1\n  - N=2\nscript:\n  - echo \"job $N\"\n  - sleep 0.3\n",
    );
    let c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 2)
        .start();

    // A live follower, started before the build.
    let mut follow = Command::new(bin("kha"));
    follow
        .args([
            "events",
            "--follow",
            "--json",
            "--tail",
            "0",
            "--project",
            "demo",
        ])
        .env("KHA_SERVER", c.url())
        .env("KHA_DATA_DIR", c.path("control"))
        .stdout(Stdio::piped());
    let mut child = Proc::spawn_keeping_stdout(&mut follow, c.path("follow.log"));
    let stdout = child.child.stdout.take().unwrap();

    // `--wait` waits on the stream: it returns once the build is final.
    let out = c.kha_json(&["build", "trigger", "demo", "--wait"]);
    assert_eq!(out["state"], "passed", "{out}");
    let id = out["id"].as_u64().unwrap();

    let mut live = vec![];
    let mut lines = BufReader::new(stdout).lines();
    while let Some(Ok(l)) = lines.next() {
        let e: serde_json::Value = serde_json::from_str(&l).unwrap();
        let end = e["kind"] == "build_finished" && e["build_id"] == id;
        live.push(e);
        if end {
            break;
        }
    }
    drop(child);

    let all = all_events(&c);
    assert_dense(&all);
    assert!(
        kinds_of(&all, |e| e["kind"] == "builder_connected").len() == 1,
        "{all:?}"
    );
    // The live follower saw the same events, in the same order.
    let stored: Vec<&serde_json::Value> = all.iter().filter(|e| e["project"] == "demo").collect();
    let first = live[0]["seq"].as_u64().unwrap();
    let tail: Vec<&serde_json::Value> = stored
        .iter()
        .copied()
        .filter(|e| e["seq"].as_u64().unwrap() >= first)
        .collect();
    assert_eq!(live.iter().collect::<Vec<_>>(), tail);

    // The build's story: created, started, finished (passed); each job
    // queued, started, finished, its log growing in between.
    let build = kinds_of(&all, |e| e["build_id"] == id && e["job_id"].is_null());
    assert_eq!(build[0], "build_created", "{build:?}");
    assert_eq!(build.last().unwrap(), "build_finished");
    assert!(build.contains(&"build_started".to_string()), "{build:?}");
    let done = all.iter().find(|e| e["kind"] == "build_finished").unwrap();
    assert_eq!(done["build_state"], "passed");
    for job in c.build(id)["jobs"].as_array().unwrap() {
        let jid = &job["id"];
        let story: Vec<String> = kinds_of(&all, |e| &e["job_id"] == jid)
            .into_iter()
            .filter(|k| k != "job_log")
            .collect();
        assert_eq!(
            story,
            ["job_queued", "job_started", "job_finished"],
            "job {jid}"
        );
    }

    // Filters and a pruned-free resume: from the middle on, the same tail.
    let mid = all[all.len() / 2]["seq"].as_u64().unwrap();
    let rest = c.kha_ok(&["events", "--json", "--from", &mid.to_string()]);
    assert_eq!(rest.lines().count(), all.len() - (mid as usize - 1));
    let only = c.kha_ok(&[
        "events",
        "--json",
        "--from",
        "1",
        "--kind",
        "build_finished",
    ]);
    assert_eq!(only.lines().count(), 1, "{only}");
    let bad = c.kha(&["events", "--kind", "nonsense"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no event kind"));
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_killed_control_node_neither_loses_nor_repeats_events() {
    let repo = Repo::with_travis_yml(
        "language: shell\nscript:\n  - for i in $(seq 1 30); do echo \"line $i\"; sleep 0.05; done\n",
    );
    let mut c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 1)
        .start();
    let first = c.trigger("demo", None);
    wait_for("the job to run", Duration::from_secs(30), || {
        (c.build(first)["jobs"][0]["state"] == "running").then_some(())
    });
    // SIGKILL while the job runs: whatever was stored but not yet sent to
    // anyone must be there once after the restart, and nothing twice.
    c.control.as_mut().unwrap().kill9();
    std::thread::sleep(Duration::from_millis(500));
    c.start_control();
    let b = c.wait_build(first, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    // One more build after the restart, so the stream goes on from there.
    let second = c.kha_json(&["build", "trigger", "demo", "--force", "--wait"]);
    assert_eq!(second["state"], "passed", "{second}");
    assert_eq!(
        second["id"].as_u64().unwrap(),
        first + 1,
        "ids stay dense across the restart"
    );

    let all = all_events(&c);
    assert_dense(&all);
    for id in [first, second["id"].as_u64().unwrap()] {
        let ends = kinds_of(&all, |e| {
            e["build_id"] == id && e["kind"] == "build_finished"
        });
        assert_eq!(ends.len(), 1, "build {id} ended once: {all:?}");
        let created = kinds_of(&all, |e| {
            e["build_id"] == id && e["kind"] == "build_created"
        });
        assert_eq!(created.len(), 1, "build {id} created once");
        let jobs_done = kinds_of(&all, |e| e["build_id"] == id && e["kind"] == "job_finished");
        assert_eq!(jobs_done.len(), 1, "build {id}'s job finished once");
    }
}

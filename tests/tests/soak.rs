//! The crash soak: jobs that print a known sequence run across three
//! builders while the control node is killed with `kill -9` and restarted
//! again and again, and builders crash (their whole process tree killed,
//! as when a machine dies) and come back. At the end nothing is lost:
//! every build passed, every stored log is exactly what its job printed,
//! no job ran twice at the same time, and the event sequence has every
//! number once.
//!
//! Small in CI (`KHA_SOAK_JOBS`, default 30 jobs; 20 control-node kills);
//! by hand: `KHA_SOAK_JOBS=100 cargo test -p kha-tests --test soak -- --nocapture`.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const LINES: u32 = 40;

#[test]
fn jobs_survive_a_control_node_killed_20_times_and_crashing_builders() {
    let jobs: usize = std::env::var("KHA_SOAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let runs = tempfile::tempdir().unwrap();
    let runs_file = runs.path().join("runs");
    // Each run notes its start and end (job id, nanoseconds) on the host:
    // the host executor's jobs share its file system.
    let script = format!(
        "echo \"$TRAVIS_JOB_ID start $(date +%s%N)\" >> {f}\n\
         for i in $(seq 1 {LINES}); do echo \"job $TRAVIS_JOB_ID line $i\"; sleep 0.1; done\n\
         echo \"$TRAVIS_JOB_ID end $(date +%s%N)\" >> {f}\n",
        f = runs_file.display()
    );
    let repo = Repo::temp();
    repo.commit(
        &[
            (".travis.yml", "language: shell\nscript: sh job.sh\n"),
            ("job.sh", &script),
        ],
        "soak",
    );
    let mut c = Fixture::new()
        .project("demo", &repo.url())
        .host_builder("a", 2)
        .host_builder("b", 2)
        .host_builder("c", 2)
        .start();
    let t = Instant::now();
    let ids: Vec<u64> = (0..jobs).map(|_| c.trigger("demo", None)).collect();

    // 20 kills of the control node at pseudo-random moments 1-2.5 s apart,
    // with a builder crash after the 7th and the 14th.
    let (mut control_kills, mut builder_crashes) = (0, 0);
    while control_kills < 20 {
        let pause = 1000 + (t.elapsed().as_nanos() % 1500) as u64;
        std::thread::sleep(Duration::from_millis(pause));
        c.control.as_mut().unwrap().kill9();
        c.start_control();
        control_kills += 1;
        if control_kills % 7 == 0 {
            let i = (control_kills / 7) % 3;
            c.builders[i].proc.kill_tree();
            c.restart_builder(i);
            builder_crashes += 1;
        }
    }
    c.wait_builders_connected(3);

    let mut bytes = 0;
    let mut reruns = 0;
    for id in &ids {
        let b = c.wait_build(*id, Duration::from_secs(120));
        assert_eq!(b["state"], "passed", "{b}");
        let j = &b["jobs"][0];
        let job = j["id"].as_u64().unwrap();
        reruns += j["epoch"].as_u64().unwrap() - 1;
        let mut want = String::from("$ sh job.sh\n");
        for i in 1..=LINES {
            want.push_str(&format!("job {job} line {i}\n"));
        }
        let got = c.log(job);
        assert_eq!(String::from_utf8_lossy(&got), want, "job {job}");
        bytes += got.len();
    }

    let elapsed = t.elapsed();

    // No job ran twice at the same time: each job's runs, by start, end
    // before the next starts (a run cut by its builder's crash has no end).
    let text = std::fs::read_to_string(&runs_file).unwrap();
    let mut by_job: HashMap<u64, Vec<(String, u128)>> = HashMap::new();
    for l in text.lines() {
        let mut w = l.split(' ');
        let (job, what, at) = (w.next().unwrap(), w.next().unwrap(), w.next().unwrap());
        by_job
            .entry(job.parse().unwrap())
            .or_default()
            .push((what.to_string(), at.parse().unwrap()));
    }
    for (job, mut marks) in by_job {
        marks.sort_by_key(|m| m.1);
        let mut running = false;
        for (what, _) in &marks {
            match what.as_str() {
                "start" => running = true,
                _ => {
                    assert!(running, "job {job}: an end without a start: {marks:?}");
                    running = false;
                }
            }
        }
        let starts = marks.iter().filter(|m| m.0 == "start").count();
        let ends = marks.iter().filter(|m| m.0 == "end").count();
        // Two starts in a row are a crashed run (no end) then its rerun.
        assert!(ends >= 1 && starts >= ends, "job {job}: {marks:?}");
    }

    let events: Vec<serde_json::Value> = c
        .kha_ok(&["events", "--json", "--from", "1"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "every event sequence number once");
    eprintln!(
        "soak: {jobs} jobs, {control_kills} control-node kills, {builder_crashes} builder crashes, \
         {reruns} reruns, {bytes} log bytes verified, {} events, in {elapsed:?}; lost: 0",
        seqs.len()
    );
}

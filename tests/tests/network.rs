//! End to end: a bad network between a builder and the control node,
//! made by a [`FaultProxy`] the builder reaches the control node through
//! (partitions, latency, cut connections). Nothing is lost: every log is
//! exactly what its job printed, and every result is recorded once.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::{Duration, Instant};

/// A script that prints `line 1` … `line N`, one every `gap` seconds.
fn counting(n: u32, gap: &str) -> Repo {
    Repo::with_travis_yml(&format!(
        "language: shell\nscript: for i in $(seq 1 {n}); do echo line $i; sleep {gap}; done\n"
    ))
}

/// The `line K` lines of a log, which must be 1..=n once each, in order.
fn assert_counted(log: &[u8], n: u32) {
    let text = String::from_utf8_lossy(log);
    let got: Vec<&str> = text.lines().filter(|l| l.starts_with("line ")).collect();
    let want: Vec<String> = (1..=n).map(|i| format!("line {i}")).collect();
    assert_eq!(got, want, "{text}");
}

fn job_of(c: &Cluster, build: u64) -> serde_json::Value {
    c.build(build)["jobs"][0].clone()
}

/// Processes whose working directory is under `dir` (a builder's jobs).
fn jobs_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|p| p.starts_with(dir)))
        .count()
}

/// Project `demo` printing `n` lines `gap` seconds apart, on a control node
/// whose builders heartbeat every `heartbeat_ms`, and builder `a` (its
/// index is 0) with `slots` slots reaching it through a fault proxy that
/// holds every chunk back by `delay`, from its first connection on.
fn behind_proxy(
    n: u32,
    gap: &str,
    heartbeat_ms: u64,
    slots: u32,
    delay: Duration,
) -> (Cluster, FaultProxy, Repo) {
    let repo = counting(n, gap);
    let mut c = Fixture::new()
        .heartbeat_ms(heartbeat_ms)
        .project("demo", &repo.url())
        .start();
    let proxy = FaultProxy::start(&c.addr());
    proxy.delay(delay);
    c.host_builder_via("a", slots, &proxy.url());
    c.wait_builders_connected(1);
    (c, proxy, repo)
}

/// Waits until build `id`'s job has printed its first lines.
fn wait_first_lines(c: &Cluster, id: u64) {
    wait_for("the job's first lines", Duration::from_secs(30), || {
        (job_of(c, id)["log_len"].as_u64().unwrap_or(0) > 20).then_some(())
    });
}

/// A partition longer than the lease: the job runs again on another
/// builder; when the partition heals, the old builder's buffered log
/// chunks and result are refused by epoch, it stops its copy of the job,
/// and the build is recorded once, with the second run's log whole and the
/// first run's kept as attempt 1.
#[test]
fn a_partition_longer_than_the_lease_reruns_the_job_and_refuses_the_old_epoch() {
    let (mut c, proxy, _repo) = behind_proxy(60, "0.2", 300, 1, Duration::ZERO);
    let a = 0;
    let id = c.trigger("demo", None);
    wait_first_lines(&c, id);
    c.host_builder_with("b", 1, &[]);
    c.wait_builders_connected(2);
    let b_id = c.builders[1].id();

    proxy.partition();
    let t = Instant::now();
    wait_for(
        "the job to run again elsewhere",
        Duration::from_secs(20),
        || {
            let j = job_of(&c, id);
            (j["epoch"] == 2 && j["builder"] == b_id.as_str()).then_some(())
        },
    );
    eprintln!("partitioned: rerun elsewhere after {:?}", t.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    let a_dir = c.builders[a].data.clone();
    assert!(
        jobs_under(&a_dir) > 0,
        "the old builder's copy should still run, unaware"
    );
    proxy.heal();
    let t = Instant::now();
    wait_for(
        "the old builder to stop its copy",
        Duration::from_secs(15),
        || (jobs_under(&a_dir) == 0).then_some(()),
    );
    eprintln!("healed: the old copy stopped after {:?}", t.elapsed());

    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    let j = &b["jobs"][0];
    assert_eq!(
        (j["epoch"].as_u64(), j["builder"].as_str()),
        (Some(2), Some(b_id.as_str()))
    );
    let job = j["id"].as_u64().unwrap();
    assert_counted(&c.log(job), 60);
    let first = http_get(&c.http_url(), &format!("/jobs/{job}/attempts/1/log.txt"));
    assert_eq!(first.status, 200);
    assert!(first.text().contains("line 1\n"), "{}", first.text());
    let log = c.control.as_ref().unwrap().log_text();
    assert!(
        log.contains("the builder does not hold the job's lease") || log.contains("refused"),
        "no refusal of the old epoch logged"
    );
    // Still recorded once, well after the old builder is back.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.build(id)["state"], "passed");
    assert_eq!(job_of(&c, id)["epoch"], 2);
}

/// A partition shorter than the lease changes nothing: the job is not run
/// again, and its log has no gap and no repeat.
#[test]
fn a_partition_shorter_than_the_lease_loses_nothing() {
    // Leases of 3 s; the partition lasts 1 s.
    let (c, proxy, _repo) = behind_proxy(40, "0.2", 1000, 1, Duration::ZERO);
    let id = c.trigger("demo", None);
    wait_first_lines(&c, id);
    proxy.partition();
    std::thread::sleep(Duration::from_secs(1));
    proxy.heal();
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    let j = &b["jobs"][0];
    assert_eq!(j["epoch"], 1, "{j}");
    let job = j["id"].as_u64().unwrap();
    assert_counted(&c.log(job), 40);
    let none = http_get(&c.http_url(), &format!("/jobs/{job}/attempts/1/log.txt"));
    assert_eq!(none.status, 404);
}

/// 300 ms of latency each way (600 ms round trips) on every connection of
/// the builder: builds pass, logs are exact, the live log follows.
#[test]
fn builds_pass_with_300_ms_of_latency_each_way() {
    let (c, _proxy, _repo) = behind_proxy(30, "0.1", 1000, 2, Duration::from_millis(300));
    let t = Instant::now();
    let ids: Vec<u64> = (0..3).map(|_| c.trigger("demo", None)).collect();
    for id in &ids {
        let b = c.wait_build(*id, Duration::from_secs(120));
        assert_eq!(b["state"], "passed", "{b}");
        assert_eq!(b["jobs"][0]["epoch"], 1, "{b}");
        assert_counted(&c.log(b["jobs"][0]["id"].as_u64().unwrap()), 30);
    }
    eprintln!(
        "3 builds of 3 s each on 2 slots, 300 ms each way: {:?}",
        t.elapsed()
    );
}

/// Every connection of the builder cut every 700 ms while three jobs run
/// (their log streams and results included): the builder reconnects
/// within the grace, so no job runs twice; each build passes, each log is
/// whole without a repeat, and each result is recorded once.
#[test]
fn connections_cut_again_and_again_lose_nothing() {
    let (c, proxy, _repo) = behind_proxy(40, "0.1", 300, 3, Duration::ZERO);
    let ids: Vec<u64> = (0..3).map(|_| c.trigger("demo", None)).collect();
    let mut cuts = 0;
    let mut cut_conns = 0;
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until && ids.iter().any(|id| c.build(*id)["state"] != "passed") {
        std::thread::sleep(Duration::from_millis(700));
        cut_conns += proxy.cut();
        cuts += 1;
    }
    eprintln!("{cuts} cuts, {cut_conns} connections cut");
    assert!(cuts >= 3, "the jobs ended before the cuts began");
    for id in &ids {
        let b = c.wait_build(*id, Duration::from_secs(60));
        assert_eq!(b["state"], "passed", "{b}");
        // The builder was back within the grace each time: no job ran twice.
        assert_eq!(b["jobs"][0]["epoch"], 1, "{b}");
        assert_counted(&c.log(b["jobs"][0]["id"].as_u64().unwrap()), 40);
    }
}

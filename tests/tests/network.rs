//! End to end: a bad network between a builder and the control node,
//! made by a [`FaultProxy`] the builder reaches the control node through
//! (partitions, latency, cut connections) and, for packet loss, nftables in
//! a network namespace the builder runs in. Nothing is lost: every log is
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

/// SIGTERM reaches a builder after it accepted an offer and before the
/// grant came back (1.5 s of latency each way holds the grant in that
/// window): the accepted job is a promise, so the draining builder waits
/// for the grant, runs the job to the end and only then leaves.
#[test]
fn a_builder_drained_between_accept_and_grant_runs_the_job_before_it_leaves() {
    let (mut c, _proxy, _repo) = behind_proxy(3, "0.1", 2000, 1, Duration::from_millis(1500));
    let id = c.trigger("demo", None);
    // Running on the control node: its accept has arrived, so the grant
    // is on its way and 1.5 s from the builder.
    wait_for("the accept", Duration::from_secs(30), || {
        (job_of(&c, id)["state"] == "running").then_some(())
    });
    c.builders[0].proc.signal(Signal::SIGTERM);
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    assert_eq!(b["jobs"][0]["epoch"], 1, "{b}");
    assert_counted(&c.log(b["jobs"][0]["id"].as_u64().unwrap()), 3);
    let st = c.builders[0]
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("the drained builder leaves once the job is over");
    assert!(st.success(), "{}", c.builders[0].proc.log_text());
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

/// 300 ms of latency each way and 5 % of the packets dropped in each
/// direction (nftables in a network namespace of the test's, where the
/// builder runs): builds pass at their first attempt with every line once,
/// and a live tail (`kha log --follow`) of a running job shows its lines
/// while it runs and ends with exactly the stored log.
#[cfg_attr(kha_skip_root, ignore = "not root: cannot make network namespaces")]
#[test]
fn latency_and_packet_loss_lose_nothing_and_the_live_tail_keeps_up() {
    use std::io::BufRead;
    let ns = Netns::new(&["l"]);
    let b = ns.name(0).to_string();
    // Where the builder meets the proxy: every packet is delivered through
    // the namespace's input hook, one way or the other.
    nft_in(
        &b,
        "table inet loss {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    numgen random mod 100 < 5 counter drop\n  }\n}\n",
    );
    let repo = Repo::with_travis_yml(
        "language: shell\nscript: for i in $(seq 1 40); do echo \"line $i $(date +%s%N)\"; sleep 0.1; done\n",
    );
    let mut c = Fixture::new()
        .heartbeat_ms(2000)
        .project("demo", &repo.url())
        .start();
    let proxy = FaultProxy::start_on(listen_in(&b, "127.0.0.1:0"), &c.addr());
    proxy.delay(Duration::from_millis(300));
    c.builder_in_netns(
        &b,
        &proxy.url(),
        ("a", 2),
        &["--executor", "host", "--i-trust-every-job"],
    );
    c.wait_builders_connected(1);

    let ids: Vec<u64> = (0..3).map(|_| c.trigger("demo", None)).collect();
    let first = job_of(&c, ids[0])["id"].as_u64().unwrap();
    let mut tail = std::process::Command::new(bin("kha"))
        .args(["log", &first.to_string(), "--follow"])
        .env("KHA_SERVER", c.url())
        .env("KHA_DATA_DIR", c.path("control"))
        .env("HOME", c.dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    };
    // Each line as it arrives, with how long after it was printed.
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(tail.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let printed = line
            .strip_prefix("line ")
            .and_then(|r| r.split(' ').nth(1))
            .and_then(|t| t.parse::<u64>().ok());
        seen.push((line, printed.map(|p| now_ns().saturating_sub(p))));
    }
    let status = tail.wait().unwrap();
    assert!(status.success(), "the tail ended with {status}");
    for id in &ids {
        let b = c.wait_build(*id, Duration::from_secs(120));
        assert_eq!(b["state"], "passed", "{b}");
        assert_eq!(b["jobs"][0]["epoch"], 1, "{b}");
        let log = String::from_utf8(c.log(b["jobs"][0]["id"].as_u64().unwrap())).unwrap();
        let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("line ")).collect();
        let want: Vec<String> = (1..=40).map(|i| format!("line {i} ")).collect();
        assert_eq!(lines.len(), 40, "{log}");
        for (l, w) in lines.iter().zip(&want) {
            assert!(l.starts_with(w.as_str()), "{l:?} is not {w:?}…: {log}");
        }
    }
    // The tail showed exactly the stored log, and showed it live: its first
    // line came before the job printed its last.
    let stored = String::from_utf8(c.log(first)).unwrap();
    let tailed: String = seen.iter().map(|(l, _)| format!("{l}\n")).collect();
    assert_eq!(tailed, stored);
    let mut lags: Vec<u64> = seen.iter().filter_map(|(_, lag)| *lag).collect();
    assert_eq!(lags.len(), 40);
    let last_printed_ns = 4_000_000_000u64; // 40 lines 0.1 s apart
    assert!(
        lags[0] < last_printed_ns,
        "the first line reached the tail {} ms after it was printed",
        lags[0] / 1_000_000
    );
    lags.sort_unstable();
    let dropped = std::process::Command::new("ip")
        .args(["netns", "exec", &b, "nft", "list", "table", "inet", "loss"])
        .output()
        .unwrap();
    let counter = String::from_utf8_lossy(&dropped.stdout)
        .split("packets ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or("?")
        .to_string();
    eprintln!(
        "300 ms each way, 5 % loss ({counter} packets dropped): 3 builds passed at epoch 1; \
         tail lag p50 {} ms, max {} ms",
        lags[lags.len() / 2] / 1_000_000,
        lags[lags.len() - 1] / 1_000_000
    );
}

/// The connection lost while the builder reports a job's result: the job
/// touches a file, then ends 2 s later; the test holds every packet back
/// as soon as it sees the file, so the result is sent into the partition,
/// and 3 s after the file cuts every connection. The builder sends the result again on a new
/// connection; it is recorded once, with the whole log.
#[test]
fn a_result_cut_off_on_its_way_is_sent_again_and_recorded_once() {
    let marker = tempfile::tempdir().unwrap();
    let done = marker.path().join("done");
    let repo = Repo::with_travis_yml(&format!(
        "language: shell\nscript:\n  - for i in $(seq 1 20); do echo line $i; done\n  - touch {} && sleep 2\n",
        done.display()
    ));
    // Leases of 6 s: the 3 s partition is shorter.
    let mut c = Fixture::new()
        .heartbeat_ms(2000)
        .project("demo", &repo.url())
        .start();
    let proxy = FaultProxy::start(&c.addr());
    c.host_builder_via("a", 1, &proxy.url());
    c.wait_builders_connected(1);
    let id = c.trigger("demo", None);
    wait_for("the job's last command", Duration::from_secs(60), || {
        done.exists().then_some(())
    });
    proxy.partition();
    std::thread::sleep(Duration::from_secs(3));
    let cut = proxy.cut();
    proxy.heal();
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    assert_eq!(b["jobs"][0]["epoch"], 1, "{b}");
    let job = b["jobs"][0]["id"].as_u64().unwrap();
    assert_counted(&c.log(job), 20);
    let builder = c.builders[0].proc.log_text();
    assert!(
        builder.contains("cannot report the result yet; retrying"),
        "the result was not cut off on its way:\n{builder}"
    );
    let events = c.kha_ok(&["events", "--json", "--from", "1"]);
    let finished = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "job_finished" && e["job_id"] == job)
        .count();
    assert_eq!(finished, 1, "{events}");
    eprintln!("{cut} connections cut while the result was on its way; recorded once");
}

//! Log retention and compression on a running control node: a finished
//! job's log is compressed and reads back as printed (whole, in ranges,
//! followed), a project that keeps 3 builds' logs loses the oldest's when
//! the fourth ends, the builds themselves stay, and `kha-control gc
//! --dry-run` says what the server's policy would remove.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// One job printing ~470 KB of numbered lines: two zstd frames and a bit.
const TRAVIS: &str = "language: shell\nscript: seq 1 80000\n";

fn expected() -> Vec<u8> {
    let mut s = "$ seq 1 80000\n".to_string();
    for i in 1..=80000 {
        s.push_str(&format!("{i}\n"));
    }
    s.into_bytes()
}

fn job_of(c: &Cluster, build: u64) -> u64 {
    c.build(build)["jobs"][0]["id"].as_u64().unwrap()
}

fn log_files(c: &Cluster, job: u64) -> (PathBuf, PathBuf) {
    (
        c.path(&format!("control/logs/{job}.log")),
        c.path(&format!("control/logs/{job}.log.zst")),
    )
}

fn wait_compressed(c: &Cluster, job: u64) {
    let (plain, zst) = log_files(c, job);
    wait_for(
        &format!("job {job}'s log compressed"),
        Duration::from_secs(20),
        || (zst.exists() && !plain.exists()).then_some(()),
    );
}

#[test]
fn keeping_three_builds_logs_removes_the_first_when_the_fourth_ends() {
    let repo = Repo::with_travis_yml(TRAVIS);
    let c = Fixture::new()
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();
    c.kha_ok(&["project", "set", "demo", "--keep-logs", "3"]);
    let shown = c.kha_ok(&["project", "show", "demo"]);
    assert!(shown.contains("of the last 3 builds"), "{shown}");
    let want = expected();
    let mut jobs = vec![];
    for n in 1..=4 {
        let id = c.trigger("demo", None);
        assert_eq!(
            c.wait_build(id, Duration::from_secs(120))["state"],
            "passed"
        );
        let job = job_of(&c, id);
        jobs.push((id, job));
        wait_compressed(&c, job);
        if n < 4 {
            let (plain, zst) = log_files(&c, job);
            assert!(!plain.exists() && zst.exists(), "build {n}");
        }
    }
    // The fourth build's end removed the first's log, and only it.
    let (first_plain, first_zst) = log_files(&c, jobs[0].1);
    wait_for("the first log removed", Duration::from_secs(20), || {
        (!first_zst.exists() && !first_plain.exists()).then_some(())
    });
    for &(_, job) in &jobs[1..] {
        let (_, zst) = log_files(&c, job);
        assert!(zst.exists(), "job {job} keeps its log");
        let packed = std::fs::metadata(&zst).unwrap().len();
        assert!(
            packed * 3 < want.len() as u64,
            "compressed to {packed} of {} bytes",
            want.len()
        );
        // Read back whole, as printed: through the CLI (gRPC) and the
        // HTTP API, and a range of it from the middle.
        assert!(c.log(job) == want, "job {job}'s log reads back as printed");
        let http = http_get(&c.http_url(), &format!("/api/v1/jobs/{job}/log"));
        assert!(http.body == want, "job {job}'s log over HTTP");
        let part = http_request(
            &c.http_url(),
            "GET",
            &format!("/api/v1/jobs/{job}/log"),
            &[("Range", "bytes=300000-300099")],
            b"",
        );
        assert_eq!(part.status, 206);
        assert!(
            part.body == want[300_000..300_100],
            "job {job}'s log, a range"
        );
    }
    // The first build is still there, with its state and log length; its
    // log says where it went.
    let first = c.build(jobs[0].0);
    assert_eq!(first["state"], "passed");
    assert_eq!(
        first["jobs"][0]["log_len"].as_u64(),
        Some(want.len() as u64)
    );
    let gone = String::from_utf8(c.log(jobs[0].1)).unwrap();
    assert!(
        gone.contains("removed by the log retention policy"),
        "{gone}"
    );
    // `zstd -d` reads a compressed log whole.
    if Command::new("zstd").arg("--version").output().is_ok() {
        let (_, zst) = log_files(&c, jobs[3].1);
        let o = Command::new("zstd")
            .args(["-dc"])
            .arg(&zst)
            .output()
            .unwrap();
        assert!(o.status.success());
        assert!(o.stdout == want, "zstd -d reads it whole");
    }
}

#[test]
fn gc_dry_run_says_what_the_servers_policy_would_remove_and_gc_removes_it() {
    let repo = Repo::with_travis_yml("language: shell\nscript: echo hello\n");
    let c = Fixture::new()
        .config("[logs]\nkeep_builds = 1\n")
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();
    // The project keeps 5 of its own (over the server's 1): nothing goes.
    c.kha_ok(&["project", "set", "demo", "--keep-logs", "5"]);
    let mut jobs = vec![];
    for _ in 0..3 {
        let id = c.trigger("demo", None);
        c.wait_build(id, Duration::from_secs(60));
        jobs.push((id, job_of(&c, id)));
    }
    let gc = |args: &[&str]| {
        let o = Command::new(bin("kha-control"))
            .arg("--data-dir")
            .arg(c.path("control"))
            .arg("gc")
            .args(args)
            .env("KHA_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "kha-control gc: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(gc(&["--dry-run"]).trim(), "would remove 0 logs, 0 bytes");
    // Back to the server's policy: the two older builds' logs would go.
    c.kha_ok(&["project", "set", "demo", "--keep-logs", "0"]);
    let said = gc(&["--dry-run"]);
    for &(build, _) in &jobs[..2] {
        assert!(
            said.contains(&format!("demo build {build}: 1 log (",))
                && said.contains("beyond the last 1 builds of demo"),
            "{said}"
        );
    }
    assert!(said.contains("would remove 2 logs"), "{said}");
    // A dry run removes nothing.
    for &(_, job) in &jobs {
        let (plain, zst) = log_files(&c, job);
        assert!(plain.exists() || zst.exists(), "job {job}");
    }
    let done = gc(&[]);
    assert!(done.contains("removed 2 logs"), "{done}");
    for (i, &(_, job)) in jobs.iter().enumerate() {
        let (plain, zst) = log_files(&c, job);
        assert_eq!(plain.exists() || zst.exists(), i == 2, "job {job}");
    }
}

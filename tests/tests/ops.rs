//! End to end: what an operator does: follow a log live, page through
//! builds, drain builders, stop the control node.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn log_follow_streams_while_the_job_runs() {
    let repo = Repo::with_travis_yml(
        "language: shell\nscript:\n  - for i in 1 2 3 4 5; do echo \"tick $i\"; sleep 0.4; done\n",
    );
    let c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 1)
        .start();
    let id = c.trigger("demo", None);
    let job = c.build(id)["jobs"][0]["id"].as_u64().unwrap();
    let start = Instant::now();
    let mut child = Command::new(bin("kha"))
        .args(["log", &job.to_string(), "--follow"])
        .env("KHA_SERVER", c.addr())
        .env("KHA_DATA_DIR", c.path("control"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    // The first tick arrives long before the job ends.
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("tick 1\n") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "log ended early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let first = start.elapsed();
    assert_ne!(
        c.build(id)["jobs"][0]["state"],
        "passed",
        "the job should still be running"
    );
    out.read_to_end(&mut got).unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "kha log --follow of a passing job exits 0"
    );
    let text = String::from_utf8(got).unwrap();
    let ticks: String = (1..=5).map(|i| format!("tick {i}\n")).collect();
    assert!(text.ends_with(&ticks), "{text}");
    assert_eq!(text.as_bytes(), c.log(job).as_slice());
    eprintln!(
        "first line seen after {first:?}, whole job {:?}",
        start.elapsed()
    );
}

#[test]
fn build_list_pages_newest_first() {
    let repo = Repo::temp();
    repo.commit(&[("README", "no config here\n")], "no config");
    let c = Fixture::new().project("demo", &repo.url()).start();
    // No builder is needed: a commit without .travis.yml errors at once.
    let ids: Vec<u64> = (0..7).map(|_| c.trigger("demo", None)).collect();
    let page = |p: &str| c.kha_json(&["build", "list", "demo", "--page", p, "--per-page", "3"]);
    let p1 = page("1");
    assert_eq!(p1["total"], 7);
    let got: Vec<u64> = p1["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[6], ids[5], ids[4]]);
    let p3 = page("3");
    let got: Vec<u64> = p3["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[0]]);
    assert_eq!(page("4")["builds"].as_array().unwrap().len(), 0);
    let table = c.kha_ok(&["build", "list", "demo", "--per-page", "3"]);
    assert!(table.contains("page 1 of 3 (7 builds)"), "{table}");
    // Without --force the same commit is not built again.
    let again = c.kha_json(&["build", "trigger", "demo"]);
    assert_eq!(again["created"], false);
    assert_eq!(again["id"].as_u64().unwrap(), ids[6]);
    // Bad input gets a clear error and a distinct exit code.
    let o = c.kha(&["project", "add", "bad/name", &repo.url()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("project name"));
    let o = c.kha(&["project", "add", "nope", "file:///does/not/exist"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot fetch"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = c.kha(&["build", "trigger", "demo", "--branch", "nosuch"]);
    assert_eq!(o.status.code(), Some(3));
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn drained_builder_takes_no_new_work_and_sigterm_lets_jobs_finish() {
    let repo =
        Repo::with_travis_yml("language: shell\nscript:\n  - sleep 1.5\n  - echo finished\n");
    let mut c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 1)
        .start();
    let a = 0;
    let a_id = c.builders[a].id();

    // Admin drain: the builder stays connected but gets nothing new.
    c.kha_ok(&["builder", "drain", &a_id]);
    let id = c.trigger("demo", None);
    std::thread::sleep(Duration::from_millis(1500));
    let b = c.build(id);
    assert_eq!(b["jobs"][0]["state"], "queued", "{b}");
    assert_eq!(
        b["jobs"][0]["detail"],
        "waiting: every builder that could run it is draining"
    );
    let list = c.kha_ok(&["builder", "list"]);
    assert!(list.contains("draining"), "{list}");
    let list = c.kha_json(&["builder", "list"]);
    assert_eq!(list[0]["state"], "draining", "{list}");

    // A second builder takes the job; SIGTERM on it while the job runs
    // lets the job finish, then the builder leaves.
    let bi = c.builder("b", 1);
    wait_for("the job to start", Duration::from_secs(30), || {
        (c.build(id)["jobs"][0]["state"] == "running").then_some(())
    });
    c.builders[bi].proc.signal(Signal::SIGTERM);
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["state"], "passed", "{b}");
    let st = c.builders[bi]
        .proc
        .wait_exit(Duration::from_secs(20))
        .expect("drained builder exits");
    assert!(st.success(), "{}", c.builders[bi].proc.log_text());
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn control_node_stops_promptly_with_builders_connected() {
    let mut c = Fixture::new().builder("a", 1).builder("b", 1).start();
    let t = Instant::now();
    let ctl = c.control.as_mut().unwrap();
    ctl.signal(Signal::SIGTERM);
    let st = ctl
        .wait_exit(Duration::from_secs(10))
        .expect("control node exits on SIGTERM");
    assert!(st.success(), "{}", ctl.log_text());
    let took = t.elapsed();
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    eprintln!("control node shutdown with 2 sessions open: {took:?}");
    // Builders were told to come back later, and do once it is back.
    c.start_control();
    c.wait_builders_connected(2);
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn builders_and_cli_talk_tls() {
    let repo = Repo::with_travis_yml("language: shell\nscript: echo over tls\n");
    let c = Fixture::new()
        .tls()
        .project("demo", &repo.url())
        .builder("a", 1)
        .start();
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    // Without the CA, the certificate is not trusted; plain http is refused.
    let o = Command::new(bin("kha"))
        .args(["--server", &c.url(), "project", "list"])
        .env("KHA_DATA_DIR", c.path("control"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new(bin("kha"))
        .args(["--server", &c.addr(), "project", "list"])
        .env("KHA_DATA_DIR", c.path("control"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn second_sigterm_cancels_and_the_job_runs_elsewhere() {
    let repo = Repo::with_travis_yml("language: shell\nscript:\n  - sleep 4\n  - echo done\n");
    let mut c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 1)
        .start();
    let a = 0;
    let id = c.trigger("demo", None);
    wait_for("the job to start", Duration::from_secs(30), || {
        (c.build(id)["jobs"][0]["state"] == "running").then_some(())
    });
    c.builder("b", 1);
    c.wait_builders_connected(2);
    c.builders[a].proc.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    c.builders[a].proc.signal(Signal::SIGTERM);
    let st = c.builders[a]
        .proc
        .wait_exit(Duration::from_secs(20))
        .expect("builder exits after its job is canceled");
    assert!(st.success(), "{}", c.builders[a].proc.log_text());
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    assert_eq!(
        b["jobs"][0]["epoch"], 2,
        "run again on the other builder: {b}"
    );
    assert_eq!(b["jobs"][0]["builder"], c.builders[1].id());
}

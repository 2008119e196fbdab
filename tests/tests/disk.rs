//! Full disks: the control node's data dir on a small file system of its
//! own (a loop device) filled up while it runs.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

/// Fills the file system at `dir` to its last block; returns the files
/// that fill it.
fn fill(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    // Big blocks, then small ones for what is left once delayed
    // allocation has settled; dd stops at ENOSPC with an error: expected.
    for (i, bs) in ["1M", "4k", "1k"].iter().enumerate() {
        let f = dir.join(format!("filler-{i}"));
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "status=none", "conv=fsync"])
            .arg(format!("bs={bs}"))
            .arg(format!("of={}", f.display()))
            .status();
        let _ = std::process::Command::new("sync")
            .arg("-f")
            .arg(dir)
            .status();
        files.push(f);
    }
    let free = free_bytes(dir);
    assert!(free < 64 << 10, "{free} bytes still free");
    files
}

/// With its data dir full, the control node refuses new builds with a
/// clear error; a job running meanwhile loses no log line (what could not
/// be stored is not acknowledged, and the builder sends it again). If its
/// database had to write meanwhile, it exits with status 75 (sled cannot
/// go on in a process after a failed write) and is started again as its
/// systemd unit would; else it keeps answering and what it had stays
/// readable. When space returns builds work again, and a `kill -9` and
/// restart finds everything intact.
#[cfg_attr(kha_skip_root, ignore = "not root: cannot mount the small disk")]
#[test]
fn a_full_data_disk_refuses_builds_clearly_and_resumes_when_space_returns() {
    let repo = Repo::with_travis_yml("language: shell\nscript: echo built\n");
    let mut c = Fixture::new()
        .control_disk_mib(64)
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();
    let first = c.trigger("demo", None);
    assert_eq!(
        c.wait_build(first, Duration::from_secs(60))["state"],
        "passed"
    );
    let job = c.build(first)["jobs"][0]["id"].as_u64().unwrap();
    let log = c.log(job);

    // A job that prints a line every 0.1 s for 6 s runs across the fill.
    repo.commit(
        &[(
            ".travis.yml",
            "language: shell\nscript: for i in $(seq 1 60); do echo line $i; sleep 0.1; done\n",
        )],
        "slow",
    );
    let slow = c.trigger("demo", None);
    wait_for("the slow job's first line", Duration::from_secs(30), || {
        (c.build(slow)["jobs"][0]["log_len"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let fillers = fill(&c.path("control"));
    repo.commit(&[("a", "1")], "while full");
    let out = c.kha(&["build", "trigger", "demo", "--force"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("trigger on a full disk: {err}");
    assert!(!out.status.success(), "a build was accepted on a full disk");
    // sled cannot go on in a process after one of its writes failed: if
    // it had to write (a heartbeat's record) while the disk was full, the
    // node exits with status 75 for its supervisor to start it again.
    let exited = |c: &mut Cluster| c.control.as_mut().unwrap().child.try_wait().unwrap();
    if exited(&mut c).is_none() {
        assert!(err.contains("No space left on device"), "{err}");
        // Still answering, and what it had is there.
        assert_eq!(c.build(first)["state"], "passed");
        assert_eq!(c.log(job), log);
    }
    std::thread::sleep(Duration::from_secs(2));
    for f in &fillers {
        std::fs::remove_file(f).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    if let Some(status) = exited(&mut c) {
        let said = c.control.as_ref().unwrap().log_text();
        assert_eq!(status.code(), Some(75), "{said}");
        assert!(said.contains("cannot go on in this process"), "{said}");
        eprintln!("the control node exited with status 75; started again, as systemd would");
        c.start_control();
        c.wait_builders_connected(1);
    }
    let b = c.wait_build(slow, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    let slow_job = b["jobs"][0]["id"].as_u64().unwrap();
    let text = String::from_utf8(c.log(slow_job)).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("line ")).collect();
    let want: Vec<String> = (1..=60).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, want, "{text}");

    let again = c.trigger("demo", None);
    assert_eq!(
        c.wait_build(again, Duration::from_secs(60))["state"],
        "passed"
    );

    c.control.as_mut().unwrap().kill9();
    c.start_control();
    c.wait_builders_connected(1);
    for id in [first, slow, again] {
        assert_eq!(c.build(id)["state"], "passed", "build {id}");
    }
    assert_eq!(c.log(job), log);
    assert_eq!(c.log(slow_job), text.as_bytes());
    let later = c.trigger("demo", None);
    assert_eq!(
        c.wait_build(later, Duration::from_secs(60))["state"],
        "passed"
    );
}

/// A builder's disk full: with the default `min_free_mib` it takes no job
/// until there is space again; with the check off, the checkout fails and
/// the job goes back to the queue as an infrastructure error, is not
/// offered to that builder again, and runs on another, never recorded as
/// the project's failure.
#[cfg_attr(kha_skip_root, ignore = "not root: cannot mount the small disk")]
#[test]
fn a_builder_with_a_full_disk_takes_no_job_or_hands_it_back() {
    let repo = Repo::with_travis_yml("language: shell\nscript: echo built\n");
    let mut c = Fixture::new().project("demo", &repo.url()).start();
    let unchecked = c.path("unchecked.toml");
    std::fs::write(&unchecked, "min_free_mib = 0\n").unwrap();
    let data = c.path("builder-a");
    c.small_disk(&data, 96);
    c.host_builder_with("a", 1, &["--config", &unchecked.to_string_lossy()]);
    c.wait_builders_connected(1);
    let fillers = fill(&data);

    // Without the check: the checkout fails, the job is handed back and
    // waits for another builder instead of spending its attempts here.
    let id = c.trigger("demo", None);
    let job = wait_for(
        "the full builder to hand the job back",
        Duration::from_secs(30),
        || {
            let j = c.build(id)["jobs"][0].clone();
            let detail = j["detail"].as_str().unwrap_or("").to_string();
            (j["state"] == "queued" && detail.contains("could not run it")).then_some(j)
        },
    );
    let detail = job["detail"].as_str().unwrap();
    assert!(detail.contains("No space left on device"), "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.build(id)["jobs"][0]["attempts"], 1);
    let b_idx = c.host_builder_with("b", 1, &[]);
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    assert_eq!(b["jobs"][0]["builder"], c.builders[b_idx].id(), "{b}");
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(
        String::from_utf8(c.log(job_id)).unwrap(),
        "$ echo built\nbuilt\n"
    );

    // With the check (the default): a full builder takes nothing.
    c.builders[b_idx].proc.kill9();
    c.builders[0].proc.kill9();
    let data = c.path("builder-c");
    c.small_disk(&data, 96);
    let c_idx = c.host_builder_with("c", 1, &[]);
    wait_for("builder c to connect", Duration::from_secs(20), || {
        let list = c.kha_json(&["builder", "list"]);
        list.as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == c.builders[c_idx].id() && b["state"] == "connected")
            .then_some(())
    });
    let fillers_c = fill(&data);
    std::thread::sleep(Duration::from_secs(1));
    let id = c.trigger("demo", None);
    std::thread::sleep(Duration::from_secs(3));
    let j = c.build(id)["jobs"][0].clone();
    assert_eq!(
        (j["state"].as_str(), j["attempts"].as_u64()),
        (Some("queued"), Some(0)),
        "{j}"
    );
    let log = c.builders[c_idx].proc.log_text();
    assert!(log.contains("the disk is nearly full"), "{log}");
    for f in fillers.into_iter().chain(fillers_c) {
        std::fs::remove_file(f).unwrap();
    }
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    assert_eq!(b["jobs"][0]["builder"], c.builders[c_idx].id(), "{b}");
    assert!(c.builders[c_idx]
        .proc
        .log_text()
        .contains("there is space on the disk again"));
}

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
/// clear error and keeps answering; a job running meanwhile loses no log
/// line (what could not be stored is not acknowledged, and the builder
/// sends it again); what it had stays readable; when space returns,
/// builds work again without a restart, and a restart finds everything
/// intact.
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
    assert!(err.contains("No space left on device"), "{err}");
    // Still answering, and what it had is there.
    assert_eq!(c.build(first)["state"], "passed");
    assert_eq!(c.log(job), log);
    std::thread::sleep(Duration::from_secs(2));
    for f in &fillers {
        std::fs::remove_file(f).unwrap();
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

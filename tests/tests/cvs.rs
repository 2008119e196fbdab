//! End to end: CVS projects. A real repository (`cvs init`, an imported
//! module, a branch tag), polled by the control node; jobs check the module
//! out on the builder, pinned to the build's timestamp, and run in lxc.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

fn builds(c: &Cluster) -> Vec<serde_json::Value> {
    c.kha_json(&["build", "list", "demo", "--per-page", "100"])["builds"]
        .as_array()
        .unwrap()
        .clone()
}

fn branch(c: &Cluster, name: &str) -> Option<serde_json::Value> {
    c.kha_json(&["branch", "list", "demo"])
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
}

/// The builds of `branch`, oldest first.
fn builds_of(c: &Cluster, branch: &str) -> Vec<serde_json::Value> {
    let mut v: Vec<_> = builds(c)
        .into_iter()
        .filter(|b| b["branch"] == branch)
        .collect();
    v.sort_by_key(|b| b["id"].as_u64());
    v
}

fn job_log(c: &Cluster, build: &serde_json::Value) -> String {
    let job = build["jobs"][0]["id"].as_u64().unwrap();
    String::from_utf8(c.log(job)).unwrap()
}

fn is_cvs_time(s: &str) -> bool {
    kha_core::cvs::parse_time(s).as_deref() == Some(s)
}

const TRAVIS: &str = "language: shell\nscript:\n  - cat which.txt\n  - ls\n";

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn cvs_head_and_branch_tags_build_pinned_to_their_time() {
    let repo = CvsRepo::new(
        "mod",
        &[(".travis.yml", TRAVIS), ("which.txt", "head one\n")],
    );
    repo.branch("feature");
    repo.commit(&[("which.txt", "feature one\n")], "on the feature branch");
    repo.switch("HEAD");
    let c = Fixture::new().builder("a", 1).start();
    // The ':local:' CVSROOT is detected as CVS; the module is given.
    c.kha_ok(&[
        "project",
        "add",
        "demo",
        &repo.url(),
        "--module",
        "mod",
        "--poll",
        "1",
    ]);
    let shown = c.kha_json(&["project", "show", "demo"]);
    assert_eq!(shown["vcs"], "cvs", "{shown}");
    assert_eq!(shown["default_branch"], "HEAD", "{shown}");
    let wait = Duration::from_secs(60);

    // HEAD and the branch tag: one build each, at a timestamp.
    wait_for("a build of HEAD and one of feature", wait, || {
        (builds_of(&c, "HEAD").len() == 1 && builds_of(&c, "feature").len() == 1).then_some(())
    });
    let head1 = c.wait_build(builds_of(&c, "HEAD")[0]["id"].as_u64().unwrap(), wait);
    let feat1 = c.wait_build(builds_of(&c, "feature")[0]["id"].as_u64().unwrap(), wait);
    for b in [&head1, &feat1] {
        assert_eq!(b["state"], "passed", "{b}");
        assert!(is_cvs_time(b["commit"].as_str().unwrap()), "{b}");
    }
    assert!(feat1["commit"].as_str() > head1["commit"].as_str());
    assert_eq!(feat1["message"], "on the feature branch", "{feat1}");
    let log = job_log(&c, &head1);
    assert!(log.contains("$ cat which.txt\nhead one\n"), "{log}");
    assert!(
        log.contains(&format!(
            "checked out CVS module mod (HEAD) as of {}",
            head1["commit"].as_str().unwrap()
        )),
        "{log}"
    );
    let log = job_log(&c, &feat1);
    assert!(log.contains("$ cat which.txt\nfeature one\n"), "{log}");
    // The CLI shows the time whole, not cut like a git id.
    let table = c.kha_ok(&["build", "list", "demo"]);
    assert!(table.contains(head1["commit"].as_str().unwrap()), "{table}");
    assert_eq!(branch(&c, "HEAD").unwrap()["head"], head1["commit"]);

    // A later commit (a new file too) builds once more, at its time...
    repo.commit(
        &[("which.txt", "head two\n"), ("new.txt", "n\n")],
        "second on HEAD",
    );
    wait_for("the second HEAD build", wait, || {
        (builds_of(&c, "HEAD").len() == 2).then_some(())
    });
    let head2 = c.wait_build(builds_of(&c, "HEAD")[1]["id"].as_u64().unwrap(), wait);
    assert_eq!(head2["state"], "passed", "{head2}");
    assert!(head2["commit"].as_str() > head1["commit"].as_str());
    assert_eq!(head2["message"], "second on HEAD");
    let log = job_log(&c, &head2);
    assert!(
        log.contains("head two\n") && log.contains("new.txt"),
        "{log}"
    );
    // ...and the first build, restarted, still sees what it saw.
    let id1 = head1["id"].as_u64().unwrap();
    c.kha_ok(&["build", "restart", &id1.to_string()]);
    let again = wait_for("the restarted build", wait, || {
        let b = c.build(id1);
        (b["state"] == "passed" && b["jobs"][0]["epoch"].as_u64() > Some(1)).then_some(b)
    });
    let log = job_log(&c, &again);
    assert!(log.contains("$ cat which.txt\nhead one\n"), "{log}");
    assert!(!log.contains("new.txt"), "{log}");

    // A skip marker in the commit message: recorded, not built.
    repo.switch("feature");
    repo.commit(&[("which.txt", "feature docs\n")], "Docs only\n\n[ci skip]");
    wait_for("feature to show the skipped head", wait, || {
        branch(&c, "feature").filter(|b| b["state"] == "skipped" && b["head"] != feat1["commit"])
    });
    assert_eq!(builds_of(&c, "feature").len(), 1);

    // A removed branch tag is shown deleted.
    repo.delete_branch("feature");
    wait_for("feature to be deleted", wait, || {
        branch(&c, "feature").filter(|b| b["deleted"] == true)
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(builds(&c).len(), 3, "no repeat builds");
}

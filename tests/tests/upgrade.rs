//! Upgrades: a control node's data dir written by an earlier kha
//! (`tests/fixtures/upgrade`, made by its `make.sh`) opens in this one,
//! with every build and log as it was, and the jobs it had queued run.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the fixture's project has its repository: the path is in the
/// data dir's records, so the test puts the repository back there.
const REPO: &str = "/var/tmp/kha-upgrade-fixture.git";

/// Removes the repository however the test ends.
struct RepoAt(PathBuf);

impl Drop for RepoAt {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn log_text(c: &Cluster, build: &serde_json::Value) -> String {
    let job = build["jobs"][0]["id"].as_u64().unwrap();
    String::from_utf8(c.log(job)).unwrap()
}

/// The data dir of kha at f57a35f, whose job records still held their
/// build's `TRAVIS_*` variables: build 1 passed with its log, build 2
/// queued. This kha shows build 1 and its log unchanged, runs build 2 with
/// the variables its record holds, and numbers the next build 3.
#[test]
fn a_data_dir_of_the_earlier_format_opens_and_runs_its_queue() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/upgrade");
    let _ = std::fs::remove_dir_all(REPO);
    let _repo = RepoAt(PathBuf::from(REPO));
    let out = std::process::Command::new("git")
        .args(["clone", "-q", "--mirror"])
        .arg(here.join("repo.bundle"))
        .arg(REPO)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut c = Fixture::new()
        .data_dir_from(&here.join("data-v1.tar.gz"))
        .start();
    let first = c.build(1);
    assert_eq!(first["state"], "passed", "{first}");
    assert_eq!(first["branch"], "master");
    let said = |branch: &str, n: u32| {
        format!(
            "$ echo \"hello from $TRAVIS_BRANCH, event $TRAVIS_EVENT_TYPE, build $TRAVIS_BUILD_NUMBER\"\n\
             hello from {branch}, event api, build {n}\n"
        )
    };
    assert_eq!(log_text(&c, &first), said("master", 1));
    let queued = c.build(2);
    assert_eq!(queued["state"], "queued", "{queued}");

    c.host_builder_with("a", 1, &[]);
    c.wait_builders_connected(1);
    let second = c.wait_build(2, Duration::from_secs(60));
    assert_eq!(second["state"], "passed", "{second}");
    assert_eq!(log_text(&c, &second), said("topic", 2));

    let id = c.trigger("demo", Some("master"));
    assert_eq!(id, 3);
    let third = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(third["state"], "passed", "{third}");
    assert_eq!(log_text(&c, &third), said("master", 3));
}

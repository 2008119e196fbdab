//! End to end: the build cache with a real control node and a real
//! builder in lxc. One cluster, few short builds: a cached directory is
//! stored by the first build of master, restored by the next (and not
//! sent again, unchanged), a branch without a cache of its own falls back
//! to master's, `kha cache clear` removes archives, and an archive over
//! the control node's limit is refused with a line in the log while the
//! job passes.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

const TRAVIS_YML: &str = r#"language: shell
cache:
  directories:
    - $HOME/stash
    - big
install:
  - 'if [ -f "$HOME/stash/mark" ]; then echo "restored: $(cat "$HOME/stash/mark")"; else echo "no cache yet"; fi'
script:
  - mkdir -p "$HOME/stash" && echo "$TRAVIS_BRANCH" > "$HOME/stash/mark"
  - if [ "$TRAVIS_BRANCH" = big ]; then mkdir -p big && head -c 400000 /dev/urandom > big/blob; fi
before_cache:
  - echo "before_cache ran"
"#;

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn cache_is_restored_falls_back_cleared_and_limited() {
    let repo = Repo::with_travis_yml(TRAVIS_YML);
    repo.git(&["branch", "feature"]);
    repo.git(&["branch", "big"]);
    let c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 1)
        .config("[cache]\nmax_archive_bytes = 200000\n")
        .start();
    // Builds one branch and returns its only job's log.
    let build = |branch: &str| -> String {
        let id = c.trigger("demo", Some(branch));
        let b = c.wait_build(id, Duration::from_secs(90));
        assert_eq!(b["state"], "passed", "{b}");
        let job = b["jobs"][0]["id"].as_u64().unwrap();
        String::from_utf8(c.log(job)).unwrap()
    };

    let log = build("master");
    assert!(log.contains("cache: no archive for this job yet"), "{log}");
    assert!(log.contains("\nno cache yet\n"), "{log}");
    assert!(log.contains("before_cache ran\n"), "{log}");
    assert!(log.contains("cache: stored the archive"), "{log}");
    // before_cache comes after script, before the archive is stored.
    let (script, before_cache, stored) = (
        log.find("$ mkdir -p").unwrap(),
        log.find("before_cache ran").unwrap(),
        log.find("cache: stored").unwrap(),
    );
    assert!(script < before_cache && before_cache < stored, "{log}");

    let log = build("master");
    assert!(
        log.contains("cache: restoring the archive of master"),
        "{log}"
    );
    assert!(log.contains("kha: cache: restored\n"), "{log}");
    assert!(log.contains("\nrestored: master\n"), "{log}");
    assert!(log.contains("cache: unchanged; not stored again"), "{log}");

    // A branch without a cache of its own gets the default branch's.
    let log = build("feature");
    assert!(
        log.contains("cache: restoring the archive of master"),
        "{log}"
    );
    assert!(log.contains("\nrestored: master\n"), "{log}");
    assert!(log.contains("cache: stored the archive"), "{log}");

    let list = c.kha_ok(&["cache", "list", "demo"]);
    assert!(
        list.contains("master") && list.contains("feature"),
        "{list}"
    );
    let json = c.kha_json(&["cache", "list", "demo"]);
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");

    let out = c.kha_ok(&["cache", "clear", "demo", "--branch", "feature"]);
    assert!(
        out.contains("removed 1 cache archive(s) of branch feature"),
        "{out}"
    );
    let json = c.kha_json(&["cache", "list", "demo"]);
    let branches: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["branch"].as_str().unwrap())
        .collect();
    assert_eq!(branches, ["master"], "{json}");
    c.kha_ok(&["cache", "clear", "demo"]);
    assert_eq!(
        c.kha_json(&["cache", "list", "demo"]),
        serde_json::json!([])
    );
    let log = build("feature");
    assert!(log.contains("cache: no archive for this job yet"), "{log}");
    assert!(log.contains("\nno cache yet\n"), "{log}");

    // Over the limit: said in the log, the job still passes, nothing kept.
    let log = build("big");
    assert!(
        log.contains("over the limit of 200000 bytes; not stored"),
        "{log}"
    );
    let json = c.kha_json(&["cache", "list", "demo"]);
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|e| e["branch"] != "big"),
        "{json}"
    );

    // Removing the project removes its archives: a project added later
    // under the same name must not restore them.
    assert!(c
        .kha_json(&["cache", "list", "demo"])
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    c.kha_ok(&["project", "remove", "demo"]);
    let left: Vec<_> = std::fs::read_dir(c.path("control").join("cache/demo"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

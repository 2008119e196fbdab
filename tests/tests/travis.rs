//! End to end: a real `.travis.yml` matrix, expanded the way Travis does,
//! run on builders matched by their labels.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn two_by_two_matrix_with_an_allowed_failure() {
    let repo = Repo::with_travis_yml(
            "language: python\npython:\n  - \"3.11\"\n  - \"3.12\"\nenv:\n  - LEVEL=1\n  - LEVEL=2\njobs:\n  fast_finish: true\n  allow_failures:\n    - python: \"3.12\"\n      env: LEVEL=2\ninstall: true\nscript:\n  - echo \"python $TRAVIS_PYTHON_VERSION level $LEVEL\"\n  - test \"$TRAVIS_PYTHON_VERSION$LEVEL\" != 3.122\n",
    );
    // One builder offers both Pythons, another only 3.11.
    let c = Fixture::new()
        .project("demo", &repo.url())
        .builder_with(
            "both",
            2,
            &["--label", "python=3.11", "--label", "python=3.12"],
        )
        .builder_with("old", 2, &["--label", "python=3.11"])
        .start();
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(90));
    // Travis's order: python varies slowest, then env.
    let jobs = b["jobs"].as_array().unwrap();
    let got: Vec<(String, bool, String)> = jobs
        .iter()
        .map(|j| {
            let m: Vec<String> = j["matrix"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    format!(
                        "{}={}",
                        v["key"].as_str().unwrap(),
                        v["value"].as_str().unwrap()
                    )
                })
                .collect();
            (
                m.join(" "),
                j["allow_failure"].as_bool().unwrap(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got.len(), 4, "{b}");
    assert_eq!(got[0].0, "python=3.11 env=LEVEL=1");
    assert_eq!(got[3].0, "python=3.12 env=LEVEL=2");
    assert!(got[3].1, "the last job is allowed to fail");
    assert!(!got[0].1 && !got[1].1 && !got[2].1);
    // The allowed failure fails; the build passes, as on Travis.
    assert_eq!(b["state"], "passed", "{b}");
    let last = wait_for(
        "the allowed failure to finish",
        Duration::from_secs(60),
        || {
            let j = c.build(id)["jobs"][3].clone();
            (j["state"] != "running" && j["state"] != "queued").then_some(j)
        },
    );
    assert_eq!(last["state"], "failed");
    // Jobs needing 3.12 ran only where 3.12 is offered.
    let both = c.builders[0].id();
    for j in c.build(id)["jobs"].as_array().unwrap() {
        if j["matrix"][0]["key"] == "python" && j["matrix"][0]["value"] == "3.12" {
            assert_eq!(j["builder"], both.as_str(), "{j}");
        }
    }
    let log = String::from_utf8(c.log(jobs[1]["id"].as_u64().unwrap())).unwrap();
    assert!(log.contains("python 3.11 level 2\n"), "{log}");
    let table = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(
        table.contains("python=3.12 env=LEVEL=2 (allowed to fail)"),
        "{table}"
    );
}

#[test]
fn lint_reports_positions_and_expands() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "language: erlang\notp_release:\n  - 26.0\n  - 25.3\nservices: [redis]\n",
    )
    .unwrap();
    let kha = |args: &[&str]| {
        std::process::Command::new(bin("kha"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = kha(&["lint", &good.to_string_lossy()]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("warning: line 5, column 1"), "{out}");
    assert!(out.contains("ok, 2 jobs"), "{out}");
    let o = kha(&["lint", "--json", &good.to_string_lossy()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(v["jobs"][0]["matrix"][0]["value"], "26.0");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "script:\n  - ok\n bad: [\n").unwrap();
    let o = kha(&["lint", &bad.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("error: line 3"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// `if:` conditions, as `kha lint --expand` shows them for a context.
#[test]
fn lint_expand_shows_what_conditions_drop() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".travis.yml");
    std::fs::write(
        &file,
        "language: shell\nif: type != cron OR branch = master\nstages:\n  - test\n  - name: deploy\n    if: branch = master AND type = push AND fork = false\njobs:\n  include:\n    - name: unit\n    - name: docs\n      if: head_branch =~ ^docs/ OR commit_message =~ /\\[docs\\]/\n    - stage: deploy\n      name: ship\n",
    )
    .unwrap();
    let lint = |extra: &[&str]| {
        let mut args = vec!["lint", "--expand", file.to_str().unwrap()];
        args.extend(extra);
        let o = std::process::Command::new(bin("kha"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    // A push to master: the docs job is dropped, the deploy stage runs.
    let out = lint(&[]);
    assert!(out.starts_with("2 jobs in stages test, deploy:\n"), "{out}");
    assert!(out.contains("  2. [deploy] shell name=ship"), "{out}");
    assert!(
        out.contains("  job \"docs\": if: head_branch =~ ^docs/ OR commit_message =~ /\\[docs\\]/ (line 11, column 11)"),
        "{out}"
    );
    // A pull request from a fork's docs/ branch into dev.
    let out = lint(&[
        "--event",
        "pull_request",
        "--branch",
        "dev",
        "--pr-branch",
        "docs/typo",
        "--fork",
    ]);
    assert!(out.starts_with("2 jobs in stages test:\n"), "{out}");
    assert!(out.contains("  2. [test] shell name=docs"), "{out}");
    assert!(
        out.contains("  stage deploy: if: branch = master AND type = push AND fork = false (line 6, column 9)"),
        "{out}"
    );
    // The commit message counts too.
    let out = lint(&["--commit-message", "fix typo [docs]"]);
    assert!(out.starts_with("3 jobs"), "{out}");
    // A cron build of dev is not created at all.
    let out = lint(&["--event", "cron", "--branch", "dev"]);
    assert!(
        out.starts_with(
            "no build: the root `if: type != cron OR branch = master` (line 2, column 5)"
        ),
        "{out}"
    );
    let o = std::process::Command::new(bin("kha"))
        .args(["lint", "--json", "--event", "cron", "--branch", "dev"])
        .arg(&file)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["builds"], false, "{v}");
    let o = std::process::Command::new(bin("kha"))
        .args(["lint", "--event", "nope"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("use push, pull_request, api or cron"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The root `if:` on the control node: a build it excludes is not
/// created, and says why; `--force` builds it anyway.
#[test]
fn root_condition_refuses_the_build() {
    let repo = Repo::with_travis_yml("language: shell\nif: type = push\nscript: true\n");
    let c = Fixture::new().project("demo", &repo.url()).start();
    // `kha build trigger` is an api build: the condition is false.
    let o = c.kha(&["build", "trigger", "demo"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the `if:` condition of its .travis.yml is false for this build"),
        "{err}"
    );
    let branches = c.kha_json(&["branch", "list", "demo"]);
    assert!(branches.to_string().contains("\"filtered\""), "{branches}");
    let id = c.trigger("demo", None);
    assert!(id > 0);
}

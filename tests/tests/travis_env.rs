//! End to end: the build environment as Travis sets it (its `TRAVIS_*`
//! variables for a push, a pull request and the API; its shell functions),
//! seen from inside real jobs in lxc; and how triggers treat branches, pull
//! requests and GitHub deliveries (signature first, a commit that cannot
//! be fetched, an empty repository).
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

const REPO_NAME: &str = "Codertocat/Hello-World";
const WAIT: Duration = Duration::from_secs(10);

/// Prints the variables as `V NAME=[value]`, then exercises each of
/// Travis's functions and the usual pull request guard.
const CONFIG: &str = r#"language: shell
script:
  - for v in TRAVIS_EVENT_TYPE TRAVIS_PULL_REQUEST TRAVIS_PULL_REQUEST_BRANCH TRAVIS_PULL_REQUEST_SHA TRAVIS_PULL_REQUEST_SLUG TRAVIS_BRANCH TRAVIS_TAG TRAVIS_COMMIT TRAVIS_COMMIT_RANGE TRAVIS_COMMIT_MESSAGE TRAVIS_REPO_SLUG TRAVIS_BUILD_ID TRAVIS_BUILD_NUMBER TRAVIS_JOB_ID TRAVIS_JOB_NUMBER TRAVIS_BUILD_DIR TRAVIS_BUILD_WEB_URL TRAVIS_JOB_WEB_URL TRAVIS_OS_NAME TRAVIS_CPU_ARCH TRAVIS_SUDO CI CONTINUOUS_INTEGRATION HAS_JOSH_K_SEAL_OF_APPROVAL DEBIAN_FRONTEND USER LANG; do eval "echo \"V $v=[\$$v]\""; done
  - if [ "$TRAVIS_PULL_REQUEST" = "false" ]; then echo "guard says push"; else echo "guard says PR $TRAVIS_PULL_REQUEST"; fi
  - travis_retry sh -c 'test -e .tried || { touch .tried; exit 1; }'
  - travis_fold start mine; echo folded; travis_fold end mine
  - travis_time_start; true; travis_time_finish
  - travis_wait 1 sh -c 'sleep 1; echo waited'
after_script:
  - echo "test result $TRAVIS_TEST_RESULT"
"#;

fn builds(c: &Cluster, project: &str) -> Vec<serde_json::Value> {
    c.kha_json(&["build", "list", project, "--per-page", "100"])["builds"]
        .as_array()
        .unwrap()
        .clone()
}

fn branch(c: &Cluster, project: &str, name: &str) -> Option<serde_json::Value> {
    c.kha_json(&["branch", "list", project])
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
}

fn send(c: &Cluster, path: &str, secret: &str, event: &str, body: &[u8]) -> (u16, String) {
    let sig = github_signature(secret, body);
    http_post(
        &c.http_url(),
        path,
        &[
            ("X-GitHub-Event", event),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// The `V NAME=[value]` lines of a job's log.
fn vars(log: &str) -> std::collections::HashMap<String, String> {
    let mut m = std::collections::HashMap::new();
    let mut rest = log;
    while let Some(i) = rest.find("\nV ") {
        rest = &rest[i + 3..];
        let (name, tail) = rest.split_once("=[").unwrap();
        let end = tail.find("]\n").unwrap();
        m.insert(name.to_string(), tail[..end].to_string());
    }
    m
}

/// The one finished job of a build: its id and its log.
fn job_log(c: &Cluster, build: u64) -> (u64, String) {
    let b = c.wait_build(build, Duration::from_secs(120));
    assert_eq!(b["state"], "passed", "{b}");
    let job = b["jobs"][0]["id"].as_u64().unwrap();
    (job, String::from_utf8_lossy(&c.log(job)).into_owned())
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn travis_environment_for_a_push_a_pull_request_and_the_api() {
    let c = Fixture::new().known_http_port().builder("b1", 2).start();
    let base = c.path("git");
    let up = Repo::new(base.join("up"));
    let before = up.commit(&[(".travis.yml", CONFIG)], "first");
    let head = up.commit(&[("a", "a\n")], "env test\n\nthe body");
    let daemon = GitDaemon::start(&base);
    let p = c.kha_json(&[
        "project",
        "add",
        "hello",
        &daemon.url("up"),
        "--github",
        REPO_NAME,
        "--no-poll",
    ]);
    let secret = p["webhook_secret"].as_str().unwrap().to_string();

    // A push.
    let push = github_fixture(
        "push.normal.json",
        &[
            ("199eddf46df50de8d02e99bf1c5fdb4101338224", &head),
            ("a10867b14bb761a232cd80139fbd4c0d33264240", &before),
        ],
    );
    let (st, body) = send(&c, "/hooks/github", &secret, "push", &push);
    assert_eq!(st, 202, "{body}");
    let b = wait_for("the push's build", WAIT, || builds(&c, "hello").pop());
    let id = b["id"].as_u64().unwrap();
    let (job, log) = job_log(&c, id);
    let v = vars(&log);
    let public = c.http_url();
    for (k, want) in [
        ("TRAVIS_EVENT_TYPE", "push"),
        ("TRAVIS_PULL_REQUEST", "false"),
        ("TRAVIS_PULL_REQUEST_BRANCH", ""),
        ("TRAVIS_PULL_REQUEST_SHA", ""),
        ("TRAVIS_PULL_REQUEST_SLUG", ""),
        ("TRAVIS_BRANCH", "master"),
        ("TRAVIS_TAG", ""),
        ("TRAVIS_COMMIT", &head),
        ("TRAVIS_COMMIT_RANGE", &format!("{before}...{head}")),
        ("TRAVIS_COMMIT_MESSAGE", "env test\n\nthe body"),
        ("TRAVIS_REPO_SLUG", REPO_NAME),
        ("TRAVIS_BUILD_ID", &id.to_string()),
        ("TRAVIS_BUILD_NUMBER", &id.to_string()),
        ("TRAVIS_JOB_ID", &job.to_string()),
        ("TRAVIS_JOB_NUMBER", &format!("{id}.1")),
        ("TRAVIS_BUILD_WEB_URL", &format!("{public}/builds/{id}")),
        ("TRAVIS_JOB_WEB_URL", &format!("{public}/jobs/{job}")),
        ("TRAVIS_OS_NAME", "linux"),
        ("TRAVIS_SUDO", "true"),
        ("CI", "true"),
        ("CONTINUOUS_INTEGRATION", "true"),
        ("HAS_JOSH_K_SEAL_OF_APPROVAL", "true"),
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("USER", "root"),
    ] {
        assert_eq!(v.get(k).map(String::as_str), Some(want), "{k} in\n{log}");
    }
    assert!(v["TRAVIS_BUILD_DIR"].starts_with('/'), "{log}");
    assert!(!v["TRAVIS_CPU_ARCH"].is_empty(), "{log}");
    assert!(v["LANG"].ends_with(".UTF-8"), "{log}");
    assert!(log.contains("\nguard says push\n"), "{log}");
    // travis_retry: failed once, then passed.
    assert!(log.contains("failed. Retrying, 2 of 3."), "{log}");
    // travis_fold and travis_time: the markers the log viewer reads.
    assert!(
        log.contains("travis_fold:start:mine\r\x1b[0Kfolded\ntravis_fold:end:mine\r\x1b[0K"),
        "{log}"
    );
    assert!(log.contains("travis_time:start:"), "{log}");
    assert!(log.contains(",duration="), "{log}");
    // travis_wait: keep-alive, then the command's output.
    assert!(
        log.contains("Still running (1 of 1): sh -c sleep 1; echo waited\r"),
        "{log}"
    );
    assert!(log.contains("Log:\x1b[0m\n\nwaited\n"), "{log}");
    assert!(log.contains("\ntest result 0\n"), "{log}");

    // A pull request from a branch of the same repository.
    up.git(&["checkout", "-q", "-b", "changes"]);
    let pr_head = up.commit(&[("pr", "change\n")], "a change");
    up.git(&["update-ref", "refs/pull/2/head", &pr_head]);
    up.git(&["checkout", "-q", "master"]);
    let opened = github_fixture(
        "pull_request.opened.json",
        &[
            ("ec26c3e57ca3a959ca5aad62de7213c562f8c821", &pr_head),
            ("f95f852bd8fca8fcc58a9a2d6c842781e32a215e", &head),
        ],
    );
    let (st, body) = send(&c, "/hooks/github/hello", &secret, "pull_request", &opened);
    assert_eq!(st, 202, "{body}");
    let pr = wait_for("the PR build", WAIT, || {
        builds(&c, "hello")
            .into_iter()
            .find(|b| b["commit"] == pr_head.as_str())
    });
    let pr_id = pr["id"].as_u64().unwrap();
    let (_, log) = job_log(&c, pr_id);
    let v = vars(&log);
    for (k, want) in [
        ("TRAVIS_EVENT_TYPE", "pull_request"),
        ("TRAVIS_PULL_REQUEST", "2"),
        ("TRAVIS_PULL_REQUEST_BRANCH", "changes"),
        ("TRAVIS_PULL_REQUEST_SHA", &pr_head),
        ("TRAVIS_PULL_REQUEST_SLUG", REPO_NAME),
        ("TRAVIS_BRANCH", "master"),
        ("TRAVIS_COMMIT", &pr_head),
        ("TRAVIS_COMMIT_RANGE", &format!("{head}...{pr_head}")),
    ] {
        assert_eq!(v.get(k).map(String::as_str), Some(want), "{k} in\n{log}");
    }
    assert!(log.contains("\nguard says PR 2\n"), "{log}");
    // `kha build list` says which builds are pull requests.
    let list = c.kha_ok(&["build", "list", "hello"]);
    let line = list
        .lines()
        .find(|l| l.starts_with(&format!("{pr_id} ")))
        .unwrap();
    assert!(line.contains("PR #2 (master)"), "{list}");

    // The base branch fast-forwarded to the PR's head is a build of its
    // own (a PR build is not the branch's), and the branch follows.
    up.git(&["merge", "-q", "--ff-only", "changes"]);
    let ff = github_fixture(
        "push.normal.json",
        &[
            ("199eddf46df50de8d02e99bf1c5fdb4101338224", &pr_head),
            ("a10867b14bb761a232cd80139fbd4c0d33264240", &head),
        ],
    );
    let (st, body) = send(&c, "/hooks/github", &secret, "push", &ff);
    assert_eq!(st, 202, "{body}");
    let branch_build = wait_for("the branch build of the PR's commit", WAIT, || {
        builds(&c, "hello")
            .into_iter()
            .find(|b| b["commit"] == pr_head.as_str() && b["pr_number"] == 0)
    });
    assert_ne!(branch_build["id"], pr["id"]);
    assert_eq!(
        branch(&c, "hello", "master").unwrap()["head"],
        pr_head.as_str()
    );
    let (_, log) = job_log(&c, branch_build["id"].as_u64().unwrap());
    assert!(log.contains("\nguard says push\n"), "{log}");

    // The API.
    let api = c.trigger("hello", Some("master"));
    let (_, log) = job_log(&c, api);
    assert_eq!(vars(&log)["TRAVIS_EVENT_TYPE"], "api", "{log}");
}

#[test]
fn unsigned_deliveries_learn_nothing_and_are_not_parsed() {
    let c = Fixture::new().start();
    let base = c.path("git");
    let up = Repo::new(base.join("up"));
    let head = up.commit(
        &[(".travis.yml", "language: shell\nscript: true\n")],
        "first",
    );
    let daemon = GitDaemon::start(&base);
    let p = c.kha_json(&[
        "project",
        "add",
        "hello",
        &daemon.url("up"),
        "--github",
        REPO_NAME,
        "--no-poll",
        "--private",
    ]);
    let secret = p["webhook_secret"].as_str().unwrap().to_string();
    let push = github_fixture(
        "push.normal.json",
        &[("199eddf46df50de8d02e99bf1c5fdb4101338224", &head)],
    );
    let unknown = github_fixture("push.normal.json", &[(REPO_NAME, "Someone/Else")]);
    let answers: Vec<(u16, String)> = [
        // A project's repository, a wrong secret.
        send(&c, "/hooks/github", "wrong", "push", &push),
        // A repository no project builds.
        send(&c, "/hooks/github", "wrong", "push", &unknown),
        // No signature at all, and a body that is not JSON.
        http_post(
            &c.http_url(),
            "/hooks/github",
            &[("X-GitHub-Event", "push")],
            b"{not json",
        ),
        send(&c, "/hooks/github", "wrong", "push", b"{not json"),
        // The per-project URL: a project that is not there, or a wrong secret.
        send(&c, "/hooks/github/nothere", &secret, "push", &push),
        send(&c, "/hooks/github/hello", "wrong", "push", &push),
    ]
    .into_iter()
    .collect();
    for (st, body) in &answers {
        assert_eq!((*st, body.as_str()), (answers[0].0, answers[0].1.as_str()));
    }
    assert_eq!(answers[0].0, 401);
    // Signed, the same malformed body is read (and refused as such).
    let (st, body) = send(&c, "/hooks/github", &secret, "push", b"{not json");
    assert_eq!(st, 400, "{body}");
    let (st, body) = send(&c, "/hooks/github/hello", &secret, "push", &push);
    assert_eq!(st, 202, "{body}");
    wait_for("the build", WAIT, || builds(&c, "hello").pop());
}

#[test]
fn a_push_whose_commit_cannot_be_fetched_gives_an_errored_build() {
    let c = Fixture::new().start();
    let base = c.path("git");
    let up = Repo::new(base.join("up"));
    up.commit(
        &[(".travis.yml", "language: shell\nscript: true\n")],
        "first",
    );
    let daemon = GitDaemon::start(&base);
    let p = c.kha_json(&[
        "project",
        "add",
        "hello",
        &daemon.url("up"),
        "--github",
        REPO_NAME,
        "--no-poll",
    ]);
    let secret = p["webhook_secret"].as_str().unwrap().to_string();
    let missing = "1234567890123456789012345678901234567890";
    let push = github_fixture(
        "push.normal.json",
        &[("199eddf46df50de8d02e99bf1c5fdb4101338224", missing)],
    );
    let (st, body) = send(&c, "/hooks/github", &secret, "push", &push);
    assert_eq!(st, 202, "{body}");
    let b = wait_for("the errored build", WAIT, || builds(&c, "hello").pop());
    assert_eq!(b["state"], "errored", "{b}");
    assert_eq!(b["commit"], missing);
    let b = c.build(b["id"].as_u64().unwrap());
    assert!(b["error"].as_str().unwrap().contains("cannot fetch"), "{b}");
    let log = String::from_utf8_lossy(&c.log(b["jobs"][0]["id"].as_u64().unwrap())).into_owned();
    assert!(log.contains("cannot fetch the commit to build"), "{log}");
    // It is not the commit's build: the next delivery tries again.
    assert_eq!(send(&c, "/hooks/github", &secret, "push", &push).0, 202);
    wait_for("a second errored build", WAIT, || {
        (builds(&c, "hello").len() == 2).then_some(())
    });
}

#[test]
fn a_branch_deleted_and_pushed_back_at_a_built_commit_is_there_again() {
    let c = Fixture::new().start();
    let base = c.path("git");
    let up = Repo::new(base.join("up"));
    let head = up.commit(
        &[(".travis.yml", "language: shell\nscript: true\n")],
        "first",
    );
    up.git(&["branch", "feature"]);
    let daemon = GitDaemon::start(&base);
    c.kha_ok(&["project", "add", "hello", &daemon.url("up"), "--poll", "1"]);
    wait_for("both branches built", WAIT, || {
        (builds(&c, "hello").len() == 2).then_some(())
    });
    up.git(&["branch", "-D", "feature"]);
    wait_for("the branch marked deleted", WAIT, || {
        (branch(&c, "hello", "feature").unwrap()["deleted"] == true).then_some(())
    });
    up.git(&["branch", "feature", &head]);
    let b = wait_for("the branch back", WAIT, || {
        branch(&c, "hello", "feature").filter(|b| b["deleted"] == false)
    });
    assert_eq!(b["head"], head.as_str());
    // Nothing new was built, and the poller is at rest: the branch record
    // does not change any more.
    let seen = branch(&c, "hello", "feature").unwrap()["updated_ms"].clone();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(branch(&c, "hello", "feature").unwrap()["updated_ms"], seen);
    assert_eq!(builds(&c, "hello").len(), 2);
}

#[test]
fn an_empty_repository_can_be_added_and_its_first_push_names_the_branch() {
    let c = Fixture::new().start();
    let base = c.path("git");
    let up = Repo::new(base.join("up"));
    let daemon = GitDaemon::start(&base);
    let p = c.kha_json(&["project", "add", "hello", &daemon.url("up"), "--poll", "1"]);
    assert_eq!(p["default_branch"], "", "{p}");
    up.git(&["checkout", "-q", "-b", "trunk"]);
    let head = up.commit(
        &[(".travis.yml", "language: shell\nscript: true\n")],
        "first",
    );
    let b = wait_for("the first push's build", WAIT, || builds(&c, "hello").pop());
    assert_eq!(b["commit"], head.as_str());
    assert_eq!(b["branch"], "trunk");
    let p = c.kha_json(&["project", "show", "hello"]);
    assert_eq!(p["default_branch"], "trunk", "{p}");
}

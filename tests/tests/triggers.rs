//! End to end: builds that start by themselves: polling a git remote served
//! by `git daemon` on loopback, GitHub webhooks with real payloads, and the
//! generic webhook.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

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

fn commits_built(c: &Cluster, project: &str, commit: &str) -> usize {
    builds(c, project)
        .iter()
        .filter(|b| b["commit"] == commit)
        .count()
}

const CONFIG: &str = "language: shell\nbranches:\n  except:\n    - /^wip-/\nscript: echo hi\n";

#[test]
fn polling_builds_new_heads_once_and_tracks_branches() {
    let c = Fixture::new().start();
    let base = c.path("git");
    let up = Repo::new(base.join("up"));
    let a = up.commit(&[(".travis.yml", CONFIG)], "first");
    up.git(&["checkout", "-q", "-b", "dev"]);
    let b = up.commit(&[("dev.txt", "dev\n")], "on dev");
    up.git(&["checkout", "-q", "master"]);
    let daemon = GitDaemon::start(&base);
    c.kha_ok(&["project", "add", "demo", &daemon.url("up"), "--poll", "1"]);
    let wait = Duration::from_secs(10);

    // Two branches, two builds, each at its branch's head.
    wait_for("two builds", wait, || {
        (builds(&c, "demo").len() == 2).then_some(())
    });
    assert_eq!(commits_built(&c, "demo", &a), 1);
    assert_eq!(commits_built(&c, "demo", &b), 1);
    let master = branch(&c, "demo", "master").unwrap();
    assert_eq!(master["head"], a.as_str());
    assert_eq!(master["state"], "queued");

    // Two commits between polls: only the newest head is built.
    up.commit(&[("x", "1\n")], "c1");
    let c2 = up.commit(&[("x", "2\n")], "c2");
    wait_for("the new head's build", wait, || {
        (commits_built(&c, "demo", &c2) == 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        builds(&c, "demo").len(),
        3,
        "no build for the intermediate commit, and no repeat"
    );
    let dev_only = c.kha_json(&["build", "list", "demo", "--branch", "dev"]);
    assert_eq!(dev_only["total"], 1);

    // A skip marker: the head is recorded as skipped, nothing runs.
    up.git(&["checkout", "-q", "dev"]);
    let skipped = up.commit(&[("dev.txt", "docs\n")], "Update docs\n\n[skip ci]");
    wait_for("dev to show the skipped head", wait, || {
        branch(&c, "demo", "dev")
            .filter(|d| d["head"] == skipped.as_str() && d["state"] == "skipped")
    });
    assert_eq!(commits_built(&c, "demo", &skipped), 0);

    // Branch filters: wip-* is excluded by the .travis.yml.
    up.git(&["checkout", "-q", "-b", "wip-thing"]);
    let wip = up.commit(&[("w", "w\n")], "wip");
    wait_for("wip-thing to show as filtered", wait, || {
        branch(&c, "demo", "wip-thing")
            .filter(|d| d["state"] == "filtered" && d["head"] == wip.as_str())
    });
    assert_eq!(commits_built(&c, "demo", &wip), 0);

    // A force-push: the rewritten head is built.
    up.git(&["checkout", "-q", "master"]);
    up.git(&["reset", "-q", "--hard", &a]);
    let forced = up.commit(&[("y", "rewritten\n")], "rewritten history");
    wait_for("the force-pushed head's build", wait, || {
        (commits_built(&c, "demo", &forced) == 1).then_some(())
    });

    // A deleted branch is shown as deleted and not polled for builds.
    up.git(&["branch", "-q", "-D", "wip-thing"]);
    wait_for("wip-thing to be deleted", wait, || {
        branch(&c, "demo", "wip-thing").filter(|d| d["deleted"] == true)
    });
    let table = c.kha_ok(&["branch", "list", "demo"]);
    assert!(
        table.contains("deleted") && table.contains("skipped"),
        "{table}"
    );

    // The CLI can still force a build of a skipped commit.
    let o = c.kha(&["build", "trigger", "demo", "--branch", "dev"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("skip marker"));
    c.kha_ok(&["build", "trigger", "demo", "--branch", "dev", "--force"]);
    assert_eq!(commits_built(&c, "demo", &skipped), 1);
}

struct Hooked {
    c: Cluster,
    up: Repo,
    secret: String,
    _daemon: GitDaemon,
}

const REPO_NAME: &str = "Codertocat/Hello-World";
/// Some fixtures come from another repository: they are pointed at ours.
const DRONE: &str = "bradrydzewski/drone-test-go";

fn hooked(poll: bool) -> Hooked {
    let c = Fixture::new().start();
    let base = c.path("git");
    let up = Repo::new(base.join("up"));
    up.commit(&[(".travis.yml", CONFIG)], "first");
    let daemon = GitDaemon::start(&base);
    let url = daemon.url("up");
    let mut args = vec!["project", "add", "hello", &url, "--github", REPO_NAME];
    if poll {
        args.extend(["--poll", "1"]);
    } else {
        args.push("--no-poll");
    }
    let p = c.kha_json(&args);
    let secret = p["webhook_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("khaw_"));
    Hooked {
        c,
        up,
        secret,
        _daemon: daemon,
    }
}

impl Hooked {
    fn send(&self, event: &str, body: &[u8]) -> (u16, String) {
        let sig = github_signature(&self.secret, body);
        http_post(
            &self.c.http_url(),
            "/hooks/github",
            &[
                ("X-GitHub-Event", event),
                ("X-Hub-Signature-256", &sig),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }
}

#[test]
fn github_webhooks_with_real_payloads() {
    let h = hooked(false);
    let c = &h.c;
    let wait = Duration::from_secs(10);
    let head = h.up.git(&["rev-parse", "HEAD"]);

    // ping: answered, nothing created.
    let (st, body) = h.send(
        "ping",
        &github_fixture("ping.json", &[("Octocoders/Hello-World", REPO_NAME)]),
    );
    assert_eq!(st, 200, "{body}");

    // push to master.
    let push = github_fixture(
        "push.normal.json",
        &[("199eddf46df50de8d02e99bf1c5fdb4101338224", &head)],
    );
    let (st, body) = h.send("push", &push);
    assert_eq!(st, 202, "{body}");
    wait_for("the push's build", wait, || {
        (commits_built(c, "hello", &head) == 1).then_some(())
    });
    let b = &builds(c, "hello")[0];
    assert_eq!(b["event"], "push");
    assert_eq!(b["branch"], "master");
    // The same delivery again builds nothing new.
    assert_eq!(h.send("push", &push).0, 202);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(builds(c, "hello").len(), 1);

    // A new branch.
    h.up.git(&["checkout", "-q", "-b", "feature-branch"]);
    let feat = h.up.commit(&[("f", "f\n")], "feature");
    let created = github_fixture(
        "push.branch-created.json",
        &[
            ("d2b75aa7797ec26b088fa2dd527e9d2c052fcedd", &feat),
            (DRONE, REPO_NAME),
        ],
    );
    assert_eq!(h.send("push", &created).0, 202);
    wait_for("the new branch's build", wait, || {
        (commits_built(c, "hello", &feat) == 1).then_some(())
    });
    assert_eq!(
        branch(c, "hello", "feature-branch").unwrap()["head"],
        feat.as_str()
    );

    // A tag: this project does not build tags.
    let (st, body) = h.send(
        "push",
        &github_fixture("push.tag-created.json", &[(DRONE, REPO_NAME)]),
    );
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("does not build tags"), "{body}");

    // Branch deleted: marked, nothing built.
    let n = builds(c, "hello").len();
    assert_eq!(
        h.send(
            "push",
            &github_fixture("push.branch-deleted.json", &[(DRONE, REPO_NAME)])
        )
        .0,
        200
    );
    assert_eq!(
        branch(c, "hello", "feature-branch").unwrap()["deleted"],
        true
    );
    assert_eq!(builds(c, "hello").len(), n);

    // A pull request: its head commit, from refs/pull/2/head, marked as PR #2.
    h.up.git(&["checkout", "-q", "master"]);
    h.up.git(&["checkout", "-q", "-b", "changes"]);
    let pr_head = h.up.commit(&[("pr", "change\n")], "a change");
    h.up.git(&["update-ref", "refs/pull/2/head", &pr_head]);
    h.up.git(&["checkout", "-q", "master"]);
    h.up.git(&["branch", "-q", "-D", "changes"]);
    let opened = github_fixture(
        "pull_request.opened.json",
        &[("ec26c3e57ca3a959ca5aad62de7213c562f8c821", &pr_head)],
    );
    assert_eq!(h.send("pull_request", &opened).0, 202);
    let pr = wait_for("the PR build", wait, || {
        builds(c, "hello")
            .into_iter()
            .find(|b| b["commit"] == pr_head.as_str())
    });
    assert_eq!(pr["pr_number"], 2);
    assert_eq!(pr["event"], "pull_request");
    assert_eq!(pr["branch"], "master");
    // Closing it cancels its builds that have not started (no builder here).
    assert_eq!(pr["state"], "queued");
    assert_eq!(
        h.send(
            "pull_request",
            &github_fixture("pull_request.closed.json", &[])
        )
        .0,
        202
    );
    wait_for("the PR build to be canceled", wait, || {
        (c.build(pr["id"].as_u64().unwrap())["state"] == "canceled").then_some(())
    });

    // Events kha does not act on are acknowledged.
    assert_eq!(h.send("create", &github_fixture("create.json", &[])).0, 200);

    // Bad input: nothing is created.
    let n = builds(c, "hello").len();
    let (st, _) = http_post(
        &c.http_url(),
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", "sha256=00"),
        ],
        &push,
    );
    assert_eq!(st, 401);
    let (st, _) = http_post(
        &c.http_url(),
        "/hooks/github",
        &[("X-GitHub-Event", "push")],
        &push,
    );
    assert_eq!(st, 401);
    let truncated = &push[..push.len() / 2];
    let (st, body) = h.send("push", truncated);
    assert_eq!(st, 400);
    assert!(body.contains("malformed JSON"), "{body}");
    let other = github_fixture(
        "push.normal.json",
        &[("Codertocat/Hello-World", "Codertocat/Hello-Earth")],
    );
    let (st, body) = h.send("push", &other);
    assert_eq!(st, 404, "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(builds(c, "hello").len(), n);
}

#[test]
fn a_webhook_and_a_poll_racing_build_once() {
    let h = hooked(true);
    let c = &h.c;
    let first = h.up.git(&["rev-parse", "HEAD"]);
    wait_for("the first poll's build", Duration::from_secs(10), || {
        (commits_built(c, "hello", &first) == 1).then_some(())
    });
    for i in 0..5 {
        let sha =
            h.up.commit(&[("n", &format!("{i}\n"))], &format!("commit {i}"));
        let push = github_fixture(
            "push.normal.json",
            &[("199eddf46df50de8d02e99bf1c5fdb4101338224", &sha)],
        );
        assert_eq!(h.send("push", &push).0, 202);
        assert_eq!(h.send("push", &push).0, 202);
        wait_for("a build of the commit", Duration::from_secs(10), || {
            (commits_built(c, "hello", &sha) >= 1).then_some(())
        });
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            commits_built(c, "hello", &sha),
            1,
            "commit {i} built more than once"
        );
    }
}

#[test]
fn generic_webhook() {
    let h = hooked(false);
    let c = &h.c;
    let head = h.up.git(&["rev-parse", "HEAD"]);
    let auth = format!("Bearer {}", h.secret);
    let (st, body) = http_post(
        &c.http_url(),
        "/hooks/generic/hello",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(st, 202, "{body}");
    wait_for("the build", Duration::from_secs(10), || {
        (commits_built(c, "hello", &head) == 1).then_some(())
    });
    assert_eq!(builds(c, "hello")[0]["event"], "generic");
    let (st, refused) = http_post(
        &c.http_url(),
        "/hooks/generic/hello",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(st, 401);
    // A project that is not there: the same answer, so a wrong token
    // learns nothing of which projects exist.
    let (st, body) = http_post(
        &c.http_url(),
        "/hooks/generic/nosuch",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!((st, body), (401, refused.clone()));
    // The secret is taken from the Authorization header only: in a URL's
    // query string it would end up in proxies' and servers' access logs.
    for key in ["token", "secret", "access_token"] {
        let (st, body) = http_post(
            &c.http_url(),
            &format!("/hooks/generic/hello?{key}={}", h.secret),
            &[],
            b"",
        );
        assert_eq!((st, &body), (401, &refused), "?{key}=");
    }
    let (st, _) = http_post(
        &c.http_url(),
        "/hooks/generic/hello",
        &[("Authorization", &auth)],
        b"{\"branch\":",
    );
    assert_eq!(st, 400);
    // The post-receive hook in deploy/ drives the same endpoint.
    let hook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/post-receive");
    h.up.git(&["checkout", "-q", "-b", "topic"]);
    let topic = h.up.commit(&[("t", "t\n")], "topic");
    let o = std::process::Command::new("sh")
        .arg(&hook)
        .env(
            "KHA_HOOK_URL",
            format!("{}/hooks/generic/hello", c.http_url()),
        )
        .env("KHA_HOOK_TOKEN", &h.secret)
        .stdin_with(&format!("{} {} refs/heads/topic\n", "0".repeat(40), topic));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for("the topic build", Duration::from_secs(10), || {
        (commits_built(c, "hello", &topic) == 1).then_some(())
    });
}

trait StdinWith {
    fn stdin_with(&mut self, input: &str) -> std::process::Output;
}

impl StdinWith for std::process::Command {
    fn stdin_with(&mut self, input: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn private_repository_over_https_with_credentials() {
    // The git server speaks HTTPS with a certificate from a CA made for the
    // test; the control node and builders trust it through OpenSSL's
    // SSL_CERT_FILE, as a deployment would through its system store.
    let c = Fixture::new().trust_test_ca().builder("a", 1).start();
    let root = c.path("private");
    let up = Repo::new(root.join("secret-project"));
    up.commit(
        &[(".travis.yml", "language: shell\nscript:\n  - cat private.txt\n  - git remote -v\n  - env | sort\n  - cat .git/config\n")],
        "private",
    );
    up.commit(&[("private.txt", "only for the initiated\n")], "content");
    let password = "s3cret-Token-42";
    let (cert, key) = (c.path("cert.pem"), c.path("key.pem"));
    let server = GitHttp::start_with(&root, "alice", password, Some((&cert, &key)));
    let url = server.url("secret-project");
    // Without credentials the repository cannot even be added.
    let o = c.kha(&["project", "add", "nocreds", &url, "--no-poll"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("authentication"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(c.path("pw"), password).unwrap();
    let pw = c.path("pw");
    c.kha_ok(&[
        "project",
        "add",
        "priv",
        &url,
        "--username",
        "alice",
        "--password-file",
        &pw.to_string_lossy(),
        "--no-poll",
    ]);
    let shown = c.kha_json(&["project", "show", "priv"]);
    assert_eq!(shown["has_credentials"], true);
    assert!(!shown.to_string().contains(password));
    let id = c.trigger("priv", None);
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    let log = String::from_utf8(c.log(b["jobs"][0]["id"].as_u64().unwrap())).unwrap();
    assert!(log.contains("only for the initiated"), "{log}");
    assert!(log.contains(&format!("origin\t{url} (fetch)")), "{log}");
    // The secret reaches neither the job nor any log.
    assert!(!log.contains(password), "{log}");
    for f in std::fs::read_dir(c.dir.path()).unwrap().flatten() {
        if f.path().extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            assert!(
                !text.contains(password),
                "{} holds the password",
                f.path().display()
            );
        }
    }
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_local_path_builds_in_place_without_a_url() {
    let repo = Repo::temp();
    let head = repo.commit(
        &[(
            ".travis.yml",
            "language: shell\nscript: git log -1 --format=%H\n",
        )],
        "local",
    );
    // A plain path on a filesystem the builder can read, as in the original kha.
    let c = Fixture::new()
        .project("local", &repo.dir.to_string_lossy())
        .builder("a", 1)
        .start();
    let id = c.trigger("local", None);
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    let log = String::from_utf8(c.log(b["jobs"][0]["id"].as_u64().unwrap())).unwrap();
    assert!(log.ends_with(&format!("{head}\n")), "{log}");
}

#[test]
fn a_newer_push_cancels_queued_builds_when_asked() {
    let repo = Repo::temp();
    let first = repo.commit(&[(".travis.yml", CONFIG)], "one");
    let c = Fixture::new()
        .project_with("p", &repo.url(), &["--cancel-superseded"])
        .project("q", &repo.url())
        .start();
    // No builder: builds stay queued.
    let a = c.kha_json(&["build", "trigger", "p"])["id"]
        .as_u64()
        .unwrap();
    let qa = c.kha_json(&["build", "trigger", "q"])["id"]
        .as_u64()
        .unwrap();
    let second = repo.commit(&[("x", "2\n")], "two");
    assert_ne!(first, second);
    let b = c.kha_json(&["build", "trigger", "p"])["id"]
        .as_u64()
        .unwrap();
    c.kha_json(&["build", "trigger", "q"]);
    wait_for(
        "the superseded build to be canceled",
        Duration::from_secs(10),
        || (c.build(a)["state"] == "canceled").then_some(()),
    );
    assert_eq!(c.build(b)["state"], "queued");
    // Without the setting, both stay.
    assert_eq!(c.build(qa)["state"], "queued");
}

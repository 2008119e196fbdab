//! End to end: Subversion projects. A real `svnserve` on loopback with a
//! login, polled; a `file://` repository whose post-commit hook
//! (`deploy/svn/post-commit`) asks for builds; jobs that check a branch's
//! path out at its revision in an lxc container.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::collections::BTreeSet;
use std::time::Duration;

fn builds(c: &Cluster, project: &str) -> Vec<serde_json::Value> {
    c.kha_json(&["build", "list", project, "--per-page", "100"])["builds"]
        .as_array()
        .unwrap()
        .clone()
}

fn built(c: &Cluster, project: &str, branch: &str, rev: u64) -> Vec<serde_json::Value> {
    builds(c, project)
        .into_iter()
        .filter(|b| b["branch"] == branch && b["commit"] == rev.to_string().as_str())
        .collect()
}

fn branch(c: &Cluster, project: &str, name: &str) -> Option<serde_json::Value> {
    c.kha_json(&["branch", "list", project])
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
}

/// No branch and revision was built twice.
fn assert_each_built_once(c: &Cluster, project: &str) {
    let all = builds(c, project);
    let distinct: BTreeSet<(String, String)> = all
        .iter()
        .map(|b| (b["branch"].to_string(), b["commit"].to_string()))
        .collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a revision built twice: {all:#?}"
    );
}

const CONFIG: &str =
    "language: shell\nbranches:\n  except:\n    - /^wip-/\nscript:\n  - cat hello.txt\n  - ls -a\n";

#[test]
fn svnserve_with_a_login_is_polled_and_each_branch_head_built_once() {
    let c = Fixture::new().start();
    let base = c.path("svn");
    std::fs::create_dir_all(&base).unwrap();
    let repo = SvnRepo::create(&base, "repo");
    repo.require_login("kha", "s3cret pw");
    let first = repo.commit(
        &[
            ("trunk/.travis.yml", CONFIG),
            ("trunk/hello.txt", "trunk\n"),
        ],
        "first",
    );
    let serve = Svnserve::start(&base);
    let url = serve.url("repo");
    let wait = Duration::from_secs(15);

    // Without the right password the repository is not added.
    let (bad, good) = (c.path("bad-password"), c.path("password"));
    std::fs::write(&bad, "wrong\n").unwrap();
    std::fs::write(&good, "s3cret pw\n").unwrap();
    let o = c.kha(&[
        "project",
        "add",
        "nope",
        &url,
        "--username",
        "kha",
        "--password-file",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "added with a wrong password");

    // svn:// is detected; trunk is the default branch.
    let p = c.kha_json(&[
        "project",
        "add",
        "demo",
        &url,
        "--username",
        "kha",
        "--password-file",
        good.to_str().unwrap(),
        "--poll",
        "1",
    ]);
    assert_eq!(p["vcs"], "svn", "{p}");
    assert_eq!(p["default_branch"], "trunk", "{p}");
    let show = c.kha_ok(&["project", "show", "demo"]);
    assert!(
        show.contains("layout:") && show.contains("standard"),
        "{show}"
    );
    // The same repository by file://, polled too.
    c.kha_ok(&[
        "project",
        "add",
        "local",
        &repo.url(),
        "--vcs",
        "svn",
        "--poll",
        "1",
    ]);

    for p in ["demo", "local"] {
        wait_for("trunk's build", wait, || {
            (built(&c, p, "trunk", first).len() == 1).then_some(())
        });
    }

    // A branch: its head is the revision it last changed in.
    repo.copy("trunk", "branches/feature", "a feature branch");
    let on_feature = repo.commit(
        &[("branches/feature/hello.txt", "feature\n")],
        "on the feature",
    );
    for p in ["demo", "local"] {
        wait_for("the feature branch's build", wait, || {
            (built(&c, p, "feature", on_feature).len() == 1).then_some(())
        });
    }

    // A commit on trunk builds trunk; the feature branch did not move.
    let on_trunk = repo.commit(&[("trunk/hello.txt", "trunk 2\n")], "on trunk");
    wait_for("trunk's second build", wait, || {
        (built(&c, "demo", "trunk", on_trunk).len() == 1).then_some(())
    });
    let b = &built(&c, "demo", "trunk", on_trunk)[0];
    assert_eq!(b["message"], "on trunk");
    assert_eq!(b["author"], "kha-test");
    let shown = c.kha_ok(&["build", "show", &b["id"].to_string()]);
    assert!(shown.contains(&format!("(r{on_trunk})")), "{shown}");

    // A skip marker: recorded, not built.
    let skipped = repo.commit(&[("trunk/hello.txt", "docs\n")], "Update docs\n\n[ci skip]");
    wait_for("trunk to show the skipped revision", wait, || {
        branch(&c, "demo", "trunk")
            .filter(|t| t["head"] == skipped.to_string().as_str() && t["state"] == "skipped")
    });
    assert!(built(&c, "demo", "trunk", skipped).is_empty());

    // Branch filters, as for git.
    let wip = repo.copy("trunk", "branches/wip-x", "work in progress");
    wait_for("wip-x to show as filtered", wait, || {
        branch(&c, "demo", "wip-x")
            .filter(|w| w["state"] == "filtered" && w["head"] == wip.to_string().as_str())
    });

    // A deleted branch is shown deleted.
    repo.delete("branches/feature", "the feature is done");
    wait_for("feature to be deleted", wait, || {
        branch(&c, "demo", "feature").filter(|f| f["deleted"] == true)
    });
    let table = c.kha_ok(&["branch", "list", "demo"]);
    assert!(table.contains("deleted"), "{table}");
    assert!(table.contains(&format!("r{skipped}")), "{table}");

    // Quiet polls build nothing again.
    std::thread::sleep(Duration::from_millis(2500));
    for p in ["demo", "local"] {
        assert_each_built_once(&c, p);
        assert_eq!(built(&c, p, "trunk", first).len(), 1);
        assert_eq!(branch(&c, p, "feature").unwrap()["deleted"], true);
    }
    // (local may have seen on_trunk and the skipped revision in one poll:
    // only the newest head is built then.)
    assert_eq!(built(&c, "demo", "trunk", on_trunk).len(), 1);
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn the_post_commit_hook_builds_and_jobs_check_out_their_revision() {
    require_lxc();
    let c = Fixture::new().builder("a", 2).start();
    let base = c.path("svn");
    std::fs::create_dir_all(&base).unwrap();
    let repo = SvnRepo::create(&base, "repo");
    repo.commit(
        &[
            ("trunk/.travis.yml", CONFIG),
            ("trunk/hello.txt", "hello from trunk\n"),
        ],
        "first",
    );
    let p = c.kha_json(&[
        "project",
        "add",
        "demo",
        &repo.url(),
        "--vcs",
        "svn",
        "--no-poll",
    ]);
    let secret = p["webhook_secret"].as_str().unwrap().to_string();
    let hook_url = format!("{}/hooks/generic/demo", c.http_url());
    repo.install_hook(&[("KHA_HOOK_URL", &hook_url), ("KHA_HOOK_TOKEN", &secret)]);
    let wait = Duration::from_secs(60);

    // A commit on trunk: the hook asks for it, the job sees its files.
    let second = repo.commit(&[("trunk/hello.txt", "hello again\n")], "second");
    let id = wait_for("the hook's build", wait, || {
        built(&c, "demo", "trunk", second)
            .first()
            .and_then(|b| b["id"].as_u64())
    });
    let b = c.wait_build(id, wait);
    assert_eq!(b["state"], "passed", "{b}");
    let job = b["jobs"][0]["id"].as_u64().unwrap();
    let log = String::from_utf8(c.log(job)).unwrap();
    assert!(
        log.contains(&format!(
            "[kha] svn: checked out trunk at r{second} from {}",
            repo.url()
        )),
        "{log}"
    );
    assert!(log.contains("$ cat hello.txt\nhello again\n"), "{log}");
    assert!(log.contains(".svn\n"), "a working copy: {log}");

    // The build page shows the revision.
    let page = http_get(&c.http_url(), &format!("/builds/{id}")).text();
    assert!(
        page.contains(&format!("<code class=\"commit\">r{second}</code>")),
        "{page}"
    );

    // A branch made and committed to: each revision built at its path.
    let made = repo.copy("trunk", "branches/b", "branch b");
    let on_b = repo.commit(&[("branches/b/hello.txt", "hello from b\n")], "on b");
    for rev in [made, on_b] {
        let id = wait_for("the branch's build", wait, || {
            built(&c, "demo", "b", rev)
                .first()
                .and_then(|b| b["id"].as_u64())
        });
        let b = c.wait_build(id, wait);
        assert_eq!(b["state"], "passed", "{b}");
        let log = String::from_utf8(c.log(b["jobs"][0]["id"].as_u64().unwrap())).unwrap();
        assert!(
            log.contains(&format!("checked out branches/b at r{rev}")),
            "{log}"
        );
        let want = if rev == made {
            "hello again"
        } else {
            "hello from b"
        };
        assert!(log.contains(&format!("$ cat hello.txt\n{want}\n")), "{log}");
    }

    // A skip marker through the hook: recorded, not built.
    let skipped = repo.commit(&[("trunk/hello.txt", "x\n")], "typo [ci skip]");
    wait_for("trunk to show the skipped revision", wait, || {
        branch(&c, "demo", "trunk")
            .filter(|t| t["head"] == skipped.to_string().as_str() && t["state"] == "skipped")
    });
    assert!(built(&c, "demo", "trunk", skipped).is_empty());
    assert_each_built_once(&c, "demo");
    assert!(
        c.running_containers().is_empty(),
        "containers left: {:?}",
        c.running_containers()
    );
}

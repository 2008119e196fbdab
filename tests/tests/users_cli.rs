//! End to end: people through the `kha` CLI. An admin adds users and gives
//! them roles; they sign in with `kha login` (the password piped on
//! standard input, as a script would), act within their roles, make and
//! revoke API tokens, and sign out; the audit log names them. And
//! `kha-control user add` on a stopped control node.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs `kha` as a person on another machine would: with their own config
/// file, no admin token within reach, and `input` on standard input.
fn kha_as(c: &Cluster, config: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(bin("kha"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("KHA_TOKEN")
        .env_remove("KHA_SERVER")
        // Where no admin.token is.
        .env("KHA_DATA_DIR", c.path("nowhere"))
        .env("HOME", c.path("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn json(o: Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).unwrap()
}

/// Exit 4 with `needle` in the message.
fn refused(o: Output, needle: &str) {
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

/// The config file of a person, in the cluster's dir.
fn config_of(c: &Cluster, who: &str) -> PathBuf {
    c.path(&format!("{who}/kha/cli.toml"))
}

/// The `key = "value"` lines of a config file `kha login` wrote.
fn stored(config: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

/// The names `kha project list --json` shows.
fn project_names(o: Output) -> Vec<String> {
    json(o)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn people_sign_in_and_act_within_their_roles() {
    let repo = Repo::with_travis_yml("language: shell\nscript: echo hi\n");
    let c = Fixture::new().project("p", &repo.url()).start();
    let server = format!("http://{}", c.url());

    // The admin (the control node's token, on its machine) adds people.
    let alice = c.kha_json(&["user", "add", "alice", "--email", "alice@example.com"]);
    assert_eq!(alice["role"], "none");
    let alice_pw = alice["generated_password"].as_str().unwrap().to_string();
    assert!(alice_pw.len() >= 16, "{alice}");
    let shown = c.kha_ok(&["user", "add", "bob"]);
    let bob_pw = shown
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once): "))
        .unwrap_or_else(|| panic!("no password in {shown}"))
        .to_string();
    c.kha_ok(&["user", "set-role", "alice", "maintainer", "--project", "p"]);
    c.kha_ok(&["user", "set-role", "bob", "viewer", "--project", "p"]);
    let users = c.kha_json(&["user", "list"]);
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(
        users[0]["roles"],
        serde_json::json!([{"project": "p", "role": "maintainer"}])
    );

    // Alice signs in; the token lands in her config file, 0600, never on screen.
    let a_cfg = config_of(&c, "alice");
    let out = ok(kha_as(
        &c,
        &a_cfg,
        &["--server", &server, "login", "--user", "alice"],
        &format!("{alice_pw}\n"),
    ));
    let file = stored(&a_cfg);
    let token = file["token"].clone();
    assert!(token.starts_with("khau_"), "{file:?}");
    assert_eq!(file["server"], server);
    assert!(file["token_id"].starts_with("tok_"), "{file:?}");
    assert!(out.contains("as alice") && !out.contains(&token), "{out}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&a_cfg), 0o600);
    assert_eq!(mode(a_cfg.parent().unwrap()), 0o700);

    // From now on the config file says where and who.
    let who = json(kha_as(&c, &a_cfg, &["--json", "whoami"], ""));
    assert_eq!(
        (who["name"].as_str(), who["kind"].as_str()),
        (Some("alice"), Some("user"))
    );
    let b = json(kha_as(&c, &a_cfg, &["--json", "build", "trigger", "p"], ""));
    let build_id = b["id"].as_u64().unwrap();
    assert_eq!(b["state"], "queued");

    // Bob (a viewer; name and password both piped) reads but may not trigger.
    let b_cfg = config_of(&c, "bob");
    ok(kha_as(
        &c,
        &b_cfg,
        &["--server", &server, "login"],
        &format!("bob\n{bob_pw}\n"),
    ));
    ok(kha_as(
        &c,
        &b_cfg,
        &["build", "show", &build_id.to_string()],
        "",
    ));
    refused(
        kha_as(&c, &b_cfg, &["build", "trigger", "p"], ""),
        "needs the maintainer role on p; bob is a viewer there",
    );

    // Nobody signed in: public reads work, writes name the role and what to do.
    let anon = c.path("anon/cli.toml");
    let anon_list = || {
        project_names(kha_as(
            &c,
            &anon,
            &["--server", &server, "--json", "project", "list"],
            "",
        ))
    };
    assert_eq!(anon_list(), ["p"]);
    refused(
        kha_as(
            &c,
            &anon,
            &["--server", &server, "build", "trigger", "p"],
            "",
        ),
        "maintainer",
    );
    refused(
        kha_as(&c, &anon, &["--server", &server, "user", "list"], ""),
        "kha login",
    );
    // A wrong password is refused, without a token.
    refused(
        kha_as(
            &c,
            &anon,
            &["--server", &server, "login", "--user", "alice"],
            "not her password\n",
        ),
        "wrong user name or password",
    );
    assert!(!anon.exists());

    // Maintainers change settings: p goes private, and vanishes for outsiders.
    let p = json(kha_as(
        &c,
        &a_cfg,
        &[
            "--json",
            "project",
            "set",
            "p",
            "--private",
            "--timeout",
            "600",
        ],
        "",
    ));
    assert_eq!(
        (p["private"].as_bool(), p["timeout_secs"].as_u64()),
        (Some(true), Some(600))
    );
    refused(
        kha_as(&c, &b_cfg, &["project", "set", "p", "--public"], ""),
        "maintainer",
    );
    let gone = kha_as(
        &c,
        &anon,
        &["--server", &server, "project", "show", "p"],
        "",
    );
    assert_eq!(gone.status.code(), Some(3), "{}", text(&gone));
    assert!(anon_list().is_empty());
    assert_eq!(
        project_names(kha_as(&c, &b_cfg, &["--json", "project", "list"], "")),
        ["p"]
    );
    let members = json(kha_as(
        &c,
        &b_cfg,
        &["--json", "project", "members", "p"],
        "",
    ));
    assert_eq!(
        members,
        serde_json::json!([{"user": "alice", "role": "maintainer"}, {"user": "bob", "role": "viewer"}])
    );
    ok(kha_as(&c, &b_cfg, &["project", "star", "p"], ""));
    let who = json(kha_as(&c, &b_cfg, &["--json", "whoami"], ""));
    assert_eq!(who["stars"], serde_json::json!(["p"]));

    // API tokens: made once, listed without the secret, dead once revoked.
    let t = json(kha_as(
        &c,
        &a_cfg,
        &["--json", "token", "create", "ci", "--expires", "30d"],
        "",
    ));
    let (ci, ci_id) = (t["token"].as_str().unwrap(), t["id"].as_str().unwrap());
    assert!(t["expires_ms"].as_u64().unwrap() > 0);
    let listed = ok(kha_as(&c, &a_cfg, &["token", "list"], ""));
    assert!(
        listed.contains(ci_id) && listed.contains("ci") && !listed.contains(ci),
        "{listed}"
    );
    assert!(listed.contains("kha CLI on "), "{listed}");
    let nowhere = c.path("nobody/cli.toml");
    let with_ci = |args: &[&str]| {
        let mut a = vec!["--server", server.as_str(), "--token", ci];
        a.extend_from_slice(args);
        kha_as(&c, &nowhere, &a, "")
    };
    let who = json(with_ci(&["--json", "whoami"]));
    assert_eq!(who["name"], "alice");
    ok(kha_as(&c, &a_cfg, &["token", "revoke", ci_id], ""));
    refused(with_ci(&["whoami"]), "unknown or revoked API token");

    // The audit log (admins) names alice as the one who triggered.
    let audit = c.kha_json(&["audit"]);
    let entries = audit["entries"].as_array().unwrap();
    let trigger = entries
        .iter()
        .find(|e| e["action"] == "build.trigger")
        .unwrap_or_else(|| panic!("no trigger in {audit}"));
    assert_eq!(trigger["actor"], "alice");
    assert_eq!(trigger["target"], format!("p#{build_id}"));
    let table = c.kha_ok(&["audit"]);
    assert!(
        table.contains("build.trigger") && table.contains("alice"),
        "{table}"
    );
    refused(kha_as(&c, &a_cfg, &["audit"], ""), "admin");

    // Logout revokes the stored token and forgets it (the server stays).
    let out = ok(kha_as(&c, &a_cfg, &["logout"], ""));
    assert!(out.contains("revoked"), "{out}");
    let file = stored(&a_cfg);
    assert!(
        !file.contains_key("token") && !file.contains_key("token_id"),
        "{file:?}"
    );
    assert_eq!(file["server"], server);
    let who = json(kha_as(&c, &a_cfg, &["--json", "whoami"], ""));
    assert_eq!(who["kind"], "anonymous");
    refused(
        kha_as(
            &c,
            &nowhere,
            &["--server", &server, "--token", &token, "whoami"],
            "",
        ),
        "unknown or revoked",
    );
}

#[test]
fn control_user_add_works_on_a_stopped_control_node() {
    let mut c = Fixture::new().start();
    let data = c.path("control");
    let add = |input: &str| {
        let mut child = Command::new(bin("kha-control"))
            .arg("--data-dir")
            .arg(&data)
            .args(["user", "add", "--admin", "root", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };

    // While it runs, the database is its: say so, and what to do instead.
    let o = add("long enough password\n");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("in use") && err.contains("kha user add root"),
        "{err}"
    );

    let ctl = c.control.as_mut().unwrap();
    ctl.signal(Signal::SIGTERM);
    ctl.wait_exit(Duration::from_secs(10))
        .expect("the control node stops on SIGTERM");
    c.control = None;
    let out = ok(add("long enough password\n"));
    assert!(out.contains("added user root (global role admin)"), "{out}");

    c.start_control();
    let cfg = c.path("root/cli.toml");
    let server = format!("http://{}", c.url());
    ok(kha_as(
        &c,
        &cfg,
        &["--server", &server, "login", "--user", "root"],
        "long enough password\n",
    ));
    let who = json(kha_as(&c, &cfg, &["--json", "whoami"], ""));
    assert_eq!(
        (who["name"].as_str(), who["role"].as_str()),
        (Some("root"), Some("admin"))
    );
    let audit = json(kha_as(&c, &cfg, &["--json", "audit"], ""));
    let add = &audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "user.add")
        .unwrap();
    assert_eq!(add["target"], "root");
}

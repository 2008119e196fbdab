//! End to end: encrypted secrets (`secure:`) with values made by the real
//! `kha encrypt`. In lxc, one control node and one builder: a job with
//! encrypted variables waits until the builder is trusted, then gets the
//! real values (checked inside the job) masked as `[secure]` in the log,
//! also when a value is printed across two reads; an entry that does not
//! decrypt is a warning on the build; a pull request from a fork gets none
//! (Travis's notice, `TRAVIS_SECURE_ENV_VARS=false`) until the project
//! shares them. Without lxc (a host builder): an encrypted webhook URL in
//! `notifications` reaches its receiver, and neither the stored records
//! nor the control node's log hold it.
#![allow(clippy::unwrap_used)]

use kha_tests::servers::receiver::Receiver;
use kha_tests::*;
use std::path::Path;
use std::time::Duration;

const REPO_NAME: &str = "Codertocat/Hello-World";
const SECRET: &str = "s3cr3t-Value_42";
const TOKEN: &str = "tok-en-9876";

/// `kha encrypt PROJECT VALUE`'s ciphertext.
fn encrypt(c: &Cluster, project: &str, value: &str) -> String {
    c.kha_json(&["encrypt", project, value])["secure"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Both forms of `env.global`, an entry that is not Base64, and a script
/// that fails unless the values are the real ones (or, when the build may
/// not see them, absent); the last command prints the value in two reads a
/// second apart.
fn travis_yml(secret: &str, token: &str) -> String {
    format!(
        r#"language: shell
env:
  global:
    - secure: "{secret}"
    - PLAIN=plain
    - TOKEN:
        secure: "{token}"
    - secure: "not base64!"
script:
  - echo "secure vars $TRAVIS_SECURE_ENV_VARS"
  - if [ "$TRAVIS_SECURE_ENV_VARS" = true ]; then test "$SECRET" = {SECRET} && test "$TOKEN" = {TOKEN}; else test -z "$SECRET$TOKEN"; fi
  - echo "secret is $SECRET, token is $TOKEN, plain is $PLAIN"
  - printf 'split:'; printf '%s' "$SECRET" | head -c 4; sleep 1; printf '%s\n' "$SECRET" | tail -c +5
"#
    )
}

fn send(c: &Cluster, secret: &str, event: &str, body: &[u8]) -> (u16, String) {
    let sig = github_signature(secret, body);
    http_post(
        &c.http_url(),
        "/hooks/github/hello",
        &[
            ("X-GitHub-Event", event),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// GitHub's pull_request payload for PR `number` at `head` from `head_repo`.
fn pull_request(number: u64, head: &str, base: &str, head_repo: &str) -> Vec<u8> {
    let raw = github_fixture(
        "pull_request.opened.json",
        &[
            ("ec26c3e57ca3a959ca5aad62de7213c562f8c821", head),
            ("f95f852bd8fca8fcc58a9a2d6c842781e32a215e", base),
        ],
    );
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["number"] = number.into();
    v["pull_request"]["number"] = number.into();
    v["pull_request"]["head"]["repo"]["full_name"] = head_repo.into();
    serde_json::to_vec(&v).unwrap()
}

/// The passed build of pull request `number`, and its one job's log.
fn pr_log(c: &Cluster, number: u64) -> String {
    let b = wait_for(
        &format!("the build of pull request #{number}"),
        Duration::from_secs(10),
        || {
            c.kha_json(&["build", "list", "hello"])["builds"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["pr_number"] == number)
                .cloned()
        },
    );
    let b = c.wait_build(b["id"].as_u64().unwrap(), Duration::from_secs(120));
    let job = b["jobs"][0]["id"].as_u64().unwrap();
    let log = String::from_utf8_lossy(&c.log(job)).into_owned();
    assert_eq!(b["state"], "passed", "{b}\n{log}");
    log
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn secrets_wait_for_a_trusted_builder_are_masked_and_kept_from_forks() {
    require_lxc();
    let c = Fixture::new().builder("b", 1).start();
    let base = c.path("git");
    let up = Repo::new(base.join("up"));
    up.commit(&[("README", "hello\n")], "first");
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
    let hook_secret = p["webhook_secret"].as_str().unwrap().to_string();
    let secret = encrypt(&c, "hello", &format!("SECRET={SECRET}"));
    // The hash form's plaintext is the value alone.
    let token = encrypt(&c, "hello", TOKEN);
    let head = up.commit(&[(".travis.yml", &travis_yml(&secret, &token))], "secrets");

    // (a) Only an untrusted builder: the job waits, and says why.
    let id = c.trigger("hello", Some("master"));
    let job = wait_for(
        "the job to wait for a trusted builder",
        Duration::from_secs(15),
        || {
            let b = c.build(id);
            let j = &b["jobs"][0];
            (j["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("waits for a trusted builder"))
            .then(|| j["id"].as_u64().unwrap())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.build(id)["jobs"][0]["state"], "queued");
    let builder = c.builders[0].id();
    let out = c.kha_ok(&["builder", "trust", &builder]);
    assert!(out.contains("is trusted"), "{out}");
    let b = c.wait_build(id, Duration::from_secs(120));
    let log = String::from_utf8_lossy(&c.log(job)).into_owned();
    assert_eq!(b["state"], "passed", "{b}\n{log}");
    assert!(log.contains("export SECRET=[secure]\n"), "{log}");
    assert!(log.contains("export TOKEN=[secure]\n"), "{log}");
    assert!(log.contains("\nsecure vars true\n"), "{log}");
    assert!(
        log.contains("\nsecret is [secure], token is [secure], plain is plain\n"),
        "{log}"
    );
    // Printed in two reads a second apart, masked all the same.
    assert!(log.contains("\nsplit:[secure]\n"), "{log}");
    assert!(!log.contains(SECRET) && !log.contains(TOKEN), "{log}");
    assert!(!log.contains(&SECRET[4..]), "{log}");
    // The job's env as shown: encrypted entries as `[secure]`.
    assert_eq!(b["jobs"][0]["env"][2], "[secure]", "{b}");
    // (c) The entry that is not Base64: a warning, the job ran without it.
    let warnings = b["warnings"].to_string();
    assert!(
        warnings.contains("encrypted variable 3 (`secure:`) cannot be decrypted: it is not Base64"),
        "{b}"
    );

    // (b) A pull request from a fork: no secrets, Travis's notice.
    up.git(&["checkout", "-q", "-b", "changes"]);
    let pr_head = up.commit(&[("pr", "change\n")], "a change");
    up.git(&["update-ref", "refs/pull/2/head", &pr_head]);
    let fork = pull_request(2, &pr_head, &head, "Forker/hello-world");
    let (st, body) = send(&c, &hook_secret, "pull_request", &fork);
    assert_eq!(st, 202, "{body}");
    let log = pr_log(&c, 2);
    assert!(
        log.contains("Encrypted environment variables have been removed for security reasons.\n"),
        "{log}"
    );
    assert!(log.contains("\nsecure vars false\n"), "{log}");
    assert!(!log.contains("export SECRET"), "{log}");

    // Shared with forks: the same kind of pull request gets them.
    c.kha_ok(&["project", "set", "hello", "--share-secrets-with-forks"]);
    let shown = c.kha_ok(&["project", "show", "hello"]);
    assert!(
        shown.contains("secrets:     also for pull requests from forks"),
        "{shown}"
    );
    assert_eq!(
        c.kha_json(&["project", "show", "hello"])["share_secrets_with_forks"],
        true
    );
    let pr_head = up.commit(&[("pr", "change 2\n")], "another change");
    up.git(&["update-ref", "refs/pull/3/head", &pr_head]);
    let fork = pull_request(3, &pr_head, &head, "Forker/hello-world");
    let (st, body) = send(&c, &hook_secret, "pull_request", &fork);
    assert_eq!(st, 202, "{body}");
    let log = pr_log(&c, 3);
    assert!(log.contains("\nsecure vars true\n"), "{log}");
    assert!(log.contains("\nsplit:[secure]\n"), "{log}");
    assert!(
        !log.contains(SECRET) && !log.contains("removed for security"),
        "{log}"
    );
}

/// Does any file under `dir` hold `needle`?
fn any_file_holds(dir: &Path, needle: &[u8]) -> Option<String> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = any_file_holds(&p, needle) {
                return Some(f);
            }
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return Some(p.display().to_string());
            }
        }
    }
    None
}

#[test]
fn an_encrypted_webhook_url_is_decrypted_only_to_send() {
    let r = Receiver::start();
    let repo = Repo::with_travis_yml("language: shell\nscript: true\n");
    let c = Fixture::new().host_builder("a", 1).start();
    let url = repo.url();
    c.kha_json(&["project", "add", "demo", &url, "--no-poll"]);
    let hook = r.url("/hooks/T0/xoxb-hidden-path");
    let good = encrypt(&c, "demo", &hook);
    let bad = "bm90IGVuY3J5cHRlZCB3aXRoIHRoaXMga2V5";
    repo.commit(
        &[(
            ".travis.yml",
            &format!(
                "language: shell\nscript: true\nnotifications:\n  email: false\n  webhooks:\n    - secure: \"{good}\"\n    - urls: [{{secure: \"{bad}\"}}]\n"
            ),
        )],
        "notify",
    );
    let id = c.trigger("demo", None);
    assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], "passed");
    let ds = wait_for(
        "both webhook deliveries to be final",
        Duration::from_secs(30),
        || {
            let ds: Vec<serde_json::Value> = c.build(id)["deliveries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|d| d["channel"] == "webhooks")
                .collect();
            (ds.len() == 2
                && ds
                    .iter()
                    .all(|d| d["state"] == "sent" || d["state"] == "failed"))
            .then_some(ds)
        },
    );
    let got = r.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hooks/T0/xoxb-hidden-path");
    assert!(ds.iter().all(|d| d["target"] == "[secure]"), "{ds:#?}");
    let sent: Vec<_> = ds.iter().filter(|d| d["state"] == "sent").collect();
    assert_eq!(sent.len(), 1, "{ds:#?}");
    assert_eq!(sent[0]["answer"], "HTTP 200 OK");
    let failed = ds.iter().find(|d| d["state"] == "failed").unwrap();
    assert!(
        failed["answer"]
            .as_str()
            .unwrap()
            .contains("cannot be decrypted"),
        "{failed}"
    );
    // Nowhere at rest: not in what the API shows, not in sled, not in the
    // control node's log.
    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(!shown.contains("xoxb-hidden-path"), "{shown}");
    assert_eq!(any_file_holds(c.dir.path(), b"xoxb-hidden-path"), None);
}

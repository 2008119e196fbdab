//! End to end: hooks and notifier plugins. The control node's `pre-build`
//! hook refusing a build, its `post-build` hook and a notifier plugin given
//! the notice as JSON; the builder's hooks around a job on the builder's
//! host (in order, with the job's environment, killed at their timeout);
//! the repository's `.kha/hooks` inside the job; and the example plugin
//! `kha-notify-chat` posting to a loopback chat webhook.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn first_job(b: &serde_json::Value) -> u64 {
    b["jobs"][0]["id"].as_u64().unwrap()
}

fn log_text(c: &Cluster, job: u64) -> String {
    String::from_utf8(c.log(job)).unwrap()
}

/// Whether a process still runs (a zombie does not count).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// A builder config naming a hooks directory.
fn builder_config(dir: &Path, hooks: &Path, timeout_secs: u64) -> PathBuf {
    let p = dir.join("builder.toml");
    std::fs::write(
        &p,
        format!("hooks_dir = {hooks:?}\nhook_timeout_secs = {timeout_secs}\n"),
    )
    .unwrap();
    p
}

/// The build's delivery on `channel`, once it is final.
fn delivery(c: &Cluster, id: u64, channel: &str) -> serde_json::Value {
    wait_for(
        &format!("the {channel} delivery of build {id}"),
        Duration::from_secs(30),
        || {
            let b = c.build(id);
            b["deliveries"]
                .as_array()?
                .iter()
                .find(|d| {
                    d["channel"] == channel
                        && matches!(d["state"].as_str(), Some("sent" | "failed"))
                })
                .cloned()
        },
    )
}

fn read_json(path: &Path) -> serde_json::Value {
    wait_for(
        &format!("{} to be written", path.display()),
        Duration::from_secs(30),
        || serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok(),
    )
}

#[test]
fn a_pre_build_hook_refuses_a_build_with_its_message() {
    let repo = Repo::with_travis_yml("language: shell\nscript: echo built\n");
    repo.git(&["branch", "wip"]);
    let hooks = test_dir("kha-e2e-hooks-");
    script(
        &hooks.path().join("pre-build"),
        "cat > \"seen-$KHA_BRANCH.json\"\n\
         if [ \"$KHA_BRANCH\" = wip ]; then\n\
           echo \"  no builds of $KHA_BRANCH here, please ($KHA_PROJECT, $KHA_EVENT)\"\n\
           echo 'ask the release team' >&2\n\
           exit 1\n\
         fi",
    );
    let c = Fixture::new()
        .config(&format!("[notify]\nhooks_dir = {:?}\n", hooks.path()))
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();

    let id = c.trigger("demo", Some("wip"));
    let b = c.wait_build(id, Duration::from_secs(20));
    assert_eq!(b["state"], "errored", "{b}");
    let said = "no builds of wip here, please (demo, build_requested)\nask the release team";
    assert_eq!(b["error"], format!("refused by the pre-build hook: {said}"));
    assert_eq!(
        log_text(&c, first_job(&b)),
        format!("kha: the pre-build hook refused this build\n{said}\n")
    );
    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(
        shown.contains("refused by the pre-build hook: no builds of wip here, please"),
        "{shown}"
    );

    // The hook was given the build about to be created.
    let seen = read_json(&hooks.path().join("seen-wip.json"));
    assert_eq!(seen["version"], 1);
    assert_eq!(seen["event"], "build_requested");
    assert_eq!(seen["build"]["id"], id);
    assert_eq!(seen["build"]["project"], "demo");
    assert_eq!(seen["build"]["branch"], "wip");
    assert_eq!(seen["build"]["commit"], b["commit"]);
    assert_eq!(seen["build"]["jobs"][0]["number"], format!("{id}.1"));

    // Another branch goes through.
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["state"], "passed", "{b}");
    assert_eq!(log_text(&c, first_job(&b)), "$ echo built\nbuilt\n");
}

#[test]
fn builder_hooks_run_in_order_with_the_job_environment() {
    let repo = Repo::with_travis_yml(
        "language: shell\nenv: GREETING=\"$(echo never evaluated on the host)\"\nscript: echo \"job sees $FROM_HOOK\"\n",
    );
    let dir = test_dir("kha-e2e-bhooks-");
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let record = dir.path().join("record");
    for name in [
        "environment",
        "pre-checkout",
        "post-checkout",
        "pre-command",
        "post-command",
        "pre-exit",
    ] {
        let extra = match name {
            "environment" => {
                "echo 'environment says hi'\necho 'FROM_HOOK=set by environment' >> \"$KHA_ENV_FILE\""
            }
            "post-checkout" => "test -f \"$KHA_WORKSPACE/.travis.yml\" && echo 'checkout present'",
            _ => "",
        };
        script(
            &hooks.join(name),
            &format!(
                "echo \"$KHA_HOOK job=$KHA_JOB_ID build=$KHA_BUILD_ID $KHA_PROJECT $KHA_BRANCH $TRAVIS_JOB_NUMBER outcome=${{KHA_JOB_OUTCOME:-}} from=${{FROM_HOOK:-}} env=$(printf '%s\\n' \"$KHA_JOB_ENV\" | tail -n 1)\" >> {}\n{extra}",
                record.display()
            ),
        );
    }
    let config = builder_config(dir.path(), &hooks, 30);
    let c = Fixture::new()
        .project("demo", &repo.url())
        .host_builder_with("a", 1, &["--config", &config.to_string_lossy()])
        .start();
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["state"], "passed", "{b}");
    let job = first_job(&b);
    assert_eq!(
        log_text(&c, job),
        "kha: running builder hook environment\nenvironment says hi\n\
         kha: running builder hook pre-checkout\n\
         kha: running builder hook post-checkout\ncheckout present\n\
         kha: running builder hook pre-command\n\
         $ echo \"job sees $FROM_HOOK\"\njob sees set by environment\n\
         kha: running builder hook post-command\n\
         kha: running builder hook pre-exit\n"
    );
    let env = "env=GREETING=\"$(echo never evaluated on the host)\"";
    let lines: Vec<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let want: Vec<String> = [
        ("environment", "", ""),
        ("pre-checkout", "", "set by environment"),
        ("post-checkout", "", "set by environment"),
        ("pre-command", "", "set by environment"),
        ("post-command", "passed", "set by environment"),
        ("pre-exit", "passed", "set by environment"),
    ]
    .iter()
    .map(|(hook, outcome, from)| {
        format!(
            "{hook} job={job} build={id} demo master {id}.1 outcome={outcome} from={from} {env}"
        )
    })
    .collect();
    assert_eq!(lines, want);
}

#[test]
fn a_hanging_builder_hook_is_killed_at_its_timeout_and_errors_the_job() {
    let repo = Repo::with_travis_yml("language: shell\nscript: echo never\n");
    let dir = test_dir("kha-e2e-bhooks-");
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let (pid, record) = (dir.path().join("pid"), dir.path().join("record"));
    script(
        &hooks.join("pre-command"),
        &format!(
            "trap '' TERM\nsleep 300 &\necho $! > {}\necho 'waiting for ever'\nwait",
            pid.display()
        ),
    );
    script(
        &hooks.join("pre-exit"),
        &format!("echo \"pre-exit $KHA_JOB_OUTCOME\" >> {}", record.display()),
    );
    let config = builder_config(dir.path(), &hooks, 2);
    let c = Fixture::new()
        .project("demo", &repo.url())
        .host_builder_with("a", 1, &["--config", &config.to_string_lossy()])
        .start();
    let t = Instant::now();
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(30));
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(b["state"], "errored", "{b}");
    assert_eq!(b["jobs"][0]["state"], "errored");
    assert_eq!(
        b["jobs"][0]["detail"],
        "builder hook pre-command timed out after 2s; killed"
    );
    assert_eq!(
        log_text(&c, first_job(&b)),
        "kha: running builder hook pre-command\nwaiting for ever\n\
         kha: builder hook pre-command timed out after 2s; killed\n\
         kha: running builder hook pre-exit\n"
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "pre-exit errored\n"
    );
    let pid = std::fs::read_to_string(&pid).unwrap();
    assert!(!alive(&pid), "the hook's child {pid} survived its timeout");
}

/// A commit whose `.kha/hooks` holds exactly `hooks` (executable).
fn commit_repo_hooks(repo: &Repo, hooks: &[(&str, &str)], travis_yml: &str) -> String {
    let dir = repo.dir.join(".kha/hooks");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in hooks {
        script(&dir.join(name), body);
    }
    repo.commit(&[(".travis.yml", travis_yml)], "hooks")
}

#[test]
fn repository_hooks_run_around_the_script() {
    let repo = Repo::temp();
    commit_repo_hooks(
        &repo,
        &[
            (
                "pre-command",
                "echo \"repository pre-command for $TRAVIS_JOB_ID in $(basename \"$PWD\"), A=$A\"",
            ),
            ("post-command", "echo 'repository post-command'; exit 5"),
        ],
        "language: shell\nenv: A=1\nbefore_install: cd /\nscript: echo script\n",
    );
    repo.git(&["branch", "good"]);
    commit_repo_hooks(
        &repo,
        &[("pre-command", "echo 'not today'; exit 3")],
        "language: shell\nscript: echo never\n",
    );
    repo.git(&["branch", "refusing"]);
    let c = Fixture::new()
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();

    let id = c.trigger("demo", Some("good"));
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["state"], "passed", "{b}");
    let job = first_job(&b);
    let log = log_text(&c, job);
    let ws = format!("kha-{job}-{}", b["jobs"][0]["epoch"]);
    assert_eq!(
        log,
        format!(
            "kha: running repository hook .kha/hooks/pre-command\n\
             repository pre-command for {job} in {ws}, A=1\n\
             $ cd /\n$ echo script\nscript\n\
             kha: running repository hook .kha/hooks/post-command\nrepository post-command\n\
             kha: repository hook .kha/hooks/post-command failed (exit 5)\n"
        )
    );

    let id = c.trigger("demo", Some("refusing"));
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["state"], "errored", "{b}");
    assert_eq!(
        b["jobs"][0]["detail"],
        "the repository hook .kha/hooks/pre-command failed"
    );
    assert_eq!(
        log_text(&c, first_job(&b)),
        "kha: running repository hook .kha/hooks/pre-command\nnot today\n\
         kha: repository hook .kha/hooks/pre-command failed (exit 3)\n"
    );
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn repository_hooks_run_in_the_container_and_builder_hooks_on_the_host() {
    let repo = Repo::temp();
    commit_repo_hooks(
        &repo,
        &[("pre-command", "echo \"repository hook on $(hostname)\"")],
        "language: shell\nscript: echo \"script on $(hostname)\"\n",
    );
    let dir = test_dir("kha-e2e-bhooks-");
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    script(
        &hooks.join("pre-command"),
        "echo \"builder hook on $(hostname)\"",
    );
    let config = builder_config(dir.path(), &hooks, 30);
    let c = Fixture::new()
        .project("demo", &repo.url())
        .builder_with("a", 1, &["--config", &config.to_string_lossy()])
        .start();
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    let job = first_job(&b);
    let container = format!("kha-{job}-{}", b["jobs"][0]["epoch"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        log_text(&c, job),
        format!(
            "kha: running builder hook pre-command\nbuilder hook on {}\n\
             kha: running repository hook .kha/hooks/pre-command\nrepository hook on {container}\n\
             $ echo \"script on $(hostname)\"\nscript on {container}\n",
            host.trim()
        )
    );
    assert!(c.running_containers().is_empty());
}

/// A request a [`receiver`] took: its body and its headers (names in
/// lower case).
struct Posted {
    body: String,
    headers: Vec<(String, String)>,
}

/// A loopback HTTP server that answers each request with the next status
/// of `statuses` (the last one repeated) and sends on what it was posted.
fn receiver(statuses: Vec<u16>) -> (String, mpsc::Receiver<Posted>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/s3cret-token", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (i, conn) in l.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut headers = vec![];
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(": ") {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.parse().unwrap_or(0);
                    }
                    headers.push((k.to_ascii_lowercase(), v.to_string()));
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let status = statuses[i.min(statuses.len() - 1)];
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
            let body = String::from_utf8_lossy(&body).to_string();
            if tx.send(Posted { body, headers }).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn chat_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/plugins/kha-notify-chat")
}

/// Runs `kha-notify-chat` by hand with `input` on stdin.
fn run_chat(input: &serde_json::Value) -> (i32, String, String) {
    let mut child = Command::new(chat_plugin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn the_chat_plugin_answers_by_exit_status() {
    if Command::new("python3").arg("--version").output().is_err() {
        panic!("python3 is needed to run deploy/plugins/kha-notify-chat: install python3");
    }
    let (url, rx) = receiver(vec![200, 503, 404]);
    let input = |config: serde_json::Value| {
        serde_json::json!({
            "version": 1,
            "key": "kha-7-1",
            "config": config,
            "notice": {"version": 1, "event": "build_finished", "build": {"id": 7}},
            "message": {"subject": "s", "body": "b", "lines": ["demo#7 passed", "details: http://ci/builds/7"]}
        })
    };
    let (code, out, _) = run_chat(&input(serde_json::json!({"url": url, "channel": "#ci"})));
    assert_eq!((code, out.trim()), (0, "HTTP 200 from 127.0.0.1"));
    let Posted { body, headers } = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"text": "demo#7 passed\ndetails: http://ci/builds/7", "channel": "#ci"})
    );
    assert!(headers.contains(&("content-type".into(), "application/json".into())));
    assert!(headers.contains(&("x-kha-delivery".into(), "kha-7-1".into())));

    let (code, _, err) = run_chat(&input(serde_json::json!(url)));
    assert_eq!(code, 75, "a 503 is worth another try: {err}");
    let (code, _, err) = run_chat(&input(serde_json::json!(url)));
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("HTTP 404 from 127.0.0.1"), "{err}");
    assert!(
        !err.contains("s3cret"),
        "the URL's secret is not shown: {err}"
    );

    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let (code, _, err) = run_chat(&input(serde_json::json!(closed)));
    assert_eq!(code, 75, "{err}");
    let (code, _, err) = run_chat(&input(serde_json::json!({"no": "url"})));
    assert_eq!(code, 1, "{err}");
    let mut wrong = input(serde_json::json!(url));
    wrong["version"] = 2.into();
    let (code, _, err) = run_chat(&wrong);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn a_plugin_named_in_travis_yml_receives_the_notice_as_versioned_json() {
    let repo = Repo::with_travis_yml(
        "language: shell\nscript: echo hi\nnotifications:\n  myplug:\n    anything: 1\n",
    );
    let plugins = test_dir("kha-e2e-plugins-");
    let seen = plugins.path().join("seen.json");
    script(
        &plugins.path().join("kha-notify-myplug"),
        &format!(
            "cat > {seen}.tmp && mv {seen}.tmp {seen}\n\
             echo \"delivered $KHA_DELIVERY_KEY for build $KHA_BUILD_ID ($KHA_STATE)\"\necho second line",
            seen = seen.display()
        ),
    );
    let c = Fixture::new()
        .config(&format!("[notify]\nplugin_path = [{:?}]\n", plugins.path()))
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["state"], "passed", "{b}");
    let d = delivery(&c, id, "plugin:myplug");
    assert_eq!(d["state"], "sent", "{d}");
    let v = read_json(&seen);
    assert_eq!(v["version"], 1);
    let key = v["key"].as_str().unwrap();
    assert!(!key.is_empty());
    assert_eq!(
        d["answer"],
        format!("delivered {key} for build {id} (passed)")
    );
    // As written in the file: kha's YAML model keeps scalars as text.
    assert_eq!(v["config"], serde_json::json!({"anything": "1"}));
    assert_eq!(v["notice"]["version"], 1);
    assert_eq!(v["notice"]["event"], "build_finished");
    assert_eq!(v["notice"]["build"]["id"], id);
    assert_eq!(v["notice"]["build"]["state"], "passed");
    assert!(!v["message"]["lines"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn a_post_build_hook_hears_the_end_of_a_build() {
    let repo = Repo::with_travis_yml("language: shell\nscript: \"false\"\n");
    let hooks = test_dir("kha-e2e-hooks-");
    let seen = hooks.path().join("seen.json");
    script(
        &hooks.path().join("post-build"),
        &format!(
            "cat > {seen}.tmp && mv {seen}.tmp {seen}\n\
             echo \"post-build: build $KHA_BUILD_ID $KHA_STATE ($KHA_STATUS_MESSAGE) by $KHA_HOOK\"",
            seen = seen.display()
        ),
    );
    let c = Fixture::new()
        .config(&format!("[notify]\nhooks_dir = {:?}\n", hooks.path()))
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["state"], "failed", "{b}");
    let d = delivery(&c, id, "hook:post-build");
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(
        d["answer"],
        format!("post-build: build {id} failed (Failed) by post-build")
    );
    let v = read_json(&seen);
    assert_eq!(v["event"], "build_finished");
    assert_eq!(v["build"]["id"], id);
    assert_eq!(v["build"]["state"], "failed");
    assert_eq!(v["build"]["jobs"][0]["state"], "failed");
}

#[test]
fn the_chat_plugin_posts_a_builds_notification() {
    let (url, rx) = receiver(vec![200]);
    let repo = Repo::with_travis_yml(&format!(
        "language: shell\nscript: echo hi\nnotifications:\n  chat:\n    url: {url}\n    template:\n      - \"%{{repository_slug}}#%{{build_number}} %{{result}}\"\n"
    ));
    let plugins = chat_plugin().parent().unwrap().canonicalize().unwrap();
    let c = Fixture::new()
        .config(&format!("[notify]\nplugin_path = [{plugins:?}]\n"))
        .project("demo", &repo.url())
        .host_builder("a", 1)
        .start();
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["state"], "passed", "{b}");
    let d = delivery(&c, id, "plugin:chat");
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["answer"], "HTTP 200 from 127.0.0.1");
    let Posted { body, .. } = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"text": format!("demo#{id} passed")})
    );
}

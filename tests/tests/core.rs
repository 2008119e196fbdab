//! End to end: the real binaries as separate processes over loopback, jobs
//! in real lxc containers, real git repositories.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::{Duration, Instant};

fn job_ids(build: &serde_json::Value) -> Vec<u64> {
    build["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect()
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn job_runs_in_a_container_and_its_log_is_exact() {
    let repo = Repo::with_travis_yml(
        "language: shell\nscript:\n  - echo \"host=$(hostname)\"\n  - echo \"pidns=$(readlink /proc/self/ns/pid)\"\n  - echo \"pid1=$(cat /proc/1/comm)\"\n  - echo \"fs=$(stat -f -c %T .)\"\n  - seq 1 20000\n",
    );
    let c = Fixture::new()
        .project("demo", &repo.url())
        .builder_with("a", 1, &["--workspace-tmpfs-mib", "64"])
        .start();
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    let job = job_ids(&b)[0];
    let log = String::from_utf8(c.log(job)).unwrap();
    let host_pidns = std::fs::read_link("/proc/self/ns/pid")
        .unwrap()
        .to_string_lossy()
        .to_string();
    let seq: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    let lines: Vec<&str> = log.lines().collect();
    // The container's own hostname (the run's name, kha-JOB-EPOCH: an
    // infrastructure failure to start is retried as a new epoch) and PID
    // namespace.
    let epoch = b["jobs"][0]["epoch"].as_u64().unwrap_or(1);
    assert_eq!(lines[1], format!("host=kha-{job}-{epoch}"), "{log}");
    let pidns = lines[3].strip_prefix("pidns=").unwrap();
    assert!(
        pidns.starts_with("pid:[") && pidns != host_pidns,
        "{pidns} vs host {host_pidns}"
    );
    assert_ne!(lines[5], "pid1=systemd");
    assert_ne!(lines[5], "pid1=init");
    // The workspace is on the builder's tmpfs, mounted in the builder's
    // own mount namespace: the host (this test) never sees it.
    assert_eq!(lines[7], "fs=tmpfs", "{log}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(" kha-jobs "), "{mounts}");
    let expected = format!(
        "$ echo \"host=$(hostname)\"\n{}\n$ echo \"pidns=$(readlink /proc/self/ns/pid)\"\n{}\n$ echo \"pid1=$(cat /proc/1/comm)\"\n{}\n$ echo \"fs=$(stat -f -c %T .)\"\n{}\n$ seq 1 20000\n{seq}",
        lines[1], lines[3], lines[5], lines[7]
    );
    assert_eq!(
        log, expected,
        "the stored log differs from what the job printed"
    );
    assert_eq!(
        b["jobs"][0]["log_len"].as_u64().unwrap(),
        expected.len() as u64
    );
    assert!(
        c.running_containers().is_empty(),
        "containers left: {:?}",
        c.running_containers()
    );
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn failing_script_fails_and_failing_install_errors() {
    let repo = Repo::temp();
    repo.commit(
        &[(
            ".travis.yml",
            "language: shell\nscript:\n  - echo one\n  - \"false\"\n  - echo still-runs\n",
        )],
        "fail",
    );
    repo.git(&["branch", "failing"]);
    repo.commit(
        &[(
            ".travis.yml",
            "language: shell\ninstall: \"false\"\nscript: echo never\n",
        )],
        "error",
    );
    repo.git(&["branch", "erroring"]);
    repo.commit(&[(".travis.yml", "script: [\"oops\n")], "broken yaml");
    repo.git(&["branch", "broken"]);
    repo.git(&["rm", "-q", ".travis.yml"]);
    repo.commit(&[], "no config");
    repo.git(&["branch", "missing"]);
    let c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 2)
        .start();

    let failing = c.trigger("demo", Some("failing"));
    let erroring = c.trigger("demo", Some("erroring"));
    let b = c.wait_build(failing, Duration::from_secs(60));
    assert_eq!(b["state"], "failed", "{b}");
    assert_eq!(b["jobs"][0]["state"], "failed");
    let log = String::from_utf8(c.log(job_ids(&b)[0])).unwrap();
    assert_eq!(
        log,
        "$ echo one\none\n$ false\n$ echo still-runs\nstill-runs\n"
    );
    let b = c.wait_build(erroring, Duration::from_secs(60));
    assert_eq!(b["state"], "errored", "{b}");
    assert!(!String::from_utf8(c.log(job_ids(&b)[0]))
        .unwrap()
        .contains("never"));

    // A .travis.yml that is not YAML: an errored build whose log names the line.
    let broken = c.trigger("demo", Some("broken"));
    let b = c.wait_build(broken, Duration::from_secs(10));
    assert_eq!(b["state"], "errored", "{b}");
    let log = String::from_utf8(c.log(job_ids(&b)[0])).unwrap();
    assert!(
        log.contains(".travis.yml: line 1") || log.contains(".travis.yml: line 2"),
        "{log}"
    );
    assert!(b["error"].as_str().unwrap().contains("line "), "{b}");

    let missing = c.trigger("demo", Some("missing"));
    let b = c.wait_build(missing, Duration::from_secs(10));
    assert_eq!(b["state"], "errored");
    assert!(
        b["error"].as_str().unwrap().contains("no .travis.yml"),
        "{b}"
    );
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn two_builders_share_the_work_and_no_job_runs_twice() {
    let envs: String = (1..=8).map(|i| format!("  - N={i}\n")).collect();
    let repo = Repo::with_travis_yml(&format!(
        "language: shell\nenv:\n{envs}script:\n  - echo \"run $N on $(hostname)\"\n  - sleep 0.5\n"
    ));
    let c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 2)
        .builder("b", 2)
        .start();
    let ids: Vec<u64> = (0..3).map(|_| c.trigger("demo", None)).collect();
    let mut by_builder = std::collections::HashMap::new();
    for id in ids {
        let b = c.wait_build(id, Duration::from_secs(120));
        assert_eq!(b["state"], "passed", "{b}");
        for j in b["jobs"].as_array().unwrap() {
            // Handed out once, run once.
            assert_eq!(j["epoch"], 1, "{j}");
            assert_eq!(j["attempts"], 1, "{j}");
            *by_builder
                .entry(j["builder"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
            let log = String::from_utf8(c.log(j["id"].as_u64().unwrap())).unwrap();
            assert_eq!(log.matches("\nrun ").count(), 1, "{log}");
        }
    }
    assert_eq!(
        by_builder.len(),
        2,
        "both builders got work: {by_builder:?}"
    );
    assert_eq!(by_builder.values().sum::<i32>(), 24);
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn killed_builder_job_reruns_elsewhere_and_late_result_is_refused() {
    let repo = Repo::with_travis_yml(
        "language: shell\nscript:\n  - echo start\n  - sleep 3\n  - echo end\n",
    );
    let mut c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 1)
        .start();
    let a = 0;
    let id = c.trigger("demo", None);
    let job = job_ids(&c.build(id))[0];
    wait_for("the job to start", Duration::from_secs(30), || {
        (c.build(id)["jobs"][0]["state"] == "running").then_some(())
    });
    let first = "$ echo start\nstart\n";
    wait_for(
        "the first attempt's output",
        Duration::from_secs(30),
        || {
            (c.build(id)["jobs"][0]["log_len"].as_u64().unwrap_or(0) >= first.len() as u64)
                .then_some(())
        },
    );
    let b_idx = c.builder("b", 1);
    c.wait_builders_connected(2);
    let a_id = c.builders[a].id();
    let a_secret = c.builders[a].secret();
    c.builders[a].proc.kill9();
    let killed = Instant::now();
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    let j = &b["jobs"][0];
    assert_eq!(j["epoch"], 2, "{j}");
    assert_eq!(j["builder"], c.builders[b_idx].id());
    assert_eq!(
        String::from_utf8(c.log(job)).unwrap(),
        "$ echo start\nstart\n$ sleep 3\n$ echo end\nend\n"
    );
    eprintln!(
        "job finished on the second builder {:?} after the kill",
        killed.elapsed()
    );
    // What the first attempt printed before its builder died is kept as
    // that attempt's log, linked from the job's page.
    let kept = http_get(&c.http_url(), &format!("/jobs/{job}/attempts/1/log.txt"));
    assert_eq!(kept.status, 200);
    let kept = kept.text();
    assert!(
        kept.starts_with(first) && "$ echo start\nstart\n$ sleep 3\n".starts_with(&kept),
        "{kept:?}"
    );
    let page = http_get(&c.http_url(), &format!("/jobs/{job}")).text();
    assert!(
        page.contains(&format!("href=\"/jobs/{job}/attempts/1/log.txt\"")),
        "{page}"
    );
    assert_eq!(
        http_get(&c.http_url(), &format!("/jobs/{job}/attempts/2/log.txt")).status,
        404
    );
    // The same from the CLI and the JSON API, listed with the job.
    assert_eq!(
        j["earlier_logs"],
        serde_json::json!([{"attempt": 1, "bytes": kept.len()}]),
        "{j}"
    );
    let cli = c.kha(&["log", &job.to_string(), "--attempt", "1"]);
    assert!(cli.status.success());
    assert_eq!(String::from_utf8(cli.stdout).unwrap(), kept);
    let shown = c.kha_ok(&["build", "show", &id.to_string()]);
    assert!(
        shown.contains(&format!(
            "attempt 1: {} bytes (kha log {job} --attempt 1)",
            kept.len()
        )),
        "{shown}"
    );
    let api = http_get(&c.http_url(), &format!("/api/v1/jobs/{job}/attempts/1/log"));
    assert_eq!((api.status, api.text()), (200, kept.clone()));
    let none = c.kha(&["log", &job.to_string(), "--attempt", "2"]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("has no earlier attempt 2"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );

    // The dead builder's result for epoch 1 arrives late: refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let mut client = kha_proto::agent::agent_service_client::AgentServiceClient::connect(
            format!("http://{}", c.addr()),
        )
        .await
        .unwrap();
        let mut req = tonic::Request::new(kha_proto::agent::FinishJobRequest {
            job_id: job,
            epoch: 1,
            outcome: kha_proto::agent::Outcome::Failed as i32,
            total_len: 0,
            sha256: String::new(),
            detail: "late".into(),
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {a_id}:{a_secret}").parse().unwrap(),
        );
        client.finish_job(req).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert_eq!(c.build(id)["state"], "passed");

    // The killed builder's container outlived it; its next start removes it.
    let leftovers = c.containers_of(a);
    c.restart_builder(a);
    c.wait_builders_connected(2);
    assert!(
        c.running_containers().is_empty(),
        "left after restart: {:?} (before: {leftovers:?})",
        c.running_containers()
    );
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn control_restart_mid_job_loses_and_duplicates_nothing() {
    let repo = Repo::with_travis_yml("language: shell\nscript:\n  - for i in $(seq 1 60); do echo \"line $i\"; sleep 0.05; done\n");
    let mut c = Fixture::new()
        .project("demo", &repo.url())
        .builder("a", 1)
        .start();
    let id = c.trigger("demo", None);
    let job = job_ids(&c.build(id))[0];
    wait_for("some log", Duration::from_secs(30), || {
        (c.build(id)["jobs"][0]["log_len"].as_u64().unwrap_or(0) > 20).then_some(())
    });
    // A hard stop: nothing gets to flush.
    c.control.as_mut().unwrap().kill9();
    std::thread::sleep(Duration::from_millis(1200));
    c.start_control();
    let b = c.wait_build(id, Duration::from_secs(60));
    assert_eq!(b["state"], "passed", "{b}");
    assert_eq!(b["jobs"][0]["epoch"], 1, "the same run finished: {b}");
    let cmd = "for i in $(seq 1 60); do echo \"line $i\"; sleep 0.05; done";
    let body: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(
        String::from_utf8(c.log(job)).unwrap(),
        format!("$ {cmd}\n{body}")
    );
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn cancel_and_timeout_stop_the_container() {
    let repo =
        Repo::with_travis_yml("language: shell\nscript:\n  - echo sleeping\n  - sleep 600\n");
    let c = Fixture::new()
        .project_with("demo", &repo.url(), &["--timeout", "3"])
        .project("demo2", &repo.url())
        .builder("a", 2)
        .start();

    let id = c.trigger("demo2", None);
    wait_for("the job to start", Duration::from_secs(30), || {
        (c.build(id)["jobs"][0]["log_len"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let t = Instant::now();
    c.kha_ok(&["build", "cancel", &id.to_string()]);
    let b = c.wait_build(id, Duration::from_secs(20));
    assert_eq!(b["state"], "canceled", "{b}");
    assert_eq!(b["jobs"][0]["state"], "canceled");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(15), "cancel took {took:?}");
    eprintln!("cancel to canceled: {took:?}");

    let id = c.trigger("demo", None);
    let t = Instant::now();
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["jobs"][0]["state"], "timed_out", "{b}");
    assert_eq!(b["state"], "errored");
    let log = String::from_utf8(c.log(job_ids(&b)[0])).unwrap();
    assert!(log.contains("timed out after 3 s"), "{log}");
    eprintln!("trigger to timed out (timeout 3 s): {:?}", t.elapsed());
    wait_for("containers to go", Duration::from_secs(10), || {
        c.running_containers().is_empty().then_some(())
    });
}

#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn refusals_are_clear() {
    let mut c = Fixture::new().start();
    // A wrong enrolment token.
    let data = c.path("builder-x");
    let mut p = c.spawn_builder(&data, "x", 1, Some("khaet_wrong"), &[]);
    let st = p
        .wait_exit(Duration::from_secs(20))
        .expect("builder with a wrong token exits");
    assert!(!st.success());
    assert!(
        p.log_text()
            .contains("enrolment refused: unknown enrolment token"),
        "{}",
        p.log_text()
    );

    // An incompatible protocol version.
    let token = c.enrolment_token();
    let data = c.path("builder-y");
    let mut p = c.spawn_builder(&data, "y", 1, Some(&token), &["--protocol-major", "2"]);
    let st = p
        .wait_exit(Duration::from_secs(20))
        .expect("builder with another major exits");
    assert!(!st.success());
    assert!(
        p.log_text().contains("speaks protocol 1.x"),
        "{}",
        p.log_text()
    );

    // A revoked builder: its session ends and it cannot come back.
    let i = c.builder("z", 1);
    c.wait_builders_connected(1);
    let id = c.builders[i].id();
    c.kha_ok(&["builder", "revoke", &id]);
    let st = c.builders[i]
        .proc
        .wait_exit(Duration::from_secs(20))
        .expect("revoked builder exits");
    assert!(!st.success());
    let log = c.builders[i].proc.log_text();
    assert!(log.contains("revoked"), "{log}");
    let list = c.kha_ok(&["builder", "list"]);
    assert!(list.contains("revoked"), "{list}");

    // A revoked enrolment token.
    let tok = c.kha_json(&["builder", "token", "create"]);
    c.kha_ok(&["builder", "token", "revoke", tok["id"].as_str().unwrap()]);
    let data = c.path("builder-w");
    let mut p = c.spawn_builder(&data, "w", 1, Some(tok["token"].as_str().unwrap()), &[]);
    assert!(!p
        .wait_exit(Duration::from_secs(20))
        .expect("exits")
        .success());
    assert!(p.log_text().contains("was revoked"), "{}", p.log_text());

    // The CLI: a wrong admin token and an unknown build, with their exit codes.
    let o = c.kha(&["--token", "nope", "project", "list"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("neither the admin token nor an API token"));
    let o = c.kha(&["build", "show", "999999"]);
    assert_eq!(o.status.code(), Some(3));
}

/// What a job printed before it was stopped is in its stored log, to the
/// last line: the lines that say why it hung are the ones that matter.
/// The job prints a known sequence (the last lines just before it hangs),
/// then is timed out in one build and canceled in another.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn output_printed_before_a_timeout_or_a_cancel_is_kept() {
    let repo = Repo::with_travis_yml(
        "language: shell\nscript:\n  - for i in $(seq 1 3000); do echo \"line $i of 3000\"; done; echo last words; sleep 600\n",
    );
    let c = Fixture::new()
        .project_with("slow", &repo.url(), &["--timeout", "3"])
        .project("hang", &repo.url())
        .builder("a", 2)
        .start();
    let complete = |log: &str| {
        let mut want = 1;
        for l in log.lines() {
            if l == format!("line {want} of 3000") {
                want += 1;
            }
        }
        want == 3001 && log.contains("\nlast words\n")
    };

    let id = c.trigger("slow", None);
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["jobs"][0]["state"], "timed_out", "{b}");
    let log = String::from_utf8(c.log(job_ids(&b)[0])).unwrap();
    assert!(complete(&log), "timed out: {log}");
    assert!(log.contains("timed out after 3 s"), "{log}");

    let id = c.trigger("hang", None);
    wait_for("the last words", Duration::from_secs(30), || {
        let b = c.build(id);
        let job = b["jobs"][0]["id"].as_u64()?;
        String::from_utf8_lossy(&c.log(job))
            .contains("last words")
            .then_some(())
    });
    c.kha_ok(&["build", "cancel", &id.to_string()]);
    let b = c.wait_build(id, Duration::from_secs(20));
    assert_eq!(b["jobs"][0]["state"], "canceled", "{b}");
    let log = String::from_utf8(c.log(job_ids(&b)[0])).unwrap();
    assert!(complete(&log), "canceled: {log}");

    // A job that prints until the moment it is stopped: its log is every
    // line up to the kill, without a gap, then the builder's note.
    let spin = Repo::with_travis_yml(
        "language: shell\nscript:\n  - i=0; while :; do i=$((i+1)); echo \"tick $i\"; done\n",
    );
    c.kha_ok(&["project", "add", "spin", &spin.url(), "--timeout", "2"]);
    let id = c.trigger("spin", None);
    let b = c.wait_build(id, Duration::from_secs(30));
    assert_eq!(b["jobs"][0]["state"], "timed_out", "{b}");
    let log = String::from_utf8(c.log(job_ids(&b)[0])).unwrap();
    let ticks: Vec<&str> = log.lines().filter(|l| l.starts_with("tick ")).collect();
    assert!(ticks.len() > 1000, "{} ticks", ticks.len());
    // The last line may have been cut by the kill; every one before it is
    // the next number.
    for (i, l) in ticks[..ticks.len() - 1].iter().enumerate() {
        assert_eq!(*l, format!("tick {}", i + 1), "a gap in the log");
    }
    assert!(
        log.contains("timed out after 2 s"),
        "{}",
        &log[log.len().saturating_sub(300)..]
    );
    eprintln!("{} lines printed before the timeout, all kept", ticks.len());
}

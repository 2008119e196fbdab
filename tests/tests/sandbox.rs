//! End to end: jobs that attack the machine they run on, in real lxc
//! containers on a real builder. Each ends with a clear state and message,
//! and the builder and its other jobs keep working.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use std::time::Duration;

/// One line per probe, `NAME=refused` or `NAME=<what happened>`, so that
/// a failing assertion shows every probe's outcome at once.
const PROBES: &str = r#"
probe() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=ALLOWED"; else echo "$name=refused"; fi; }
probe mount mount -t tmpfs none /mnt
probe remount_root mount -o remount,rw /
probe sysrq sh -c 'echo h > /proc/sysrq-trigger'
probe kmsg sh -c 'head -c1 /dev/kmsg'
probe write_usr touch /usr/kha-probe
probe write_etc touch /etc/kha-probe
probe raw_socket python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)'
probe packet_socket python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)'
probe control_grpc python3 -c "import socket; socket.create_connection(('127.0.0.1', $KHA_PROBE_GRPC), 2)"
probe control_http python3 -c "import socket; socket.create_connection(('127.0.0.1', $KHA_PROBE_HTTP), 2)"
probe outside python3 -c "import socket; socket.create_connection(('10.0.2.2', 80), 2)"
probe mknod mknod /tmp/sda b 8 0
probe see_builder sh -c 'cat /proc/[0-9]*/comm | grep -q kha-builder'
probe sethostname hostname elsewhere
echo "uid=$(id -u)"
sleep 1000 &
setsid sh -c 'sleep 1001' &
nohup sleep 1002 >/dev/null 2>&1 &
echo probes done
"#;

/// The probes a job tries from inside its container. Every one is
/// refused: mounting, remounting the image writable, the host's sysrq
/// and kernel log, writing to the image or the host's bind-mounted `/usr`,
/// raw and packet sockets, the control node's ports and any address
/// outside (network is off by default), device nodes, the hostname, and
/// seeing the builder's processes (so it cannot trace or signal them).
/// What it leaves running in the background is gone when the job ends.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_job_cannot_reach_out_of_its_container() {
    let mut c = Fixture::new().start();
    let port = |url: &str| url.rsplit(':').next().unwrap().to_string();
    let travis = format!(
        "language: shell\nenv: KHA_PROBE_GRPC={} KHA_PROBE_HTTP={}\nscript: sh probes.sh\n",
        port(&c.addr()),
        port(&c.http_url())
    );
    let repo = Repo::temp();
    repo.commit(&[(".travis.yml", &travis), ("probes.sh", PROBES)], "probes");
    c.kha_ok(&["project", "add", "demo", &repo.url(), "--no-poll"]);
    c.builder("a", 1);
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(120));
    let job = b["jobs"][0]["id"].as_u64().unwrap();
    let log = String::from_utf8_lossy(&c.log(job)).into_owned();
    assert_eq!(b["state"], "passed", "{b}\n{log}");
    assert!(log.contains("probes done"), "{log}");
    let allowed: Vec<&str> = log.lines().filter(|l| l.ends_with("=ALLOWED")).collect();
    assert!(allowed.is_empty(), "allowed: {allowed:?}\n{log}");
    assert_eq!(
        log.lines().filter(|l| l.ends_with("=refused")).count(),
        14,
        "{log}"
    );
    wait_for(
        "the job's background processes to go",
        Duration::from_secs(10),
        || {
            let ps = std::process::Command::new("pgrep")
                .args(["-f", "^sleep 100[012]$"])
                .output()
                .unwrap();
            ps.stdout.is_empty().then_some(())
        },
    );
    wait_for("containers to go", Duration::from_secs(10), || {
        c.running_containers().is_empty().then_some(())
    });
}

/// Latencies of `/bin/true` spawned on the host and of the control node's
/// API, sampled while `busy` holds.
struct Responsiveness {
    spawn_max: Duration,
    api_max: Duration,
    samples: usize,
}

fn sample_while(c: &Cluster, mut busy: impl FnMut() -> bool) -> Responsiveness {
    let mut r = Responsiveness {
        spawn_max: Duration::ZERO,
        api_max: Duration::ZERO,
        samples: 0,
    };
    while busy() {
        let t = std::time::Instant::now();
        let st = std::process::Command::new("/bin/true").status().unwrap();
        assert!(st.success());
        r.spawn_max = r.spawn_max.max(t.elapsed());
        let t = std::time::Instant::now();
        assert_eq!(http_get(&c.http_url(), "/api/v1/queue").status, 200);
        r.api_max = r.api_max.max(t.elapsed());
        r.samples += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    r
}

/// A fork bomb under the builder's default limits (4,096 processes, a CPU
/// quota of the host's CPUs divided by the slots): the job ends at its
/// timeout, its message says it reached the process limit, nothing of it
/// is left, and meanwhile the host spawns processes, the control node
/// answers and a job in the builder's other slot passes. The latencies are
/// printed; only a freeze (10 s) fails the test.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_fork_bomb_ends_at_its_limits_and_the_host_stays_responsive() {
    let bomb = Repo::with_travis_yml(
        "language: shell\nscript:\n  - echo bombing\n  - \"f() { f | f & }; f; sleep 60\"\n",
    );
    let calm = Repo::with_travis_yml("language: shell\nscript: echo calm\n");
    let mut c = Fixture::new()
        .project_with("bomb", &bomb.url(), &["--timeout", "15"])
        .project("calm", &calm.url())
        .start();
    c.builder("a", 2);
    let id = c.trigger("bomb", None);
    wait_for("the bomb to start", Duration::from_secs(60), || {
        (c.build(id)["jobs"][0]["log_len"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let calm_id = c.trigger("calm", None);
    let mut calm_done = None;
    let t = std::time::Instant::now();
    let r = sample_while(&c, || {
        if calm_done.is_none() && c.build(calm_id)["state"] == "passed" {
            calm_done = Some(t.elapsed());
        }
        c.build(id)["state"] == "running" || c.build(id)["state"] == "queued"
    });
    eprintln!(
        "during the bomb ({} samples): host spawn max {:?}, control API max {:?}; \
         the other slot's job passed after {calm_done:?}",
        r.samples, r.spawn_max, r.api_max
    );
    let b = c.wait_build(id, Duration::from_secs(30));
    let job = b["jobs"][0]["id"].as_u64().unwrap();
    let log = String::from_utf8_lossy(&c.log(job)).into_owned();
    assert_eq!(b["jobs"][0]["state"], "timed_out", "{b}");
    eprintln!("the bomb's message: {}", b["jobs"][0]["detail"]);
    assert!(
        log.contains("the job reached its process limit (4096): a fork was refused"),
        "{log}"
    );
    assert!(log.contains("timed out after 15 s"), "{log}");
    assert_eq!(
        c.wait_build(calm_id, Duration::from_secs(30))["state"],
        "passed"
    );
    assert!(
        calm_done.is_some(),
        "the other slot's job did not pass during the bomb"
    );
    assert!(
        r.spawn_max < Duration::from_secs(10),
        "host spawn took {:?}",
        r.spawn_max
    );
    assert!(
        r.api_max < Duration::from_secs(10),
        "control API took {:?}",
        r.api_max
    );
    wait_for("containers to go", Duration::from_secs(20), || {
        c.running_containers().is_empty().then_some(())
    });
}

/// A job over its memory limit has a process killed by the kernel, and its
/// message says so (not a bare "exit 137").
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_memory_hog_is_stopped_and_told_why() {
    let repo = Repo::with_travis_yml(
        "language: shell\nscript:\n  - echo hogging\n  - python3 -c 'x = bytearray(512 << 20); print(len(x))'\n  - echo after\n",
    );
    let mut c = Fixture::new().project("demo", &repo.url()).start();
    let conf = c.path("builder.toml");
    std::fs::write(&conf, "memory_mib = 128\n").unwrap();
    c.builder_with("a", 1, &["--config", conf.to_str().unwrap()]);
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(120));
    let job = b["jobs"][0]["id"].as_u64().unwrap();
    let log = String::from_utf8_lossy(&c.log(job)).into_owned();
    assert_eq!(b["jobs"][0]["state"], "failed", "{b}\n{log}");
    assert!(
        log.contains("out of memory: the job reached its memory limit (128 MiB) and the kernel killed one of its processes once"),
        "{log}"
    );
    assert!(
        log.contains("after"),
        "the script goes on after a failed command: {log}"
    );
    let c2 = c.kha_json(&["build", "show", &id.to_string()]);
    assert!(
        c2.to_string().contains("out of memory"),
        "the job's message: {c2}"
    );
}

/// The limits a project asks for its jobs apply in the container, up to
/// the builder's maximum (with a note in the log where it gives less);
/// another project's jobs keep the builder's defaults.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_project_sets_its_jobs_limits_up_to_the_builders_maximum() {
    const SHOW: &str = "language: shell\nscript: for f in memory.max memory/memory.limit_in_bytes pids.max pids/pids.max cpu.max cpu/cpu.cfs_quota_us; do [ -r /sys/fs/cgroup/$f ] && echo \"$f $(cat /sys/fs/cgroup/$f)\"; done; true\n";
    let repo = Repo::with_travis_yml(SHOW);
    let mut c = Fixture::new()
        .project("small", &repo.url())
        .project("plain", &repo.url())
        .start();
    let conf = c.path("builder.toml");
    std::fs::write(&conf, "cpus = 1\nmax_memory_mib = 4096\nmax_cpus = 2\n").unwrap();
    c.builder_with("a", 1, &["--config", conf.to_str().unwrap()]);
    c.wait_builders_connected(1);
    let shown = c.kha_ok(&[
        "project",
        "set",
        "small",
        "--memory-mib",
        "256",
        "--pids",
        "8000",
        "--cpus",
        "0.5",
    ]);
    assert!(
        shown.contains("memory 256 MiB, 8000 processes, 0.5 CPU"),
        "{shown}"
    );
    let bad = c.kha(&["project", "set", "small", "--memory-mib", "4"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("job_memory_mib must be 0 (the builder's default) or at least 32"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let run = |project: &str| {
        let id = c.trigger(project, None);
        let b = c.wait_build(id, Duration::from_secs(120));
        let job = b["jobs"][0]["id"].as_u64().unwrap();
        let log = String::from_utf8_lossy(&c.log(job)).into_owned();
        assert_eq!(b["state"], "passed", "{b}\n{log}");
        log
    };
    let value = |log: &str, files: &[&str]| -> String {
        log.lines()
            .find_map(|l| {
                let (f, v) = l.split_once(' ')?;
                files.contains(&f).then(|| v.to_string())
            })
            .unwrap_or_else(|| panic!("none of {files:?} in {log}"))
    };
    let memory = ["memory.max", "memory/memory.limit_in_bytes"];
    let pids = ["pids.max", "pids/pids.max"];
    let cpu = ["cpu.max", "cpu/cpu.cfs_quota_us"];

    let log = run("small");
    assert_eq!(value(&log, &memory), (256u64 << 20).to_string(), "{log}");
    assert_eq!(value(&log, &pids), "4096", "{log}");
    assert!(value(&log, &cpu).starts_with("50000"), "{log}");
    assert!(
        log.contains("the project asks for 8000 processes; this builder gives at most 4096"),
        "{log}"
    );

    let log = run("plain");
    assert_eq!(value(&log, &memory), (2048u64 << 20).to_string(), "{log}");
    assert_eq!(value(&log, &pids), "4096", "{log}");
    assert!(value(&log, &cpu).starts_with("100000"), "{log}");
    assert!(!log.contains("the project asks"), "{log}");
}

/// A log bomb: 200 MB printed against a 1 MiB log cap. The stored log is
/// the cap and the marker, the builder keeps no more than that either, and
/// the job still ends by its own script.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
#[test]
fn a_log_bomb_is_cut_at_the_cap_with_a_marker() {
    let repo = Repo::with_travis_yml(
        "language: shell\nscript:\n  - yes 0123456789abcdef | head -c 200000000\n  - echo survived\n",
    );
    let mut c = Fixture::new()
        .config("log_cap_bytes = 1048576\n")
        .project("demo", &repo.url())
        .start();
    c.builder("a", 1);
    let id = c.trigger("demo", None);
    let b = c.wait_build(id, Duration::from_secs(120));
    assert_eq!(b["state"], "passed", "{b}");
    let job = b["jobs"][0]["id"].as_u64().unwrap();
    let log = c.log(job);
    let marker = kha_core::limits::TRUNCATION_MARKER.as_bytes();
    assert!(
        log.ends_with(marker),
        "{:?}",
        String::from_utf8_lossy(&log[log.len().saturating_sub(200)..])
    );
    assert_eq!(log.len(), (1 << 20) + marker.len());
    assert!(log.starts_with(b"$ yes 0123456789abcdef | head -c 200000000\n0123456789abcdef\n"));
    let spool = du(&c.builders[0].data);
    assert!(spool < 8 << 20, "the builder holds {spool} bytes");
}

/// Bytes of the files under `dir`.
fn du(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => n += du(&e.path()),
                Ok(t) if t.is_file() => n += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    n
}

/// A job that fills its builder's disk (its workspace is there, as its
/// spool and the builder's own files are): the job fails on its own
/// command with the kernel's reason in its log, its output up to then is
/// kept, the space comes back when its workspace goes, and the builder's
/// next job passes.
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
// One reason only: a second ignore attribute is an unused-attribute warning.
#[cfg_attr(
    all(kha_skip_root, not(kha_skip_lxc)),
    ignore = "not root: cannot mount the small disk"
)]
#[test]
fn a_job_that_fills_the_disk_fails_and_the_builder_goes_on() {
    let hog = Repo::with_travis_yml(
        "language: shell\nscript:\n  - echo filling\n  - dd if=/dev/zero of=big bs=1M status=none\n  - echo after\n",
    );
    let calm = Repo::with_travis_yml("language: shell\nscript: echo calm\n");
    let mut c = Fixture::new()
        .project("hog", &hog.url())
        .project("calm", &calm.url())
        .start();
    let data = c.path("builder-a");
    c.small_disk(&data, 96);
    c.builder("a", 1);
    let id = c.trigger("hog", None);
    let b = c.wait_build(id, Duration::from_secs(120));
    let job = b["jobs"][0]["id"].as_u64().unwrap();
    let log = String::from_utf8_lossy(&c.log(job)).into_owned();
    assert_eq!(b["jobs"][0]["state"], "failed", "{b}\n{log}");
    assert!(log.contains("filling"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    assert!(log.contains("after"), "{log}");
    let id = c.trigger("calm", None);
    assert_eq!(c.wait_build(id, Duration::from_secs(60))["state"], "passed");
    let free = free_bytes(&data);
    assert!(free > 64 << 20, "only {free} bytes free after the job");
}

//! Tests of the lxc executor. Those that run real containers need root and
//! lxc: they fail without them, unless the crate was built with
//! `KHA_SKIP_LXC=1`, which reports them as ignored.

use super::cgroups::{unescape_mountinfo, Cgroups};
use super::config::{RunPaths, JOB_ENV};
use super::idmap::{parse_subid, IdMap, ID_COUNT};
use super::image::PASSWD;
use super::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::ExitStatus;
use std::process::{Child, Output};
use std::time::Instant;

/// Those tests run real containers: they need root and lxc, and fail
/// (never pass silently) without them. Build with `KHA_SKIP_LXC=1` where
/// there is neither: they are then reported as ignored.
fn require_lxc() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lxc executor tests need root and lxc (build with KHA_SKIP_LXC=1 to skip them)"
    );
    assert!(
        find_tool("lxc-execute").is_some(),
        "lxc-execute is not installed (apt-get install lxc, or build with KHA_SKIP_LXC=1 to skip these tests)"
    );
}

/// A builder data dir of its own (images, lxcpath, workspaces, scratch)
/// with the default image.
struct Data {
    tmp: tempfile::TempDir,
    exec: LxcExecutor,
}

impl Data {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        // tempdir makes 0700 directories; the container's root must
        // get through.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let images = tmp.path().join("images");
        create_image(&images, "default").expect("create image");
        let exec = LxcExecutor::new(images, tmp.path().join("lxc"));
        Self { tmp, exec }
    }

    /// A run named after the test (and this process, so that parallel
    /// test processes never collide) with `script` as its driver.
    fn run(&self, test: &str, script: &str) -> Run<'_> {
        let name = format!("kha-t-{test}-{}", std::process::id());
        let workspace = self.tmp.path().join(format!("work space {test}"));
        fs::create_dir_all(workspace.join(".kha")).expect("workspace");
        fs::write(
            workspace.join(".kha/run.sh"),
            format!("cd \"$(dirname \"$0\")/..\"\n{script}"),
        )
        .expect("script");
        let run = JobRun {
            name,
            workspace,
            image: "default".into(),
            scratch: self.tmp.path().join("scratch").join(test),
            mounts: vec![],
            limits: None,
            network: false,
        };
        Run {
            exec: &self.exec,
            run,
        }
    }
}

/// Cleans its run up whatever happens to the test.
struct Run<'a> {
    exec: &'a LxcExecutor,
    run: JobRun,
}

impl Run<'_> {
    fn spawn(&self) -> Child {
        let mut cmd = self.exec.command(&self.run).expect("command");
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn lxc-execute");
        self.exec.spawned(&self.run, child.id());
        child
    }

    fn output(&self) -> Output {
        let out = self.spawn().wait_with_output().expect("wait");
        if out.status.code() == Some(1) && !lxc_errors(&self.run).is_empty() {
            panic!("lxc failed: {:#?}", lxc_errors(&self.run));
        }
        out
    }

    /// Spawns, then waits until the script has printed its first line.
    fn start(&self) -> (Child, BufReader<std::process::ChildStdout>) {
        let mut child = self.spawn();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        assert_eq!(line, "started\n", "lxc: {:#?}", lxc_errors(&self.run));
        (child, stdout)
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.exec.cleanup(&self.run) {
            eprintln!("cleanup of {}: {e}", self.run.name);
        }
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8")
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn job_runs_in_its_own_unprivileged_container() {
    require_lxc();
    let data = Data::new();
    let run = data.run(
        "basic",
        "hostname\nid -u\npwd\n\
         readlink /proc/self/ns/pid /proc/self/ns/uts /proc/self/ns/mnt /proc/self/ns/net /proc/self/ns/user /proc/self/ns/ipc\n\
         cat /proc/1/comm\ncat /proc/self/uid_map\nls /sys/class/net\n\
         echo written > out.txt\ntouch /tmp/x\ncc --version >/dev/null && git --version >/dev/null && echo tools\n\
         env\n",
    );
    let out = run.output();
    assert_eq!(text(&out.stderr), "");
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..3],
        [run.run.name.as_str(), "0", "/workspace"],
        "{stdout}"
    );
    for (line, ns) in lines[3..9]
        .iter()
        .zip(["pid", "uts", "mnt", "net", "user", "ipc"])
    {
        let host = fs::read_link(format!("/proc/self/ns/{ns}")).expect("host ns");
        assert!(line.starts_with(&format!("{ns}:[")), "{line}");
        assert_ne!(
            Path::new(line),
            host,
            "the job shares the host's {ns} namespace"
        );
    }
    let host_init = fs::read_to_string("/proc/1/comm").expect("host init");
    assert_ne!(format!("{}\n", lines[9]), host_init, "pid 1 is the host's");
    let ids = IdMap::for_host().expect("ids");
    let uid_map: Vec<u32> = lines[10]
        .split_whitespace()
        .map(|f| f.parse().expect("uid_map"))
        .collect();
    assert_eq!(uid_map, [0, ids.uid, 65536], "not id-mapped");
    assert_eq!(lines[11..13], ["lo", "tools"], "{stdout}");
    let env: BTreeSet<&str> = lines[13..]
        .iter()
        .copied()
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("OLDPWD=") && !l.starts_with("SHLVL="))
        .collect();
    let mut expected: BTreeSet<&str> = JOB_ENV.iter().copied().collect();
    expected.insert("container=lxc");
    assert_eq!(env, expected, "environment");

    let written = run.run.workspace.join("out.txt");
    assert_eq!(fs::read_to_string(&written).expect("out.txt"), "written\n");
    assert_eq!(fs::metadata(&written).expect("meta").uid(), ids.uid);
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn output_is_the_scripts_byte_for_byte() {
    require_lxc();
    let data = Data::new();
    let run = data.run(
        "bytes",
        "printf 'a\\0b\\r\\n\\377'\nprintf 'err\\n' >&2\nprintf 'no newline'\n",
    );
    let out = run.output();
    assert_eq!(out.stdout, b"a\0b\r\n\xffno newline");
    assert_eq!(out.stderr, b"err\n");
    assert!(out.status.success());
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn exit_status_is_the_scripts() {
    require_lxc();
    let data = Data::new();
    for code in [0, 1, 2, 3, 42] {
        let run = data.run(&format!("exit{code}"), &format!("exit {code}\n"));
        let out = run.output();
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        assert_eq!(out.stdout, b"");
        assert_eq!(out.stderr, b"");
    }
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn nothing_persists_outside_the_workspace() {
    require_lxc();
    let data = Data::new();
    let files = "/tmp/x /var/tmp/x /root/x /home/x /home/kha/x /run/x /dev/shm/x";
    let first = data.run(
        "persist1",
        &format!(
            "touch {files} && echo wrote\n\
             touch /etc/x 2>/dev/null || echo etc read-only\n\
             touch /usr/x 2>/dev/null || echo usr read-only\n\
             mount -o remount,rw / 2>/dev/null || echo no remount\n\
             sleep 100 &\necho left a daemon behind\n"
        ),
    );
    let started = Instant::now();
    let out = first.output();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the daemon kept the run alive"
    );
    assert_eq!(
        text(&out.stdout),
        "wrote\netc read-only\nusr read-only\nno remount\nleft a daemon behind\n"
    );
    assert!(out.status.success());
    let second = data.run(
        "persist2",
        &format!("for f in {files}; do test -e $f && echo $f; done\necho done\n"),
    );
    let out = second.output();
    assert_eq!(text(&out.stdout), "done\n");
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn limits_apply() {
    require_lxc();
    let mut data = Data::new();
    data.exec.memory_bytes = Some(256 << 20);
    data.exec.pids = Some(123);
    let run = data.run(
        "limits",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max\n\
         cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max\n",
    );
    let out = run.output();
    assert_eq!(text(&out.stdout), "268435456\n123\n", "{out:?}");
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn stop_terminates_politely() {
    require_lxc();
    let data = Data::new();
    let run = data.run("stop", "echo started\nsleep 1000\n");
    let (mut child, _stdout) = run.start();
    let grace = Duration::from_secs(3);
    let started = Instant::now();
    run.exec.stop(&run.run, grace).expect("stop");
    let status =
        wait_timeout(&mut child, Duration::from_secs(2)).expect("still running after stop");
    // sleep dies of SIGTERM at once; so does the script.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(128 + 15));
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn stop_kills_after_grace() {
    require_lxc();
    let data = Data::new();
    let run = data.run(
        "kill",
        "trap '' TERM\necho started\nwhile :; do sleep 1; done\n",
    );
    let (mut child, _stdout) = run.start();
    let grace = Duration::from_secs(1);
    let started = Instant::now();
    run.exec.stop(&run.run, grace).expect("stop");
    let stopped = started.elapsed();
    let status =
        wait_timeout(&mut child, Duration::from_secs(2)).expect("still running after stop");
    assert!(
        stopped >= grace,
        "killed before the grace period: {stopped:?}"
    );
    assert!(stopped < grace + Duration::from_secs(2), "{stopped:?}");
    assert!(!status.success());
    // Stopping what is gone is fine.
    run.exec.stop(&run.run, grace).expect("stop again");
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn stop_right_after_spawn() {
    require_lxc();
    let data = Data::new();
    let run = data.run("early", "sleep 1000\n");
    let mut child = run.spawn();
    let started = Instant::now();
    run.exec
        .stop(&run.run, Duration::from_secs(1))
        .expect("stop");
    let status = wait_timeout(&mut child, Duration::from_secs(2)).expect("still running");
    assert!(!status.success());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn lxc_failures_stay_out_of_the_output() {
    require_lxc();
    let data = Data::new();
    create_image(&data.exec.images, "broken").expect("image");
    let conf = data.exec.images.join("broken/config");
    let mut config = fs::read_to_string(&conf).expect("read");
    config.push_str("lxc.mount.entry = /nonexistent-kha mnt none bind 0 0\n");
    fs::write(&conf, config).expect("write");
    let mut run = data.run("broken", "echo ran\n");
    run.run.image = "broken".into();
    let out = run.spawn().wait_with_output().expect("wait");
    assert_eq!(out.stdout, b"");
    assert_eq!(out.stderr, b"");
    assert_eq!(out.status.code(), Some(1));
    let errors = lxc_errors(&run.run);
    assert!(
        errors.iter().any(|e| e.contains("nonexistent-kha")),
        "{errors:#?}"
    );
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn cleanup_leftovers_removes_a_running_container() {
    require_lxc();
    let data = Data::new();
    let running = data.run("left1", "echo started\nsleep 1000\n");
    let (mut child, _stdout) = running.start();
    // A run prepared but never started, as after a crash at that point.
    let prepared = data.run("left2", "exit 0\n");
    data.exec.command(&prepared.run).expect("command");
    assert!(prepared.run.scratch.exists());

    // The builder restarts: a new executor over the same directories.
    let reborn = LxcExecutor::new(data.exec.images.clone(), data.exec.lxcpath.clone());
    assert_eq!(reborn.cleanup_leftovers().expect("cleanup_leftovers"), 2);
    assert!(
        wait_timeout(&mut child, Duration::from_secs(3)).is_some(),
        "container survived"
    );
    for run in [&running.run, &prepared.run] {
        assert!(!run.scratch.exists(), "{} left", run.scratch.display());
        assert!(!data.exec.lxcpath.join(&run.name).exists());
    }
    assert_eq!(reborn.cleanup_leftovers().expect("again"), 0);
    // And cleanup of a clean run is fine.
    data.exec.cleanup(&running.run).expect("cleanup when clean");
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn missing_image_is_an_error() {
    require_lxc();
    let data = Data::new();
    let mut run = data.run("noimage", "exit 0\n");
    run.run.image = "nope".into();
    assert!(matches!(data.exec.command(&run.run), Err(ExecError::NoImage(i)) if i == "nope"));
    run.run.image = "../images/default".into();
    assert!(matches!(
        data.exec.command(&run.run),
        Err(ExecError::NoImage(_))
    ));
}

#[test]
#[cfg_attr(kha_skip_lxc, ignore = "KHA_SKIP_LXC is set: lxc tests skipped")]
fn images_are_labels_and_recreating_refreshes() {
    require_lxc();
    let data = Data::new();
    let images = &data.exec.images;
    let started = Instant::now();
    create_image(images, "erlang-26").expect("create");
    assert!(started.elapsed() < Duration::from_secs(2));
    fs::write(images.join("erlang-26/rootfs/etc/passwd"), "garbage").expect("write");
    create_image(images, "erlang-26").expect("recreate");
    assert_eq!(
        fs::read_to_string(images.join("erlang-26/rootfs/etc/passwd")).expect("read"),
        PASSWD
    );
    assert_eq!(data.exec.labels(), ["executor=lxc"]);
    let found = data.exec.images();
    let names: Vec<&str> = found.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["default", "erlang-26"]);
    assert!(found
        .iter()
        .all(|i| i.arch.is_native() && i.unusable.is_none()));
    assert_eq!(
        found[1].about,
        format!(
            "quick image sharing the host's /usr, {}",
            found[1].arch.debian
        )
    );
    // A quick image cannot replace a full one, and removing takes it away.
    remove_image(images, "erlang-26").expect("remove");
    assert_eq!(data.exec.images().len(), 1);
    assert!(remove_image(images, "erlang-26").is_err());
    assert!(create_image(images, "../evil").is_err());
}

/// Not a test: measures the executor's costs. Run with
/// `cargo test -p kha-builder executor::lxc::tests::measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let images = tmp.path().join("images");
    let started = Instant::now();
    create_image(&images, "default").expect("create");
    eprintln!("create_image: {:?}", started.elapsed());
    let started = Instant::now();
    create_image(&images, "default").expect("create");
    eprintln!("create_image again: {:?}", started.elapsed());
    let data = Data {
        exec: LxcExecutor::new(images, tmp.path().join("lxc")),
        tmp,
    };
    let mut times = Vec::new();
    for i in 0..10 {
        let run = data.run(&format!("measure{i}"), "true\n");
        let started = Instant::now();
        let out = run.output();
        times.push(started.elapsed());
        assert!(out.status.success());
        let started = Instant::now();
        drop(run);
        eprintln!(
            "run {i}: {:?} (+ cleanup {:?})",
            times[i],
            started.elapsed()
        );
    }
    times.sort();
    eprintln!(
        "`true` job, command() to exit: min {:?}, median {:?}, max {:?}",
        times[0], times[5], times[9]
    );
}

#[test]
fn subid_ranges() {
    assert_eq!(
        parse_subid("kha:200000:65536\nroot:100000:65536\n"),
        Some(100_000)
    );
    assert_eq!(parse_subid("0:300000:100000\n"), Some(300_000));
    assert_eq!(parse_subid("root:100000:1000\n"), None);
    assert_eq!(parse_subid("root:0:65536\n"), None);
    assert_eq!(parse_subid("garbage\n"), None);
}

#[test]
fn cgroup_layouts() {
    let hybrid = "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n\
                  36 25 0:31 / /sys/fs/cgroup/memory rw shared:11 - cgroup cgroup rw,memory\n\
                  37 25 0:32 / /sys/fs/cgroup/pids rw shared:12 - cgroup cgroup rw,pids\n\
                  38 25 0:33 / /sys/fs/cgroup/cpu,cpuacct rw shared:13 - cgroup cgroup rw,cpu,cpuacct\n\
                  39 1 0:34 / /tmp/a\\040b rw - tmpfs tmpfs rw\n";
    let cg = Cgroups::parse(hybrid, |_| Some(String::new()));
    assert!(cg.v2.is_empty());
    assert_eq!(
        cg.v1.get("memory").map(PathBuf::as_path),
        Some(Path::new("/sys/fs/cgroup/memory"))
    );
    assert_eq!(
        cg.v1.get("cpu").map(PathBuf::as_path),
        Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
    );
    assert_eq!(cg.mounts.len(), 4);
    let unified = "30 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
    let cg = Cgroups::parse(unified, |p| {
        assert_eq!(p, Path::new("/sys/fs/cgroup"));
        Some("cpuset cpu io memory pids\n".into())
    });
    assert!(cg.v1.is_empty() && cg.v2.contains("memory") && cg.v2.contains("pids"));
    assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
}

#[test]
fn config_keys_follow_the_host() {
    let mut exec = LxcExecutor::new("/i".into(), "/l".into());
    exec.cpu_millis = Some(1500);
    let paths = RunPaths {
        name: "kha-x-1".into(),
        hostname: "kha-x-1".into(),
        image: "/i/default".into(),
        workspace: "/w/a b".into(),
        scratch: "/s".into(),
        opt_tmpfs: true,
        mounts: vec![
            ("/opt/kerl/25".into(), true),
            ("/usr/local/otp".into(), false),
        ],
        limits: exec.default_limits(),
        net: None,
    };
    let ids = IdMap {
        uid: 100_000,
        gid: 200_000,
        count: ID_COUNT,
    };
    let v2 = Cgroups {
        v2: ["memory", "pids", "cpu"].map(String::from).into(),
        ..Cgroups::default()
    };
    let conf = exec.run_config(&paths, ids, &v2).expect("config");
    for line in [
        "# kha run kha-x-1",
        "lxc.uts.name = kha-x-1",
        "lxc.idmap = u 0 100000 65536",
        "lxc.idmap = g 0 200000 65536",
        "lxc.net.0.type = empty",
        "lxc.cgroup2.memory.max = 2147483648",
        "lxc.cgroup2.pids.max = 4096",
        "lxc.cgroup2.cpu.max = 150000 100000",
        "lxc.mount.entry = /w/a\\040b workspace none rw,bind,nodev,nosuid 0 0",
        "lxc.mount.entry = /opt/kerl/25 opt/kerl/25 none ro,bind,nodev,nosuid,create=dir 0 0",
        "lxc.mount.entry = /usr/local/otp usr/local/otp none ro,bind,nodev,nosuid 0 0",
    ] {
        assert!(conf.lines().any(|l| l == line), "no {line:?} in\n{conf}");
    }
    // The toolchains after the tmpfs mounts they may lie in.
    let at = |s: &str| conf.find(s).unwrap_or_else(|| panic!("no {s} in {conf}"));
    assert!(at("tmpfs tmp tmpfs") < at("tmpfs opt tmpfs"));
    assert!(at("tmpfs opt tmpfs") < at("/opt/kerl/25 opt/kerl/25"));
    assert!(conf.starts_with("# kha run kha-x-1\nlxc.log.file = /s/lxc.log\n"));
    // With network: a veth on the jobs' bridge, and the host's resolver.
    exec.job_net = Some(std::sync::Arc::new(
        super::net::JobNet::new("kha-jobs0", "10.213.0.0/24", vec![]).unwrap(),
    ));
    let paths = RunPaths {
        net: Some(std::net::Ipv4Addr::new(10, 213, 0, 5)),
        ..paths
    };
    let v1 = Cgroups {
        v1: [("memory", "/nonexistent"), ("pids", "/x"), ("cpu", "/y")]
            .map(|(c, p)| (c.to_owned(), PathBuf::from(p)))
            .into(),
        ..Cgroups::default()
    };
    let conf = exec.run_config(&paths, ids, &v1).expect("config");
    for line in [
        "lxc.net.0.type = veth",
        "lxc.net.0.link = kha-jobs0",
        "lxc.net.0.ipv4.address = 10.213.0.5/24",
        "lxc.mount.entry = /etc/resolv.conf etc/resolv.conf none ro,bind,nodev,nosuid,optional 0 0",
        "lxc.cgroup.memory.limit_in_bytes = 2147483648",
        "lxc.cgroup.pids.max = 4096",
        "lxc.cgroup.cpu.cfs_quota_us = 150000",
    ] {
        assert!(conf.lines().any(|l| l == line), "no {line:?} in\n{conf}");
    }
    assert!(
        exec.run_config(&paths, ids, &Cgroups::default()).is_err(),
        "limits without controllers"
    );
    let bad = RunPaths {
        workspace: "/w/x\ny".into(),
        ..paths
    };
    assert!(exec.run_config(&bad, ids, &v1).is_err());
}

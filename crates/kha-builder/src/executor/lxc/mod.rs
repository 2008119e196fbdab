//! The lxc executor: one ephemeral, unprivileged (id-mapped) container per
//! job run.
//!
//! # Images
//!
//! An image is a directory `<images>/<name>/` holding `rootfs/` and `config`,
//! a fragment of lxc configuration that every run's config includes. The
//! default image made by [`create_image`] is tiny: empty mount points, a few
//! files in `/etc`, and a `config` that bind-mounts the host's `/usr` (plus
//! the few bits of `/etc` that programs in `/usr` depend on, such as
//! `/etc/alternatives` and `/etc/ssl`) read-only. So it costs milliseconds
//! to create, needs no download, and jobs get exactly the host's tools
//! (shell, coreutils, git, compilers); upgrading the host upgrades the
//! image. Other images (debootstrap-built, with other toolchains) are any
//! directory of the same shape; their `config` may be empty.
//!
//! # Runs
//!
//! [`Executor::command`] writes a per-run config into the run's scratch
//! directory and returns an `lxc-execute` command: lxc-execute creates the
//! container from that config, runs the driver script under lxc's minimal
//! init, returns the script's exit status as its own, and removes the
//! container when it ends, so nothing is left on disk by a run that ends
//! normally. A fixed wrapper (see `WRAPPER`) runs the script and kills
//! whatever the script left running when it exits, as lxc's init would
//! otherwise wait for it. The container:
//!
//! - is unprivileged: container uid/gid 0..65536 map to an unprivileged host
//!   range (from `/etc/subuid`, see `IdMap`); the workspace is chowned to
//!   the mapped root so the job can write to it;
//! - has its own pid, mount, uts (hostname = run name), ipc, user, cgroup and
//!   network namespaces; the network has only a loopback interface unless
//!   [`LxcExecutor::network`] is set;
//! - sees the image rootfs read-only, and owned by an unmapped uid besides,
//!   so it cannot be changed even by remounting; everything writable
//!   outside `/workspace` (`/tmp`, `/var/tmp`, `/run`, `/root`, `/home`,
//!   `/dev/shm`) is a fresh tmpfs, gone when the run ends;
//! - has a clean environment (the builder's is never passed on), memory,
//!   pids and optionally cpu limits, `no_new_privs` and lxc's default
//!   seccomp filter.
//!
//! lxc's own messages go to `<scratch>/lxc.log`, never to the job's output:
//! lxc-execute gets `-o none -q` (with a log file on the command line lxc
//! also copies errors to stderr, whatever `-q` says) and the config names
//! the log file. If the container cannot start at all, lxc-execute exits
//! with 1 and prints nothing; [`lxc_errors`] tells why.
//!
//! # Where things live
//!
//! `lxcpath` (e.g. `<data>/lxc`) is this builder's own lxc path: lxc keys
//! its command sockets by it, and this executor keeps a marker directory
//! `<lxcpath>/<name>/` per run holding the run's scratch path, so that
//! [`Executor::cleanup_leftovers`] can find what an earlier life of the
//! builder left behind.
//!
//! # Host requirements
//!
//! Root, lxc (`lxc-execute`, `lxc-info`, `lxc-ls`), and, because lxc then
//! insists on it, if `newuidmap`/`newgidmap` (package uidmap) are installed:
//! a subordinate id range of at least 65536 for root in `/etc/subuid` and
//! `/etc/subgid` (`usermod --add-subuids 100000-165535 --add-subgids
//! 100000-165535 root`). Every directory above the images, the workspace
//! and the scratch directory must be searchable (`o+x`) by that range's
//! first id, which is the container's root.

use super::{ExecError, Executor, JobRun};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt::Display;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default memory limit of a job: 2 GiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 2 << 30;
/// Default limit on the number of processes and threads of a job.
pub const DEFAULT_PIDS: u64 = 4096;

/// PATH for the lxc tools we run. Also decides whether lxc finds
/// `newuidmap` (see [`IdMap`]).
const TOOL_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// The environment of the job, and nothing else.
const JOB_ENV: &[&str] = &[
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
    "TERM=dumb",
    "USER=root",
    "LOGNAME=root",
];
/// The driver script, as the container sees it.
const SCRIPT: &str = "/workspace/.kha/run.sh";
/// Runs the driver script (`$0`) and, once it has exited, kills whatever it
/// left behind in the container, then exits with the script's status.
///
/// Why: lxc's init waits for every process in the container before it
/// exits, so a job leaving a daemon behind (`server &`) would otherwise
/// keep the run, and its output pipe, open until killed. `kill -KILL -1`
/// in a pid namespace reaches every process of that namespace except its
/// init and the caller; the `$PPID = 1` test (our parent is lxc's init)
/// makes sure it never runs anywhere else. SIGHUP/INT/TERM are caught (not
/// ignored, which children would inherit) so that `stop` reaches the
/// script but this wrapper lives on to report its status.
const WRAPPER: &str = "trap : HUP INT TERM\n\
/bin/sh \"$0\"\n\
s=$?\n\
[ \"$PPID\" = 1 ] && kill -KILL -1 2>/dev/null\n\
exit $s\n";
/// File in `<lxcpath>/<name>/` holding the run's scratch directory.
const MARKER: &str = "kha-scratch";
/// First line of every per-run config; `cleanup_leftovers` only deletes a
/// scratch directory whose `lxc.conf` starts with it.
const CONF_HEADER: &str = "# kha run ";
/// All run names start with this; `cleanup_leftovers` ignores anything else.
const RUN_PREFIX: &str = "kha-";
/// How long to wait for one lxc tool (`lxc-info`, `lxc-ls`) to answer.
const TOOL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for a container to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(1);
/// lxc's default seccomp policy (denies kexec, module loading,
/// open_by_handle_at…); used when present.
const SECCOMP: &str = "/usr/share/lxc/config/common.seccomp";
/// Size of the id range mapped into a container: uids 0..=65535, so the
/// usual ids (root, 1000, nobody = 65534) all exist inside.
const ID_COUNT: u32 = 65536;
/// Host uid/gid of the container's root when shadow's newuidmap is absent
/// (lxc then writes the map itself and needs no /etc/subuid entry).
const DEFAULT_ID_BASE: u32 = 100_000;

/// Top-level directories of the default image, with their modes. Most are
/// mount points; the rest just make a familiar tree.
const IMAGE_DIRS: &[(&str, u32)] = &[
    ("usr", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("var", 0o755),
    ("var/tmp", 0o1777),
    ("root", 0o700),
    ("home", 0o755),
    ("workspace", 0o755),
    ("mnt", 0o755),
    ("opt", 0o755),
    ("srv", 0o755),
];
/// Top-level entries that merged-/usr systems (Debian 12) make symlinks
/// into /usr: mirrored as symlinks, or bind-mounted if the host has real
/// directories there.
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Host `/etc` entries shared read-only with the default image: what
/// programs in `/usr` refer to (alternatives, certificates, the loader
/// cache, language runtimes' config). A whitelist, because `/etc` also
/// holds secrets (the builder's own config among them).
const HOST_ETC: &[&str] = &[
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "perl",
    "mime.types",
    "protocols",
    "services",
    "rpc",
    "ethertypes",
    "magic",
    "magic.mime",
    "locale.alias",
    "debian_version",
    "gai.conf",
    "host.conf",
    "maven",
];
/// Host `/etc` entries shared by prefix (versioned names: `python3.11`,
/// `java-17-openjdk`).
const HOST_ETC_PREFIXES: &[&str] = &["python3", "java-"];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
kha:x:1000:1000:kha:/home/kha:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nkha:x:1000:\nnogroup:x:65534:\n";
const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\n\
hosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n\
ethers: files\nrpc: files\nnetgroup: files\n";

/// Runs jobs in ephemeral lxc containers. Set the public fields after
/// [`LxcExecutor::new`] to change the limits.
pub struct LxcExecutor {
    /// Where images live: `<images>/<name>/rootfs` and `<images>/<name>/config`.
    pub images: PathBuf,
    /// This builder's lxc path (see the module doc); created when needed.
    pub lxcpath: PathBuf,
    /// Memory limit of a job (page cache and tmpfs included), if any.
    pub memory_bytes: Option<u64>,
    /// Limit on the processes and threads of a job, if any.
    pub pids: Option<u64>,
    /// CPU limit in thousandths of a CPU (1500 = one and a half), if any.
    pub cpu_millis: Option<u64>,
    /// Whether jobs get network access. There is no bridge to set up on the
    /// host, so "on" means sharing the host's network namespace: jobs then
    /// reach whatever the host reaches, including services on its
    /// loopback. Off (the default), a job has only its own loopback.
    pub network: bool,
    /// pid of the `lxc-execute` of each spawned run (see `spawned`): lets
    /// `stop` act while the container is still starting, or if lxc's
    /// monitor no longer answers.
    monitors: Mutex<HashMap<String, u32>>,
}

impl LxcExecutor {
    /// An executor with the default limits: 2 GiB of memory, 4096
    /// processes, no cpu limit, no network.
    pub fn new(images: PathBuf, lxcpath: PathBuf) -> Self {
        Self {
            images,
            lxcpath,
            memory_bytes: Some(DEFAULT_MEMORY_BYTES),
            pids: Some(DEFAULT_PIDS),
            cpu_millis: None,
            network: false,
            monitors: Mutex::new(HashMap::new()),
        }
    }

    /// The per-run lxc configuration.
    fn run_config(
        &self,
        run: &RunPaths,
        ids: IdMap,
        cgroups: &Cgroups,
    ) -> Result<String, ExecError> {
        let mut c = Conf::default();
        c.line(&format!("{CONF_HEADER}{}", run.name));
        // First, so that errors in the lines below are logged too.
        c.set("lxc.log.file", conf_path(&run.scratch.join("lxc.log"))?);
        c.set("lxc.uts.name", &run.hostname);
        c.set(
            "lxc.rootfs.path",
            format!("dir:{}", conf_path(&run.image.join("rootfs"))?),
        );
        c.set("lxc.rootfs.options", "ro");
        c.set("lxc.idmap", format!("u 0 {} {}", ids.uid, ids.count));
        c.set("lxc.idmap", format!("g 0 {} {}", ids.gid, ids.count));
        if self.network {
            c.set("lxc.net.0.type", "none");
            // sysfs can only be mounted by the owner of the network
            // namespace: show the host's, read-only.
            c.set("lxc.mount.auto", "proc:mixed cgroup:ro:force");
            c.mount("/sys", "sys", "none", "ro,rbind,nodev,nosuid,noexec");
        } else {
            c.set("lxc.net.0.type", "empty");
            // Brings the loopback interface up; jobs' tests use it.
            c.set("lxc.net.0.flags", "up");
            // cgroup:ro:force mounts the container's own cgroups read-only,
            // so that runtimes (the JVM…) can see their limits.
            c.set("lxc.mount.auto", "proc:mixed sys:ro cgroup:ro:force");
        }
        c.set("lxc.autodev", "1");
        c.set("lxc.console.path", "none");
        c.set("lxc.tty.max", "0");
        c.set("lxc.pty.max", "256");
        c.set(
            "lxc.cap.drop",
            "mac_admin mac_override sys_time sys_module sys_rawio",
        );
        c.set("lxc.no_new_privs", "1");
        if Path::new(SECCOMP).is_file() {
            c.set("lxc.seccomp.profile", SECCOMP);
        }
        let image_conf = run.image.join("config");
        if image_conf.is_file() {
            c.set("lxc.include", conf_path(&image_conf)?);
        }
        c.mount(
            conf_path(&run.workspace)?,
            "workspace",
            "none",
            "rw,bind,nodev,nosuid",
        );
        c.mount(
            conf_path(&run.scratch.join("hosts"))?,
            "etc/hosts",
            "none",
            "ro,bind,nodev,nosuid",
        );
        c.mount(
            conf_path(&run.scratch.join("hostname"))?,
            "etc/hostname",
            "none",
            "ro,bind,nodev,nosuid",
        );
        if self.network {
            c.mount(
                "/etc/resolv.conf",
                "etc/resolv.conf",
                "none",
                "ro,bind,nodev,nosuid,optional",
            );
        }
        for (dir, opts) in [
            ("tmp", "mode=1777"),
            ("var/tmp", "mode=1777"),
            ("run", "mode=755"),
            ("root", "mode=700"),
            ("home", "mode=755"),
            ("home/kha", "mode=700,uid=1000,gid=1000,create=dir"),
            ("dev/shm", "mode=1777,create=dir"),
        ] {
            c.mount("tmpfs", dir, "tmpfs", &format!("rw,nosuid,nodev,{opts}"));
        }
        for var in JOB_ENV {
            c.set("lxc.environment", var);
        }
        if let Some(bytes) = self.memory_bytes {
            if cgroups.v2.contains("memory") {
                c.set("lxc.cgroup2.memory.max", bytes);
            } else if let Some(mount) = cgroups.v1.get("memory") {
                c.set("lxc.cgroup.memory.limit_in_bytes", bytes);
                // With swap accounting, also stop the job from swapping
                // its way past the limit.
                if mount.join("memory.memsw.limit_in_bytes").exists() {
                    c.set("lxc.cgroup.memory.memsw.limit_in_bytes", bytes);
                }
            } else {
                return Err(no_controller("memory"));
            }
        }
        if let Some(pids) = self.pids {
            if cgroups.v2.contains("pids") {
                c.set("lxc.cgroup2.pids.max", pids);
            } else if cgroups.v1.contains_key("pids") {
                c.set("lxc.cgroup.pids.max", pids);
            } else {
                return Err(no_controller("pids"));
            }
        }
        if let Some(millis) = self.cpu_millis {
            const PERIOD_US: u64 = 100_000;
            let quota = (millis.saturating_mul(PERIOD_US) / 1000).max(1000);
            if cgroups.v2.contains("cpu") {
                c.set("lxc.cgroup2.cpu.max", format!("{quota} {PERIOD_US}"));
            } else if cgroups.v1.contains_key("cpu") {
                c.set("lxc.cgroup.cpu.cfs_period_us", PERIOD_US);
                c.set("lxc.cgroup.cpu.cfs_quota_us", quota);
            } else {
                return Err(no_controller("cpu"));
            }
        }
        Ok(c.0)
    }

    fn lxcpath(&self) -> Result<PathBuf, ExecError> {
        Ok(std::path::absolute(&self.lxcpath)?)
    }

    fn monitor(&self, name: &str) -> Option<u32> {
        self.monitors.lock().ok()?.get(name).copied()
    }

    /// Host pid of the container's init, if it is running: asks lxc, or,
    /// if lxc's monitor does not answer, looks for the child of the
    /// `lxc-execute` we were told about.
    fn find_init(&self, name: &str, lxcpath: &Path) -> Option<i32> {
        let args: [&OsStr; 6] = [
            "-n".as_ref(),
            name.as_ref(),
            "-P".as_ref(),
            lxcpath.as_os_str(),
            "-p".as_ref(),
            "-H".as_ref(),
        ];
        match run_tool("lxc-info", &args, TOOL_TIMEOUT) {
            Some((status, out)) => {
                let pid = out.trim().parse::<i32>().ok().filter(|p| *p > 1);
                if status.success() && pid.is_some() {
                    return pid;
                }
            }
            None => {
                let monitor = self.monitor(name)?;
                if is_monitor(monitor) {
                    return children(monitor as i32).into_iter().next();
                }
            }
        }
        None
    }

    /// Kills the run's container now, if it runs.
    fn kill_now(&self, name: &str, lxcpath: &Path) -> Result<(), ExecError> {
        if let Some(init) = self.find_init(name, lxcpath) {
            if let Some(ns) = container_ns(init) {
                return kill_container(name, init, &ns);
            }
        }
        Ok(())
    }

    /// Removes one run's leftovers: container, cgroups, marker, scratch.
    /// `scratch` is only removed if given.
    fn remove_run(&self, name: &str, scratch: Option<&Path>) -> Result<(), ExecError> {
        let lxcpath = self.lxcpath()?;
        let monitor = self.monitors.lock().ok().and_then(|mut m| m.remove(name));
        // The lxc-execute we started is gone (the job runner has reaped
        // it): it exits only once the container has, and a container whose
        // lxc-execute dies gets its parent-death signal. Nothing can be
        // running, so do not ask lxc (an lxc-info process and its polling,
        // ~6 ms of every job). Runs we know nothing of (leftovers of an
        // earlier life) are still looked up.
        let exited = monitor.is_some_and(|m| !is_monitor(m));
        let mut first_err = if exited {
            None
        } else {
            self.kill_now(name, &lxcpath).err()
        };
        // lxc-execute exits by itself once the container is gone (it may
        // still be tearing down); only a wedged one needs killing.
        if let Some(monitor) = monitor.filter(|_| !exited) {
            let until = Instant::now() + KILL_WAIT;
            while is_monitor(monitor) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if is_monitor(monitor) {
                let _ = kill(Pid::from_raw(monitor as i32), Signal::SIGKILL);
            }
        }
        remove_cgroups(name);
        for path in [Some(lxcpath.join(name).as_path()), scratch]
            .into_iter()
            .flatten()
        {
            if let Err(e) = remove_tree(path) {
                first_err.get_or_insert(setup(format!("removing {}: {e}", path.display())));
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Creates (or refreshes) the base image `name` under `images`: an empty
/// rootfs skeleton plus a config sharing the host's /usr read-only. Takes
/// milliseconds and downloads nothing. Refreshing rewrites files in place,
/// so containers running from the image are not disturbed.
pub fn create_image(images: &Path, name: &str) -> Result<PathBuf, ExecError> {
    if !valid_name(name, 64) {
        return Err(setup(format!(
            "invalid image name {name:?}: use letters, digits, '-', '_' and '.', not first"
        )));
    }
    let images = std::path::absolute(images)?;
    fs::create_dir_all(&images).map_err(ctx("creating", &images))?;
    let dir = images.join(name);
    ensure_dir(&dir, 0o755)?;
    let rootfs = dir.join("rootfs");
    ensure_dir(&rootfs, 0o755)?;
    for (sub, mode) in IMAGE_DIRS {
        ensure_dir(&rootfs.join(sub), *mode)?;
    }

    let mut conf = Conf::default();
    conf.line(&format!(
        "# lxc settings of the kha image {name:?}, included by the config of every run."
    ));
    conf.line("# Written by `kha-builder image create`: the host's /usr, and the bits of /etc");
    conf.line("# that programs in /usr refer to, shared read-only.");
    conf.mount("/usr", "usr", "none", "ro,bind,nodev,nosuid");
    for top in USR_LINKS {
        let host = Path::new("/").join(top);
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&host).map_err(ctx("reading", &host))?;
            ensure_symlink(&rootfs.join(top), &target)?;
        } else if meta.is_dir() {
            ensure_dir(&rootfs.join(top), 0o755)?;
            conf.mount(
                conf_path(&host)?,
                top,
                "none",
                "ro,bind,nodev,nosuid,optional",
            );
        }
    }

    let etc = rootfs.join("etc");
    write_atomic(&etc.join("passwd"), PASSWD, 0o644)?;
    write_atomic(&etc.join("group"), GROUP, 0o644)?;
    write_atomic(&etc.join("nsswitch.conf"), NSSWITCH, 0o644)?;
    // Mount points of per-run files; the contents are a fallback.
    write_atomic(&etc.join("hosts"), &hosts_file("localhost"), 0o644)?;
    write_atomic(&etc.join("hostname"), "localhost\n", 0o644)?;
    write_atomic(
        &etc.join("resolv.conf"),
        "# no network unless the builder enables it\n",
        0o644,
    )?;
    write_atomic(&etc.join("timezone"), "Etc/UTC\n", 0o644)?;
    ensure_symlink(
        &etc.join("localtime"),
        Path::new("/usr/share/zoneinfo/Etc/UTC"),
    )?;
    ensure_symlink(&etc.join("mtab"), Path::new("../proc/self/mounts"))?;
    if Path::new("/usr/lib/os-release").exists() {
        ensure_symlink(&etc.join("os-release"), Path::new("../usr/lib/os-release"))?;
    }
    for entry in host_etc_entries() {
        let host = Path::new("/etc").join(&entry);
        // Follows symlinks: the mount point must match what gets mounted.
        let Ok(meta) = fs::metadata(&host) else {
            continue;
        };
        let point = etc.join(&entry);
        if meta.is_dir() {
            ensure_dir(&point, 0o755)?;
        } else if meta.is_file() {
            ensure_file(&point)?;
        } else {
            continue;
        }
        conf.mount(
            conf_path(&host)?,
            &format!("etc/{entry}"),
            "none",
            "ro,bind,nodev,nosuid,optional",
        );
    }
    write_atomic(&dir.join("config"), &conf.0, 0o644)?;
    check_searchable(&rootfs, IdMap::for_host()?)?;
    Ok(dir)
}

/// The error lines lxc logged for a run (e.g. why its container did not
/// start), for the job's log when lxc-execute failed before the script
/// ran. Empty if there are none or the log is gone.
pub fn lxc_errors(run: &JobRun) -> Vec<String> {
    let Ok(log) = fs::read_to_string(run.scratch.join("lxc.log")) else {
        return Vec::new();
    };
    log.lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" CRIT ") || l.contains(" FATAL "))
        .map(str::to_owned)
        .collect()
}

impl Executor for LxcExecutor {
    fn kind(&self) -> &'static str {
        "lxc"
    }

    fn labels(&self) -> Vec<String> {
        let mut images = BTreeSet::new();
        if let Ok(entries) = fs::read_dir(&self.images) {
            for entry in entries.flatten() {
                if let Some(name) = entry.file_name().to_str() {
                    if valid_name(name, 64) && entry.path().join("rootfs").is_dir() {
                        images.insert(name.to_owned());
                    }
                }
            }
        }
        let mut labels = vec!["executor=lxc".to_owned()];
        labels.extend(images.into_iter().map(|i| format!("image={i}")));
        labels
    }

    fn command(&self, run: &JobRun) -> Result<Command, ExecError> {
        if !valid_name(&run.name, 200) {
            return Err(setup(format!("invalid run name {:?}", run.name)));
        }
        if !valid_name(&run.image, 64) {
            return Err(ExecError::NoImage(run.image.clone()));
        }
        let image = std::path::absolute(&self.images)?.join(&run.image);
        if !image.join("rootfs").is_dir() {
            return Err(ExecError::NoImage(run.image.clone()));
        }
        let ids = IdMap::for_host()?;
        let cgroups = Cgroups::read();
        let workspace =
            fs::canonicalize(&run.workspace).map_err(ctx("workspace", &run.workspace))?;
        if !workspace.is_dir() {
            return Err(setup(format!(
                "workspace {} is not a directory",
                workspace.display()
            )));
        }
        fs::create_dir_all(&run.scratch).map_err(ctx("creating", &run.scratch))?;
        // Searchable by the container's root, for the bind mounts below.
        fs::set_permissions(&run.scratch, fs::Permissions::from_mode(0o711))?;
        let scratch = fs::canonicalize(&run.scratch)?;

        let lxcpath = self.lxcpath()?;
        fs::create_dir_all(&lxcpath).map_err(ctx("creating", &lxcpath))?;
        let marker = lxcpath.join(&run.name);
        ensure_dir(&marker, 0o700)?;
        write_atomic(&marker.join(MARKER), conf_path(&scratch)?, 0o600)?;

        chown_tree(&workspace, ids.uid, ids.gid).map_err(ctx("chowning", &workspace))?;
        for path in [&image.join("rootfs"), &workspace, &scratch] {
            check_searchable(path, ids)?;
        }

        let hostname: String = run.name.chars().take(64).collect();
        write_atomic(&scratch.join("hosts"), &hosts_file(&hostname), 0o644)?;
        write_atomic(&scratch.join("hostname"), &format!("{hostname}\n"), 0o644)?;
        let paths = RunPaths {
            name: run.name.clone(),
            hostname,
            image,
            workspace,
            scratch,
        };
        let conf = self.run_config(&paths, ids, &cgroups)?;
        let conf_file = paths.scratch.join("lxc.conf");
        write_atomic(&conf_file, &conf, 0o600)?;

        let mut cmd = Command::new("lxc-execute");
        cmd.env_clear()
            .env("PATH", TOOL_PATH)
            .current_dir("/")
            .stdin(Stdio::null())
            .arg("-n")
            .arg(&run.name)
            .arg("-P")
            .arg(&lxcpath)
            .arg("-f")
            .arg(&conf_file)
            .args([
                "-o", "none", "-l", "INFO", "-q", "--", "/bin/sh", "-c", WRAPPER, SCRIPT,
            ]);
        Ok(cmd)
    }

    fn spawned(&self, run: &JobRun, pid: u32) {
        if let Ok(mut m) = self.monitors.lock() {
            m.insert(run.name.clone(), pid);
        }
    }

    /// SIGTERM to every process of the container (lxc's own `lxc-stop`
    /// would have lxc's init do it, but that init SIGKILLs everything one
    /// second later whatever the grace), SIGKILL to its init once `grace`
    /// has passed. Returns within `grace` + ~2 s (1 s for lxc to answer, 1 s
    /// for the kernel to reap).
    fn stop(&self, run: &JobRun, grace: Duration) -> Result<(), ExecError> {
        let start = Instant::now();
        let lxcpath = self.lxcpath()?;
        let (init, ns) = loop {
            if let Some(init) = self.find_init(&run.name, &lxcpath) {
                if let Some(ns) = container_ns(init) {
                    break (init, ns);
                }
            }
            // No container: fine, unless its lxc-execute is still there,
            // i.e. still starting it (or wedged).
            let Some(monitor) = self.monitor(&run.name).filter(|m| is_monitor(*m)) else {
                return Ok(());
            };
            if start.elapsed() >= grace {
                // The container, if any, dies with it: lxc gives it a
                // parent-death signal.
                let _ = kill(Pid::from_raw(monitor as i32), Signal::SIGKILL);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        // Signal what it forks meanwhile too, until it is gone or time is up.
        let mut termed = HashSet::new();
        loop {
            for pid in ns_members(&ns, init) {
                if termed.insert(pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
            }
            if container_ns(init).as_ref() != Some(&ns) {
                return Ok(());
            }
            if start.elapsed() >= grace {
                return kill_container(&run.name, init, &ns);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn cleanup(&self, run: &JobRun) -> Result<(), ExecError> {
        if !valid_name(&run.name, 200) {
            return Err(setup(format!("invalid run name {:?}", run.name)));
        }
        self.remove_run(&run.name, Some(&run.scratch))
    }

    /// Must run before this builder starts any job: every `kha-` run under
    /// `lxcpath` is considered left over.
    fn cleanup_leftovers(&self) -> Result<usize, ExecError> {
        let lxcpath = self.lxcpath()?;
        let mut names = BTreeSet::new();
        match fs::read_dir(&lxcpath) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    if let Some(name) = entry.file_name().to_str() {
                        names.insert(name.to_owned());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(setup(format!("reading {}: {e}", lxcpath.display()))),
        }
        let args: [&OsStr; 4] = [
            "-P".as_ref(),
            lxcpath.as_os_str(),
            "--active".as_ref(),
            "-1".as_ref(),
        ];
        if let Some((_, out)) = run_tool("lxc-ls", &args, TOOL_TIMEOUT) {
            names.extend(out.split_whitespace().map(str::to_owned));
        }
        names.retain(|n| n.starts_with(RUN_PREFIX) && valid_name(n, 200));
        let mut first_err = None;
        for name in &names {
            let scratch = leftover_scratch(&lxcpath.join(name).join(MARKER), name);
            if let Err(e) = self.remove_run(name, scratch.as_deref()) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(names.len()), Err)
    }
}

/// The host's uid/gid range that a container's ids 0..count map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IdMap {
    uid: u32,
    gid: u32,
    count: u32,
}

impl IdMap {
    /// The range to use on this host. If shadow's `newuidmap` and
    /// `newgidmap` are installed (package uidmap), lxc uses them even when
    /// run by root, and they only map ranges delegated to root in
    /// `/etc/subuid` and `/etc/subgid` (so that the range is never handed
    /// to another user): take root's first range of at least 65536 ids.
    /// Without them lxc writes the map itself and 100000.. is used.
    fn for_host() -> Result<Self, ExecError> {
        let shadow = ["newuidmap", "newgidmap"].iter().all(|tool| {
            TOOL_PATH
                .split(':')
                .any(|dir| Path::new(dir).join(tool).exists())
        });
        if !shadow {
            return Ok(Self {
                uid: DEFAULT_ID_BASE,
                gid: DEFAULT_ID_BASE,
                count: ID_COUNT,
            });
        }
        let uid = root_subid(Path::new("/etc/subuid"))?;
        let gid = root_subid(Path::new("/etc/subgid"))?;
        match (uid, gid) {
            (Some(uid), Some(gid)) => Ok(Self {
                uid,
                gid,
                count: ID_COUNT,
            }),
            _ => Err(setup(
                "newuidmap is installed, so lxc needs subordinate ids for root: run \
                 `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 root`",
            )),
        }
    }

    fn maps_uid(&self, uid: u32) -> bool {
        uid.checked_sub(self.uid).is_some_and(|d| d < self.count)
    }

    fn maps_gid(&self, gid: u32) -> bool {
        gid.checked_sub(self.gid).is_some_and(|d| d < self.count)
    }
}

/// Start of root's first subordinate id range of at least [`ID_COUNT`] ids
/// in a subuid/subgid file.
fn root_subid(path: &Path) -> Result<Option<u32>, ExecError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(setup(format!("reading {}: {e}", path.display()))),
    };
    Ok(parse_subid(&text))
}

fn parse_subid(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (who, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
        let fits = start > 0 && count >= ID_COUNT && start.checked_add(ID_COUNT).is_some();
        ((who == "root" || who == "0") && fits).then_some(start)
    })
}

/// Which cgroup controllers are where on this host.
#[derive(Debug, Default)]
struct Cgroups {
    /// Controllers on a cgroup v1 hierarchy, with its mount point.
    v1: HashMap<String, PathBuf>,
    /// Controllers on the cgroup v2 hierarchy (none in a hybrid layout
    /// that leaves it empty, as Debian's does by default).
    v2: HashSet<String>,
    /// Mount points of every cgroup hierarchy, v1 and v2.
    mounts: Vec<PathBuf>,
}

impl Cgroups {
    fn read() -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::parse(&mountinfo, |mount| {
            fs::read_to_string(mount.join("cgroup.controllers")).ok()
        })
    }

    fn parse(mountinfo: &str, v2_controllers: impl Fn(&Path) -> Option<String>) -> Self {
        let mut cg = Self::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let (Some(fstype), Some(_source), Some(options)) =
                (right.next(), right.next(), right.next())
            else {
                continue;
            };
            let point = PathBuf::from(unescape_mountinfo(point));
            match fstype {
                "cgroup" => {
                    for opt in options.split(',') {
                        cg.v1.entry(opt.to_owned()).or_insert_with(|| point.clone());
                    }
                }
                "cgroup2" => {
                    if let Some(list) = v2_controllers(&point) {
                        cg.v2.extend(list.split_whitespace().map(str::to_owned));
                    }
                }
                _ => continue,
            }
            cg.mounts.push(point);
        }
        cg
    }
}

/// Paths of one run, absolute and canonical.
struct RunPaths {
    name: String,
    hostname: String,
    image: PathBuf,
    workspace: PathBuf,
    scratch: PathBuf,
}

/// An lxc config being written.
#[derive(Default)]
struct Conf(String);

impl Conf {
    fn line(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }

    fn set(&mut self, key: &str, value: impl Display) {
        self.line(&format!("{key} = {value}"));
    }

    /// An fstab-style mount entry; `target` is relative to the rootfs.
    fn mount(&mut self, source: &str, target: &str, fstype: &str, options: &str) {
        let entry = format!(
            "{} {} {fstype} {options} 0 0",
            fstab_escape(source),
            fstab_escape(target)
        );
        self.set("lxc.mount.entry", entry);
    }
}

/// Escapes a path for an fstab-style field (lxc parses mount entries with
/// getmntent, which undoes this).
fn fstab_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// Undoes the octal escapes of /proc/self/mountinfo.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let Some(d) = octal {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path as an lxc config value: UTF-8, on one line, without surrounding
/// blanks (lxc would trim them).
fn conf_path(path: &Path) -> Result<&str, ExecError> {
    let s = path
        .to_str()
        .ok_or_else(|| setup(format!("path {} is not UTF-8", path.display())))?;
    if s.chars().any(char::is_control) || s.trim() != s {
        return Err(setup(format!(
            "path {s:?} cannot be written into an lxc config"
        )));
    }
    Ok(s)
}

/// Container and image names: safe as a path component, a config value and
/// a cgroup name.
fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
}

fn no_controller(controller: &str) -> ExecError {
    setup(format!(
        "a {controller} limit is configured but this host has no {controller} cgroup controller"
    ))
}

fn setup(msg: impl Into<String>) -> ExecError {
    ExecError::Setup(msg.into())
}

fn ctx<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> ExecError + 'a {
    move |e| setup(format!("{what} {}: {e}", path.display()))
}

/// The `/etc` entries of the host to share with the default image.
fn host_etc_entries() -> Vec<String> {
    let mut entries: BTreeSet<String> = HOST_ETC.iter().map(|s| (*s).to_owned()).collect();
    if let Ok(dir) = fs::read_dir("/etc") {
        for entry in dir.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                if HOST_ETC_PREFIXES.iter().any(|p| name.starts_with(p)) && valid_name(name, 200) {
                    entries.insert(name.to_owned());
                }
            }
        }
    }
    entries.into_iter().collect()
}

fn ensure_dir(path: &Path, mode: u32) -> Result<(), ExecError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            fs::remove_file(path).map_err(ctx("replacing", path))?;
            fs::create_dir(path).map_err(ctx("creating", path))?;
        }
        Err(_) => fs::create_dir(path).map_err(ctx("creating", path))?,
    }
    // Explicitly, whatever the umask.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(ctx("chmod", path))
}

/// An (empty, if new) regular file: a mount point for a file.
fn ensure_file(path: &Path) -> Result<(), ExecError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Ok(meta) if meta.is_dir() => fs::remove_dir(path).map_err(ctx("replacing", path))?,
        Ok(_) => fs::remove_file(path).map_err(ctx("replacing", path))?,
        Err(_) => {}
    }
    write_atomic(path, "", 0o644)
}

fn ensure_symlink(path: &Path, target: &Path) -> Result<(), ExecError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if fs::read_link(path).ok().as_deref() == Some(target) {
                return Ok(());
            }
            fs::remove_file(path).map_err(ctx("replacing", path))?;
        }
        Ok(meta) if meta.is_dir() => fs::remove_dir(path).map_err(ctx("replacing", path))?,
        Ok(_) => fs::remove_file(path).map_err(ctx("replacing", path))?,
        Err(_) => {}
    }
    symlink(target, path).map_err(ctx("creating", path))
}

/// Writes a file through a temporary file and a rename, so that readers
/// (running containers) see the old or the new content, never half.
fn write_atomic(path: &Path, content: &str, mode: u32) -> Result<(), ExecError> {
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.kha-tmp"));
    fs::write(&tmp, content).map_err(ctx("writing", &tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(ctx("chmod", &tmp))?;
    fs::rename(&tmp, path).map_err(ctx("writing", path))
}

/// Gives a tree to the container's root. Symlinks are chowned themselves
/// and never followed, so a checkout cannot make us chown host files.
fn chown_tree(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    lchown(root, Some(uid), Some(gid))?;
    if !fs::symlink_metadata(root)?.is_dir() {
        return Ok(());
    }
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            lchown(&path, Some(uid), Some(gid))?;
            if entry.file_type()?.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(())
}

/// lxc sets the container up as the container's root, an unprivileged host
/// uid: every directory above `path` must let that uid through. Checked
/// here so that the job fails with a clear message rather than with an
/// empty log and exit status 1.
fn check_searchable(path: &Path, ids: IdMap) -> Result<(), ExecError> {
    let path = fs::canonicalize(path).map_err(ctx("resolving", path))?;
    for dir in path.ancestors().skip(1) {
        let meta = fs::metadata(dir).map_err(ctx("reading", dir))?;
        let mode = meta.mode();
        let ok = mode & 0o001 != 0
            || (ids.maps_uid(meta.uid()) && mode & 0o100 != 0)
            || (ids.maps_gid(meta.gid()) && mode & 0o010 != 0);
        if !ok {
            return Err(setup(format!(
                "{} is not searchable by the container's root (host uid {}); `chmod o+x {}` \
                 or move the builder's data elsewhere",
                dir.display(),
                ids.uid,
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Removes a file or directory tree; fine if it is not there.
fn remove_tree(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The scratch directory recorded for a leftover run, if it really is one
/// of ours: the marker is only trusted as far as the directory it names
/// holds this run's config.
fn leftover_scratch(marker: &Path, name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(fs::read_to_string(marker).ok()?.trim_end_matches('\n'));
    if !path.is_absolute() || path.parent().is_none() {
        return None;
    }
    let conf = fs::read_to_string(path.join("lxc.conf")).ok()?;
    let first = conf.lines().next()?;
    (first == format!("{CONF_HEADER}{name}")).then_some(path)
}

/// Removes the cgroups lxc made for a run (`lxc.payload.<name>`,
/// `lxc.monitor.<name>`, possibly with a `-<n>` suffix), which it leaves
/// behind when lxc-execute is killed. Looks at the top of each hierarchy
/// and one level down (where lxc nests them under a delegated cgroup).
/// Only empty cgroups can be removed; errors are ignored.
fn remove_cgroups(name: &str) {
    let ours = |file: &str| {
        ["lxc.payload.", "lxc.monitor."].iter().any(|prefix| {
            file.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|suffix| {
                    suffix.is_empty()
                        || suffix
                            .strip_prefix('-')
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
        })
    };
    for mount in Cgroups::read().mounts {
        let mut bases = vec![mount.clone()];
        if let Ok(entries) = fs::read_dir(&mount) {
            bases.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        for base in bases {
            let Ok(entries) = fs::read_dir(&base) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_str().is_some_and(ours) {
                    remove_cgroup_tree(&entry.path());
                }
            }
        }
    }
}

/// rmdir of a cgroup and its sub-cgroups, deepest first.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Runs an lxc tool with a clean environment and a time limit. `None` if
/// it could not run or did not finish in time (then it is killed).
fn run_tool(program: &str, args: &[&OsStr], timeout: Duration) -> Option<(ExitStatus, String)> {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", TOOL_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut stdout) = child.stdout.take() {
                    let _ = stdout.read_to_string(&mut out);
                }
                return Some((status, out));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The pid namespace of a process, if it still exists (zombies have none).
fn pid_ns(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// The pid namespace of a container's init: `None` if it is gone, or if it
/// is our own namespace, so that nothing here ever signals host processes
/// (as after a pid was reused).
fn container_ns(init: i32) -> Option<PathBuf> {
    let ns = pid_ns(init)?;
    (Some(&ns) != pid_ns(std::process::id() as i32).as_ref()).then_some(ns)
}

/// Every process in pid namespace `ns` except `init`.
fn ns_members(ns: &Path, init: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != init && pid_ns(*pid).as_deref() == Some(ns))
        .collect()
}

/// SIGKILL to a container's init, which makes the kernel kill everything in
/// its pid namespace; waits (a bounded time) for it to be gone.
fn kill_container(name: &str, init: i32, ns: &Path) -> Result<(), ExecError> {
    if container_ns(init).as_deref() == Some(ns) {
        let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
    }
    let until = Instant::now() + KILL_WAIT;
    while container_ns(init).as_deref() == Some(ns) {
        if Instant::now() >= until {
            return Err(setup(format!("container {name} still runs after SIGKILL")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Parent pid and state of a process, from /proc/<pid>/stat.
fn stat(pid: i32) -> Option<(i32, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold anything: skip past it.
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether `pid` is a live (not zombie) lxc-execute.
fn is_monitor(pid: u32) -> bool {
    let pid = pid as i32;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    comm.trim_end() == "lxc-execute" && stat(pid).is_some_and(|(_, state)| state != 'Z')
}

/// Live children of a process.
fn children(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|(ppid, state)| ppid == parent && state != 'Z'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Output};

    /// These tests run real containers: they need root and lxc. Set
    /// KHA_SKIP_LXC_TESTS=1 to skip them where there is neither.
    fn lxc_available() -> bool {
        if std::env::var_os("KHA_SKIP_LXC_TESTS").is_some() {
            eprintln!("KHA_SKIP_LXC_TESTS is set: skipping");
            return false;
        }
        assert!(
            nix::unistd::geteuid().is_root(),
            "the lxc executor tests need root and lxc (set KHA_SKIP_LXC_TESTS=1 to skip them)"
        );
        true
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
    fn job_runs_in_its_own_unprivileged_container() {
        if !lxc_available() {
            return;
        }
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
            .filter(|l| {
                !l.starts_with("PWD=") && !l.starts_with("OLDPWD=") && !l.starts_with("SHLVL=")
            })
            .collect();
        let mut expected: BTreeSet<&str> = JOB_ENV.iter().copied().collect();
        expected.insert("container=lxc");
        assert_eq!(env, expected, "environment");

        let written = run.run.workspace.join("out.txt");
        assert_eq!(fs::read_to_string(&written).expect("out.txt"), "written\n");
        assert_eq!(fs::metadata(&written).expect("meta").uid(), ids.uid);
    }

    #[test]
    fn output_is_the_scripts_byte_for_byte() {
        if !lxc_available() {
            return;
        }
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
    fn exit_status_is_the_scripts() {
        if !lxc_available() {
            return;
        }
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
    fn nothing_persists_outside_the_workspace() {
        if !lxc_available() {
            return;
        }
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
    fn limits_apply() {
        if !lxc_available() {
            return;
        }
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
    fn stop_terminates_politely() {
        if !lxc_available() {
            return;
        }
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
    fn stop_kills_after_grace() {
        if !lxc_available() {
            return;
        }
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
    fn stop_right_after_spawn() {
        if !lxc_available() {
            return;
        }
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
    fn network_on_shares_the_hosts() {
        if !lxc_available() {
            return;
        }
        let mut data = Data::new();
        data.exec.network = true;
        let run = data.run(
            "net",
            "readlink /proc/self/ns/net\nls /sys/class/net >/dev/null && echo sysfs\n",
        );
        let out = run.output();
        let host = fs::read_link("/proc/self/ns/net").expect("host ns");
        assert_eq!(text(&out.stdout), format!("{}\nsysfs\n", host.display()));
        assert_eq!(text(&out.stderr), "");
    }

    #[test]
    fn lxc_failures_stay_out_of_the_output() {
        if !lxc_available() {
            return;
        }
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
    fn cleanup_leftovers_removes_a_running_container() {
        if !lxc_available() {
            return;
        }
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
    fn missing_image_is_an_error() {
        if !lxc_available() {
            return;
        }
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
    fn images_are_labels_and_recreating_refreshes() {
        if !lxc_available() {
            return;
        }
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
        assert_eq!(
            data.exec.labels(),
            ["executor=lxc", "image=default", "image=erlang-26"]
        );
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
        ] {
            assert!(conf.lines().any(|l| l == line), "no {line:?} in\n{conf}");
        }
        assert!(conf.starts_with("# kha run kha-x-1\nlxc.log.file = /s/lxc.log\n"));
        exec.network = true;
        let v1 = Cgroups {
            v1: [("memory", "/nonexistent"), ("pids", "/x"), ("cpu", "/y")]
                .map(|(c, p)| (c.to_owned(), PathBuf::from(p)))
                .into(),
            ..Cgroups::default()
        };
        let conf = exec.run_config(&paths, ids, &v1).expect("config");
        for line in [
            "lxc.net.0.type = none",
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
}

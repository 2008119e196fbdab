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
//! image. Full Debian images (`debian.rs`: mmdebstrap, any architecture
//! Debian and qemu-user-static support, see `binfmt.rs`) have the same
//! shape with an empty `config`. `image.toml` (`meta.rs`) says what an
//! image is; an image directory may be a symbolic link to one kept
//! elsewhere (a cache shared by several builders).
//!
//! # Toolchains
//!
//! A run may get host directories (kerl installations, rustup
//! toolchains; see `crate::toolchain`) bind-mounted read-only at the same
//! path, so their own absolute paths work inside. lxc creates the mount
//! point, which needs a writable parent: the per-run tmpfs directories,
//! or `/opt`, which such a run gets as a fresh tmpfs when the image has
//! nothing there (`config::toolchain_mounts`).
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
//!   the run asks for network and the builder has [`LxcExecutor::job_net`]
//!   (`net`: a bridge with NAT that reaches neither the host nor the
//!   control node);
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

pub mod binfmt;
mod cgroups;
mod cleanup;
mod config;
pub mod debian;
mod idmap;
mod image;
pub mod meta;
pub mod net;
#[cfg(test)]
mod tests;

pub use debian::{create_debian, DebianSpec};
pub use image::{create_image, disk_usage, entries, remove_image, ImageEntry};

use super::{ExecError, Executor, JobRun};
use cgroups::Cgroups;
use cleanup::MARKER;
use config::{conf_path, hosts_file, toolchain_mounts, RunPaths};
use idmap::{check_searchable, chown_tree, IdMap};
use image::{ensure_dir, write_atomic};
use meta::ImageKind;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Default memory limit of a job: 2 GiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 2 << 30;
/// Default limit on the number of processes and threads of a job.
pub const DEFAULT_PIDS: u64 = 4096;

/// PATH for the lxc tools we run. Also decides whether lxc finds
/// `newuidmap` (see [`IdMap`]).
pub(super) const TOOL_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// PATH of `lxc-execute`: no shadow id-mapping tools (see `command`).
const LXC_EXECUTE_PATH: &str = "/usr/sbin:/sbin";
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
///
/// Then it reads the container's own cgroup counters (mounted read-only
/// in it, v2 or v1) and records in the driver's state file the limits the
/// job ran into, `limit memory <oom kills> <limit in bytes>` and `limit
/// pids <refused forks> <limit>`, so that the job's message says why it
/// died (`driver::outcome`). Shell built-ins only: no process is left to
/// fork.
const WRAPPER: &str = "trap : HUP INT TERM\n\
/bin/sh \"$0\"\n\
s=$?\n\
[ \"$PPID\" = 1 ] && kill -KILL -1 2>/dev/null\n\
c=/sys/fs/cgroup\n\
kha_key() { for f in $2; do [ -r \"$f\" ] && while read -r k v; do [ \"$k\" = \"$1\" ] && n=$v; done < \"$f\"; done; }\n\
kha_one() { for f in $1; do [ -r \"$f\" ] && read -r n < \"$f\"; done; }\n\
n=0; kha_key oom_kill \"$c/memory.events $c/memory/memory.oom_control\"; oom=$n\n\
n=0; kha_key max \"$c/pids.events $c/pids/pids.events\"; hit=$n\n\
if [ \"$oom\" != 0 ]; then n=max; kha_one \"$c/memory.max $c/memory/memory.limit_in_bytes\"; \
echo \"limit memory $oom $n\" >> \"${0%/*}/state\"; fi\n\
if [ \"$hit\" != 0 ]; then n=max; kha_one \"$c/pids.max $c/pids/pids.max\"; \
echo \"limit pids $hit $n\" >> \"${0%/*}/state\"; fi\n\
exit $s\n";

/// The file in a run's scratch directory where `stop` records the limits
/// the container had reached (`driver::LimitHit` lines).
pub const LIMITS_FILE: &str = "limits";

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
    /// The network runs that ask for it get (`net`); `None`: such runs
    /// are refused. Other runs have only their own loopback.
    pub job_net: Option<std::sync::Arc<net::JobNet>>,
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
            job_net: None,
            monitors: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn lxcpath(&self) -> Result<PathBuf, ExecError> {
        Ok(std::path::absolute(&self.lxcpath)?)
    }

    pub(super) fn monitor(&self, name: &str) -> Option<u32> {
        self.monitors.lock().ok()?.get(name).copied()
    }
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
        vec!["executor=lxc".to_owned()]
    }

    fn images(&self) -> Vec<crate::toolchain::Image> {
        use crate::toolchain::{otp, Arch, Image};
        let Some(native) = Arch::native() else {
            return vec![];
        };
        entries(&self.images)
            .into_iter()
            .map(|e| match e.meta {
                Err(why) => Image {
                    name: e.name,
                    arch: native,
                    about: String::new(),
                    unusable: Some(why),
                    toolchains: vec![],
                },
                Ok(m) => {
                    let arch = m.arch();
                    let unusable = match arch {
                        None => Some(format!("unknown architecture {:?}", m.arch)),
                        Some(a) if !a.is_native() => binfmt::problem(a.qemu),
                        Some(_) => None,
                    };
                    // A quick image's /usr is the host's.
                    let root = match m.kind {
                        ImageKind::Quick => PathBuf::from("/"),
                        ImageKind::Debian => e.dir.join("rootfs"),
                    };
                    Image {
                        name: e.name,
                        arch: arch.unwrap_or(native),
                        about: m.describe(),
                        unusable,
                        toolchains: otp::in_rootfs(&root).into_iter().collect(),
                    }
                }
            })
            .collect()
    }

    fn image_root(&self, image: &str) -> Option<PathBuf> {
        let e = entries(&self.images)
            .into_iter()
            .find(|e| e.name == image)?;
        // A quick image's /usr is the host's.
        Some(match e.meta.ok()?.kind {
            ImageKind::Quick => PathBuf::from("/"),
            ImageKind::Debian => e.dir.join("rootfs"),
        })
    }

    fn mount_problem(&self, path: &Path) -> Option<String> {
        let ids = match IdMap::for_host() {
            Ok(ids) => ids,
            Err(e) => return Some(e.to_string()),
        };
        check_searchable(path, ids).err().map(|e| e.to_string())
    }

    fn command(&self, run: &JobRun) -> Result<Command, ExecError> {
        if !valid_name(&run.name, 200) {
            return Err(setup(format!("invalid run name {:?}", run.name)));
        }
        let image = image::find(&self.images, &run.image)?;
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

        let rootfs = image.join("rootfs");
        let (opt_tmpfs, mounts) = toolchain_mounts(
            &run.mounts,
            |rel| image::is_real_dir(&rootfs, rel),
            image::is_empty_dir(&rootfs.join("opt")),
        )
        .map_err(|e| setup(format!("image {}: {e}", run.image)))?;
        for (path, _) in &mounts {
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
            opt_tmpfs,
            mounts,
            limits: self.limits(run),
            net: match (&self.job_net, run.network) {
                (_, false) => None,
                (Some(net), true) => Some(net.lease(&run.name)?),
                (None, true) => {
                    return Err(setup(
                        "the job asks for network and this builder gives jobs none (job_network = false)",
                    ))
                }
            },
        };
        let conf = self.run_config(&paths, ids, &cgroups)?;
        let conf_file = paths.scratch.join("lxc.conf");
        write_atomic(&conf_file, &conf, 0o600)?;

        // lxc maps the container's ids with shadow's newuidmap and
        // newgidmap when it finds them on its PATH: a `sh -c` and the tool
        // for each map, four processes of every run. Run as root, it
        // writes the maps itself (the range is still root's own, from
        // /etc/subuid, see `IdMap`), so lxc-execute gets a PATH without
        // them. The job's PATH is the config's (`lxc.environment`).
        let mut cmd = Command::new(tool_path("lxc-execute"));
        cmd.env_clear()
            .env("PATH", LXC_EXECUTE_PATH)
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

    fn stop(&self, run: &JobRun, grace: Duration) -> Result<(), ExecError> {
        // In the scratch directory, which the container cannot write
        // (its workspace could hold a symlink anywhere).
        let reached = cgroups::limits_reached(&run.name);
        if !reached.is_empty() {
            let text: String = reached.iter().map(|l| format!("{l}\n")).collect();
            if let Err(e) = fs::write(run.scratch.join(LIMITS_FILE), text) {
                tracing::debug!(run = %run.name, error = %e, "limits reached not recorded");
            }
        }
        self.stop_run(&run.name, grace)
    }

    fn cleanup(&self, run: &JobRun) -> Result<(), ExecError> {
        if !valid_name(&run.name, 200) {
            return Err(setup(format!("invalid run name {:?}", run.name)));
        }
        let removed = self.remove_run(&run.name, Some(&run.scratch));
        if let Some(net) = &self.job_net {
            net.release(&run.name);
        }
        removed
    }

    /// Must run before this builder starts any job: every `kha-` run under
    /// `lxcpath` is considered left over.
    fn cleanup_leftovers(&self) -> Result<usize, ExecError> {
        self.remove_leftovers()
    }

    fn diagnose(&self, run: &JobRun) -> Vec<String> {
        lxc_errors(run)
    }
}

/// Where `tool` is on [`TOOL_PATH`], if it is installed.
pub(super) fn find_tool(tool: &str) -> Option<PathBuf> {
    TOOL_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.exists())
}

/// Where `tool` is on [`TOOL_PATH`] (its bare name if nowhere, for the
/// error of the spawn to name it).
pub(super) fn tool_path(tool: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| PathBuf::from(tool))
}

/// Container and image names: safe as a path component, a config value and
/// a cgroup name.
pub(super) fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub(super) fn setup(msg: impl Into<String>) -> ExecError {
    ExecError::Setup(msg.into())
}

pub(super) fn ctx<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> ExecError + 'a {
    move |e| setup(format!("{what} {}: {e}", path.display()))
}

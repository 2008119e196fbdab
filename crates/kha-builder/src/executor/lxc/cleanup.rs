//! Process and container cleanup: finding a run's container, stopping
//! and killing it, removing a run, and removing what an earlier life of
//! the builder left behind.

use super::cgroups::remove_cgroups;
use super::config::CONF_HEADER;
use super::{setup, valid_name, ExecError, LxcExecutor, TOOL_PATH};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// File in `<lxcpath>/<name>/` holding the run's scratch directory.
pub(super) const MARKER: &str = "kha-scratch";
/// All run names start with this; `cleanup_leftovers` ignores anything else.
pub(super) const RUN_PREFIX: &str = "kha-";
/// How long to wait for one lxc tool (`lxc-info`, `lxc-ls`) to answer.
pub(super) const TOOL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for a container to vanish after SIGKILL.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(1);

impl LxcExecutor {
    /// Host pid of the container's init, if it is running: asks lxc, or,
    /// if lxc's monitor does not answer, looks for the child of the
    /// `lxc-execute` we were told about.
    pub(super) fn find_init(&self, name: &str, lxcpath: &Path) -> Option<i32> {
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
    pub(super) fn kill_now(&self, name: &str, lxcpath: &Path) -> Result<(), ExecError> {
        if let Some(init) = self.find_init(name, lxcpath) {
            if let Some(ns) = container_ns(init) {
                return kill_container(name, init, &ns);
            }
        }
        Ok(())
    }

    /// Removes one run's leftovers: container, cgroups, marker, scratch.
    /// `scratch` is only removed if given.
    pub(super) fn remove_run(&self, name: &str, scratch: Option<&Path>) -> Result<(), ExecError> {
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
                signal(monitor as i32, Signal::SIGKILL);
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

    /// SIGTERM to every process of the container (lxc's own `lxc-stop`
    /// would have lxc's init do it, but that init SIGKILLs everything one
    /// second later whatever the grace), SIGKILL to its init once `grace`
    /// has passed. Returns within `grace` + ~2 s (1 s for lxc to answer, 1 s
    /// for the kernel to reap).
    pub(super) fn stop_run(&self, name: &str, grace: Duration) -> Result<(), ExecError> {
        let start = Instant::now();
        let lxcpath = self.lxcpath()?;
        let (init, ns) = loop {
            if let Some(init) = self.find_init(name, &lxcpath) {
                if let Some(ns) = container_ns(init) {
                    break (init, ns);
                }
            }
            // No container: fine, unless its lxc-execute is still there,
            // i.e. still starting it (or wedged).
            let Some(monitor) = self.monitor(name).filter(|m| is_monitor(*m)) else {
                return Ok(());
            };
            if start.elapsed() >= grace {
                // The container, if any, dies with it: lxc gives it a
                // parent-death signal.
                signal(monitor as i32, Signal::SIGKILL);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        // Signal what it forks meanwhile too, until it is gone or time is up.
        let mut termed = HashSet::new();
        loop {
            for pid in ns_members(&ns, init) {
                if termed.insert(pid) {
                    signal(pid, Signal::SIGTERM);
                }
            }
            if container_ns(init).as_ref() != Some(&ns) {
                return Ok(());
            }
            if start.elapsed() >= grace {
                return kill_container(name, init, &ns);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Removes every `kha-` run under `lxcpath`: containers still running,
    /// their cgroups, markers and scratch directories. Returns how many.
    pub(super) fn remove_leftovers(&self) -> Result<usize, ExecError> {
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

/// Sends `sig` to `pid`. A process that is already gone (ESRCH) is what
/// every caller wants anyway, so failures are only traced.
fn signal(pid: i32, sig: Signal) {
    if let Err(e) = kill(Pid::from_raw(pid), sig) {
        tracing::trace!(pid, ?sig, error = %e, "kill");
    }
}

/// Removes a file or directory tree; fine if it is not there.
pub(super) fn remove_tree(path: &Path) -> io::Result<()> {
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
pub(super) fn leftover_scratch(marker: &Path, name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(fs::read_to_string(marker).ok()?.trim_end_matches('\n'));
    if !path.is_absolute() || path.parent().is_none() {
        return None;
    }
    let conf = fs::read_to_string(path.join("lxc.conf")).ok()?;
    let first = conf.lines().next()?;
    (first == format!("{CONF_HEADER}{name}")).then_some(path)
}

/// Runs an lxc tool with a clean environment and a time limit. `None` if
/// it could not run or did not finish in time (then it is killed).
pub(super) fn run_tool(
    program: &str,
    args: &[&OsStr],
    timeout: Duration,
) -> Option<(ExitStatus, String)> {
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
                    if let Err(e) = stdout.read_to_string(&mut out) {
                        tracing::debug!(program, error = %e, "cannot read the tool's output");
                    }
                }
                return Some((status, out));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                // Timed out: kill and reap it (it may have just exited).
                if let Err(e) = child.kill() {
                    tracing::debug!(program, error = %e, "cannot kill the tool");
                }
                if let Err(e) = child.wait() {
                    tracing::debug!(program, error = %e, "cannot reap the tool");
                }
                return None;
            }
        }
    }
}

/// The pid namespace of a process, if it still exists (zombies have none).
pub(super) fn pid_ns(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// The pid namespace of a container's init: `None` if it is gone, or if it
/// is our own namespace, so that nothing here ever signals host processes
/// (as after a pid was reused).
pub(super) fn container_ns(init: i32) -> Option<PathBuf> {
    let ns = pid_ns(init)?;
    (Some(&ns) != pid_ns(std::process::id() as i32).as_ref()).then_some(ns)
}

/// Every process in pid namespace `ns` except `init`.
pub(super) fn ns_members(ns: &Path, init: i32) -> Vec<i32> {
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
pub(super) fn kill_container(name: &str, init: i32, ns: &Path) -> Result<(), ExecError> {
    if container_ns(init).as_deref() == Some(ns) {
        signal(init, Signal::SIGKILL);
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
pub(super) fn stat(pid: i32) -> Option<(i32, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold anything: skip past it.
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether `pid` is a live (not zombie) lxc-execute.
pub(super) fn is_monitor(pid: u32) -> bool {
    let pid = pid as i32;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    comm.trim_end() == "lxc-execute" && stat(pid).is_some_and(|(_, state)| state != 'Z')
}

/// Live children of a process.
pub(super) fn children(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|(ppid, state)| ppid == parent && state != 'Z'))
        .collect()
}

//! Processes the tests start: where the binaries are, a child killed with
//! everything it started when dropped, waiting for a condition, and each
//! test's own temp dir.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where cargo put the binaries (next to this test's own executable).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test's own temp dir. lxc needs every directory above the workspaces
/// to be searchable, so it is 0755.
pub fn test_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the temp dir");
    dir
}

/// A child process. Dropping it kills it and every process it started that
/// still runs under it (a server's per-connection children), so a failing
/// test leaves nothing behind.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin and stdout closed and stderr in `log`.
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        Proc::spawn_keeping_stdout(cmd.stdout(Stdio::null()), log)
    }

    /// Spawns `cmd` with stdin closed, stderr in `log` and stdout as `cmd`
    /// has it.
    pub fn spawn_keeping_stdout(cmd: &mut Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).expect("log file");
        adopt_orphans();
        let child = cmd
            .stdin(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        Proc { child, log }
    }

    /// SIGKILLs the process alone, as a crash would: what it started lives on.
    pub fn kill9(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("kill {}: {e}", self.child.id());
        }
        if let Err(e) = self.child.wait() {
            eprintln!("wait {}: {e}", self.child.id());
        }
    }

    /// SIGKILLs the process and every process below it, and reaps them all.
    pub fn kill_tree(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let root = pid(self.child.id());
        // Stopped, it forks nothing new while its tree is collected.
        send(root, Signal::SIGSTOP);
        let tree = descendants(root);
        for p in &tree {
            send(*p, Signal::SIGKILL);
        }
        self.kill9();
        reap(&tree);
    }

    pub fn signal(&self, sig: Signal) {
        send(pid(self.child.id()), sig);
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_tree();
    }
}

fn pid(id: u32) -> Pid {
    Pid::from_raw(i32::try_from(id).expect("pid fits i32"))
}

fn send(p: Pid, sig: Signal) {
    if let Err(e) = kill(p, sig) {
        if e != nix::errno::Errno::ESRCH {
            eprintln!("kill -{sig} {p}: {e}");
        }
    }
}

/// Makes this test process the reaper of orphans below it: a killed
/// server's children are then reaped here (by `reap`) instead of staying
/// zombies under an init that may not reap them.
fn adopt_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            eprintln!("cannot become the reaper of orphaned children: {e}");
        }
    });
}

/// Every live process below `root`, from /proc.
fn descendants(root: Pid) -> Vec<Pid> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent_of(p) {
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut out = vec![];
    let mut todo = vec![root.as_raw()];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push(Pid::from_raw(c));
            todo.push(c);
        }
    }
    out
}

/// The parent pid in /proc/PID/stat (the field after the command's `)`).
fn parent_of(p: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Reaps killed processes once they are orphaned to this process; those
/// their own parent reaped are gone from /proc already.
fn reap(pids: &[Pid]) {
    let until = Instant::now() + Duration::from_secs(5);
    let mut left: Vec<Pid> = pids.to_vec();
    while !left.is_empty() && Instant::now() < until {
        left.retain(|&p| match waitpid(p, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => true,
            Ok(_) => false,
            Err(_) => Path::new(&format!("/proc/{p}")).exists(),
        });
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

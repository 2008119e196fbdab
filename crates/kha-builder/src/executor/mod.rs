//! Executors run a job's driver script somewhere: in an ephemeral lxc
//! container (the default, for untrusted code) or as a plain host process
//! (trusted local use only).
//!
//! The job runner owns the process: an executor only says which command to
//! spawn for a prepared workspace, how to stop it, and how to clean up after
//! it. Output is whatever the spawned command writes to stdout and stderr.

pub mod host;
pub mod lxc;

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("image {0:?} does not exist on this builder (create it with `kha-builder image create {0}`)")]
    NoImage(String),
    #[error("{0}")]
    Setup(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// One job run, as the executor sees it.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// Unique name for this run (job and epoch), usable as a container name:
    /// `kha-<job>-<epoch>`.
    pub name: String,
    /// Host directory holding the checkout; the driver script is at
    /// `<workspace>/.kha/run.sh` and changes to its parent directory itself.
    pub workspace: PathBuf,
    /// Base image name (lxc) — ignored by the host executor.
    pub image: String,
    /// Scratch directory owned by the executor for this run (configs, …);
    /// removed by `cleanup`.
    pub scratch: PathBuf,
    /// Host directories (toolchains) the run sees read-only at the same
    /// path.
    pub mounts: Vec<PathBuf>,
    /// Its own limits (its project asked for some); `None`: the
    /// executor's defaults.
    pub limits: Option<RunLimits>,
    /// Its project asks for network (lxc: `lxc::net`).
    pub network: bool,
}

/// A run's resource limits (lxc); `None` in a field is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Thousandths of a CPU.
    pub cpu_millis: Option<u64>,
}

pub trait Executor: Send + Sync + 'static {
    /// "lxc" or "host".
    fn kind(&self) -> &'static str;

    /// Labels this executor adds to the builder's own (`executor=lxc`).
    fn labels(&self) -> Vec<String>;

    /// The images jobs can run in, with their architecture and the
    /// toolchains inside them (see `crate::toolchain`).
    fn images(&self) -> Vec<crate::toolchain::Image>;

    /// Prepares the run and returns the command that runs the driver
    /// script. The caller sets stdio, spawns it and waits for it.
    fn command(&self, run: &JobRun) -> Result<std::process::Command, ExecError>;

    /// The directory holding what a run in `image` sees as `/usr` (as
    /// `<root>/usr`), if the image exists.
    fn image_root(&self, image: &str) -> Option<PathBuf>;

    /// Why a host directory (a toolchain) cannot be mounted into runs, if
    /// it cannot.
    fn mount_problem(&self, _path: &std::path::Path) -> Option<String> {
        None
    }

    /// Told the pid of the spawned command.
    fn spawned(&self, _run: &JobRun, _pid: u32) {}

    /// Stops a run: politely, then by force once `grace` has passed. Blocking.
    fn stop(&self, run: &JobRun, grace: Duration) -> Result<(), ExecError>;

    /// Removes everything the run left behind (container, scratch). Blocking;
    /// called whatever happened.
    fn cleanup(&self, run: &JobRun) -> Result<(), ExecError>;

    /// Why a run's command ended before the driver started, from the
    /// executor's own records (lxc's log), for the job's log.
    fn diagnose(&self, _run: &JobRun) -> Vec<String> {
        Vec::new()
    }

    /// Removes leftovers of runs from an earlier life of this builder
    /// (a crash, a kill -9). Returns how many it removed. Blocking.
    fn cleanup_leftovers(&self) -> Result<usize, ExecError>;
}

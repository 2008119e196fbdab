//! The host-process executor: runs the driver script as a child process of
//! the builder, with the builder's own privileges. For trusted local
//! development only: the job can read and change anything the builder can.

use super::{ExecError, Executor, JobRun};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct HostExecutor {
    /// Process group of each started run, so `stop` can signal the whole
    /// tree the script started.
    groups: Mutex<HashMap<String, i32>>,
}

impl HostExecutor {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Executor for HostExecutor {
    fn kind(&self) -> &'static str {
        "host"
    }

    fn labels(&self) -> Vec<String> {
        // Jobs naming the default image run here as plain processes.
        vec!["executor=host".into()]
    }

    /// Jobs naming the default image run here as plain processes, with
    /// the host's own toolchains.
    fn images(&self) -> Vec<crate::toolchain::Image> {
        let Some(arch) = crate::toolchain::Arch::native() else {
            return vec![];
        };
        vec![crate::toolchain::Image {
            name: kha_core::spec::DEFAULT_IMAGE.into(),
            arch,
            about: "the host itself, host executor".into(),
            unusable: None,
            toolchains: crate::toolchain::otp::in_rootfs(std::path::Path::new("/"))
                .into_iter()
                .collect(),
        }]
    }

    fn image_root(&self, _image: &str) -> Option<std::path::PathBuf> {
        Some("/".into())
    }

    fn command(&self, run: &JobRun) -> Result<Command, ExecError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg(run.workspace.join(".kha/run.sh"))
            .current_dir(&run.workspace)
            .process_group(0);
        Ok(cmd)
    }

    fn spawned(&self, run: &JobRun, pid: u32) {
        // The command is its own process group leader: its pid is the group.
        if let Ok(mut g) = self.groups.lock() {
            g.insert(run.name.clone(), pid as i32);
        }
    }

    fn stop(&self, run: &JobRun, grace: Duration) -> Result<(), ExecError> {
        let pgid = match self.groups.lock() {
            Ok(g) => g.get(&run.name).copied(),
            Err(_) => None,
        };
        let Some(pgid) = pgid else { return Ok(()) };
        let pg = Pid::from_raw(pgid);
        if killpg(pg, Signal::SIGTERM).is_err() {
            return Ok(()); // already gone
        }
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if killpg(pg, None).is_err() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(pg, Signal::SIGKILL);
        Ok(())
    }

    fn cleanup(&self, run: &JobRun) -> Result<(), ExecError> {
        if let Ok(mut g) = self.groups.lock() {
            if let Some(pgid) = g.remove(&run.name) {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
        match std::fs::remove_dir_all(&run.scratch) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn cleanup_leftovers(&self) -> Result<usize, ExecError> {
        Ok(0)
    }
}

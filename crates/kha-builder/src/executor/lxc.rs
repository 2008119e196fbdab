//! The lxc executor: one ephemeral container per job run. (Being written.)

use super::{ExecError, Executor, JobRun};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct LxcExecutor {
    /// Where images live: `<images>/<name>/rootfs`.
    pub images: PathBuf,
}

impl LxcExecutor {
    pub fn new(images: PathBuf) -> Self {
        Self { images }
    }
}

/// Creates the named base image under `images` quickly and with no download.
pub fn create_image(images: &std::path::Path, name: &str) -> Result<PathBuf, ExecError> {
    let _ = (images, name);
    Err(ExecError::Setup("not written yet".into()))
}

impl Executor for LxcExecutor {
    fn kind(&self) -> &'static str {
        "lxc"
    }
    fn labels(&self) -> Vec<String> {
        vec!["executor=lxc".into()]
    }
    fn command(&self, run: &JobRun) -> Result<Command, ExecError> {
        Err(ExecError::NoImage(run.image.clone()))
    }
    fn stop(&self, _run: &JobRun, _grace: Duration) -> Result<(), ExecError> {
        Ok(())
    }
    fn cleanup(&self, _run: &JobRun) -> Result<(), ExecError> {
        Ok(())
    }
    fn cleanup_leftovers(&self) -> Result<usize, ExecError> {
        Ok(0)
    }
}

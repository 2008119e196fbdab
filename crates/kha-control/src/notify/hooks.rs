//! Control-node hooks: `pre-build` (may refuse a build), `post-build` and
//! `on-state-change`, executables in the hooks directory.

use super::{Delivery, Failure, Sent};
use std::path::PathBuf;

pub struct Hooks {
    pub dir: Option<PathBuf>,
}

impl Hooks {
    pub fn new(cfg: &super::NotifyConfig) -> Hooks {
        Hooks {
            dir: cfg.hooks_dir.clone(),
        }
    }

    /// The hook's executable, if the hooks directory has it.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        let p = self.dir.as_ref()?.join(name);
        p.is_file().then_some(p)
    }

    pub async fn send(&self, _d: &Delivery) -> Result<Sent, Failure> {
        Err(Failure::Permanent("hooks are not built yet".into()))
    }
}

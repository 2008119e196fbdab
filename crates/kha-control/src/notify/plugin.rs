//! Notifier plugins: `kha-notify-NAME` executables given the notice as JSON.

use super::{Delivery, Failure, Sent};
use std::path::PathBuf;

pub struct Plugins {
    pub path: Vec<PathBuf>,
}

impl Plugins {
    pub fn new(cfg: &super::NotifyConfig) -> Plugins {
        Plugins {
            path: cfg.plugin_path.clone(),
        }
    }

    /// Whether `kha-notify-NAME` exists on the plugin path.
    pub fn exists(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub fn find(&self, name: &str) -> Option<PathBuf> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        self.path
            .iter()
            .map(|d| d.join(format!("kha-notify-{name}")))
            .find(|p| p.is_file())
    }

    pub async fn send(&self, _d: &Delivery) -> Result<Sent, Failure> {
        Err(Failure::Permanent("plugins are not built yet".into()))
    }
}

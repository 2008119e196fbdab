//! The builder's settings: a TOML file (every key optional), overridden by
//! flags and `KHA_…` environment variables in `main.rs`.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// An ephemeral lxc container per job (the default).
    Lxc,
    /// Plain host processes: for trusted local use only.
    Host,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The control node's gRPC address.
    pub control: String,
    /// Identity, mirrors, workspaces, spools and images.
    pub data_dir: PathBuf,
    /// Where images are; default `<data_dir>/images`.
    pub images_dir: Option<PathBuf>,
    /// Shown in `kha builder list`.
    pub name: String,
    /// Jobs run at once.
    pub slots: u32,
    /// Extra `key=value` labels jobs can require.
    pub labels: Vec<String>,
    pub executor: ExecutorKind,
    /// Container memory limit in MiB (lxc); 0: none.
    pub memory_mib: u64,
    /// Container process (and thread) limit (lxc); 0: none.
    pub pids: u64,
    /// CPU limit of each container, in CPUs (1.5: one and a half); 0:
    /// none. Absent: the host's CPUs shared out between the slots, at
    /// least one CPU each ([`Config::cpu_millis`]).
    pub cpus: Option<f64>,
    /// Size cap in MiB of the tmpfs the builder keeps its jobs'
    /// workspaces on (shared by its slots); 0: on disk
    /// (`workspace::tmpfs`).
    pub workspace_tmpfs_mib: u64,
    /// Extra CA certificate (PEM) to trust for an `https://` control node.
    pub ca: Option<PathBuf>,
    /// Directory of builder hooks (`environment`, `pre-checkout`,
    /// `post-checkout`, `pre-command`, `post-command`, `pre-exit`), run on
    /// this host around each job; absent: none.
    pub hooks_dir: Option<PathBuf>,
    /// A builder hook still running after this long is killed.
    pub hook_timeout_secs: u64,
    /// With less than this many MiB free in `data_dir` (checkouts,
    /// workspaces, log spools), the builder takes no new job, and says so
    /// in its log, until there is again; 0: it takes jobs until a checkout
    /// fails. (A job that fills the disk itself fails on its own command.)
    pub min_free_mib: u64,
    /// The host's toolchains jobs can ask for (`[toolchains]`).
    pub toolchains: ToolchainConfig,
}

/// `[toolchains]`: where the host's toolchains are.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ToolchainConfig {
    /// Also find what kerl (`kerl list installations`, `~/.kerl`) and
    /// rustup (`$RUSTUP_HOME/toolchains`) know of.
    pub discover: bool,
    /// Directories of kerl installations (or installations themselves).
    pub kerl: Vec<PathBuf>,
    /// rustup `toolchains` directories (or toolchains themselves).
    pub rustup: Vec<PathBuf>,
}

impl Default for ToolchainConfig {
    fn default() -> Self {
        ToolchainConfig {
            discover: true,
            kerl: vec![],
            rustup: vec![],
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            control: "http://127.0.0.1:7700".into(),
            data_dir: PathBuf::from("/var/lib/kha-builder"),
            images_dir: None,
            name: hostname(),
            slots: 2,
            labels: vec![],
            executor: ExecutorKind::Lxc,
            memory_mib: 2048,
            pids: 4096,
            cpus: None,
            workspace_tmpfs_mib: crate::workspace::tmpfs::DEFAULT_TMPFS_MIB,
            ca: None,
            hooks_dir: None,
            hook_timeout_secs: 600,
            min_free_mib: 64,
            toolchains: ToolchainConfig::default(),
        }
    }
}

impl Config {
    /// Where images are.
    pub fn images(&self) -> PathBuf {
        self.images_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("images"))
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if c.cpus.is_some_and(|n| !n.is_finite() || n < 0.0) {
            return Err(format!(
                "cpus = {:?}: a number of CPUs, 0 for no limit",
                c.cpus.unwrap_or_default()
            ));
        }
        Ok(c)
    }

    /// Each job's CPU limit in thousandths of a CPU, if any: `cpus`, or by
    /// default the host's CPUs divided by the slots, at least one CPU. A
    /// job then cannot take the CPUs its neighbours are owed, and a fork
    /// bomb in one job leaves the host the rest (measured in the sandbox
    /// tests).
    pub fn cpu_millis(&self) -> Option<u64> {
        let cpus = match self.cpus {
            Some(n) => n,
            None => {
                let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                (host / f64::from(self.slots.max(1))).max(1.0)
            }
        };
        let millis = (cpus * 1000.0).round() as u64;
        (millis > 0).then_some(millis)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "builder".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let c = Config::from_toml(include_str!("../../../deploy/builder.toml")).unwrap();
        assert_eq!(c.slots, 2);
        assert_eq!(c.executor, ExecutorKind::Lxc);
        assert_eq!((c.hooks_dir, c.hook_timeout_secs), (None, 600));
        assert_eq!(c.workspace_tmpfs_mib, Config::default().workspace_tmpfs_mib);
        assert!(Config::from_toml("slot = 1").is_err());
        assert!(c.toolchains.discover);
        assert_eq!(c.toolchains.kerl, [PathBuf::from("/opt/kerl")]);
        assert!(Config::from_toml("[toolchains]\nkerl = [\"/a\"]\nrust = []\n").is_err());
    }
}

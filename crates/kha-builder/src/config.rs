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
    /// The most a project may ask for its jobs (`kha project set
    /// --memory-mib/--pids/--cpus`); absent: the default above (a project
    /// can lower the limits, not raise them); 0: no maximum.
    pub max_memory_mib: Option<u64>,
    pub max_pids: Option<u64>,
    pub max_cpus: Option<f64>,
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
    /// Runs jobs whose project asks for network (lxc: a bridge of this
    /// builder's own with NAT, `executor::lxc::net`); false: refuses them.
    pub job_network: bool,
    /// The bridge of those jobs; two builders on one host need two.
    pub job_bridge: String,
    /// Its /24: the bridge is `.1`, jobs `.2` to `.254`.
    pub job_subnet: String,
    /// The host's toolchains jobs can ask for (`[toolchains]`).
    pub toolchains: ToolchainConfig,
    /// Where `/metrics` is served ("127.0.0.1:9101"); empty: nowhere.
    pub metrics_listen: String,
    /// `/metrics` answers only `Authorization: Bearer <this>`; empty:
    /// anyone who reaches `metrics_listen`.
    pub metrics_token: kha_core::Secret,
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
            max_memory_mib: None,
            max_pids: None,
            max_cpus: None,
            workspace_tmpfs_mib: crate::workspace::tmpfs::DEFAULT_TMPFS_MIB,
            ca: None,
            hooks_dir: None,
            hook_timeout_secs: 600,
            min_free_mib: 64,
            job_network: true,
            job_bridge: "kha-jobs0".into(),
            job_subnet: "10.213.0.0/24".into(),
            toolchains: ToolchainConfig::default(),
            metrics_listen: String::new(),
            metrics_token: Default::default(),
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
        for (key, v) in [("cpus", c.cpus), ("max_cpus", c.max_cpus)] {
            if v.is_some_and(|n| !n.is_finite() || n < 0.0) {
                return Err(format!(
                    "{key} = {:?}: a number of CPUs, 0 for no limit",
                    v.unwrap_or_default()
                ));
            }
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

/// One limit of a job: what its project asked (0: nothing) up to `max`
/// (`None`: no maximum), else the builder's `default`; and the maximum when
/// it cut what was asked.
fn one_limit(asked: u64, default: Option<u64>, max: Option<u64>) -> (Option<u64>, Option<u64>) {
    match (asked, max) {
        (0, _) => (default, None),
        (a, Some(m)) if a > m => (Some(m), Some(m)),
        (a, _) => (Some(a), None),
    }
}

impl Config {
    /// The limits a job runs with when its project asks for some, and a
    /// line for its log for each this builder's maximum cut.
    pub fn job_limits(
        &self,
        asked: kha_core::limits::JobLimits,
    ) -> (crate::executor::RunLimits, Vec<String>) {
        let nonzero = |v: u64| (v > 0).then_some(v);
        let memory_default = nonzero(self.memory_mib);
        let pids_default = nonzero(self.pids);
        let cpu_default = self.cpu_millis();
        // Absent: the default is the maximum; 0: none.
        let max_memory = self.max_memory_mib.map_or(memory_default, nonzero);
        let max_pids = self.max_pids.map_or(pids_default, nonzero);
        let max_cpu = self
            .max_cpus
            .map_or(cpu_default, |c| nonzero((c * 1000.0).round() as u64));
        let (memory, memory_cut) = one_limit(asked.memory_mib, memory_default, max_memory);
        let (pids, pids_cut) = one_limit(asked.pids, pids_default, max_pids);
        let (cpu, cpu_cut) = one_limit(asked.cpu_millis, cpu_default, max_cpu);
        let mut notes = vec![];
        if let Some(m) = memory_cut {
            notes.push(format!(
                "the project asks for {} MiB of memory; this builder gives at most {m} MiB",
                asked.memory_mib
            ));
        }
        if let Some(m) = pids_cut {
            notes.push(format!(
                "the project asks for {} processes; this builder gives at most {m}",
                asked.pids
            ));
        }
        if let Some(m) = cpu_cut {
            notes.push(format!(
                "the project asks for {} CPU; this builder gives at most {}",
                asked.cpu_millis as f64 / 1000.0,
                m as f64 / 1000.0
            ));
        }
        let limits = crate::executor::RunLimits {
            memory_bytes: memory.map(|m| m << 20),
            pids,
            cpu_millis: cpu,
        };
        (limits, notes)
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

    #[test]
    fn a_project_gets_what_it_asks_up_to_the_builders_maximum() {
        use kha_core::limits::JobLimits;
        let c = Config::from_toml("cpus = 1\nmax_memory_mib = 4096\nmax_pids = 0\n").unwrap();
        let ask = |memory_mib, pids, cpu_millis| {
            c.job_limits(JobLimits {
                memory_mib,
                pids,
                cpu_millis,
                network: false,
            })
        };
        // Nothing asked: the defaults.
        let (l, notes) = ask(0, 0, 0);
        assert_eq!(
            (l.memory_bytes, l.pids, l.cpu_millis, notes.len()),
            (Some(2048 << 20), Some(4096), Some(1000), 0)
        );
        // Less, or more up to the maximum; no maximum of processes.
        let (l, notes) = ask(4096, 100_000, 500);
        assert_eq!(
            (l.memory_bytes, l.pids, l.cpu_millis, notes.len()),
            (Some(4096 << 20), Some(100_000), Some(500), 0)
        );
        // Past the maximum (the default, for CPUs): cut, and said.
        let (l, notes) = ask(8192, 0, 4000);
        assert_eq!(
            (l.memory_bytes, l.cpu_millis),
            (Some(4096 << 20), Some(1000))
        );
        assert_eq!(
            notes,
            [
                "the project asks for 8192 MiB of memory; this builder gives at most 4096 MiB",
                "the project asks for 4 CPU; this builder gives at most 1"
            ]
        );
        assert!(Config::from_toml("max_cpus = -1").is_err());
    }
}

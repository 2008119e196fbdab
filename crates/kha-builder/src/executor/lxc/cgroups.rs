//! cgroups and resource limits: which controllers this host has, the
//! limit lines of a run's config, and removing the cgroups lxc leaves
//! behind.

use super::config::Conf;
use super::{setup, ExecError, LxcExecutor};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Which cgroup controllers are where on this host.
#[derive(Debug, Default)]
pub(super) struct Cgroups {
    /// Controllers on a cgroup v1 hierarchy, with its mount point.
    pub(super) v1: HashMap<String, PathBuf>,
    /// Controllers on the cgroup v2 hierarchy (none in a hybrid layout
    /// that leaves it empty, as Debian's does by default).
    pub(super) v2: HashSet<String>,
    /// Mount points of every cgroup hierarchy, v1 and v2.
    pub(super) mounts: Vec<PathBuf>,
}

use crate::executor::{JobRun, RunLimits as Limits};

impl LxcExecutor {
    /// This executor's limits, for runs without their own.
    pub(super) fn default_limits(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes,
            pids: self.pids,
            cpu_millis: self.cpu_millis,
        }
    }

    /// The run's own limits, else this executor's.
    pub(super) fn limits(&self, run: &JobRun) -> Limits {
        run.limits.unwrap_or_else(|| self.default_limits())
    }
}

impl Cgroups {
    /// Writes `limits` into a run's config with the keys of this host's
    /// layout (v2 where the controller is there, else v1); a limit whose
    /// controller the host lacks is an error, not silently dropped.
    pub(super) fn limit(&self, conf: &mut Conf, limits: Limits) -> Result<(), ExecError> {
        if let Some(bytes) = limits.memory_bytes {
            if self.v2.contains("memory") {
                conf.set("lxc.cgroup2.memory.max", bytes);
            } else if let Some(mount) = self.v1.get("memory") {
                conf.set("lxc.cgroup.memory.limit_in_bytes", bytes);
                // With swap accounting, also stop the job from swapping
                // its way past the limit.
                if mount.join("memory.memsw.limit_in_bytes").exists() {
                    conf.set("lxc.cgroup.memory.memsw.limit_in_bytes", bytes);
                }
            } else {
                return Err(no_controller("memory"));
            }
        }
        if let Some(pids) = limits.pids {
            if self.v2.contains("pids") {
                conf.set("lxc.cgroup2.pids.max", pids);
            } else if self.v1.contains_key("pids") {
                conf.set("lxc.cgroup.pids.max", pids);
            } else {
                return Err(no_controller("pids"));
            }
        }
        if let Some(millis) = limits.cpu_millis {
            const PERIOD_US: u64 = 100_000;
            let quota = (millis.saturating_mul(PERIOD_US) / 1000).max(1000);
            if self.v2.contains("cpu") {
                conf.set("lxc.cgroup2.cpu.max", format!("{quota} {PERIOD_US}"));
            } else if self.v1.contains_key("cpu") {
                conf.set("lxc.cgroup.cpu.cfs_period_us", PERIOD_US);
                conf.set("lxc.cgroup.cpu.cfs_quota_us", quota);
            } else {
                return Err(no_controller("cpu"));
            }
        }
        Ok(())
    }

    pub(super) fn read() -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::parse(&mountinfo, |mount| {
            fs::read_to_string(mount.join("cgroup.controllers")).ok()
        })
    }

    pub(super) fn parse(mountinfo: &str, v2_controllers: impl Fn(&Path) -> Option<String>) -> Self {
        let mut cg = Self::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let (Some(fstype), Some(_source), Some(options)) =
                (right.next(), right.next(), right.next())
            else {
                continue;
            };
            let point = PathBuf::from(unescape_mountinfo(point));
            match fstype {
                "cgroup" => {
                    for opt in options.split(',') {
                        cg.v1.entry(opt.to_owned()).or_insert_with(|| point.clone());
                    }
                }
                "cgroup2" => {
                    if let Some(list) = v2_controllers(&point) {
                        cg.v2.extend(list.split_whitespace().map(str::to_owned));
                    }
                }
                _ => continue,
            }
            cg.mounts.push(point);
        }
        cg
    }
}

/// Undoes the octal escapes of /proc/self/mountinfo.
pub(super) fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let Some(d) = octal {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn no_controller(controller: &str) -> ExecError {
    setup(format!(
        "a {controller} limit is configured but this host has no {controller} cgroup controller"
    ))
}

/// The cgroups lxc made for a run (`lxc.payload.<name>`,
/// `lxc.monitor.<name>`, possibly with a `-<n>` suffix), in every
/// hierarchy. Looks at the top of each hierarchy and one level down (where
/// lxc nests them under a delegated cgroup).
fn run_cgroups(name: &str, prefixes: &[&str]) -> Vec<PathBuf> {
    let ours = |file: &str| {
        prefixes.iter().any(|prefix| {
            file.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|suffix| {
                    suffix.is_empty()
                        || suffix
                            .strip_prefix('-')
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
        })
    };
    let mut found = Vec::new();
    for mount in Cgroups::read().mounts {
        let mut bases = vec![mount.clone()];
        if let Ok(entries) = fs::read_dir(&mount) {
            bases.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        for base in bases {
            let Ok(entries) = fs::read_dir(&base) else {
                continue;
            };
            found.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_str().is_some_and(ours))
                    .map(|e| e.path()),
            );
        }
    }
    found
}

/// Removes the cgroups lxc made for a run, which it leaves behind when
/// lxc-execute is killed. Only empty cgroups can be removed; errors are
/// ignored.
pub(super) fn remove_cgroups(name: &str) {
    for dir in run_cgroups(name, &["lxc.payload.", "lxc.monitor."]) {
        remove_cgroup_tree(&dir);
    }
}

/// The limits a running container has run into so far, as the driver's
/// state file records them (`limit memory KILLS BYTES`, `limit pids
/// REFUSED MAX`; see `WRAPPER`), read from the host's side of its cgroups:
/// a job stopped at its timeout may not get to write them itself.
pub(super) fn limits_reached(name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for dir in run_cgroups(name, &["lxc.payload."]) {
        let key = |file: &str, key: &str| {
            fs::read_to_string(dir.join(file)).ok().and_then(|t| {
                t.lines()
                    .filter_map(|l| l.split_once(' '))
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            })
        };
        let one = |files: &[&str]| {
            files
                .iter()
                .find_map(|f| fs::read_to_string(dir.join(f)).ok())
                .map_or_else(|| "max".to_string(), |t| t.trim().to_string())
        };
        let oom =
            key("memory.events", "oom_kill").or_else(|| key("memory.oom_control", "oom_kill"));
        if let Some(n) = oom.filter(|n| *n > 0) {
            lines.push(format!(
                "limit memory {n} {}",
                one(&["memory.max", "memory.limit_in_bytes"])
            ));
        }
        if let Some(n) = key("pids.events", "max").filter(|n| *n > 0) {
            lines.push(format!("limit pids {n} {}", one(&["pids.max"])));
        }
    }
    lines
}

/// rmdir of a cgroup and its sub-cgroups, deepest first.
pub(super) fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

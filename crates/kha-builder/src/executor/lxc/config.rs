//! The per-run lxc configuration: what a run's container sees and may do,
//! written as `<scratch>/lxc.conf` by `Executor::command`.

use super::cgroups::Cgroups;
use super::idmap::IdMap;
use super::{setup, ExecError, LxcExecutor};
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// The environment of the job, and nothing else.
pub(super) const JOB_ENV: &[&str] = &[
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
    "TERM=dumb",
    "USER=root",
    "LOGNAME=root",
];
/// First line of every per-run config; `cleanup_leftovers` only deletes a
/// scratch directory whose `lxc.conf` starts with it.
pub(super) const CONF_HEADER: &str = "# kha run ";
/// lxc's default seccomp policy (denies kexec, module loading,
/// open_by_handle_at…); used when present.
pub(super) const SECCOMP: &str = "/usr/share/lxc/config/common.seccomp";

impl LxcExecutor {
    /// The per-run lxc configuration.
    pub(super) fn run_config(
        &self,
        run: &RunPaths,
        ids: IdMap,
        cgroups: &Cgroups,
    ) -> Result<String, ExecError> {
        let mut c = Conf::default();
        c.line(&format!("{CONF_HEADER}{}", run.name));
        // First, so that errors in the lines below are logged too.
        c.set("lxc.log.file", conf_path(&run.scratch.join("lxc.log"))?);
        c.set("lxc.uts.name", &run.hostname);
        c.set(
            "lxc.rootfs.path",
            format!("dir:{}", conf_path(&run.image.join("rootfs"))?),
        );
        c.set("lxc.rootfs.options", "ro");
        c.set("lxc.idmap", format!("u 0 {} {}", ids.uid, ids.count));
        c.set("lxc.idmap", format!("g 0 {} {}", ids.gid, ids.count));
        if self.network {
            c.set("lxc.net.0.type", "none");
            // sysfs can only be mounted by the owner of the network
            // namespace: show the host's, read-only.
            c.set("lxc.mount.auto", "proc:mixed cgroup:ro:force");
            c.mount("/sys", "sys", "none", "ro,rbind,nodev,nosuid,noexec");
        } else {
            c.set("lxc.net.0.type", "empty");
            // Brings the loopback interface up; jobs' tests use it.
            c.set("lxc.net.0.flags", "up");
            // cgroup:ro:force mounts the container's own cgroups read-only,
            // so that runtimes (the JVM…) can see their limits.
            c.set("lxc.mount.auto", "proc:mixed sys:ro cgroup:ro:force");
        }
        c.set("lxc.autodev", "1");
        c.set("lxc.console.path", "none");
        c.set("lxc.tty.max", "0");
        c.set("lxc.pty.max", "256");
        c.set(
            "lxc.cap.drop",
            "mac_admin mac_override sys_time sys_module sys_rawio",
        );
        c.set("lxc.no_new_privs", "1");
        if Path::new(SECCOMP).is_file() {
            c.set("lxc.seccomp.profile", SECCOMP);
        }
        let image_conf = run.image.join("config");
        if image_conf.is_file() {
            c.set("lxc.include", conf_path(&image_conf)?);
        }
        c.mount(
            conf_path(&run.workspace)?,
            "workspace",
            "none",
            "rw,bind,nodev,nosuid",
        );
        c.mount(
            conf_path(&run.scratch.join("hosts"))?,
            "etc/hosts",
            "none",
            "ro,bind,nodev,nosuid",
        );
        c.mount(
            conf_path(&run.scratch.join("hostname"))?,
            "etc/hostname",
            "none",
            "ro,bind,nodev,nosuid",
        );
        if self.network {
            c.mount(
                "/etc/resolv.conf",
                "etc/resolv.conf",
                "none",
                "ro,bind,nodev,nosuid,optional",
            );
        }
        for (dir, opts) in [
            ("tmp", "mode=1777"),
            ("var/tmp", "mode=1777"),
            ("run", "mode=755"),
            ("root", "mode=700"),
            ("home", "mode=755"),
            ("home/kha", "mode=700,uid=1000,gid=1000,create=dir"),
            ("dev/shm", "mode=1777,create=dir"),
        ] {
            c.mount("tmpfs", dir, "tmpfs", &format!("rw,nosuid,nodev,{opts}"));
        }
        for var in JOB_ENV {
            c.set("lxc.environment", var);
        }
        cgroups.limit(&mut c, self.limits())?;
        Ok(c.0)
    }
}

/// Paths of one run, absolute and canonical.
pub(super) struct RunPaths {
    pub(super) name: String,
    pub(super) hostname: String,
    pub(super) image: PathBuf,
    pub(super) workspace: PathBuf,
    pub(super) scratch: PathBuf,
}

/// An lxc config being written.
#[derive(Default)]
pub(super) struct Conf(pub(super) String);

impl Conf {
    pub(super) fn line(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }

    pub(super) fn set(&mut self, key: &str, value: impl Display) {
        self.line(&format!("{key} = {value}"));
    }

    /// An fstab-style mount entry; `target` is relative to the rootfs.
    pub(super) fn mount(&mut self, source: &str, target: &str, fstype: &str, options: &str) {
        let entry = format!(
            "{} {} {fstype} {options} 0 0",
            fstab_escape(source),
            fstab_escape(target)
        );
        self.set("lxc.mount.entry", entry);
    }
}

/// Escapes a path for an fstab-style field (lxc parses mount entries with
/// getmntent, which undoes this).
pub(super) fn fstab_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// A path as an lxc config value: UTF-8, on one line, without surrounding
/// blanks (lxc would trim them).
pub(super) fn conf_path(path: &Path) -> Result<&str, ExecError> {
    let s = path
        .to_str()
        .ok_or_else(|| setup(format!("path {} is not UTF-8", path.display())))?;
    if s.chars().any(char::is_control) || s.trim() != s {
        return Err(setup(format!(
            "path {s:?} cannot be written into an lxc config"
        )));
    }
    Ok(s)
}

pub(super) fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
}

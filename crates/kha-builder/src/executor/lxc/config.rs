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
        match (run.net, &self.job_net) {
            (Some(addr), Some(net)) => net.conf(&mut c, addr),
            _ => {
                c.set("lxc.net.0.type", "empty");
                // Brings the loopback interface up; jobs' tests use it.
                c.set("lxc.net.0.flags", "up");
            }
        }
        // cgroup:ro:force mounts the container's own cgroups read-only,
        // so that runtimes (the JVM…) can see their limits.
        c.set("lxc.mount.auto", "proc:mixed sys:ro cgroup:ro:force");
        c.set("lxc.autodev", "1");
        c.set("lxc.console.path", "none");
        c.set("lxc.tty.max", "0");
        c.set("lxc.pty.max", "256");
        // Besides lxc's usual drops: sys_admin (mount, sethostname,
        // setns: a job's root could otherwise mount file systems in its
        // own namespaces) and net_raw (raw and packet sockets), which
        // build and test commands do not need; Docker drops both too.
        c.set(
            "lxc.cap.drop",
            "mac_admin mac_override sys_time sys_module sys_rawio sys_admin net_raw",
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
        if run.net.is_some() {
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
        // After the tmpfs mounts: toolchains may be mounted inside them.
        if run.opt_tmpfs {
            c.mount("tmpfs", "opt", "tmpfs", "rw,nosuid,nodev,mode=755");
        }
        for (path, create) in &run.mounts {
            let rel = path.strip_prefix("/").unwrap_or(path);
            let opts = if *create {
                "ro,bind,nodev,nosuid,create=dir"
            } else {
                "ro,bind,nodev,nosuid"
            };
            c.mount(conf_path(path)?, conf_path(rel)?, "none", opts);
        }
        for var in JOB_ENV {
            c.set("lxc.environment", var);
        }
        cgroups.limit(&mut c, run.limits)?;
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
    /// A fresh tmpfs on `/opt` for toolchains mounted there.
    pub(super) opt_tmpfs: bool,
    /// Host directories bound read-only at the same path, and whether lxc
    /// creates the mount point.
    pub(super) mounts: Vec<(PathBuf, bool)>,
    pub(super) limits: crate::executor::RunLimits,
    /// The run's address on the jobs' network (`net`), if it has network.
    pub(super) net: Option<std::net::Ipv4Addr>,
}

/// Directories every run gets as a fresh tmpfs (see `run_config`).
pub(super) const RUN_TMPFS: &[&str] = &["tmp", "var/tmp", "run", "root", "home"];

/// Where host toolchains at `paths` are mounted in a run: at their own
/// path, which must exist in the image (`in_image`, relative path) or lie
/// in a per-run tmpfs, where lxc creates it; under `/opt`, which the run
/// then gets as a fresh tmpfs, if the image's is empty. Returns whether
/// `/opt` gets a tmpfs, and each path with whether lxc creates it.
pub(super) fn toolchain_mounts(
    paths: &[PathBuf],
    in_image: impl Fn(&Path) -> bool,
    opt_empty: bool,
) -> Result<(bool, Vec<(PathBuf, bool)>), String> {
    use std::path::Component;
    let mut opt = false;
    let mut out = Vec::new();
    for path in paths {
        let normal = path.is_absolute()
            && path
                .components()
                .skip(1)
                .all(|c| matches!(c, Component::Normal(_)));
        let rel = path.strip_prefix("/").unwrap_or(path);
        if !normal || rel.as_os_str().is_empty() {
            return Err(format!(
                "toolchain path {} is not a plain absolute path",
                path.display()
            ));
        }
        let under = |dir: &str| rel.starts_with(dir) && rel != Path::new(dir);
        if RUN_TMPFS.iter().any(|d| under(d)) {
            out.push((path.clone(), true));
        } else if in_image(rel) {
            out.push((path.clone(), false));
        } else if under("opt") && opt_empty {
            opt = true;
            out.push((path.clone(), true));
        } else {
            return Err(format!(
                "the toolchain at {} cannot be mounted at its path: move it under /opt, /tmp, \
                 /home, /root, /run or /var/tmp",
                path.display()
            ));
        }
    }
    Ok((opt, out))
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    #[test]
    fn toolchain_mount_points() {
        let image_has = |rel: &Path| rel == Path::new("usr/local/otp");
        let p = |s: &str| PathBuf::from(s);
        type Want = Result<(bool, Vec<(PathBuf, bool)>), ()>;
        let cases: Vec<(Vec<&str>, bool, Want)> = vec![
            (vec![], true, Ok((false, vec![]))),
            (
                vec!["/tmp/t/kerl/25"],
                true,
                Ok((false, vec![(p("/tmp/t/kerl/25"), true)])),
            ),
            (
                vec!["/root/.rustup/toolchains/stable"],
                false,
                Ok((false, vec![(p("/root/.rustup/toolchains/stable"), true)])),
            ),
            (
                vec!["/opt/kerl/25", "/home/ci/otp/26"],
                true,
                Ok((
                    true,
                    vec![(p("/opt/kerl/25"), true), (p("/home/ci/otp/26"), true)],
                )),
            ),
            (
                vec!["/usr/local/otp"],
                false,
                Ok((false, vec![(p("/usr/local/otp"), false)])),
            ),
            // /opt of the image has something: not hidden.
            (vec!["/opt/kerl/25"], false, Err(())),
            (vec!["/srv/kerl/25"], true, Err(())),
            (vec!["/tmp"], true, Err(())),
            (vec!["/tmp/../etc"], true, Err(())),
            (vec!["relative/x"], true, Err(())),
        ];
        for (paths, opt_empty, want) in cases {
            let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            let got = toolchain_mounts(&paths, image_has, opt_empty).map_err(|_| ());
            assert_eq!(got, want, "{paths:?} opt_empty={opt_empty}");
        }
    }
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

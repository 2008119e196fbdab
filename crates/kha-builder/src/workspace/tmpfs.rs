//! Where jobs' files live: their workspaces and the executors' per-run
//! scratch directories, on a tmpfs of the builder's own when it can mount
//! one, on disk otherwise. Creating and removing a checkout's files on a
//! disk filesystem (ext4's inode allocation, the journal) was 10–40 % of a
//! builder's CPU per job.
//!
//! The tmpfs (`<data_dir>/tmpfs`, at most `workspace_tmpfs_mib`) is
//! mounted in a mount namespace of the builder's own, which the jobs it
//! starts (and the hooks it runs) inherit: it goes away with the builder
//! however that ends, `kill -9` included, so there is nothing to unmount
//! at the next start and nothing a test can leave mounted. The namespace
//! is a slave of the host's: what the host mounts later (a toolchain
//! under /opt) still shows in it. A data directory that is on a tmpfs
//! already is used as it is.
//!
//! A checkout that does not fit is made on disk instead (`<data_dir>/work`),
//! with a line in the job's log saying so; a job that fills the tmpfs
//! while it runs gets a line saying what to change.

use super::{CheckoutError, Credentials, Source, Vcs};
use std::path::{Path, PathBuf};

/// Default size cap of the tmpfs, in MiB: 0, workspaces on disk. A job
/// whose build writes gigabytes into its workspace (a cargo `target/`, a
/// C++ build tree) must work on a builder set up with the defaults; a
/// tmpfs is a choice for builders whose jobs are known to be small.
pub const DEFAULT_TMPFS_MIB: u64 = 0;

/// Where a builder puts its jobs' workspaces and scratch directories.
#[derive(Debug, Clone)]
pub struct JobDirs {
    /// Parent of the workspaces.
    pub work: PathBuf,
    /// Parent of the executors' per-run scratch directories.
    pub scratch: PathBuf,
    /// Workspaces on disk: `work` itself, or where a checkout that does
    /// not fit in the tmpfs goes.
    pub disk_work: PathBuf,
    /// The tmpfs `work` and `scratch` are on, if they are.
    pub tmpfs: Option<Tmpfs>,
}

/// The tmpfs holding the workspaces.
#[derive(Debug, Clone)]
pub struct Tmpfs {
    pub path: PathBuf,
    /// Its size cap (0: the data directory's own tmpfs, whatever size
    /// it has).
    pub cap_mib: u64,
    /// Mounted by this builder (so unmounted when it stops).
    mounted: bool,
}

impl JobDirs {
    /// Everything on disk, under `data_dir`.
    pub fn on_disk(data_dir: &Path) -> JobDirs {
        JobDirs {
            work: data_dir.join("work"),
            scratch: data_dir.join("scratch"),
            disk_work: data_dir.join("work"),
            tmpfs: None,
        }
    }

    /// Mounts a tmpfs of at most `cap_mib` for the jobs' files, in a
    /// mount namespace of this thread's own (0: none, disk). Call it before
    /// any other thread is started: a thread started before keeps the
    /// host's namespace (namespaces belong to threads), and a job it
    /// started would not see the tmpfs. Falls back to disk, with a log
    /// line saying why, when it cannot (not root, no CAP_SYS_ADMIN).
    pub fn setup(data_dir: &Path, cap_mib: u64) -> JobDirs {
        let disk = JobDirs::on_disk(data_dir);
        if cap_mib == 0 {
            tracing::info!("workspaces on disk (workspace_tmpfs_mib = 0)");
            return disk;
        }
        if is_tmpfs(data_dir) {
            return JobDirs {
                tmpfs: Some(Tmpfs {
                    path: data_dir.to_path_buf(),
                    cap_mib: 0,
                    mounted: false,
                }),
                ..disk
            };
        }
        let path = data_dir.join("tmpfs");
        match mount_private(&path, cap_mib) {
            Ok(()) => {
                tracing::info!(path = %path.display(), cap_mib, "workspaces on a tmpfs");
                JobDirs {
                    work: path.join("work"),
                    scratch: path.join("scratch"),
                    disk_work: disk.disk_work,
                    tmpfs: Some(Tmpfs {
                        path,
                        cap_mib,
                        mounted: true,
                    }),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot mount a tmpfs for the workspaces; they stay on disk (set workspace_tmpfs_mib = 0 to say so)");
                disk
            }
        }
    }

    /// Unmounts the tmpfs if this builder mounted it (lazily: a job
    /// aborted at exit may still hold a workspace).
    pub fn unmount(&self) {
        if let Some(t) = self.tmpfs.as_ref().filter(|t| t.mounted) {
            if let Err(e) = nix::mount::umount2(&t.path, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!(error = %e, path = %t.path.display(), "cannot unmount the workspaces' tmpfs");
            }
        }
    }

    /// Whether `path` lies on the tmpfs.
    pub fn on_tmpfs(&self, path: &Path) -> bool {
        self.tmpfs
            .as_ref()
            .is_some_and(|t| path.starts_with(&t.path))
    }

    /// Checks `src` out into `<work>/<name>`, or, when it does not fit in
    /// the tmpfs, into `<disk_work>/<name>`. Returns where it went and a
    /// line for the job's log if that is on disk after all. Blocking.
    pub fn checkout(
        &self,
        vcs: &dyn Vcs,
        src: &Source,
        name: &str,
        creds: Option<&Credentials>,
    ) -> Result<(PathBuf, Option<String>), CheckoutError> {
        let dest = self.work.join(name);
        let err = match vcs.checkout(src, &dest, creds) {
            Ok(()) => return Ok((dest, None)),
            Err(e) => e,
        };
        let Some(tmpfs) = &self.tmpfs else {
            return Err(err);
        };
        // Not a matter of room: the same again on disk would fail too.
        if matches!(
            err,
            CheckoutError::Fetch { .. } | CheckoutError::NoRevision(_)
        ) {
            return Err(err);
        }
        let space = tmpfs.space();
        crate::remove_dir(&dest)?;
        let Some((free, size)) = space.filter(|(free, size)| *free < size / 20 + (1 << 20)) else {
            return Err(err); // room enough: something else failed
        };
        let disk = self.disk_work.join(name);
        crate::remove_dir(&disk)?;
        vcs.checkout(src, &disk, creds)?;
        Ok((
            disk,
            Some(format!(
                "the checkout does not fit in the workspaces' tmpfs ({} of {} MiB free; `workspace_tmpfs_mib` in the builder's config): checked out on disk instead ({err})",
                free >> 20,
                size >> 20
            )),
        ))
    }

    /// A line for the log of a job that ended with the tmpfs its
    /// workspace is on (nearly) full: whatever failed for want of room
    /// did so because of the cap.
    pub fn full_note(&self, workspace: &Path) -> Option<String> {
        let t = self.tmpfs.as_ref().filter(|_| self.on_tmpfs(workspace))?;
        let (free, size) = t.space()?;
        (free < size / 100 + (1 << 20)).then(|| {
            format!(
                "the workspaces' tmpfs ({} MiB, shared by this builder's jobs) was full when the job ended: a job that writes more into its workspace needs a larger `workspace_tmpfs_mib` in the builder's config, or 0 (workspaces on disk)",
                size >> 20
            )
        })
    }
}

impl Tmpfs {
    /// Bytes (free to unprivileged writers, in all).
    fn space(&self) -> Option<(u64, u64)> {
        let s = nix::sys::statvfs::statvfs(&self.path).ok()?;
        let unit = s.fragment_size();
        Some((s.blocks_available() * unit, s.blocks() * unit))
    }
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// A new mount namespace for this thread, a slave of the host's, and a
/// tmpfs at `path` in it.
fn mount_private(path: &Path, cap_mib: u64) -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(path)?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    // Without this, a shared root would propagate the tmpfs to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    // 0711: the containers' root (an unprivileged id) must be able to
    // reach its workspace through it.
    mount(
        Some("kha-jobs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("size={cap_mib}m,mode=0711").as_str()),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Git;

    /// A repository with one commit holding a file of `len` bytes;
    /// returns its id.
    fn repo_with_file(dir: &Path, len: usize) -> String {
        // Incompressible, so the pack is as big as the file.
        let mut data = vec![0u8; len];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in &mut data {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        crate::workspace::git::tests::repo_with_file(dir, &data)
    }

    /// Checks out on a 2 MiB tmpfs mounted in the test thread's own
    /// namespace: a small commit lands on it, one that does not fit on
    /// disk with a note. Needs root, as the lxc tests do (and is skipped
    /// with them: `KHA_SKIP_LXC=1` at build time).
    #[test]
    #[cfg_attr(
        kha_skip_lxc,
        ignore = "KHA_SKIP_LXC is set: tests needing root skipped"
    )]
    fn checkouts_go_to_the_tmpfs_and_to_disk_when_they_do_not_fit() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "mounting a tmpfs needs root (build with KHA_SKIP_LXC=1 to skip this test)"
        );
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // A thread of its own: the namespace is the thread's, and it
        // ends with it.
        let data2 = data.clone();
        let origin = d.path().join("origin");
        let small = repo_with_file(&origin.join("small"), 1000);
        let big = repo_with_file(&origin.join("big"), 3 << 20);
        let result = std::thread::spawn(move || {
            let dirs = JobDirs::setup(&data2, 2);
            assert!(dirs.tmpfs.is_some(), "{dirs:?}");
            for p in [&dirs.work, &dirs.scratch, &dirs.disk_work] {
                std::fs::create_dir_all(p).unwrap();
            }
            assert!(is_tmpfs(&dirs.work) && !is_tmpfs(&dirs.disk_work));
            let git = Git::new(data2.join("mirrors"));
            let src = |repo: &str, revision: &str| Source {
                url: origin.join(repo).display().to_string(),
                revision: revision.into(),
                ..Source::default()
            };
            let (ws, note) = dirs
                .checkout(&git, &src("small", &small), "a", None)
                .unwrap();
            assert_eq!((ws.as_path(), note), (dirs.work.join("a").as_path(), None));
            assert!(is_tmpfs(&ws.join("file")));
            assert_eq!(dirs.full_note(&ws), None);

            let (ws, note) = dirs.checkout(&git, &src("big", &big), "b", None).unwrap();
            assert_eq!(ws, dirs.disk_work.join("b"));
            assert_eq!(std::fs::metadata(ws.join("file")).unwrap().len(), 3 << 20);
            let note = note.unwrap();
            assert!(
                note.starts_with("the checkout does not fit in the workspaces' tmpfs"),
                "{note}"
            );
            // The partial checkout is gone from the tmpfs.
            assert!(!dirs.work.join("b").exists());
            // A job that fills it is told why.
            std::fs::write(dirs.work.join("a/fill"), vec![1u8; 2 << 20]).unwrap_err();
            let note = dirs.full_note(&dirs.work.join("a")).unwrap();
            assert!(note.contains("`workspace_tmpfs_mib`"), "{note}");
            dirs.unmount();
            assert!(!is_tmpfs(&dirs.work.parent().unwrap().join(".")));
        })
        .join();
        // The host's namespace never saw it.
        assert!(!is_tmpfs(&data.join("tmpfs")));
        result.unwrap();
    }
}

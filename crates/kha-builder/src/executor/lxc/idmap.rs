//! Id maps: which host uid/gid range a container's ids map to, and
//! handing the workspace to the container's root.

use super::{ctx, find_tool, setup, ExecError};
use std::fs;
use std::io;
use std::os::unix::fs::{lchown, MetadataExt};
use std::path::Path;

/// Size of the id range mapped into a container: uids 0..=65535, so the
/// usual ids (root, 1000, nobody = 65534) all exist inside.
pub(super) const ID_COUNT: u32 = 65536;
/// Host uid/gid of the container's root when shadow's newuidmap is absent
/// (lxc then writes the map itself and needs no /etc/subuid entry).
pub(super) const DEFAULT_ID_BASE: u32 = 100_000;

/// The host's uid/gid range that a container's ids 0..count map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdMap {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) count: u32,
}

impl IdMap {
    /// The range to use on this host. If shadow's `newuidmap` and
    /// `newgidmap` are installed (package uidmap), lxc uses them even when
    /// run by root, and they only map ranges delegated to root in
    /// `/etc/subuid` and `/etc/subgid` (so that the range is never handed
    /// to another user): take root's first range of at least 65536 ids.
    /// Without them lxc writes the map itself and 100000.. is used.
    pub(super) fn for_host() -> Result<Self, ExecError> {
        let shadow = ["newuidmap", "newgidmap"]
            .iter()
            .all(|tool| find_tool(tool).is_some());
        if !shadow {
            return Ok(Self {
                uid: DEFAULT_ID_BASE,
                gid: DEFAULT_ID_BASE,
                count: ID_COUNT,
            });
        }
        let uid = root_subid(Path::new("/etc/subuid"))?;
        let gid = root_subid(Path::new("/etc/subgid"))?;
        match (uid, gid) {
            (Some(uid), Some(gid)) => Ok(Self {
                uid,
                gid,
                count: ID_COUNT,
            }),
            _ => Err(setup(
                "newuidmap is installed, so lxc needs subordinate ids for root: run \
                 `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 root`",
            )),
        }
    }

    pub(super) fn maps_uid(&self, uid: u32) -> bool {
        uid.checked_sub(self.uid).is_some_and(|d| d < self.count)
    }

    pub(super) fn maps_gid(&self, gid: u32) -> bool {
        gid.checked_sub(self.gid).is_some_and(|d| d < self.count)
    }
}

/// Start of root's first subordinate id range of at least [`ID_COUNT`] ids
/// in a subuid/subgid file.
pub(super) fn root_subid(path: &Path) -> Result<Option<u32>, ExecError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(setup(format!("reading {}: {e}", path.display()))),
    };
    Ok(parse_subid(&text))
}

pub(super) fn parse_subid(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (who, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
        let fits = start > 0 && count >= ID_COUNT && start.checked_add(ID_COUNT).is_some();
        ((who == "root" || who == "0") && fits).then_some(start)
    })
}

/// Gives a tree to the container's root. Symlinks are chowned themselves
/// and never followed, so a checkout cannot make us chown host files.
pub(super) fn chown_tree(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    lchown(root, Some(uid), Some(gid))?;
    if !fs::symlink_metadata(root)?.is_dir() {
        return Ok(());
    }
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            lchown(&path, Some(uid), Some(gid))?;
            if entry.file_type()?.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(())
}

/// lxc sets the container up as the container's root, an unprivileged host
/// uid: every directory above `path` must let that uid through. Checked
/// here so that the job fails with a clear message rather than with an
/// empty log and exit status 1.
pub(super) fn check_searchable(path: &Path, ids: IdMap) -> Result<(), ExecError> {
    let path = fs::canonicalize(path).map_err(ctx("resolving", path))?;
    for dir in path.ancestors().skip(1) {
        let meta = fs::metadata(dir).map_err(ctx("reading", dir))?;
        let mode = meta.mode();
        let ok = mode & 0o001 != 0
            || (ids.maps_uid(meta.uid()) && mode & 0o100 != 0)
            || (ids.maps_gid(meta.gid()) && mode & 0o010 != 0);
        if !ok {
            return Err(setup(format!(
                "{} is not searchable by the container's root (host uid {}); `chmod o+x {}` \
                 or move the builder's data elsewhere",
                dir.display(),
                ids.uid,
                dir.display()
            )));
        }
    }
    Ok(())
}

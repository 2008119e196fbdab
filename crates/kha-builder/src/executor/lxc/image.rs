//! Images: `kha-builder image create` (the default image, sharing the
//! host's /usr read-only) and finding the images a builder has.

use super::config::{conf_path, hosts_file, Conf};
use super::idmap::{check_searchable, IdMap};
use super::meta::{ImageKind, ImageMeta, META_FILE};
use super::{ctx, setup, valid_name, ExecError};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Top-level directories of the default image, with their modes. Most are
/// mount points; the rest just make a familiar tree.
pub(super) const IMAGE_DIRS: &[(&str, u32)] = &[
    ("usr", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("var", 0o755),
    ("var/tmp", 0o1777),
    ("root", 0o700),
    ("home", 0o755),
    ("workspace", 0o755),
    ("mnt", 0o755),
    ("opt", 0o755),
    ("srv", 0o755),
];
/// Top-level entries that merged-/usr systems (Debian 12) make symlinks
/// into /usr: mirrored as symlinks, or bind-mounted if the host has real
/// directories there.
pub(super) const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Host `/etc` entries shared read-only with the default image: what
/// programs in `/usr` refer to (alternatives, certificates, the loader
/// cache, language runtimes' config). A whitelist, because `/etc` also
/// holds secrets (the builder's own config among them).
pub(super) const HOST_ETC: &[&str] = &[
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "perl",
    "mime.types",
    "protocols",
    "services",
    "rpc",
    "ethertypes",
    "magic",
    "magic.mime",
    "locale.alias",
    "debian_version",
    "gai.conf",
    "host.conf",
    "maven",
];
/// Host `/etc` entries shared by prefix (versioned names: `python3.11`,
/// `java-17-openjdk`).
pub(super) const HOST_ETC_PREFIXES: &[&str] = &["python3", "java-"];

pub(super) const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
kha:x:1000:1000:kha:/home/kha:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
pub(super) const GROUP: &str = "root:x:0:\nkha:x:1000:\nnogroup:x:65534:\n";
/// The `kha` user and group every image has (added to a Debian rootfs).
pub(super) const PASSWD_KHA: &str = "kha:x:1000:1000:kha:/home/kha:/bin/sh\n";
pub(super) const GROUP_KHA: &str = "kha:x:1000:\n";
pub(super) const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\n\
hosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n\
ethers: files\nrpc: files\nnetgroup: files\n";

/// Creates (or refreshes) the base image `name` under `images`: an empty
/// rootfs skeleton plus a config sharing the host's /usr read-only. Takes
/// milliseconds and downloads nothing. Refreshing rewrites files in place,
/// so containers running from the image are not disturbed.
pub fn create_image(images: &Path, name: &str) -> Result<PathBuf, ExecError> {
    if !valid_name(name, 64) {
        return Err(setup(format!(
            "invalid image name {name:?}: use letters, digits, '-', '_' and '.', not first"
        )));
    }
    let images = std::path::absolute(images)?;
    fs::create_dir_all(&images).map_err(ctx("creating", &images))?;
    let dir = images.join(name);
    if dir.is_dir() {
        match ImageMeta::read(&dir) {
            Ok(m) if m.kind == ImageKind::Quick => {}
            _ => {
                return Err(setup(format!(
                    "image {name} is not a quick image; `kha-builder image remove {name}` first"
                )))
            }
        }
    }
    ensure_dir(&dir, 0o755)?;
    let rootfs = dir.join("rootfs");
    ensure_dir(&rootfs, 0o755)?;
    for (sub, mode) in IMAGE_DIRS {
        ensure_dir(&rootfs.join(sub), *mode)?;
    }

    let mut conf = Conf::default();
    conf.line(&format!(
        "# lxc settings of the kha image {name:?}, included by the config of every run."
    ));
    conf.line("# Written by `kha-builder image create`: the host's /usr, and the bits of /etc");
    conf.line("# that programs in /usr refer to, shared read-only.");
    conf.mount("/usr", "usr", "none", "ro,bind,nodev,nosuid");
    for top in USR_LINKS {
        let host = Path::new("/").join(top);
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&host).map_err(ctx("reading", &host))?;
            ensure_symlink(&rootfs.join(top), &target)?;
        } else if meta.is_dir() {
            ensure_dir(&rootfs.join(top), 0o755)?;
            conf.mount(
                conf_path(&host)?,
                top,
                "none",
                "ro,bind,nodev,nosuid,optional",
            );
        }
    }

    let etc = rootfs.join("etc");
    write_atomic(&etc.join("passwd"), PASSWD, 0o644)?;
    write_atomic(&etc.join("group"), GROUP, 0o644)?;
    write_atomic(&etc.join("nsswitch.conf"), NSSWITCH, 0o644)?;
    // Mount points of per-run files; the contents are a fallback.
    write_atomic(&etc.join("hosts"), &hosts_file("localhost"), 0o644)?;
    write_atomic(&etc.join("hostname"), "localhost\n", 0o644)?;
    write_atomic(
        &etc.join("resolv.conf"),
        "# no network unless the builder enables it\n",
        0o644,
    )?;
    write_atomic(&etc.join("timezone"), "Etc/UTC\n", 0o644)?;
    ensure_symlink(
        &etc.join("localtime"),
        Path::new("/usr/share/zoneinfo/Etc/UTC"),
    )?;
    ensure_symlink(&etc.join("mtab"), Path::new("../proc/self/mounts"))?;
    if Path::new("/usr/lib/os-release").exists() {
        ensure_symlink(&etc.join("os-release"), Path::new("../usr/lib/os-release"))?;
    }
    for entry in host_etc_entries() {
        let host = Path::new("/etc").join(&entry);
        // Follows symlinks: the mount point must match what gets mounted.
        let Ok(meta) = fs::metadata(&host) else {
            continue;
        };
        let point = etc.join(&entry);
        if meta.is_dir() {
            ensure_dir(&point, 0o755)?;
        } else if meta.is_file() {
            ensure_file(&point)?;
        } else {
            continue;
        }
        conf.mount(
            conf_path(&host)?,
            &format!("etc/{entry}"),
            "none",
            "ro,bind,nodev,nosuid,optional",
        );
    }
    write_atomic(&dir.join("config"), &conf.0, 0o644)?;
    write_atomic(&dir.join(META_FILE), &ImageMeta::quick().to_toml(), 0o644)?;
    check_searchable(&rootfs, IdMap::for_host()?)?;
    Ok(dir)
}

/// Removes image `name`: its directory, or only the link if the image is
/// a symbolic link to one kept elsewhere (a shared cache). Running jobs
/// keep what they have mounted.
pub fn remove_image(images: &Path, name: &str) -> Result<(), ExecError> {
    if !valid_name(name, 64) {
        return Err(ExecError::NoImage(name.to_owned()));
    }
    let dir = std::path::absolute(images)?.join(name);
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_symlink() => fs::remove_file(&dir).map_err(ctx("removing", &dir)),
        Ok(m) if m.is_dir() => {
            // Out of sight at once, then deleted.
            let gone = dir.with_file_name(format!(".{name}.removing"));
            crate::remove_dir(&gone).map_err(ctx("removing", &gone))?;
            fs::rename(&dir, &gone).map_err(ctx("removing", &dir))?;
            crate::remove_dir(&gone).map_err(ctx("removing", &gone))
        }
        _ => Err(ExecError::NoImage(name.to_owned())),
    }
}

/// One image as `image list` shows it.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub name: String,
    pub dir: PathBuf,
    pub meta: Result<ImageMeta, String>,
}

/// The images under `images`, with what their `image.toml` says.
pub fn entries(images: &Path) -> Vec<ImageEntry> {
    list(images)
        .map(|name| {
            let dir = images.join(&name);
            ImageEntry {
                meta: ImageMeta::read(&dir),
                name,
                dir,
            }
        })
        .collect()
}

/// Bytes the files under `dir` take on disk (each inode once; symbolic
/// links not followed).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if seen.insert((m.dev(), m.ino())) {
                total += m.blocks() * 512;
            }
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    total
}

/// The names of the images under `images` (directories with a `rootfs`),
/// sorted.
pub(super) fn list(images: &Path) -> impl Iterator<Item = String> {
    let mut names = BTreeSet::new();
    if let Ok(entries) = fs::read_dir(images) {
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                if valid_name(name, 64) && entry.path().join("rootfs").is_dir() {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names.into_iter()
}

/// The absolute directory of image `name` under `images`, if it is one.
pub(super) fn find(images: &Path, name: &str) -> Result<PathBuf, ExecError> {
    if !valid_name(name, 64) {
        return Err(ExecError::NoImage(name.to_owned()));
    }
    let image = std::path::absolute(images)?.join(name);
    if !image.join("rootfs").is_dir() {
        return Err(ExecError::NoImage(name.to_owned()));
    }
    Ok(image)
}

/// The `/etc` entries of the host to share with the default image.
pub(super) fn host_etc_entries() -> Vec<String> {
    let mut entries: BTreeSet<String> = HOST_ETC.iter().map(|s| (*s).to_owned()).collect();
    if let Ok(dir) = fs::read_dir("/etc") {
        for entry in dir.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                if HOST_ETC_PREFIXES.iter().any(|p| name.starts_with(p)) && valid_name(name, 200) {
                    entries.insert(name.to_owned());
                }
            }
        }
    }
    entries.into_iter().collect()
}

pub(super) fn ensure_dir(path: &Path, mode: u32) -> Result<(), ExecError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            fs::remove_file(path).map_err(ctx("replacing", path))?;
            fs::create_dir(path).map_err(ctx("creating", path))?;
        }
        Err(_) => fs::create_dir(path).map_err(ctx("creating", path))?,
    }
    // Explicitly, whatever the umask.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(ctx("chmod", path))
}

/// An (empty, if new) regular file: a mount point for a file.
pub(super) fn ensure_file(path: &Path) -> Result<(), ExecError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Ok(meta) if meta.is_dir() => fs::remove_dir(path).map_err(ctx("replacing", path))?,
        Ok(_) => fs::remove_file(path).map_err(ctx("replacing", path))?,
        Err(_) => {}
    }
    write_atomic(path, "", 0o644)
}

pub(super) fn ensure_symlink(path: &Path, target: &Path) -> Result<(), ExecError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if fs::read_link(path).ok().as_deref() == Some(target) {
                return Ok(());
            }
            fs::remove_file(path).map_err(ctx("replacing", path))?;
        }
        Ok(meta) if meta.is_dir() => fs::remove_dir(path).map_err(ctx("replacing", path))?,
        Ok(_) => fs::remove_file(path).map_err(ctx("replacing", path))?,
        Err(_) => {}
    }
    symlink(target, path).map_err(ctx("creating", path))
}

/// Writes a file through a temporary file and a rename, so that readers
/// (running containers) see the old or the new content, never half.
pub(super) fn write_atomic(path: &Path, content: &str, mode: u32) -> Result<(), ExecError> {
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.kha-tmp"));
    fs::write(&tmp, content).map_err(ctx("writing", &tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(ctx("chmod", &tmp))?;
    fs::rename(&tmp, path).map_err(ctx("writing", path))
}

/// Is `rel` a directory inside `rootfs`, reached without following a
/// symbolic link (which would point into the host)?
pub(super) fn is_real_dir(rootfs: &Path, rel: &Path) -> bool {
    let mut p = rootfs.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            _ => return false,
        }
    }
    true
}

/// Is `dir` an empty directory (or absent)?
pub(super) fn is_empty_dir(dir: &Path) -> bool {
    match fs::read_dir(dir) {
        Ok(mut rd) => rd.next().is_none(),
        Err(_) => true,
    }
}

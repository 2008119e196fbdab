//! Full Debian images: `kha-builder image create NAME --suite trixie
//! --packages "erlang-nox rebar3" [--arch arm64]` runs mmdebstrap into a
//! directory beside the images, makes the rootfs ready for kha's runs,
//! and moves it into place once it is complete (an interrupted build
//! leaves no half image behind).
//!
//! mmdebstrap runs in its `root` mode, so the rootfs belongs to the host's
//! root: unmapped in the unprivileged container, which sees every file as
//! nobody's and cannot change one even by remounting, as with the quick
//! image's shared /usr. Recommended packages are left out. A foreign
//! architecture needs qemu's binfmt handler (registered first, see
//! `binfmt.rs`): mmdebstrap runs the packages' scripts under it.

use super::binfmt;
use super::config::{hosts_file, Conf};
use super::idmap::{check_searchable, IdMap};
use super::image::{ensure_dir, ensure_file, write_atomic, GROUP_KHA, IMAGE_DIRS, PASSWD_KHA};
use super::meta::{now, ImageKind, ImageMeta, META_FILE};
use super::{ctx, setup, valid_name, ExecError, TOOL_PATH};
use crate::toolchain::Arch;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// mmdebstrap's variant: the Essential packages and apt.
pub const DEFAULT_VARIANT: &str = "apt";
const VARIANTS: &[&str] = &[
    "extract",
    "custom",
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "debootstrap",
    "standard",
];

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianSpec {
    pub suite: String,
    pub arch: Arch,
    pub packages: Vec<String>,
    pub mirror: String,
    pub variant: String,
}

impl DebianSpec {
    /// Checks what came from the command line; `packages` may separate
    /// names with blanks or commas.
    pub fn new(
        suite: &str,
        arch: Option<&str>,
        packages: &str,
        mirror: Option<&str>,
        variant: Option<&str>,
    ) -> Result<DebianSpec, String> {
        let word = |s: &str| {
            !s.is_empty()
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        };
        if !word(suite) {
            return Err(format!(
                "--suite {suite:?} is not a Debian suite name (bookworm, trixie, …)"
            ));
        }
        let arch = match arch {
            None => Arch::native().ok_or("this host's architecture is not one Debian builds")?,
            Some(a) => Arch::find(a).ok_or_else(|| {
                format!("--arch {a:?}: kha knows amd64, arm64, armhf, armel, i386, ppc64el, s390x, riscv64, mips64el, mipsel, loong64")
            })?,
        };
        let packages: Vec<String> = packages
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = packages
            .iter()
            .find(|p| !word(p.split(':').next().unwrap_or("")))
        {
            return Err(format!("--packages: {bad:?} is not a Debian package name"));
        }
        let mirror = mirror.unwrap_or(DEFAULT_MIRROR);
        if !["http://", "https://", "file:/"]
            .iter()
            .any(|p| mirror.starts_with(p))
            || mirror.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("--mirror {mirror:?}: an http(s):// or file:/ URL"));
        }
        let variant = variant.unwrap_or(DEFAULT_VARIANT);
        if !VARIANTS.contains(&variant) {
            return Err(format!(
                "--variant {variant:?}: one of {}",
                VARIANTS.join(", ")
            ));
        }
        Ok(DebianSpec {
            suite: suite.to_owned(),
            arch,
            packages,
            mirror: mirror.to_owned(),
            variant: variant.to_owned(),
        })
    }

    /// mmdebstrap's arguments for building into `target`.
    pub fn mmdebstrap_args(&self, target: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--mode=root".into(),
            format!("--variant={}", self.variant).into(),
            format!("--arch={}", self.arch.debian).into(),
            "--format=directory".into(),
            "--aptopt=APT::Install-Recommends \"false\"".into(),
        ];
        if !self.packages.is_empty() {
            a.push(format!("--include={}", self.packages.join(",")).into());
        }
        a.push(self.suite.clone().into());
        a.push(target.into());
        a.push(self.mirror.clone().into());
        a
    }
}

/// Builds image `name` under `images` with mmdebstrap, its output (the
/// progress) going to this process's stderr. Refuses to replace an image.
pub fn create_debian(images: &Path, name: &str, spec: &DebianSpec) -> Result<PathBuf, ExecError> {
    if !valid_name(name, 64) {
        return Err(setup(format!(
            "invalid image name {name:?}: use letters, digits, '-', '_' and '.', not first"
        )));
    }
    let images = std::path::absolute(images)?;
    fs::create_dir_all(&images).map_err(ctx("creating", &images))?;
    // One build of a name at a time (the images directory may be shared):
    // a second would delete the first one's half-made rootfs. The lock
    // ends with the process, however it ends.
    let lock_path = images.join(format!(".{name}.lock"));
    let lock = fs::File::create(&lock_path).map_err(ctx("creating", &lock_path))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| {
            setup(format!(
                "image {name} is being built by another `kha-builder image create`"
            ))
        })?;
    let dir = images.join(name);
    if fs::symlink_metadata(&dir).is_ok() {
        return Err(setup(format!(
            "image {name} exists; `kha-builder image remove {name}` first"
        )));
    }
    let building = images.join(format!(".{name}.building"));
    let made = build_debian(&images, name, spec, &building);
    if made.is_err() {
        // A failed build leaves nothing (a rootfs is hundreds of MiB).
        let _ = crate::remove_dir(&building);
    }
    made
}

/// The body of [`create_debian`], under its lock: `building` is removed
/// by the caller if this fails.
fn build_debian(
    images: &Path,
    name: &str,
    spec: &DebianSpec,
    building: &Path,
) -> Result<PathBuf, ExecError> {
    let dir = images.join(name);
    if !spec.arch.is_native() {
        binfmt::ensure(spec.arch.qemu)
            .map_err(|e| setup(format!("{} image: {e}", spec.arch.debian)))?;
    }
    // Left by a build that was killed: nothing else writes here under the
    // lock.
    crate::remove_dir(building).map_err(ctx("removing", building))?;
    ensure_dir(building, 0o755)?;
    let rootfs = building.join("rootfs");
    let started = Instant::now();
    eprintln!(
        "kha: building image {name}: debian {} {} ({}) from {}",
        spec.suite,
        spec.arch.debian,
        if spec.packages.is_empty() {
            "no extra packages".to_string()
        } else {
            spec.packages.join(" ")
        },
        spec.mirror
    );
    let status = Command::new("mmdebstrap")
        .env("PATH", TOOL_PATH)
        .args(spec.mmdebstrap_args(&rootfs))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| {
            setup(format!(
                "cannot run mmdebstrap (apt-get install mmdebstrap): {e}"
            ))
        })?;
    if !status.success() {
        return Err(setup(format!(
            "mmdebstrap failed ({status}); see its output above"
        )));
    }
    prepare_rootfs(&rootfs)?;
    let mut conf = Conf::default();
    conf.line(&format!(
        "# lxc settings of the kha image {name:?}, included by the config of every run."
    ));
    conf.line("# A full Debian rootfs: nothing is shared from the host.");
    write_atomic(&building.join("config"), &conf.0, 0o644)?;
    let meta = ImageMeta {
        kind: ImageKind::Debian,
        suite: spec.suite.clone(),
        arch: spec.arch.debian.to_owned(),
        machine: spec.arch.label.to_owned(),
        packages: spec.packages.clone(),
        variant: spec.variant.clone(),
        mirror: spec.mirror.clone(),
        created: now(),
        build_secs: started.elapsed().as_secs(),
    };
    write_atomic(&building.join(META_FILE), &meta.to_toml(), 0o644)?;
    fs::rename(building, &dir).map_err(ctx("moving the image into", &dir))?;
    check_searchable(&dir.join("rootfs"), IdMap::for_host()?)?;
    Ok(dir)
}

/// Makes a Debian rootfs fit kha's runs: the mount points the run config
/// uses, the files bound over per run, and the `kha` user of the quick
/// image.
fn prepare_rootfs(rootfs: &Path) -> Result<(), ExecError> {
    for (sub, mode) in IMAGE_DIRS {
        let p = rootfs.join(sub);
        if !p.is_dir() {
            ensure_dir(&p, *mode)?;
        }
    }
    let etc = rootfs.join("etc");
    for (file, content) in [
        ("hosts", hosts_file("localhost")),
        ("hostname", "localhost\n".to_owned()),
        (
            "resolv.conf",
            "# no network unless the builder enables it\n".to_owned(),
        ),
    ] {
        let p = etc.join(file);
        if fs::symlink_metadata(&p)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            fs::remove_file(&p).map_err(ctx("replacing", &p))?;
        }
        if !p.is_file() {
            write_atomic(&p, &content, 0o644)?;
        }
        ensure_file(&p)?;
    }
    for (file, line) in [("passwd", PASSWD_KHA), ("group", GROUP_KHA)] {
        let p = etc.join(file);
        let text = fs::read_to_string(&p).map_err(ctx("reading", &p))?;
        if !text.lines().any(|l| l.starts_with("kha:")) {
            let mut text = text;
            if !text.ends_with('\n') && !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line);
            write_atomic(&p, &text, 0o644)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_and_arguments() {
        let s = DebianSpec::new(
            "trixie",
            Some("arm64"),
            "erlang-nox, rebar3  libfoo1:arm64",
            None,
            None,
        )
        .unwrap();
        let args: Vec<String> = s
            .mmdebstrap_args(Path::new("/i/.x.building/rootfs"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--mode=root",
                "--variant=apt",
                "--arch=arm64",
                "--format=directory",
                "--aptopt=APT::Install-Recommends \"false\"",
                "--include=erlang-nox,rebar3,libfoo1:arm64",
                "trixie",
                "/i/.x.building/rootfs",
                "http://deb.debian.org/debian",
            ]
        );
        let native = DebianSpec::new(
            "bookworm",
            None,
            "",
            Some("http://m.example/debian"),
            Some("minbase"),
        )
        .unwrap();
        assert!(native.arch.is_native());
        assert!(!native
            .mmdebstrap_args(Path::new("/r"))
            .iter()
            .any(|a| a.to_string_lossy().starts_with("--include")));
        for (suite, arch, pkgs, mirror, variant) in [
            ("--help", None, "", None, None),
            ("trixie", Some("vax"), "", None, None),
            ("trixie", None, "-oops", None, None),
            ("trixie", None, "Bad_Name", None, None),
            ("trixie", None, "", Some("ftp://x"), None),
            ("trixie", None, "", Some("http://x y"), None),
            ("trixie", None, "", None, Some("everything")),
        ] {
            assert!(
                DebianSpec::new(suite, arch, pkgs, mirror, variant).is_err(),
                "{suite} {arch:?} {pkgs} {mirror:?}"
            );
        }
    }
}

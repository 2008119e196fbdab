//! rustup toolchains: directories `<channel or version>-<host triple>`
//! under `$RUSTUP_HOME/toolchains`, each a complete Rust (`bin/rustc`,
//! `bin/cargo`) that runs from wherever it is mounted. The version comes
//! from the channel manifest rustup keeps in it.

use super::{Kind, Toolchain, RUST_KEY};
use std::path::Path;

/// The manifest rustup writes into every toolchain it installs.
pub const MANIFEST: &str = "lib/rustlib/multirust-channel-manifest.toml";

/// rustc's version from a channel manifest: `[pkg.rustc]`'s
/// `version = "1.95.0 (59807616e 2026-04-14)"` gives `1.95.0`
/// (`1.97.0-nightly` for a nightly). Read by lines, never whole: the
/// manifest is about 1 MB and only this is wanted (read whole at start,
/// two of them left 1.9 MB of a malloc arena resident in an idle builder).
pub fn parse_rustc_version(mut manifest: impl std::io::BufRead) -> Option<String> {
    let mut in_rustc = false;
    // One buffer for every line: `[pkg.rustc]` comes near the end of the
    // ~32,000 lines, and a String per line (`lines()`) made a builder's
    // start 10-15 ms slower.
    let mut line = Vec::new();
    loop {
        line.clear();
        if manifest.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_ascii();
        if l.first() == Some(&b'[') {
            in_rustc = l == b"[pkg.rustc]";
        } else if in_rustc {
            if let Some(v) = l.strip_prefix(b"version") {
                let v = std::str::from_utf8(v).ok()?;
                let v = v.trim_start().strip_prefix('=')?.trim().trim_matches('"');
                return v.split_whitespace().next().map(str::to_owned);
            }
        }
    }
}

/// The channel part of a toolchain's directory name, if the toolchain is
/// for this host's architecture: `stable-x86_64-unknown-linux-gnu` gives
/// `stable` on x86_64.
pub fn channel(dir_name: &str, arch: &str) -> Option<String> {
    let at = dir_name.find(&format!("-{arch}-"))?;
    let channel = &dir_name[..at];
    (!channel.is_empty() && !channel.contains([',', '='])).then(|| channel.to_owned())
}

/// The toolchain at `dir` (for this host's architecture), if it is one.
pub fn toolchain(dir: &Path) -> Option<Toolchain> {
    let name = dir.file_name()?.to_str()?.to_owned();
    let channel = channel(&name, std::env::consts::ARCH)?;
    if !dir.join("bin/rustc").is_file() {
        return None;
    }
    let version = std::fs::File::open(dir.join(MANIFEST))
        .ok()
        .and_then(|m| parse_rustc_version(std::io::BufReader::with_capacity(1 << 16, m)))?;
    let mut values = vec![channel];
    if !values.contains(&version) {
        values.push(version.clone());
    }
    Some(Toolchain {
        kind: Kind::Rustup,
        name,
        version,
        path: dir.to_path_buf(),
        key: RUST_KEY,
        values,
    })
}

/// The toolchains in a `toolchains` directory (or the one toolchain a
/// path names). Symlinked names (rustup links `1.95.0-…` to `stable-…`)
/// join the toolchain they point at.
pub fn in_dir(dir: &Path) -> Vec<Toolchain> {
    if let Some(t) = toolchain(dir) {
        return vec![t];
    }
    let mut out: Vec<Toolchain> = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    // Real directories first, so a symlink's name joins the real one.
    entries.sort_by_key(|e| (e.path().is_symlink(), e.file_name()));
    for entry in entries {
        let path = entry.path();
        let Some(t) = toolchain(&path) else { continue };
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        match out
            .iter_mut()
            .find(|o| std::fs::canonicalize(&o.path).ok().as_ref() == Some(&real))
        {
            Some(o) => {
                for v in t.values {
                    if !o.values.contains(&v) {
                        o.values.push(v);
                    }
                }
            }
            None => out.push(t),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_versions() {
        let m = "manifest-version = \"2\"\n[pkg.cargo]\nversion = \"0.96.0 (f2d 2026-03-21)\"\n\
                 [pkg.cargo.target.x]\navailable = true\n[pkg.rustc]\nversion = \"1.95.0 (59807616e 2026-04-14)\"\n\
                 [pkg.rustc.target.aarch64-apple-darwin]\n";
        assert_eq!(parse_rustc_version(m.as_bytes()).as_deref(), Some("1.95.0"));
        let n = "[pkg.rustc]\nversion = \"1.97.0-nightly (abc 2026-05-01)\"\n";
        assert_eq!(
            parse_rustc_version(n.as_bytes()).as_deref(),
            Some("1.97.0-nightly")
        );
        assert_eq!(
            parse_rustc_version(&b"[pkg.cargo]\nversion = \"1\"\n"[..]),
            None
        );
    }

    #[test]
    fn channels() {
        for (name, arch, want) in [
            ("stable-x86_64-unknown-linux-gnu", "x86_64", Some("stable")),
            ("1.95.0-x86_64-unknown-linux-gnu", "x86_64", Some("1.95.0")),
            (
                "nightly-2026-01-01-aarch64-unknown-linux-gnu",
                "aarch64",
                Some("nightly-2026-01-01"),
            ),
            ("stable-aarch64-unknown-linux-gnu", "x86_64", None),
            ("stable", "x86_64", None),
        ] {
            assert_eq!(channel(name, arch).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn toolchains_dir_with_links() {
        let arch = std::env::consts::ARCH;
        let dir = tempfile::tempdir().unwrap();
        let stable = dir.path().join(format!("stable-{arch}-unknown-linux-gnu"));
        std::fs::create_dir_all(stable.join("bin")).unwrap();
        std::fs::create_dir_all(stable.join("lib/rustlib")).unwrap();
        std::fs::write(stable.join("bin/rustc"), "").unwrap();
        std::fs::write(
            stable.join(MANIFEST),
            "[pkg.rustc]\nversion = \"1.95.0 (x y)\"\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            &stable,
            dir.path().join(format!("1.95.0-{arch}-unknown-linux-gnu")),
        )
        .unwrap();
        let found = in_dir(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].label(), "rust=stable,1.95.0");
        assert_eq!(found[0].path, stable);
    }
}

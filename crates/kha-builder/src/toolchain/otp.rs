//! Erlang/OTP installations, wherever they are: an OTP root (Debian's
//! `/usr/lib/erlang`, a kerl installation) says its version in
//! `releases/<major>/OTP_VERSION`.

use super::{version_values, Kind, Toolchain, OTP_KEY};
use std::fs;
use std::path::Path;

/// Where Debian's erlang packages put the OTP root, in an image's rootfs.
pub const DEBIAN_ROOT: &str = "usr/lib/erlang";

/// The version in an `OTP_VERSION` file: its first word (a patched
/// installation appends ` **`).
pub fn parse_otp_version(text: &str) -> Option<String> {
    let v = text.split_whitespace().next()?;
    (v.chars().next()?.is_ascii_digit() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
        .then(|| v.to_owned())
}

/// The OTP version installed at `root`, if it is an OTP root: the newest
/// `releases/*/OTP_VERSION`.
pub fn otp_version(root: &Path) -> Option<String> {
    let mut best: Option<(Vec<u64>, String)> = None;
    for entry in fs::read_dir(root.join("releases")).ok()?.flatten() {
        let Ok(text) = fs::read_to_string(entry.path().join("OTP_VERSION")) else {
            continue;
        };
        if let Some(v) = parse_otp_version(&text) {
            let key: Vec<u64> = v.split('.').map(|p| p.parse().unwrap_or(0)).collect();
            if best.as_ref().is_none_or(|(k, _)| key > *k) {
                best = Some((key, v));
            }
        }
    }
    best.map(|(_, v)| v)
}

/// The OTP Debian's packages installed in a rootfs, as a toolchain of the
/// image (its path as the container sees it).
pub fn in_rootfs(rootfs: &Path) -> Option<Toolchain> {
    let version = otp_version(&rootfs.join(DEBIAN_ROOT))?;
    Some(Toolchain {
        kind: Kind::Image,
        name: "debian".into(),
        values: version_values(&version),
        version,
        path: Path::new("/").join(DEBIAN_ROOT),
        key: OTP_KEY,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otp_version_files() {
        for (text, want) in [
            ("25.2.3\n", Some("25.2.3")),
            ("27.3.4.1", Some("27.3.4.1")),
            ("26.2.5 **\n", Some("26.2.5")),
            ("", None),
            ("garbage; rm -rf", None),
        ] {
            assert_eq!(parse_otp_version(text).as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn newest_release_of_a_root() {
        let dir = tempfile::tempdir().unwrap();
        for (major, v) in [("24", "24.3.4"), ("25", "25.2.3\n")] {
            let d = dir.path().join("releases").join(major);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("OTP_VERSION"), v).unwrap();
        }
        fs::create_dir_all(dir.path().join("releases/RELEASES.d")).unwrap();
        assert_eq!(otp_version(dir.path()).as_deref(), Some("25.2.3"));
        assert_eq!(otp_version(&dir.path().join("nope")), None);
        let rootfs = tempfile::tempdir().unwrap();
        let root = rootfs.path().join(DEBIAN_ROOT).join("releases/27");
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("OTP_VERSION"), "27.3.4\n").unwrap();
        let t = in_rootfs(rootfs.path()).unwrap();
        assert_eq!((t.kind, t.version.as_str()), (Kind::Image, "27.3.4"));
        assert_eq!(t.label(), "otp_release=27,27.3,27.3.4");
        assert_eq!(t.path, Path::new("/usr/lib/erlang"));
    }
}

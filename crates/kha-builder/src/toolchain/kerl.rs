//! kerl installations: what `kerl list installations` and kerl's
//! `otp_installations` file say (`NAME PATH` per line), and installation
//! directories themselves (an OTP root with kerl's `activate` script).

use super::otp::otp_version;
use super::{version_values, Kind, Toolchain, OTP_KEY};
use std::path::{Path, PathBuf};

/// `NAME PATH` lines, as `kerl list installations` prints them and
/// `~/.kerl/otp_installations` keeps them. Anything else (kerl's "No
/// Erlang/OTP installations found") is skipped.
pub fn parse_installations(text: &str) -> Vec<(String, PathBuf)> {
    text.lines()
        .filter_map(|line| {
            let (name, path) = line.trim().split_once(char::is_whitespace)?;
            let path = path.trim();
            path.starts_with('/')
                .then(|| (name.to_owned(), PathBuf::from(path)))
        })
        .collect()
}

/// The installation at `path` as a toolchain, if it is one. It answers to
/// its OTP version's prefixes (`25`, `25.2`, `25.2.3`) and its kerl name.
pub fn installation(name: &str, path: &Path) -> Option<Toolchain> {
    let version = otp_version(path)?;
    let mut values = version_values(&version);
    if !values.iter().any(|v| v == name) && !name.contains([',', '=']) && !name.is_empty() {
        values.push(name.to_owned());
    }
    Some(Toolchain {
        kind: Kind::Kerl,
        name: name.to_owned(),
        version,
        path: path.to_path_buf(),
        key: OTP_KEY,
        values,
    })
}

/// The installations in a directory given in builder.toml: the directory
/// itself if it is one, else each subdirectory that is, named after it.
pub fn in_dir(dir: &Path) -> Vec<Toolchain> {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if let Some(t) = installation(&name(dir), dir) {
        return vec![t];
    }
    let mut out: Vec<Toolchain> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| installation(&name(&e.path()), &e.path()))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installations_listing() {
        let text = "25.2.3 /home/ci/kerl/25.2.3\n\
                    27.0   /opt/kerl/27.0\n\
                    No Erlang/OTP installations found\n\
                    \n\
                    relative some/where\n";
        assert_eq!(
            parse_installations(text),
            vec![
                ("25.2.3".to_string(), PathBuf::from("/home/ci/kerl/25.2.3")),
                ("27.0".to_string(), PathBuf::from("/opt/kerl/27.0")),
            ]
        );
    }

    #[test]
    fn installation_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let inst = dir.path().join("otp-25");
        std::fs::create_dir_all(inst.join("releases/25")).unwrap();
        std::fs::write(inst.join("releases/25/OTP_VERSION"), "25.2.3\n").unwrap();
        std::fs::create_dir_all(dir.path().join("not-otp")).unwrap();
        let found = in_dir(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].label(), "otp_release=25,25.2,25.2.3,otp-25");
        assert_eq!(found[0].path, inst);
        assert_eq!(in_dir(&inst), found, "an installation named directly");
    }
}

//! A choice made real inside the job: the driver's prelude, which says in
//! the log what the job got and activates the host toolchains (mounted
//! read-only at their own path by the executor, so that kerl's
//! `activate` and the absolute paths in an installation work unchanged).

use super::{Choice, Kind, Toolchain};
use kha_core::shell::quote;
use std::path::PathBuf;

/// The host paths to mount read-only into the job's container.
pub fn mounts(choice: &Choice) -> Vec<PathBuf> {
    choice.activate.iter().map(|t| t.path.clone()).collect()
}

/// Shell lines run before the job's `env:` and phases: a `kha:` line per
/// thing the job got, and the activation of each host toolchain.
/// `describe` is the image as the log shows it (`debian trixie, amd64`).
/// A job that asked for nothing beyond the default image gets no lines:
/// its log is what its commands print, as before.
pub fn prelude(choice: &Choice, describe: &str) -> String {
    let mut s = String::new();
    if choice.image == kha_core::spec::DEFAULT_IMAGE
        && choice.activate.is_empty()
        && choice.inside.is_empty()
    {
        return s;
    }
    let say =
        |s: &mut String, line: String| s.push_str(&format!("printf '%s\\n' {}\n", quote(&line)));
    say(&mut s, format!("kha: image {} ({describe})", choice.image));
    for t in &choice.inside {
        say(
            &mut s,
            format!(
                "kha: {} {}: the image's own, {}",
                t.key,
                t.version,
                t.path.display()
            ),
        );
    }
    for t in &choice.activate {
        activate(&mut s, t, say);
    }
    s
}

fn activate(s: &mut String, t: &Toolchain, say: impl Fn(&mut String, String)) {
    let path = t.path.display().to_string();
    let bin = format!("{path}/bin");
    match t.kind {
        Kind::Kerl if t.path.join("activate").is_file() => {
            let act = format!("{path}/activate");
            say(
                s,
                format!(
                    "kha: {} {}: kerl installation {} at {path}, activated with . {act}",
                    t.key, t.version, t.name
                ),
            );
            s.push_str(&format!(". {}\n", quote(&act)));
        }
        kind => {
            let what = match kind {
                Kind::Kerl => "kerl installation",
                _ => "rustup toolchain",
            };
            say(
                s,
                format!(
                    "kha: {} {}: {what} {} at {path}, {bin} first on PATH",
                    t.key, t.version, t.name
                ),
            );
            s.push_str(&format!("PATH={}:\"$PATH\"; export PATH\n", quote(&bin)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Arch, OTP_KEY, RUST_KEY};
    use super::*;

    #[test]
    fn prelude_says_and_activates() {
        let dir = tempfile::tempdir().unwrap();
        let kerl = dir.path().join("25.2.3");
        std::fs::create_dir_all(&kerl).unwrap();
        std::fs::write(kerl.join("activate"), "").unwrap();
        let t = |kind, key, name: &str, path: PathBuf| Toolchain {
            kind,
            key,
            name: name.into(),
            version: "9.9".into(),
            path,
            values: vec!["9.9".into()],
        };
        let choice = Choice {
            image: "trixie".into(),
            arch: Arch::native().unwrap(),
            activate: vec![
                t(Kind::Kerl, OTP_KEY, "25.2.3", kerl.clone()),
                t(
                    Kind::Rustup,
                    RUST_KEY,
                    "stable",
                    PathBuf::from("/opt/rust/it's"),
                ),
            ],
            inside: vec![t(
                Kind::Image,
                OTP_KEY,
                "debian",
                PathBuf::from("/usr/lib/erlang"),
            )],
        };
        let k = kerl.display();
        assert_eq!(
            prelude(&choice, "debian trixie, amd64"),
            format!(
                "printf '%s\\n' 'kha: image trixie (debian trixie, amd64)'\n\
                 printf '%s\\n' 'kha: otp_release 9.9: the image'\\''s own, /usr/lib/erlang'\n\
                 printf '%s\\n' 'kha: otp_release 9.9: kerl installation 25.2.3 at {k}, activated with . {k}/activate'\n\
                 . '{k}/activate'\n\
                 printf '%s\\n' 'kha: rust 9.9: rustup toolchain stable at /opt/rust/it'\\''s, /opt/rust/it'\\''s/bin first on PATH'\n\
                 PATH='/opt/rust/it'\\''s/bin':\"$PATH\"; export PATH\n"
            )
        );
        assert_eq!(mounts(&choice), [kerl, PathBuf::from("/opt/rust/it's")]);
        let plain = Choice {
            image: "default".into(),
            activate: vec![],
            inside: vec![],
            ..choice.clone()
        };
        assert_eq!(prelude(&plain, "quick"), "");
        let other = Choice {
            image: "arm64".into(),
            ..plain
        };
        assert_eq!(
            prelude(&other, "debian bookworm, arm64"),
            "printf '%s\\n' 'kha: image arm64 (debian bookworm, arm64)'\n"
        );
    }
}

//! `image.toml`: what an image is, written when it is made (`kind`,
//! `suite`, `arch`, `packages`, …) and read for `image list`, the labels
//! and the job's log. An image without one (made before kha wrote them)
//! is a quick image of the host's architecture.

use crate::toolchain::Arch;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const META_FILE: &str = "image.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// The host's /usr shared read-only (`image create` without --suite).
    Quick,
    /// A full Debian root file system made by mmdebstrap.
    Debian,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMeta {
    pub kind: ImageKind,
    /// Debian's suite (`bookworm`, `trixie`); empty for a quick image.
    #[serde(default)]
    pub suite: String,
    /// Debian's name of the architecture (`amd64`, `arm64`).
    pub arch: String,
    /// The architecture as `uname -m`/the `arch=` label says it.
    #[serde(default)]
    pub machine: String,
    /// Packages asked for besides the variant's.
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub variant: String,
    #[serde(default)]
    pub mirror: String,
    /// When it was made (ISO 8601, UTC).
    #[serde(default)]
    pub created: String,
    /// How long making it took, in seconds.
    #[serde(default)]
    pub build_secs: u64,
}

impl ImageMeta {
    pub fn quick() -> ImageMeta {
        let arch = Arch::native();
        ImageMeta {
            kind: ImageKind::Quick,
            suite: String::new(),
            arch: arch.map_or(std::env::consts::ARCH, |a| a.debian).to_owned(),
            machine: std::env::consts::ARCH.to_owned(),
            packages: vec![],
            variant: String::new(),
            mirror: String::new(),
            created: now(),
            build_secs: 0,
        }
    }

    /// Reads `<dir>/image.toml`; a missing file is a quick image.
    pub fn read(dir: &Path) -> Result<ImageMeta, String> {
        match std::fs::read_to_string(dir.join(META_FILE)) {
            Ok(t) => {
                ImageMeta::parse(&t).map_err(|e| format!("{}: {e}", dir.join(META_FILE).display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImageMeta {
                created: String::new(),
                ..ImageMeta::quick()
            }),
            Err(e) => Err(format!("{}: {e}", dir.join(META_FILE).display())),
        }
    }

    pub fn parse(text: &str) -> Result<ImageMeta, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# Written by `kha-builder image create`: what this image is.\n{body}")
    }

    /// The architecture, if kha knows it.
    pub fn arch(&self) -> Option<Arch> {
        Arch::find(&self.arch)
    }

    /// One line for the job's log and `image list`.
    pub fn describe(&self) -> String {
        match self.kind {
            ImageKind::Quick => format!("quick image sharing the host's /usr, {}", self.arch),
            ImageKind::Debian => format!("debian {}, {}", self.suite, self.arch),
        }
    }
}

pub fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    kha_core::time::iso8601(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_toml() {
        let m = ImageMeta::parse(
            "kind = \"debian\"\nsuite = \"trixie\"\narch = \"arm64\"\nmachine = \"aarch64\"\n\
             packages = [\"erlang-nox\", \"rebar3\"]\ncreated = \"2026-12-03T03:30:00Z\"\n",
        )
        .unwrap();
        assert_eq!(m.kind, ImageKind::Debian);
        assert_eq!(m.arch().unwrap().label, "aarch64");
        assert_eq!(m.describe(), "debian trixie, arm64");
        assert_eq!(ImageMeta::parse(&m.to_toml()).unwrap(), m);
        assert!(ImageMeta::parse("kind = \"vm\"\narch = \"amd64\"\n").is_err());
        assert!(ImageMeta::parse("kind = \"quick\"\narch = \"amd64\"\nsize = 1\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let q = ImageMeta::read(dir.path()).unwrap();
        assert_eq!(
            (q.kind, q.machine.as_str()),
            (ImageKind::Quick, std::env::consts::ARCH)
        );
    }
}

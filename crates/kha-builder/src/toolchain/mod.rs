//! What a job can ask this builder for beyond a shell: images (each of an
//! architecture, each with the toolchains found inside it) and the host's
//! toolchains (kerl installations of Erlang/OTP, rustup toolchains), and
//! how one job gets what it asked for.
//!
//! - `discover.rs` finds the host's toolchains (I/O, once at start);
//!   `kerl.rs`, `rustup.rs` and `otp.rs` read their files (pure parsers
//!   with tests).
//! - [`Inventory::labels`] is what the builder advertises: the union of
//!   every image's architecture and toolchains and the host's toolchains
//!   (`arch=x86_64,aarch64`, `image=default,trixie`, `otp_release=25,25.2,25.2.3,27,…`,
//!   `rust=stable,1.95.0`).
//! - `pick.rs` decides, for one job, which image it runs in and which
//!   toolchains are activated, or why no single image here fits (a pure
//!   function tested by a table): the union can match while no one image
//!   has everything.
//! - `activate.rs` turns a choice into the driver's prelude (sourcing
//!   kerl's `activate`, putting a rustup toolchain's `bin` first on PATH)
//!   and says where host toolchains are mounted in the container.

pub mod activate;
pub mod arch;
pub mod discover;
pub mod kerl;
pub mod otp;
pub mod pick;
pub mod rustup;

pub use arch::Arch;
pub use pick::{pick, Choice};

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The label key Erlang/OTP versions are asked for by (`otp_release: 25`).
pub const OTP_KEY: &str = "otp_release";
/// The label key Rust toolchains are asked for by (`rust: stable`).
pub const RUST_KEY: &str = "rust";

/// Where a toolchain comes from, which decides how it is activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A kerl installation on the host: mounted, its `activate` sourced.
    Kerl,
    /// A rustup toolchain directory on the host: mounted, its `bin` first
    /// on PATH.
    Rustup,
    /// Installed inside an image (Debian's `erlang-nox`): nothing to do.
    Image,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Kerl => "kerl",
            Kind::Rustup => "rustup",
            Kind::Image => "image",
        }
    }
}

/// One toolchain: an installation of one version of one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pub kind: Kind,
    /// The installation's name (kerl's, rustup's directory name).
    pub name: String,
    /// Its full version (`25.2.3`, `1.95.0`).
    pub version: String,
    /// Where it is: on the host for kerl and rustup (and, mounted at the
    /// same path, in the container), inside the image for `Image`.
    pub path: PathBuf,
    /// The label key it answers ([`OTP_KEY`], [`RUST_KEY`]).
    pub key: &'static str,
    /// The values it answers to (`25`, `25.2`, `25.2.3`, its name…).
    pub values: Vec<String>,
}

impl Toolchain {
    pub fn offers(&self, key: &str, value: &str) -> bool {
        self.key == key && self.values.iter().any(|v| v == value)
    }

    /// `key=v1,v2,…`, as shown by `toolchain list`.
    pub fn label(&self) -> String {
        format!("{}={}", self.key, self.values.join(","))
    }
}

/// An image jobs can run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub arch: Arch,
    /// What it is, for the job's log (`debian trixie, amd64`).
    pub about: String,
    /// Why jobs cannot run in it now (a foreign image without a working
    /// binfmt handler), if so.
    pub unusable: Option<String>,
    /// Toolchains installed inside it.
    pub toolchains: Vec<Toolchain>,
}

/// Everything a job can be given here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub images: Vec<Image>,
    /// The host's toolchains: they serve the images of the host's own
    /// architecture.
    pub host: Vec<Toolchain>,
    /// Labels the builder's owner gave (`--label`, `labels`): a
    /// requirement they meet is the owner's promise, whatever the image.
    pub given: Vec<String>,
}

impl Inventory {
    /// The labels to advertise: every usable image's name and arch, the
    /// toolchains inside them, and the host's toolchains when a native
    /// image is there to run them in. One `key=value` per value.
    pub fn labels(&self) -> Vec<String> {
        let mut out = BTreeSet::new();
        let mut native = false;
        for image in self.images.iter().filter(|i| i.unusable.is_none()) {
            out.insert(format!("image={}", image.name));
            out.insert(format!("arch={}", image.arch.label));
            native |= image.arch.is_native();
            for t in &image.toolchains {
                out.extend(t.values.iter().map(|v| format!("{}={v}", t.key)));
            }
        }
        if native {
            for t in &self.host {
                out.extend(t.values.iter().map(|v| format!("{}={v}", t.key)));
            }
        }
        out.into_iter().collect()
    }

    /// The label keys toolchains answer here: a requirement with one of
    /// these keys must be met by the image a job runs in.
    pub fn toolchain_keys(&self) -> BTreeSet<&'static str> {
        self.host
            .iter()
            .chain(self.images.iter().flat_map(|i| i.toolchains.iter()))
            .map(|t| t.key)
            .chain([OTP_KEY, RUST_KEY])
            .collect()
    }
}

/// The values a dotted version answers to: every prefix (`25`, `25.2`,
/// `25.2.3`), as `otp_release: 25` and `otp_release: 25.2` both ask for
/// 25.2.3.
pub fn version_values(version: &str) -> Vec<String> {
    let parts: Vec<&str> = version.split('.').collect();
    (1..=parts.len()).map(|n| parts[..n].join(".")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otp(kind: Kind, v: &str) -> Toolchain {
        Toolchain {
            kind,
            name: v.into(),
            version: v.into(),
            path: PathBuf::from("/x"),
            key: OTP_KEY,
            values: version_values(v),
        }
    }

    #[test]
    fn labels_are_the_union_of_usable_images() {
        let native = Arch::native().unwrap();
        let arm = Arch::find(if native.debian == "arm64" {
            "amd64"
        } else {
            "arm64"
        })
        .unwrap();
        let inv = Inventory {
            images: vec![
                Image {
                    name: "default".into(),
                    about: String::new(),
                    arch: native,
                    unusable: None,
                    toolchains: vec![otp(Kind::Image, "25.2.3")],
                },
                Image {
                    name: "trixie".into(),
                    about: String::new(),
                    arch: native,
                    unusable: None,
                    toolchains: vec![otp(Kind::Image, "27.3.4")],
                },
                Image {
                    name: "arm".into(),
                    about: String::new(),
                    arch: arm,
                    unusable: Some("no handler".into()),
                    toolchains: vec![otp(Kind::Image, "26.0")],
                },
            ],
            host: vec![otp(Kind::Kerl, "24.3")],
            given: vec![],
        };
        let l = inv.labels();
        for want in [
            "image=default",
            "image=trixie",
            "otp_release=25",
            "otp_release=25.2.3",
            "otp_release=27",
            "otp_release=24",
            "otp_release=24.3",
        ] {
            assert!(l.contains(&want.to_string()), "{want} in {l:?}");
        }
        assert!(l.contains(&format!("arch={}", native.label)));
        assert!(!l.contains(&"image=arm".to_string()));
        assert!(!l.contains(&format!("arch={}", arm.label)));
        assert!(!l.contains(&"otp_release=26".to_string()));
    }

    #[test]
    fn version_prefixes() {
        assert_eq!(version_values("25.2.3"), ["25", "25.2", "25.2.3"]);
        assert_eq!(version_values("27"), ["27"]);
    }
}

//! Architectures under their three names: Debian's (`arm64`, what
//! `image create --arch` takes), the kernel's and Rust's (`aarch64`, what
//! `uname -m` prints and what the builder advertises as `arch=`, because
//! `.travis.yml`'s `arch: arm64` becomes the requirement `arch=aarch64`),
//! and qemu's (`aarch64`, the name of its binfmt handler).

/// One architecture a rootfs can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// Debian's name (`dpkg --print-architecture`).
    pub debian: &'static str,
    /// The `arch=` label: Rust's `std::env::consts::ARCH` for it.
    pub label: &'static str,
    /// qemu-user's name (`qemu-<name>`, binfmt handler `qemu-<name>`).
    pub qemu: &'static str,
}

/// Debian's release architectures (and a few ports qemu-user runs).
pub const ARCHES: &[Arch] = &[
    Arch {
        debian: "amd64",
        label: "x86_64",
        qemu: "x86_64",
    },
    Arch {
        debian: "arm64",
        label: "aarch64",
        qemu: "aarch64",
    },
    Arch {
        debian: "armhf",
        label: "arm",
        qemu: "arm",
    },
    Arch {
        debian: "armel",
        label: "arm",
        qemu: "arm",
    },
    Arch {
        debian: "i386",
        label: "x86",
        qemu: "i386",
    },
    Arch {
        debian: "ppc64el",
        label: "powerpc64",
        qemu: "ppc64le",
    },
    Arch {
        debian: "s390x",
        label: "s390x",
        qemu: "s390x",
    },
    Arch {
        debian: "riscv64",
        label: "riscv64",
        qemu: "riscv64",
    },
    Arch {
        debian: "mips64el",
        label: "mips64",
        qemu: "mips64el",
    },
    Arch {
        debian: "mipsel",
        label: "mips",
        qemu: "mipsel",
    },
    Arch {
        debian: "loong64",
        label: "loongarch64",
        qemu: "loongarch64",
    },
];

impl Arch {
    /// By Debian's name, or by the label (`aarch64` finds `arm64`).
    pub fn find(name: &str) -> Option<Arch> {
        ARCHES
            .iter()
            .find(|a| a.debian == name)
            .or_else(|| ARCHES.iter().find(|a| a.label == name))
            .copied()
    }

    /// This builder's own architecture.
    pub fn native() -> Option<Arch> {
        ARCHES
            .iter()
            .find(|a| a.label == std::env::consts::ARCH)
            .copied()
    }

    /// Is this the builder's own architecture (no emulation needed)?
    pub fn is_native(&self) -> bool {
        self.label == std::env::consts::ARCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (name, debian, label, qemu) in [
            ("arm64", "arm64", "aarch64", "aarch64"),
            ("aarch64", "arm64", "aarch64", "aarch64"),
            ("amd64", "amd64", "x86_64", "x86_64"),
            ("x86_64", "amd64", "x86_64", "x86_64"),
            ("ppc64el", "ppc64el", "powerpc64", "ppc64le"),
            ("armhf", "armhf", "arm", "arm"),
            ("s390x", "s390x", "s390x", "s390x"),
        ] {
            let a = Arch::find(name).unwrap();
            assert_eq!((a.debian, a.label, a.qemu), (debian, label, qemu), "{name}");
        }
        assert_eq!(Arch::find("vax"), None);
        // The label is what .travis.yml's arch becomes.
        assert_eq!(
            Arch::find("arm64").unwrap().label,
            kha_core::travis::builder_arch("arm64")
        );
        assert_eq!(
            Arch::find("ppc64el").unwrap().label,
            kha_core::travis::builder_arch("ppc64le")
        );
    }
}

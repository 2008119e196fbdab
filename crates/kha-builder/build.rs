//! Build script.
//!
//! - `KHA_SKIP_LXC=1` at build time sets `cfg(kha_skip_lxc)`, which marks
//!   the tests that need lxc (and root) as ignored, so they are reported
//!   as skipped rather than failing on a machine without lxc, and never
//!   counted as passed.
//! - The binary is linked with packed relative relocations (DT_RELR) when
//!   the linker and C library can: a position-independent Rust binary
//!   carries one 24-byte relocation per pointer in its read-only data
//!   (28,600 of them, 686 KB in kha-builder), which the dynamic loader
//!   reads at every start, and those pages stayed in an idle builder's
//!   resident set. Packed, they take a few KB. Probed by linking an empty
//!   C program with the same flag: an older linker only warns that it
//!   ignores the flag, an older glibc refuses the link; either way the
//!   flag is left out.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(kha_skip_lxc)");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_LXC");
    if std::env::var_os("KHA_SKIP_LXC").is_some_and(|v| v == "1") {
        println!("cargo:rustc-cfg=kha_skip_lxc");
    }
    let target = |k: &str| std::env::var(k).unwrap_or_default();
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" {
        if let Some(flag) = packed_relocations() {
            println!("cargo:rustc-link-arg-bins={flag}");
        }
    }
}

include!("relr.rs");

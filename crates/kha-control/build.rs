//! Build script: links the binaries (kha-control, kha) with packed
//! relative relocations (DT_RELR) when the linker and C library can, as
//! kha-builder's build script explains: kha-control carried 1.33 MB of
//! 24-byte relocation entries, read by the dynamic loader at every start.

fn main() {
    let target = |k: &str| std::env::var(k).unwrap_or_default();
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" {
        if let Some(flag) = packed_relocations() {
            println!("cargo:rustc-link-arg-bins={flag}");
        }
    }
    println!("cargo:rerun-if-changed=../kha-builder/relr.rs");
}

include!("../kha-builder/relr.rs");

//! `KHA_SKIP_LXC` set at build time marks the tests that need lxc as
//! ignored (`cfg(kha_skip_lxc)`), so that they are reported as skipped, not
//! passed; without it they run, and fail on a machine without lxc.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(kha_skip_lxc)");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_LXC");
    if std::env::var_os("KHA_SKIP_LXC").is_some() {
        println!("cargo:rustc-cfg=kha_skip_lxc");
    }
}

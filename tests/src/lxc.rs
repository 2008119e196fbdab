//! Whether this machine can run the lxc tests, and what a test does when
//! it cannot: fail with what to do, unless `KHA_SKIP_LXC` is set (then
//! `tests/build.rs` has marked the lxc tests ignored and they never start).

use std::path::Path;

/// Can this machine run lxc containers for the tests?
pub fn lxc_available() -> bool {
    is_root() && Path::new("/usr/bin/lxc-execute").exists()
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Panics with what to do when this machine cannot run lxc containers.
pub fn require_lxc() {
    assert!(
        lxc_available(),
        "this test runs jobs in lxc containers and needs root and lxc: install lxc \
         (`deploy/test.sh` does), or set KHA_SKIP_LXC=1 to report the lxc tests as ignored"
    );
}

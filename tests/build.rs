//! Marks tests that cannot run here as ignored, so that they are reported
//! as skipped, not passed:
//! - `KHA_SKIP_LXC` set at build time: the tests that need lxc
//!   (`cfg(kha_skip_lxc)`); without it they run, and fail on a machine
//!   without lxc.
//! - `KHA_SKIP_BROWSER` set, or no `/usr/bin/chromedriver` at build time:
//!   the browser tests (`cfg(kha_skip_browser)`); `deploy/test.sh` installs
//!   Debian's chromium and chromium-driver, so they run there.
//! - no prosody, or no python3-aiosmtpd, at build time: the XMPP
//!   (`cfg(kha_skip_prosody)`) and email (`cfg(kha_skip_smtp)`)
//!   notification tests, which deliver to those real servers.

use std::path::Path;

/// Debian's chromedriver, which the browser tests start (`src/browser.rs`).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The XMPP server and the SMTP sink the notification tests deliver to
/// (`src/servers/`).
const PROSODY: &str = "/usr/bin/prosody";
const AIOSMTPD: &str = "/usr/lib/python3/dist-packages/aiosmtpd";

fn main() {
    println!("cargo:rustc-check-cfg=cfg(kha_skip_lxc)");
    println!("cargo:rustc-check-cfg=cfg(kha_skip_browser)");
    println!("cargo:rustc-check-cfg=cfg(kha_skip_prosody)");
    println!("cargo:rustc-check-cfg=cfg(kha_skip_smtp)");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_LXC");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_BROWSER");
    // Installing chromium-driver later builds the browser tests in again.
    println!("cargo:rerun-if-changed={CHROMEDRIVER}");
    println!("cargo:rerun-if-changed={PROSODY}");
    println!("cargo:rerun-if-changed={AIOSMTPD}");
    if std::env::var_os("KHA_SKIP_LXC").is_some() {
        println!("cargo:rustc-cfg=kha_skip_lxc");
    }
    if std::env::var_os("KHA_SKIP_BROWSER").is_some() || !Path::new(CHROMEDRIVER).exists() {
        println!("cargo:rustc-cfg=kha_skip_browser");
    }
    if !Path::new(PROSODY).exists() {
        println!("cargo:rustc-cfg=kha_skip_prosody");
    }
    if !Path::new(AIOSMTPD).exists() {
        println!("cargo:rustc-cfg=kha_skip_smtp");
    }
}

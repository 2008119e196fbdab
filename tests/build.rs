//! Marks tests that cannot run here as ignored, so that they are reported
//! as skipped, not passed:
//! - `KHA_SKIP_LXC` set at build time: the tests that need lxc
//!   (`cfg(kha_skip_lxc)`); without it they run, and fail on a machine
//!   without lxc.
//! - `KHA_SKIP_BROWSER` set, or no `/usr/bin/chromedriver` at build time:
//!   the browser tests (`cfg(kha_skip_browser)`); `deploy/test.sh` installs
//!   Debian's chromium and chromium-driver, so they run there.
//! - `KHA_SKIP_NGIRCD` set, or no `/usr/sbin/ngircd` at build time: the
//!   IRC tests (`cfg(kha_skip_ngircd)`).
//! - `KHA_SKIP_PROSODY` set, or no prosody at build time: the XMPP tests
//!   (`cfg(kha_skip_prosody)`); `KHA_SKIP_SMTP` set, or no
//!   python3-aiosmtpd: the email tests (`cfg(kha_skip_smtp)`).

use std::path::Path;

/// Debian's chromedriver, which the browser tests start (`src/browser.rs`).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's IRC server, which the IRC tests start (`src/servers/ngircd.rs`).
const NGIRCD: &str = "/usr/sbin/ngircd";
/// The XMPP server and the SMTP sink the email and XMPP tests deliver to
/// (`src/servers/{prosody,smtp}.rs`).
const PROSODY: &str = "/usr/bin/prosody";
const AIOSMTPD: &str = "/usr/lib/python3/dist-packages/aiosmtpd";

fn main() {
    println!("cargo:rustc-check-cfg=cfg(kha_skip_lxc)");
    println!("cargo:rustc-check-cfg=cfg(kha_skip_browser)");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_LXC");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_BROWSER");
    // Installing chromium-driver later builds the browser tests in again.
    println!("cargo:rerun-if-changed={CHROMEDRIVER}");
    if std::env::var_os("KHA_SKIP_LXC").is_some() {
        println!("cargo:rustc-cfg=kha_skip_lxc");
    }
    if std::env::var_os("KHA_SKIP_BROWSER").is_some() || !Path::new(CHROMEDRIVER).exists() {
        println!("cargo:rustc-cfg=kha_skip_browser");
    }
    println!("cargo:rustc-check-cfg=cfg(kha_skip_ngircd)");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_NGIRCD");
    println!("cargo:rerun-if-changed={NGIRCD}");
    if std::env::var_os("KHA_SKIP_NGIRCD").is_some() || !Path::new(NGIRCD).exists() {
        println!("cargo:rustc-cfg=kha_skip_ngircd");
    }
    println!("cargo:rustc-check-cfg=cfg(kha_skip_prosody)");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_PROSODY");
    println!("cargo:rerun-if-changed={PROSODY}");
    if std::env::var_os("KHA_SKIP_PROSODY").is_some() || !Path::new(PROSODY).exists() {
        println!("cargo:rustc-cfg=kha_skip_prosody");
    }
    println!("cargo:rustc-check-cfg=cfg(kha_skip_smtp)");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_SMTP");
    println!("cargo:rerun-if-changed={AIOSMTPD}");
    if std::env::var_os("KHA_SKIP_SMTP").is_some() || !Path::new(AIOSMTPD).exists() {
        println!("cargo:rustc-cfg=kha_skip_smtp");
    }
}

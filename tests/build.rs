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
//! - `KHA_SKIP_IMAGES` set, or the test images not in their cache
//!   (`KHA_TEST_IMAGES`, default `/var/cache/kha/test-images`; made by
//!   `deploy/test-images.sh`, which `deploy/test.sh` runs): the tests of
//!   images and foreign architectures (`cfg(kha_skip_images)`). Without
//!   Debian's erlang or a rustup toolchain: `cfg(kha_skip_erlang)`,
//!   `cfg(kha_skip_rustup)`.
//! - Not built as root: the tests that mount file systems (a small disk
//!   for the control node's data dir), `cfg(kha_skip_root)`.
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
    println!("cargo:rustc-check-cfg=cfg(kha_skip_images)");
    println!("cargo:rustc-check-cfg=cfg(kha_skip_erlang)");
    println!("cargo:rustc-check-cfg=cfg(kha_skip_rustup)");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_IMAGES");
    println!("cargo:rerun-if-env-changed=KHA_TEST_IMAGES");
    let images = std::env::var_os("KHA_TEST_IMAGES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/kha/test-images".into());
    let mut have_images = true;
    for name in ["otp27", "arm64"] {
        // image.toml is the last file of a complete image.
        let meta = images.join(name).join("image.toml");
        println!("cargo:rerun-if-changed={}", meta.display());
        have_images &= meta.is_file();
    }
    if std::env::var_os("KHA_SKIP_IMAGES").is_some() || !have_images {
        println!("cargo:rustc-cfg=kha_skip_images");
    }
    println!("cargo:rerun-if-changed=/usr/lib/erlang/releases");
    if !Path::new("/usr/lib/erlang/releases").is_dir() || !Path::new("/usr/bin/rebar3").exists() {
        println!("cargo:rustc-cfg=kha_skip_erlang");
    }
    let rustup = std::env::var_os("RUSTUP_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".rustup")));
    let stable = rustup.map(|r| {
        r.join("toolchains")
            .join(format!(
                "stable-{}-unknown-linux-gnu",
                std::env::consts::ARCH
            ))
            .join("bin/rustc")
    });
    if !stable.is_some_and(|s| s.is_file()) {
        println!("cargo:rustc-cfg=kha_skip_rustup");
    }
    println!("cargo:rustc-check-cfg=cfg(kha_skip_root)");
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        println!("cargo:rustc-cfg=kha_skip_root");
    }
    println!("cargo:rustc-check-cfg=cfg(kha_skip_smtp)");
    println!("cargo:rerun-if-env-changed=KHA_SKIP_SMTP");
    println!("cargo:rerun-if-changed={AIOSMTPD}");
    if std::env::var_os("KHA_SKIP_SMTP").is_some() || !Path::new(AIOSMTPD).exists() {
        println!("cargo:rustc-cfg=kha_skip_smtp");
    }
}

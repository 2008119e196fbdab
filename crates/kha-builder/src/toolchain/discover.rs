//! Finding the host's toolchains: the directories builder.toml names,
//! and, unless `discover = false`, what kerl and rustup know of
//! (`kerl list installations` or kerl's `otp_installations` file;
//! `$RUSTUP_HOME/toolchains`). Runs once when the builder starts, and for
//! `kha-builder toolchain list`.

use super::{kerl, rustup, Toolchain};
use crate::config::ToolchainConfig;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The host's toolchains, each once (by canonical path), in the order
/// found: builder.toml's directories first.
pub fn host(cfg: &ToolchainConfig) -> Vec<Toolchain> {
    let mut found: Vec<Toolchain> = Vec::new();
    for dir in &cfg.kerl {
        found.extend(kerl::in_dir(dir));
    }
    for dir in &cfg.rustup {
        found.extend(rustup::in_dir(dir));
    }
    if cfg.discover {
        for (name, path) in kerl_installations() {
            found.extend(kerl::installation(&name, &path));
        }
        if let Some(dir) = rustup_toolchains() {
            found.extend(rustup::in_dir(&dir));
        }
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    found.retain(|t| {
        let real = std::fs::canonicalize(&t.path).unwrap_or_else(|_| t.path.clone());
        if seen.contains(&real) {
            return false;
        }
        seen.push(real);
        true
    });
    found
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// kerl's installations: `kerl list installations` when kerl is on PATH,
/// else its file (`$KERL_BASE_DIR/otp_installations`, `~/.kerl/…`).
fn kerl_installations() -> Vec<(String, PathBuf)> {
    let listed = Command::new("kerl")
        .args(["list", "installations"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = listed {
        if out.status.success() {
            return kerl::parse_installations(&String::from_utf8_lossy(&out.stdout));
        }
    }
    let base = std::env::var_os("KERL_BASE_DIR")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".kerl")));
    base.and_then(|b| std::fs::read_to_string(b.join("otp_installations")).ok())
        .map(|t| kerl::parse_installations(&t))
        .unwrap_or_default()
}

/// `$RUSTUP_HOME/toolchains`, or `~/.rustup/toolchains`, if there.
fn rustup_toolchains() -> Option<PathBuf> {
    let home = std::env::var_os("RUSTUP_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".rustup")))?;
    let dir = home.join("toolchains");
    Path::new(&dir).is_dir().then_some(dir)
}

//! What the toolchain, image and architecture tests run on: the images
//! `deploy/test-images.sh` builds once into a cache (`KHA_TEST_IMAGES`,
//! default `/var/cache/kha/test-images`), a kerl-layout installation of
//! the host's Debian OTP, and a copy of the host's rustup toolchain.
//!
//! The kerl installation is what `kerl build` + `kerl install` would
//! leave, made from Debian's OTP instead of compiling one (no internet
//! here beyond package registries): a copy of `/usr/lib/erlang` (an OTP
//! release root, kerl's layout), with `ROOTDIR` in its `erl` and `start`
//! scripts pointing at the copy (as OTP's `Install` script does for
//! kerl), and kerl's `activate` script for it. It is a real OTP 25 that
//! runs only from its own directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cached test images: `otp27` (trixie, amd64, erlang-nox and
/// rebar3) and `arm64` (bookworm, arm64).
pub const TEST_IMAGES: &[&str] = &["otp27", "arm64"];

/// Where `deploy/test-images.sh` keeps the test images.
pub fn test_images_dir() -> PathBuf {
    std::env::var_os("KHA_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kha/test-images"))
}

/// Links the cached image `name` into a builder's data dir (before the
/// builder starts), as `images/NAME`.
pub fn link_test_image(builder_data: &Path, name: &str) {
    let cached = test_images_dir().join(name);
    assert!(
        cached.join("image.toml").is_file(),
        "the test image {name} is not in {}: run deploy/test-images.sh (or build with \
         KHA_SKIP_IMAGES=1 to report these tests as ignored)",
        test_images_dir().display()
    );
    let images = builder_data.join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    std::os::unix::fs::symlink(&cached, images.join(name)).expect("link the test image");
}

/// kerl's `activate` for an installation at `dir` (kerl 4's template).
fn kerl_activate(dir: &str) -> String {
    format!(
        r#"#!/bin/sh
# credits to virtualenv
kerl_deactivate() {{
    if [ -n "$_KERL_PATH_REMOVABLE" ]; then
        PATH="$(echo "$PATH" | sed -e "s#$_KERL_PATH_REMOVABLE:##")"
        export PATH
        unset _KERL_PATH_REMOVABLE
    fi
    if [ -n "$_KERL_SAVED_REBAR_PLT_DIR" ]; then
        REBAR_PLT_DIR="$_KERL_SAVED_REBAR_PLT_DIR"
        export REBAR_PLT_DIR
        unset _KERL_SAVED_REBAR_PLT_DIR
    fi
    if [ -n "$_KERL_ACTIVE_DIR" ]; then
        unset _KERL_ACTIVE_DIR
    fi
    if [ ! "$1" = "nondestructive" ]; then
        unset -f kerl_deactivate
    fi
}}
kerl_deactivate nondestructive

_KERL_SAVED_REBAR_PLT_DIR="$REBAR_PLT_DIR"
export _KERL_SAVED_REBAR_PLT_DIR
_KERL_PATH_REMOVABLE="{dir}/bin"
PATH="${{_KERL_PATH_REMOVABLE}}:$PATH"
export PATH _KERL_PATH_REMOVABLE
REBAR_PLT_DIR="{dir}"
export REBAR_PLT_DIR
_KERL_ACTIVE_DIR="{dir}"
export _KERL_ACTIVE_DIR
"#
    )
}

/// Makes a kerl-layout installation of the host's Debian OTP under
/// `parent` (named after its version, e.g. `25.2.3`); returns its path.
pub fn make_kerl_installation(parent: &Path) -> PathBuf {
    let version = std::fs::read_dir("/usr/lib/erlang/releases")
        .expect("Debian's erlang (apt-get install erlang-nox)")
        .flatten()
        .find_map(|e| std::fs::read_to_string(e.path().join("OTP_VERSION")).ok())
        .expect("an OTP_VERSION")
        .trim()
        .to_string();
    std::fs::create_dir_all(parent).expect("kerl dir");
    let dir = parent.join(&version);
    let st = Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/erlang")
        .arg(&dir)
        .status()
        .expect("cp");
    assert!(st.success(), "copying /usr/lib/erlang");
    let d = dir.to_str().expect("utf-8 path");
    let mut scripts = vec![dir.join("bin/erl"), dir.join("bin/start")];
    for e in std::fs::read_dir(&dir).expect("the copy").flatten() {
        if e.file_name().to_string_lossy().starts_with("erts-") {
            scripts.push(e.path().join("bin/erl"));
            scripts.push(e.path().join("bin/start"));
        }
    }
    for s in scripts.iter().filter(|s| s.is_file()) {
        let text = std::fs::read_to_string(s).expect("an erl script");
        let text = text
            .lines()
            .map(|l| match l.trim_start().strip_prefix("ROOTDIR=") {
                Some(_) => format!("{}ROOTDIR={d}", &l[..l.len() - l.trim_start().len()]),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(s, text + "\n").expect("rewrite an erl script");
    }
    std::fs::write(dir.join("activate"), kerl_activate(d)).expect("write activate");
    dir
}

/// The host's stable rustup toolchain directory, if there is one.
pub fn host_rust_toolchain() -> Option<PathBuf> {
    let home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))?;
    let dir = home.join("toolchains").join(format!(
        "stable-{}-unknown-linux-gnu",
        std::env::consts::ARCH
    ));
    dir.join("bin/rustc").is_file().then_some(dir)
}

/// A copy of the host's stable rustup toolchain in `parent/toolchains/`,
/// as hard links (the toolchain is large; `~/.rustup` is usually not
/// reachable by a container's root), so a test can mount it.
pub fn link_rust_toolchain(parent: &Path) -> PathBuf {
    let src = host_rust_toolchain().expect("a stable rustup toolchain on this host");
    let dest = parent.join("toolchains");
    std::fs::create_dir_all(&dest).expect("toolchains dir");
    let st = Command::new("cp")
        .arg("-al")
        .arg(&src)
        .arg(&dest)
        .status()
        .expect("cp");
    assert!(st.success(), "linking {}", src.display());
    dest
}

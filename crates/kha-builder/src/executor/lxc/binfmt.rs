//! qemu's binfmt_misc handlers, so that a foreign image's programs run
//! under emulation. A handler must have the `F` (fix binary) flag: the
//! kernel then opens qemu when the handler is registered, and an emulated
//! program runs in a container whose rootfs has no qemu in it. Debian's
//! qemu-user-static ships the handlers (`/usr/lib/binfmt.d/qemu-*.conf`,
//! already in the register format; `/usr/share/binfmts/qemu-*` for
//! binfmt-support); the builder registers the missing ones itself (and
//! mounts binfmt_misc if it is not), since neither systemd nor
//! binfmt-support may be running on a builder.

use super::TOOL_PATH;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Handlers in the kernel's register format (systemd-binfmt's).
pub const BINFMT_D: &str = "/usr/lib/binfmt.d";
/// Handlers in binfmt-support's format.
pub const BINFMTS: &str = "/usr/share/binfmts";

/// A handler line from a `binfmt.d` file (`:name:type:offset:magic:mask:
/// interpreter:flags`), with `F` added to its flags if missing. Comments
/// and blank lines are skipped; the first handler counts.
pub fn from_binfmt_d(text: &str) -> Option<String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))?;
    let fields: Vec<&str> = line[1..].split(line.chars().next()?).collect();
    if fields.len() != 7 || fields[0].is_empty() || fields[5].is_empty() {
        return None;
    }
    let mut flags = fields[6].to_owned();
    if !flags.contains('F') {
        flags.push('F');
    }
    let sep = &line[..1];
    Some(format!("{sep}{}{sep}{flags}", fields[..6].join(sep)))
}

/// A handler in binfmt-support's format (`package`, `interpreter`,
/// `magic`, `offset`, `mask`, `credentials`, `preserve`, `fix_binary`
/// lines), as a register line named `name`, always with `F`.
pub fn from_binfmts(name: &str, text: &str) -> Option<String> {
    let field = |k: &str| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(k)
                .filter(|r| r.starts_with(' '))
                .map(str::trim)
        })
    };
    let interpreter = field("interpreter")?;
    let magic = field("magic")?;
    let offset = field("offset").unwrap_or("0");
    let mask = field("mask").unwrap_or("");
    let mut flags = String::new();
    if field("preserve") == Some("yes") {
        flags.push('P');
    }
    if field("credentials") == Some("yes") {
        flags.push('C');
    }
    flags.push('F');
    Some(format!(
        ":{name}:M:{offset}:{magic}:{mask}:{interpreter}:{flags}"
    ))
}

/// The register line for qemu's handler of `qemu_arch` from the files the
/// host has.
pub fn registration(qemu_arch: &str) -> Option<String> {
    let name = format!("qemu-{qemu_arch}");
    if let Ok(t) = fs::read_to_string(Path::new(BINFMT_D).join(format!("{name}.conf"))) {
        if let Some(line) = from_binfmt_d(&t) {
            return Some(line);
        }
    }
    let t = fs::read_to_string(Path::new(BINFMTS).join(&name)).ok()?;
    from_binfmts(&name, &t)
}

/// Why a registered handler's status (its file under binfmt_misc) makes
/// it unusable for containers, or `None` when it is fine.
pub fn status_problem(status: &str) -> Option<String> {
    if status.lines().next() != Some("enabled") {
        return Some("its binfmt handler is disabled".into());
    }
    let flags = status
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap_or("");
    (!flags.contains('F')).then(|| {
        "its binfmt handler lacks the F flag, so qemu cannot be found inside a container \
         (remove it: `echo -1 > /proc/sys/fs/binfmt_misc/qemu-…`; the builder registers it anew)"
            .into()
    })
}

/// Why programs of `qemu_arch` cannot run in containers here, or `None`
/// when its handler is registered and usable.
pub fn problem(qemu_arch: &str) -> Option<String> {
    match fs::read_to_string(Path::new(BINFMT_DIR).join(format!("qemu-{qemu_arch}"))) {
        Ok(status) => status_problem(&status),
        Err(_) => Some(format!(
            "no binfmt handler for qemu-{qemu_arch} (install qemu-user-static; the builder registers it at start)"
        )),
    }
}

/// Registers qemu's handler for `qemu_arch` unless it is there, mounting
/// binfmt_misc first if needed. Needs root.
pub fn ensure(qemu_arch: &str) -> Result<(), String> {
    let dir = Path::new(BINFMT_DIR);
    if dir.join(format!("qemu-{qemu_arch}")).exists() {
        return problem(qemu_arch).map_or(Ok(()), Err);
    }
    if !dir.join("register").exists() {
        let out = Command::new("mount")
            .env("PATH", TOOL_PATH)
            .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount binfmt_misc at {BINFMT_DIR}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let line = registration(qemu_arch).ok_or_else(|| {
        format!("no binfmt handler for qemu-{qemu_arch} on this host: install qemu-user-static")
    })?;
    fs::write(dir.join("register"), &line)
        .map_err(|e| format!("cannot register qemu-{qemu_arch} with binfmt_misc: {e}"))?;
    problem(qemu_arch).map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_D: &str = r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF";

    #[test]
    fn register_lines() {
        // Debian 12's file is used as it is.
        assert_eq!(
            from_binfmt_d(&format!("# qemu\n\n{DEBIAN_D}\n")).as_deref(),
            Some(DEBIAN_D)
        );
        // F is added where missing.
        assert_eq!(
            from_binfmt_d(":qemu-arm:M::\\x7fELF:\\xff\\xff:/usr/bin/qemu-arm-static:").as_deref(),
            Some(":qemu-arm:M::\\x7fELF:\\xff\\xff:/usr/bin/qemu-arm-static:F")
        );
        assert_eq!(
            from_binfmt_d(":qemu-arm:M::\\x7fELF:\\xff\\xff:/usr/bin/qemu-arm-static:P").as_deref(),
            Some(":qemu-arm:M::\\x7fELF:\\xff\\xff:/usr/bin/qemu-arm-static:PF")
        );
        assert_eq!(from_binfmt_d("# nothing\n"), None);
        assert_eq!(from_binfmt_d(":broken:M:"), None);
        let binfmts =
            "package qemu-user-static\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
                       magic \\x7f\\x45\\x4c\\x46\\x02\nmask \\xff\\xff\\xff\\xff\\xff\noffset 0\n\
                       credentials no\nfix_binary yes\npreserve yes\n";
        assert_eq!(
            from_binfmts("qemu-aarch64", binfmts).as_deref(),
            Some(":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46\\x02:\\xff\\xff\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:PF")
        );
        assert_eq!(from_binfmts("qemu-x", "package x\n"), None);
    }

    #[test]
    fn handler_status() {
        let ok = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\n";
        assert_eq!(status_problem(ok), None);
        assert!(status_problem("disabled\nflags: F\n")
            .unwrap()
            .contains("disabled"));
        assert!(status_problem("enabled\nflags: P\n")
            .unwrap()
            .contains("F flag"));
    }
}

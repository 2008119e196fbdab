// Included by the build scripts of kha-builder and kha-control: the probe
// for packed relative relocations (see kha-builder's build.rs).

/// The linker flag for packed relative relocations, if linking with it
/// works here without a warning.
fn packed_relocations() -> Option<&'static str> {
    const FLAG: &str = "-Wl,-z,pack-relative-relocs";
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR")?);
    let src = out.join("relr-probe.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").ok()?;
    let o = std::process::Command::new("cc")
        .arg(FLAG)
        .arg(&src)
        .arg("-o")
        .arg(out.join("relr-probe"))
        .output()
        .ok()?;
    (o.status.success() && o.stderr.is_empty()).then_some(FLAG)
}

//! The driver's part of the build cache: shell code that unpacks the
//! fetched archive before `before_install` and packs the cached
//! directories after `script` and `before_cache` (Travis's order:
//! travis-build's `stages.rb` runs `setup_casher` before `before_install`
//! and `before_cache`, `cache` after `script`, before `after_success` or
//! `after_failure`).
//!
//! Directories are the project's own `.travis.yml` text and are expanded
//! by the job's shell, as Travis's casher receives them (`$HOME/.m2`,
//! `${BUNDLE_PATH:-vendor/bundle}`); a relative one is under the build
//! directory. The archive holds paths relative to `/`, made with GNU tar
//! sorted by name with numeric owners, so two runs over the same files
//! give the same entries in the same order.

use super::{DIR, RESTORE, SAVE, SAVED};
use kha_core::cache::CacheSpec;
use kha_core::shell::quote;

/// Shell functions the two steps share.
const FUNCTIONS: &str = r#"kha_cache_path() {
  eval "_kha_p=\"$1\""
  case "$_kha_p" in /*) ;; *) _kha_p="$_kha_ws/$_kha_p" ;; esac
  _kha_p="${_kha_p#/}"
}
"#;

/// Before `before_install`: the shortcuts' setup lines, then the archive
/// unpacked if the builder fetched one.
pub fn restore(spec: &CacheSpec) -> String {
    let mut s = String::from(FUNCTIONS);
    for line in &spec.setup {
        s.push_str(line);
        s.push('\n');
    }
    s.push_str(&format!(
        r#"if [ -f "$_kha_ws/{DIR}/{RESTORE}" ]; then
  if ! command -v tar >/dev/null 2>&1; then
    printf 'kha: cache: tar is not in this image; the cache is not restored\n'
  elif tar -xpf "$_kha_ws/{DIR}/{RESTORE}" -C / 2>"$_kha_ws/{DIR}/restore.err"; then
    printf 'kha: cache: restored\n'
  else
    printf 'kha: cache: the archive could not be fully restored:\n'; cat "$_kha_ws/{DIR}/restore.err"
  fi
  rm -f "$_kha_ws/{DIR}/{RESTORE}" "$_kha_ws/{DIR}/restore.err"
fi
"#
    ));
    s
}

/// After `script`: `before_cache` (its failures change nothing), the
/// shortcuts' pruned paths removed, and the directories that exist
/// packed into the archive the builder sends. `run` renders one command
/// the way the driver runs every command (echoed, `eval`'d) with what a
/// failure does.
pub fn save(spec: &CacheSpec, run: &dyn Fn(&mut String, &str, &str)) -> String {
    let mut s = String::from("kha_state 'phase before_cache'\n");
    for cmd in &spec.before_cache {
        run(&mut s, cmd, ":");
    }
    for p in &spec.prune {
        s.push_str(&format!(
            "kha_cache_path {}; rm -rf \"/$_kha_p\"\n",
            quote(p)
        ));
    }
    let list = format!("\"$_kha_ws/{DIR}/list\"");
    s.push_str(&format!(": > {list}\n"));
    for d in &spec.directories {
        s.push_str(&format!(
            "kha_cache_path {}; [ -e \"/$_kha_p\" ] && printf '%s\\n' \"$_kha_p\" >> {list}\n",
            quote(d)
        ));
    }
    s.push_str(&format!(
        r#"if [ ! -s {list} ]; then
  printf 'kha: cache: none of the cached directories exists; nothing to store\n'
elif ! command -v tar >/dev/null 2>&1; then
  printf 'kha: cache: tar is not in this image; the cache is not stored\n'
elif tar --sort=name --numeric-owner --format=gnu --exclude="${{_kha_ws#/}}/.kha" \
    -cf "$_kha_ws/{DIR}/{SAVE}" -C / --verbatim-files-from -T {list} 2>"$_kha_ws/{DIR}/save.err"; then
  : > "$_kha_ws/{DIR}/{SAVED}"
else
  printf 'kha: cache: the directories could not be archived:\n'; cat "$_kha_ws/{DIR}/save.err"
fi
"#
    ));
    s
}

#[cfg(test)]
mod tests {
    use crate::driver::{read_progress, script, DriverInput};
    use kha_core::cache::CacheSpec;
    use kha_core::travis::Phases;
    use std::path::Path;
    use std::process::Command;

    /// Runs a driver with `cache` in the workspace `ws` with the host's sh.
    fn run(ws: &Path, script_cmds: &[&str], cache: &CacheSpec) -> (i32, String) {
        let phases = Phases {
            script: script_cmds.iter().map(|s| s.to_string()).collect(),
            ..Phases::default()
        };
        let text = script(&DriverInput {
            phases: &phases,
            env: &[],
            vars: &[],
            prelude: "",
            lang: "C.UTF-8",
            cache: Some(cache),
            secure_env: kha_core::spec::SecureEnv::Available,
            secure: &[],
        });
        std::fs::create_dir_all(ws.join(".kha/cache")).unwrap();
        std::fs::write(ws.join(".kha/run.sh"), text).unwrap();
        let out = Command::new("/bin/sh")
            .arg(ws.join(".kha/run.sh"))
            .output()
            .unwrap();
        let mut all = out.stdout;
        all.extend(out.stderr);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(all).unwrap(),
        )
    }

    #[test]
    fn packs_after_script_and_unpacks_before_install() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        let spec = CacheSpec {
            directories: vec!["c".into(), "missing".into(), "$KHA_T_DIR".into()],
            before_cache: vec!["rm -f c/junk".into(), "false".into()],
            prune: vec!["c/prune".into()],
            setup: vec!["export KHA_T_SETUP=1".into()],
            ..CacheSpec::default()
        };
        std::env::set_var("KHA_T_DIR", d.path().join("abs"));
        let (code, out) = run(
            &ws,
            &[
                "mkdir -p c/prune \"$KHA_T_DIR\" && echo kept > c/f && touch c/junk && echo a > \"$KHA_T_DIR/a\"",
                "echo setup=$KHA_T_SETUP",
                "false",
            ],
            &spec,
        );
        // A failed script still stores the cache; before_cache's failure
        // changes nothing.
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("setup=1\n") && out.contains("$ false\n"),
            "{out}"
        );
        let saved = ws.join(".kha/cache/save.tar");
        assert!(ws.join(".kha/cache/saved").is_file(), "{out}");
        let list = Command::new("tar").arg("-tf").arg(&saved).output().unwrap();
        let list = String::from_utf8(list.stdout).unwrap();
        let rel = ws.strip_prefix("/").unwrap().display().to_string();
        assert!(list.contains(&format!("{rel}/c/f\n")), "{list}");
        assert!(
            !list.contains("junk") && !list.contains("prune") && !list.contains(".kha"),
            "{list}"
        );
        assert!(list.contains("/abs/a\n"), "{list}");

        // Next run: the archive comes back before the first phase.
        std::fs::rename(&saved, ws.join(".kha/cache/restore.tar")).unwrap();
        std::fs::remove_file(ws.join(".kha/cache/saved")).unwrap();
        std::fs::remove_dir_all(ws.join("c")).unwrap();
        let (code, out) = run(&ws, &["cat c/f"], &spec);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("kha: cache: restored\n$ cat c/f\nkept\n"),
            "{out}"
        );
        assert!(!ws.join(".kha/cache/restore.tar").exists());
        let state = std::fs::read_to_string(ws.join(".kha/state")).unwrap();
        assert!(read_progress(&state).done);

        // Nothing to cache: said, no archive.
        std::fs::remove_dir_all(&ws).unwrap();
        std::fs::remove_dir_all(d.path().join("abs")).unwrap();
        let (_, out) = run(&ws, &["true"], &spec);
        assert!(
            out.contains("none of the cached directories exists"),
            "{out}"
        );
        assert!(!ws.join(".kha/cache/saved").exists());
    }
}

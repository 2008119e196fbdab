//! Travis's shell side of a job, in POSIX sh for the driver: its functions
//! (`travis_retry`, `travis_wait`, `travis_fold`, `travis_time_start` /
//! `travis_time_finish`, `travis_terminate`, in `travis_functions.sh`, as
//! travis-build's bash defines them), and the variables only the machine
//! running the job knows. The fold and time markers they print are the
//! ones `kha_core::term` recognises.

/// The functions, defined once at the top of the driver, so every phase's
/// commands (run with `eval` in the driver's shell) can call them.
pub const FUNCTIONS: &str = include_str!("travis_functions.sh");

use std::path::Path;

/// Variables computed inside the job's container: the checkout's path,
/// the user and whether it may use root (from one `id`), and the
/// distribution's codename (read by the shell itself: each process a
/// job's driver starts costs CPU on every job). The locale follows
/// ([`locale`]).
pub const BUILDER_ENV: &str = r#"export TRAVIS_BUILD_DIR="$_kha_ws"
_kha_id=$(id 2>/dev/null)
_kha_id=${_kha_id#uid=}
_kha_id=${_kha_id%% *}
case $_kha_id in
  *"("*")") USER=${_kha_id#*"("}; USER=${USER%")"} ;;
  *) USER=root ;;
esac
export USER
if [ "${_kha_id%%"("*}" = 0 ]; then TRAVIS_SUDO=true; else TRAVIS_SUDO=false; fi
export TRAVIS_SUDO
for _kha_f in /etc/os-release /usr/lib/os-release; do
  if [ -r "$_kha_f" ]; then
    TRAVIS_DIST=
    while IFS= read -r _kha_l; do
      case $_kha_l in
        VERSION_CODENAME=*) _kha_l=${_kha_l#*=}; _kha_l=${_kha_l#[\"\']}; TRAVIS_DIST=${_kha_l%[\"\']} ;;
      esac
    done < "$_kha_f"
    export TRAVIS_DIST
    break
  fi
done
"#;

/// The driver's lines setting the job's locale, `lang` (see [`lang`]).
pub fn locale(lang: &str) -> String {
    format!("LANG={lang}\nLC_ALL=$LANG\nexport LANG LC_ALL\n")
}

/// The locale of jobs in the image whose root is `root` (`/` for the
/// host's own `/usr`): Travis's, en_US.UTF-8, when the image has it, else
/// C.UTF-8, which every Debian image has, rather than a locale that makes
/// every program warn. What `locale -a` in the job's shell listed, read
/// here from the same places (the compiled locales under
/// `/usr/lib/locale`, as directories or in `locale-archive`) once per
/// image rather than with a process in every job.
pub fn lang(root: &Path) -> &'static str {
    let dir = root.join("usr/lib/locale");
    let named = |n: &[u8]| {
        [&b"en_US.utf8"[..], b"en_US.UTF-8"]
            .iter()
            .any(|w| n.windows(w.len()).any(|x| x == *w))
    };
    let in_dirs = std::fs::read_dir(&dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            named(e.file_name().as_encoded_bytes()) && e.file_type().is_ok_and(|t| t.is_dir())
        })
    });
    if in_dirs || archive_names(&dir.join("locale-archive")).is_some_and(|n| named(&n)) {
        "en_US.UTF-8"
    } else {
        "C.UTF-8"
    }
}

/// The string table of a glibc `locale-archive` (its locales' names,
/// NUL-terminated), without reading the locales themselves.
fn archive_names(path: &Path) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    const MAGIC: u32 = 0xde02_0109;
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 32];
    f.read_exact(&mut head).ok()?;
    let word = |i: usize| {
        u32::from_ne_bytes([
            head[4 * i],
            head[4 * i + 1],
            head[4 * i + 2],
            head[4 * i + 3],
        ])
    };
    // magic, serial, namehash offset, used, size, string offset, used, …
    if word(0) != MAGIC {
        return None;
    }
    let (offset, used) = (u64::from(word(5)), u64::from(word(6)));
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut names = Vec::new();
    f.take(used.min(1 << 20)).read_to_end(&mut names).ok()?;
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs `body` under the host's sh after the functions and the
    /// builder's variables; (exit code, stdout, stderr).
    fn sh(body: &str) -> (i32, String, String) {
        let d = tempfile::tempdir().unwrap();
        let script = format!(
            "cd {}\n_kha_ws=$(pwd)\nkha_state() {{ printf '%s\\n' \"$1\" >> state; }}\n{FUNCTIONS}{BUILDER_ENV}{}{body}\n",
            kha_core::shell::quote(&d.path().display().to_string()),
            locale(lang(Path::new("/")))
        );
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env("KHA_TRAVIS_WAIT_TICK", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn retry_tries_three_times_a_second_apart() {
        let (code, out, err) =
            sh("n=0; f() { n=$((n + 1)); echo \"try $n\"; [ $n -ge 2 ]; }; travis_retry f; echo \"rc $?\"");
        assert_eq!((code, out.as_str()), (0, "try 1\ntry 2\nrc 0\n"), "{err}");
        assert_eq!(
            err,
            "\n\x1b[31;1mThe command \"f\" failed. Retrying, 2 of 3.\x1b[0m\n\n"
        );
        let (_, out, err) = sh("travis_retry sh -c 'echo x; exit 3'; echo \"rc $?\"");
        assert_eq!(out, "x\nx\nx\nrc 3\n");
        assert!(
            err.ends_with("The command \"sh -c echo x; exit 3\" failed 3 times.\x1b[0m\n\n"),
            "{err}"
        );
    }

    #[test]
    fn wait_keeps_alive_then_shows_the_log() {
        let (_, out, _) = sh("travis_wait 1 sh -c 'echo hidden; sleep 2; exit 4'; echo \"rc $?\"");
        // Minutes are ticks of one second here: the command is killed
        // after one; its output comes after.
        assert!(
            out.starts_with("\n\nStill running (1 of 1): sh -c echo hidden; sleep 2; exit 4\r"),
            "{out:?}"
        );
        assert!(
            out.contains(
                "Timeout (1 minutes) reached. Terminating \"sh -c echo hidden; sleep 2; exit 4\""
            ),
            "{out:?}"
        );
        assert!(
            out.ends_with("exited with 137.\x1b[0m\n\n\x1b[32;1mLog:\x1b[0m\n\nhidden\nrc 137\n"),
            "{out:?}"
        );
        let (_, out, _) = sh("travis_wait sh -c 'echo fine'; echo \"rc $?\"");
        assert!(
            out.contains("\x1b[32;1mThe command sh -c echo fine exited with 0."),
            "{out:?}"
        );
        assert!(out.ends_with("Log:\x1b[0m\n\nfine\nrc 0\n"), "{out:?}");
    }

    #[test]
    fn folds_and_timers_are_the_markers_the_log_viewer_reads() {
        let (code, out, _) = sh(
            "travis_fold start deps; travis_time_start; echo inside; false; travis_time_finish; echo \"rc $?\"; travis_fold end deps",
        );
        assert_eq!(code, 0);
        let mut term = kha_core::term::Terminal::new();
        let mut lines = term.feed(out.as_bytes());
        lines.extend(term.finish());
        let kinds: Vec<_> = lines.iter().map(|l| (l.kind.clone(), l.text())).collect();
        use kha_core::term::LineKind::*;
        assert_eq!(
            kinds,
            vec![
                (FoldStart("deps".into()), "inside".into()),
                (Text, "rc 1".into()),
                (FoldEnd("deps".into()), String::new()),
            ],
            "{out:?}"
        );
        assert!(lines[1].duration_ns.is_some(), "{out:?}");
        let (_, out, _) =
            sh("travis_time_start build; echo \"$TRAVIS_TIMER_ID_build\" \"$TRAVIS_TIMER_ID\"");
        let ids: Vec<&str> = out.rsplit('\x1b').next().unwrap()[3..]
            .split_whitespace()
            .collect();
        assert_eq!(ids.len(), 2, "{out:?}");
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[0].len(), 8);
    }

    #[test]
    fn terminate_ends_the_job_with_its_code() {
        let (code, out, _) = sh("echo a; travis_terminate 1; echo never");
        assert_eq!((code, out.as_str()), (1, "a\n"));
        let (code, _, _) = sh("travis_terminate 0; exit 5");
        assert_eq!(code, 0);
    }

    #[test]
    fn builder_variables() {
        let (_, out, _) = sh("echo \"$TRAVIS_BUILD_DIR|$USER|$TRAVIS_SUDO|$LANG|$LC_ALL\"");
        let f: Vec<&str> = out.trim_end().split('|').collect();
        assert!(f[0].starts_with('/') && !f[1].is_empty(), "{out}");
        assert!(f[2] == "true" || f[2] == "false", "{out}");
        assert!(f[3].ends_with(".UTF-8") && f[3] == f[4], "{out}");
    }

    #[test]
    fn the_locale_is_travis_s_when_the_image_has_it() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("usr/lib/locale");
        std::fs::create_dir_all(dir.join("C.utf8")).unwrap();
        assert_eq!(lang(d.path()), "C.UTF-8");
        assert_eq!(lang(&d.path().join("none")), "C.UTF-8");
        // In an archive, as localedef writes it: the header, then the
        // names in its string table.
        let archive = |names: &[u8]| {
            let mut a = Vec::new();
            for w in [0xde02_0109u32, 0, 0x38, 1, 0x38b, 64, names.len() as u32, 0] {
                a.extend_from_slice(&w.to_ne_bytes());
            }
            a.resize(64, 0);
            a.extend_from_slice(names);
            a
        };
        std::fs::write(dir.join("locale-archive"), archive(b"de_DE.utf8\0")).unwrap();
        assert_eq!(lang(d.path()), "C.UTF-8");
        std::fs::write(
            dir.join("locale-archive"),
            archive(b"de_DE.utf8\0en_US.utf8\0"),
        )
        .unwrap();
        assert_eq!(lang(d.path()), "en_US.UTF-8");
        std::fs::remove_file(dir.join("locale-archive")).unwrap();
        // Compiled as a directory.
        std::fs::create_dir(dir.join("en_US.UTF-8")).unwrap();
        assert_eq!(lang(d.path()), "en_US.UTF-8");
        // What `locale -a` says here, the same.
        let listed = std::process::Command::new("locale").arg("-a").output();
        if let Some(o) = listed.ok().filter(|o| o.status.success()) {
            let out = String::from_utf8_lossy(&o.stdout);
            let has = out.contains("en_US.utf8") || out.contains("en_US.UTF-8");
            assert_eq!(lang(Path::new("/")) == "en_US.UTF-8", has, "{out}");
        }
    }
}

//! CVS: the module checked out fresh for each job, pinned to the build's
//! timestamp (`cvs checkout -D T [-r BRANCH]`), so a restarted build sees
//! the same files however the branch moved since. The `cvs` client runs as
//! an argument vector with a timeout; a pserver password goes into a
//! private `CVS_PASSFILE` that is removed after the checkout.

use super::{CheckoutError, Credentials, Source, Vcs};
use kha_core::cvs::{parse_time, Root, TRUNK};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Checkouts from CVS repositories. No cache: a checkout asks the server.
pub struct Cvs;

fn fail(msg: impl Into<String>) -> CheckoutError {
    CheckoutError::Vcs {
        vcs: "cvs",
        msg: msg.into(),
    }
}

/// A branch tag as CVS allows them (a letter, then letters, digits, `-`
/// and `_`), or HEAD.
fn branch_ok(b: &str) -> bool {
    b.starts_with(|c: char| c.is_ascii_alphabetic())
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A module: a relative path with no way out and no option in it.
fn module_ok(m: &str) -> bool {
    !m.starts_with('-')
        && !m.starts_with('/')
        && !m.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        && !m.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// What `cvs` is asked to do for `src` into `dest_name` (relative to the
/// directory it runs in): `checkout -D T [-r BRANCH] -d DEST MODULE`.
fn checkout_args(src: &Source, dest_name: &str) -> Result<Vec<String>, CheckoutError> {
    let time =
        parse_time(&src.revision).ok_or_else(|| CheckoutError::NoRevision(src.revision.clone()))?;
    if !module_ok(&src.module) {
        return Err(fail(format!("bad module {:?}", src.module)));
    }
    // -n: never run a program CVSROOT/modules names (`-o`): it would run
    // here, on the builder, outside the container.
    let mut args = vec!["checkout".to_string(), "-n".into(), "-D".into(), time];
    match src.branch.as_str() {
        "" | TRUNK => {}
        b if branch_ok(b) => args.extend(["-r".to_string(), b.to_string()]),
        b => return Err(fail(format!("bad branch tag {b:?}"))),
    }
    args.extend(["-d".to_string(), dest_name.to_string(), src.module.clone()]);
    Ok(args)
}

impl Vcs for Cvs {
    fn kind(&self) -> &'static str {
        "cvs"
    }

    fn checkout(
        &self,
        src: &Source,
        dest: &Path,
        creds: Option<&Credentials>,
    ) -> Result<(), CheckoutError> {
        let root = Root::parse(src.url.trim()).map_err(fail)?;
        // `checkout -d` takes a name relative to where cvs runs.
        let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(fail(format!("bad workspace {}", dest.display())));
        };
        let name = name.to_string_lossy().to_string();
        let args = checkout_args(src, &name)?;
        std::fs::create_dir_all(parent)?;
        let user = creds.map(|c| c.username.as_str());
        let mut cmd = Command::new("cvs");
        // -D's time is UTC whatever the builder's zone.
        cmd.current_dir(parent)
            .env("TZ", "UTC")
            .args(["-f", "-d", &root.arg(user), "-q"])
            .args(&args);
        let _passdir = match &root {
            Root::Local(_) => None,
            Root::Pserver { user: u, .. } => {
                let who = user.filter(|u| !u.is_empty()).unwrap_or(u);
                let pw = creds.map_or("", |c| c.password.expose());
                let line = root
                    .passfile_line(who, pw)
                    .ok_or_else(|| fail("the CVS password must be printable ASCII"))?;
                let dir = tempfile::Builder::new().prefix("kha-cvspass").tempdir()?;
                write_private(&dir.path().join("passfile"), &line)?;
                cmd.env("CVS_PASSFILE", dir.path().join("passfile"));
                Some(dir)
            }
        };
        let timeout = Duration::from_secs(kha_core::limits::CVS_COMMAND_TIMEOUT_SECS);
        let (ok, err) = run_with_timeout(cmd, timeout)?;
        if !ok {
            return Err(CheckoutError::Fetch {
                url: src.url.clone(),
                msg: last_lines(&err),
            });
        }
        if !dest.is_dir() {
            return Err(CheckoutError::NoRevision(format!(
                "{} of module {} (nothing was checked out)",
                src.revision, src.module
            )));
        }
        Ok(())
    }

    fn describe(&self, src: &Source) -> Option<String> {
        Some(format!(
            "checked out CVS module {} ({}) as of {} from {}",
            src.module,
            if src.branch.is_empty() {
                TRUNK
            } else {
                &src.branch
            },
            src.revision,
            src.url
        ))
    }
}

fn last_lines(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        "cvs failed without a message".into()
    } else {
        tail.join("; ")
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Runs `cmd` (no input; the file list on standard output is dropped, the
/// error output kept), killed at `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<(bool, Vec<u8>), CheckoutError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run cvs (is it installed?): {e}")))?;
    let mut stderr = child.stderr.take();
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait()? {
            Some(s) => break s,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "the checkout took longer than {}s",
                    timeout.as_secs()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    Ok((status.success(), err.join().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(branch: &str, revision: &str, module: &str) -> Source {
        Source {
            url: "/srv/cvs".into(),
            branch: branch.into(),
            revision: revision.into(),
            module: module.into(),
        }
    }

    #[test]
    fn checkout_arguments() {
        let t = "2026-12-03 04:05:06 +0000";
        let ok = |s: Source| checkout_args(&s, "ws").map(|a| a.join("|"));
        for (s, want) in [
            (
                src("HEAD", t, "mod"),
                Some(format!("checkout|-n|-D|{t}|-d|ws|mod")),
            ),
            (
                src("", "20261203T040506Z", "a/b"),
                Some(format!("checkout|-n|-D|{t}|-d|ws|a/b")),
            ),
            (
                src("feature-1_x", t, "mod"),
                Some(format!("checkout|-n|-D|{t}|-r|feature-1_x|-d|ws|mod")),
            ),
            (src("-rHEAD", t, "mod"), None),
            (src("a b", t, "mod"), None),
            (src("HEAD", "yesterday", "mod"), None),
            (src("HEAD", t, "../x"), None),
            (src("HEAD", t, "-p"), None),
            (src("HEAD", t, ""), None),
        ] {
            assert_eq!(ok(s.clone()).ok(), want, "{s:?}");
        }
    }

    /// A real repository (`cvs` is installed by deploy/common.sh): a checkout
    /// at a time gets the files as they were then, inclusive of that second.
    #[test]
    fn checks_a_module_out_as_of_a_time() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let root_s = root.to_string_lossy().to_string();
        let cvs = |cwd: &Path, args: &[&str]| {
            let o = Command::new("cvs")
                .current_dir(cwd)
                .args(["-f", "-d", &root_s, "-q"])
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "cvs {args:?}: {o:?}");
        };
        cvs(d.path(), &["init"]);
        let imp = d.path().join("imp");
        std::fs::create_dir(&imp).unwrap();
        std::fs::write(imp.join("f"), "one\n").unwrap();
        cvs(&imp, &["import", "-m", "import", "mod", "v", "r"]);
        cvs(d.path(), &["checkout", "-d", "wc", "mod"]);
        let wc = d.path().join("wc");
        // The last change is the import's; later changes must not show.
        let at = parse_time(&rlog_date(&root_s)).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(wc.join("f"), "two\n").unwrap();
        cvs(&wc, &["commit", "-m", "two"]);

        let dest = d.path().join("jobs/ws");
        let at_root = |branch: &str| Source {
            url: format!(":local:{root_s}"),
            ..src(branch, &at, "mod")
        };
        Cvs.checkout(&at_root("HEAD"), &dest, None).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("f")).unwrap(), "one\n");
        let missing = Cvs
            .checkout(&at_root("nosuch"), &d.path().join("jobs/ws2"), None)
            .unwrap_err();
        assert!(missing.to_string().contains("nosuch"), "{missing}");
    }

    /// The import's date as `cvs rlog` prints it.
    fn rlog_date(root: &str) -> String {
        let o = Command::new("cvs")
            .args(["-f", "-d", root, "-q", "rlog", "mod"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let line = text.lines().find(|l| l.starts_with("date: ")).unwrap();
        line["date: ".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }
}

//! Subversion, through the `svn` client: the job's branch path checked
//! out at its revision (`svn checkout -r REV URL/PATH@REV`), a working copy
//! the job may ask `svn info`. No cache: Subversion checks out one
//! revision's files, not a history. The client runs as an argument vector,
//! with no prompts, no credential cache and the password on its standard
//! input, in a process group killed whole at the timeout.

use super::{CheckoutError, Credentials, Source, Vcs};
use crate::hooks::without_userinfo;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Svn {
    timeout: Duration,
}

impl Default for Svn {
    fn default() -> Svn {
        Svn {
            timeout: Duration::from_secs(kha_core::limits::VCS_CHECKOUT_TIMEOUT_SECS),
        }
    }
}

/// What to run for `src`: `(revision, URL@REV)`, or why it cannot be.
fn plan(src: &Source) -> Result<(u64, String), CheckoutError> {
    let rev: u64 = src
        .revision
        .parse()
        .map_err(|_| CheckoutError::NoRevision(src.revision.clone()))?;
    let path = src.module.trim_matches('/');
    let bad = path
        .split('/')
        .any(|c| c == "." || c == ".." || (c.is_empty() && !path.is_empty()))
        || path.chars().any(char::is_control);
    if bad || src.url.is_empty() {
        return Err(CheckoutError::Vcs {
            vcs: "svn",
            msg: format!("no path {path:?} of {:?} to check out", src.url),
        });
    }
    let url = src.url.trim_end_matches('/');
    let url = if path.is_empty() {
        url.to_string()
    } else {
        format!("{url}/{}", kha_core::spec::svn_url_path(path))
    };
    Ok((rev, format!("{url}@{rev}")))
}

/// The revision in `svn checkout`'s last words ("Checked out revision 42.").
fn checked_out(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Checked out revision "))
        .and_then(|r| r.trim_end_matches('.').parse().ok())
}

impl Vcs for Svn {
    fn kind(&self) -> &'static str {
        "svn"
    }

    fn checkout(
        &self,
        src: &Source,
        dest: &Path,
        creds: Option<&Credentials>,
    ) -> Result<(), CheckoutError> {
        let (rev, target) = plan(src)?;
        let r = rev.to_string();
        let dest_s = dest.to_string_lossy();
        let out = self
            // Externals are not fetched (as git submodules are not): they
            // would let a commit make this builder, outside the container
            // and with the project's credentials, fetch from anywhere.
            .run(
                &[
                    "checkout",
                    "--ignore-externals",
                    "-r",
                    &r,
                    "--",
                    &target,
                    &dest_s,
                ],
                creds,
            )
            .map_err(|msg| CheckoutError::Fetch {
                url: without_userinfo(&src.url),
                msg,
            })?;
        match checked_out(&out) {
            Some(got) if got == rev => Ok(()),
            other => Err(CheckoutError::Vcs {
                vcs: "svn",
                msg: format!("asked for r{rev}, svn checked out {other:?}"),
            }),
        }
    }

    fn describe(&self, src: &Source) -> Option<String> {
        let path = if src.module.is_empty() {
            "/"
        } else {
            &src.module
        };
        Some(format!(
            "svn: checked out {path} at r{} from {}",
            src.revision,
            without_userinfo(&src.url)
        ))
    }
}

impl Svn {
    /// `svn ARGS…`; its standard output, or its standard error.
    fn run(&self, args: &[&str], creds: Option<&Credentials>) -> Result<String, String> {
        let mut cmd = Command::new("svn");
        cmd.args(["--non-interactive", "--no-auth-cache"]);
        if let Some(c) = creds {
            cmd.args(["--username", &c.username, "--password-from-stdin"]);
        }
        cmd.args(args)
            .env("LC_ALL", "C.UTF-8")
            .stdin(if creds.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run svn (install subversion): {e}"))?;
        if let (Some(c), Some(mut stdin)) = (creds, child.stdin.take()) {
            // A refused write means svn exited early; its stderr says why.
            let _ = stdin.write_all(format!("{}\n", c.password.expose()).as_bytes());
        }
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
        let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) if start.elapsed() > self.timeout => {
                    if let Ok(pid) = i32::try_from(child.id()) {
                        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                    let _ = child.wait();
                    break Err(format!(
                        "svn took longer than {} s and was stopped",
                        self.timeout.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => break Err(format!("waiting for svn: {e}")),
            }
        };
        let (out, err) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        if status?.success() {
            Ok(out)
        } else {
            Err(err.trim().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(url: &str, module: &str, revision: &str) -> Source {
        Source {
            url: url.into(),
            branch: String::new(),
            revision: revision.into(),
            module: module.into(),
        }
    }

    #[test]
    fn checkouts_are_planned() {
        for (s, want) in [
            (
                src("svn://h/r/", "trunk", "5"),
                Some((5, "svn://h/r/trunk@5")),
            ),
            (
                src("file:///srv/r", "branches/x", "12"),
                Some((12, "file:///srv/r/branches/x@12")),
            ),
            (src("file:///srv/r", "", "1"), Some((1, "file:///srv/r@1"))),
            (src("svn://h/r", "trunk", "abc"), None),
            (src("svn://h/r", "trunk", ""), None),
            (src("svn://h/r", "../other", "3"), None),
            (src("svn://h/r", "a//b", "3"), None),
            (src("", "trunk", "3"), None),
        ] {
            let got = plan(&s).ok();
            assert_eq!(got.as_ref().map(|(r, t)| (*r, t.as_str())), want, "{s:?}");
        }
    }

    #[test]
    fn the_checked_out_revision_is_read() {
        assert_eq!(
            checked_out("A    w/a\nA    w/b\nChecked out revision 42.\n"),
            Some(42)
        );
        assert_eq!(checked_out("A    w/a\n"), None);
    }
}

//! Running the `cvs` client: always an argument vector (`cvs -f -d ROOT -q
//! …`, `-f` so no `~/.cvsrc` changes what kha asked for), with a timeout.
//! A pserver password goes into a private `CVS_PASSFILE` (0600, in a
//! directory removed with the client), never onto a command line.

use crate::store::records::Credentials;
use crate::vcs::VcsError;
use kha_core::cvs::Root;
use kha_core::spec::VcsKind;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Client {
    root: String,
    /// Holds the passfile of a pserver root.
    passdir: Option<tempfile::TempDir>,
    timeout: Duration,
}

pub(super) fn fail(msg: impl Into<String>) -> VcsError {
    VcsError::Client {
        vcs: VcsKind::Cvs,
        msg: msg.into(),
    }
}

impl Client {
    pub fn new(url: &str, creds: Option<&Credentials>) -> Result<Client, VcsError> {
        let root = Root::parse(url.trim()).map_err(fail)?;
        let user = creds.map(|c| c.username.as_str());
        let mut passdir = None;
        if let Root::Pserver { user: u, .. } = &root {
            // Anonymous access too gets a line (an empty password), so
            // cvs does not look in the daemon user's ~/.cvspass.
            let who = user.filter(|u| !u.is_empty()).unwrap_or(u);
            let pw = creds.map_or("", |c| c.password.expose());
            let line = root.passfile_line(who, pw).ok_or_else(|| {
                fail("the project's CVS password must be printable ASCII (the pserver protocol has no room for more)")
            })?;
            let dir = tempfile::Builder::new()
                .prefix("kha-cvspass")
                .tempdir()
                .map_err(|e| fail(format!("cannot make a password file: {e}")))?;
            write_private(&dir.path().join("passfile"), &line)
                .map_err(|e| fail(format!("cannot write a password file: {e}")))?;
            passdir = Some(dir);
        }
        Ok(Client {
            root: root.arg(user),
            passdir,
            timeout: Duration::from_secs(kha_core::limits::CVS_COMMAND_TIMEOUT_SECS),
        })
    }

    /// `cvs … args`; its standard output, or its error output as the error.
    pub fn run(&self, args: &[&str]) -> Result<Vec<u8>, VcsError> {
        let mut cmd = Command::new("cvs");
        cmd.args(["-f", "-d", &self.root, "-q"]).args(args);
        // Dates in rlog's output, and those given with -D, in UTC whatever
        // the control node's zone.
        cmd.env("TZ", "UTC");
        if let Some(d) = &self.passdir {
            cmd.env("CVS_PASSFILE", d.path().join("passfile"));
        }
        let (ok, out, err) = run_with_timeout(cmd, self.timeout).map_err(fail)?;
        if ok {
            Ok(out)
        } else {
            Err(fail(format!(
                "cvs {}: {}",
                args.first().unwrap_or(&""),
                last_lines(&err)
            )))
        }
    }
}

/// The end of a client's complaint, which says what went wrong.
fn last_lines(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        "failed without a message".into()
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

/// Runs `cmd` with no input, collecting both outputs (each on its own
/// thread, so a full pipe cannot stall the child), killed at `timeout`.
fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
) -> Result<(bool, Vec<u8>, Vec<u8>), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cvs (is it installed?): {e}"))?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut cut = false;
            if let Some(mut r) = r {
                // Bounded: the rest is read and dropped, so the child is
                // never blocked; a cut answer is refused below.
                let cap = kha_core::limits::VCS_OUTPUT_CAP_BYTES;
                let _ = (&mut r).take(cap).read_to_end(&mut buf);
                cut = std::io::copy(&mut r, &mut std::io::sink()).is_ok_and(|n| n > 0);
            }
            (buf, cut)
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as _));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cvs took longer than {}s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for cvs: {e}")),
        }
    };
    let (out, cut) = out.join().unwrap_or_default();
    let (err, _) = err.join().unwrap_or_default();
    if cut {
        return Err(format!(
            "cvs answered more than {} MiB: not read",
            kha_core::limits::VCS_OUTPUT_CAP_BYTES >> 20
        ));
    }
    Ok((status.success(), out, err))
}

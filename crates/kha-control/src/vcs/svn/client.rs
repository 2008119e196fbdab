//! Running the `svn` client: an argument vector, never a shell line; no
//! prompts and no credential cache; the password written to its standard
//! input (`--password-from-stdin`), never on a command line `ps` shows; a
//! process group of its own, killed whole at the timeout.

use crate::store::records::Credentials;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The path or revision asked about does not exist.
    Missing(String),
    /// Anything else: the server, the network, credentials, the client.
    Other(String),
}

impl Failure {
    pub fn text(&self) -> &str {
        match self {
            Failure::Missing(s) | Failure::Other(s) => s,
        }
    }
}

/// svn's error codes for "no such path or revision", as opposed to a
/// failure to ask (E160013 path not found, W170000/E170000 non-existent
/// URL, E200009 some targets missing, E195012 not at that revision,
/// E160006 no such revision).
const MISSING: &[&str] = &["160013", "170000", "200009", "195012", "160006"];

/// Classifies svn's standard error.
pub fn classify(stderr: &str) -> Failure {
    let text = stderr.trim().to_string();
    // Codes are words like `E160013:` or `W170000:`.
    let missing = text.split_whitespace().any(|w| {
        let code = w.trim_end_matches(':');
        code.len() == 7
            && (code.starts_with('E') || code.starts_with('W'))
            && MISSING.contains(&&code[1..])
    });
    if missing {
        Failure::Missing(text)
    } else {
        Failure::Other(text)
    }
}

pub struct Client<'a> {
    pub creds: Option<&'a Credentials>,
    pub timeout: Duration,
}

impl Client<'_> {
    /// `svn ARGS…`; its standard output.
    pub fn run(&self, args: &[&str]) -> Result<Vec<u8>, Failure> {
        let mut cmd = Command::new("svn");
        cmd.args(["--non-interactive", "--no-auth-cache"]);
        if let Some(c) = self.creds {
            cmd.args(["--username", &c.username, "--password-from-stdin"]);
        }
        // Paths in the repository are UTF-8 whatever the daemon's locale.
        cmd.args(args)
            .env("LC_ALL", "C.UTF-8")
            .stdin(if self.creds.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure::Other(format!("cannot run svn (install subversion): {e}")))?;
        if let (Some(c), Some(mut stdin)) = (self.creds, child.stdin.take()) {
            // A refused write means svn exited early; its stderr says why.
            let _ = stdin.write_all(format!("{}\n", c.password.expose()).as_bytes());
        }
        let drain = |r: Option<Box<dyn Read + Send>>| {
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
                    break Err(Failure::Other(format!(
                        "svn {} took longer than {} s and was stopped",
                        args.first().copied().unwrap_or(""),
                        self.timeout.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(Failure::Other(format!("waiting for svn: {e}"))),
            }
        };
        let ((out, cut), (err, _)) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        if cut {
            return Err(Failure::Other(format!(
                "svn {} answered more than {} MiB: not read",
                args.first().copied().unwrap_or(""),
                kha_core::limits::VCS_OUTPUT_CAP_BYTES >> 20
            )));
        }
        if status?.success() {
            Ok(out)
        } else {
            Err(classify(&String::from_utf8_lossy(&err)))
        }
    }

    /// Like `run`, for an answer that is text (XML).
    pub fn text(&self, args: &[&str]) -> Result<String, Failure> {
        self.run(args)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_paths_are_told_apart() {
        for (stderr, missing) in [
            ("svn: warning: W170000: URL 'file:///r/branches/x' non-existent in revision 5\n\nsvn: E200009: Could not display info for all targets because some targets don't exist", true),
            ("svn: E160013: '/r/!svn/bc/5/tags' path not found", true),
            ("svn: E195012: Unable to find repository location for 'svn://h/r/b' in revision 3", true),
            ("svn: E160006: No such revision 99", true),
            ("svn: E170001: Authentication error from server: Username not found", false),
            ("svn: E170013: Unable to connect to a repository at URL 'svn://127.0.0.1:1/r'", false),
            ("svn: E000111: Can't connect to host '127.0.0.1': Connection refused", false),
        ] {
            assert_eq!(
                matches!(classify(stderr), Failure::Missing(_)),
                missing,
                "{stderr}"
            );
        }
    }
}

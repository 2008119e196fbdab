//! Git servers on loopback for the tests' repositories: `git daemon`
//! (git://, anonymous) and `tests/support/git-http.py` (smart HTTP with
//! basic auth, optionally TLS). Each binds its port itself.

use crate::process::{wait_for, Proc};
use std::hash::{BuildHasher, Hasher};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `git daemon` serving every repository under `base` on a loopback port.
pub struct GitDaemon {
    pub proc: Proc,
    pub port: u16,
}

impl GitDaemon {
    /// `git daemon` cannot listen on port 0 and say which port it got: it
    /// tries random ports until one binds.
    pub fn start(base: &Path) -> GitDaemon {
        // `git-daemon` itself, not the `git daemon` wrapper: killing the
        // wrapper would leave the daemon running.
        let exe = git_exec_path().join("git-daemon");
        for _ in 0..20 {
            let port = random_port();
            let log = base.join(format!("git-daemon-{port}.log"));
            let mut cmd = Command::new(&exe);
            cmd.args([
                "--verbose",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base);
            let mut proc = Proc::spawn(&mut cmd, log);
            let listening = wait_for("git daemon to listen", Duration::from_secs(10), || {
                if proc.log_text().contains("Ready to rumble") {
                    return Some(true);
                }
                // It exits when the port is taken.
                matches!(proc.child.try_wait(), Ok(Some(_))).then_some(false)
            });
            if listening {
                return GitDaemon { proc, port };
            }
            eprintln!("git daemon on port {port}: {}", proc.log_text());
        }
        panic!("git daemon found no free port in 20 tries");
    }

    /// The git:// URL of the repository in `base/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

fn git_exec_path() -> PathBuf {
    let o = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git --exec-path");
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// A port below Linux's ephemeral range (32768 and up), so that it is not
/// taken by some outgoing connection.
fn random_port() -> u16 {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    20000 + (r % 12000) as u16
}

/// A git smart-HTTP server with basic auth (`tests/support/git-http.py`,
/// `git http-backend` behind Python's http.server) on a loopback port.
pub struct GitHttp {
    pub proc: Proc,
    pub port: u16,
    pub tls: bool,
}

impl GitHttp {
    pub fn start(root: &Path, user: &str, password: &str) -> GitHttp {
        GitHttp::start_with(root, user, password, None)
    }

    /// Over TLS with `tls = (cert, key)`: the URL is https://.
    pub fn start_with(
        root: &Path,
        user: &str,
        password: &str,
        tls: Option<(&Path, &Path)>,
    ) -> GitHttp {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/git-http.py");
        let log = root.join("git-http.log");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(root)
            .args([user, password])
            .args(
                tls.map(|(c, k)| vec![c.to_path_buf(), k.to_path_buf()])
                    .unwrap_or_default(),
            )
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn_keeping_stdout(&mut cmd, log);
        // The server binds port 0 and prints the port it got.
        let mut line = String::new();
        let out = proc.child.stdout.take().expect("piped stdout");
        if let Err(e) = std::io::BufReader::new(out).read_line(&mut line) {
            panic!("reading the git HTTP server's port: {e}");
        }
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the git HTTP server did not start: {}", proc.log_text()));
        GitHttp {
            proc,
            port,
            tls: tls.is_some(),
        }
    }

    pub fn url(&self, name: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/{name}", self.port)
    }
}

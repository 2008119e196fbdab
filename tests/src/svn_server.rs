//! Subversion for the tests: repositories made with `svnadmin create` in
//! the standard layout, committed to through a working copy of their root
//! (as `kha test`), served by `file://` or by a real `svnserve` on a
//! loopback port, optionally with a user and password.

use crate::process::{wait_for, Proc};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A repository (`dir`) with `trunk`, `branches` and `tags`, and a working
/// copy of its root beside it.
pub struct SvnRepo {
    pub dir: PathBuf,
    wc: PathBuf,
}

fn svn(args: &[&str]) -> String {
    let o = Command::new("svn")
        .args(["--non-interactive", "--username", "kha-test"])
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("svn (install subversion)");
    assert!(
        o.status.success(),
        "svn {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The revision in "Committed revision 42." (`svn commit`, `svn copy`).
fn committed(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Committed revision "))
        .and_then(|r| r.trim_end_matches('.').parse().ok())
        .unwrap_or_else(|| panic!("no revision committed: {out}"))
}

impl SvnRepo {
    /// `base/name`, made with the standard layout in revision 1.
    pub fn create(base: &Path, name: &str) -> SvnRepo {
        let dir = base.join(name);
        let o = Command::new("svnadmin")
            .arg("create")
            .arg(&dir)
            .output()
            .expect("svnadmin (install subversion)");
        assert!(o.status.success(), "svnadmin create: {o:?}");
        let r = SvnRepo {
            wc: base.join(format!("{name}-wc")),
            dir,
        };
        let url = r.url();
        svn(&["checkout", "-q", &url, &r.wc.to_string_lossy()]);
        for d in ["trunk", "branches", "tags"] {
            std::fs::create_dir_all(r.wc.join(d)).expect("mkdir");
        }
        r.commit(&[], "the standard layout");
        r
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    /// Writes files (paths from the repository's root: `trunk/a.txt`),
    /// adds what is new and commits; returns the revision.
    pub fn commit(&self, files: &[(&str, &str)], msg: &str) -> u64 {
        for (p, text) in files {
            let path = self.wc.join(p);
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).expect("dir");
            }
            std::fs::write(path, text).expect("write");
        }
        let wc = self.wc.to_string_lossy().to_string();
        svn(&["add", "-q", "--force", &wc]);
        let rev = committed(&svn(&["commit", "-m", msg, &wc]));
        svn(&["update", "-q", &wc]);
        rev
    }

    /// `svn copy ^/FROM ^/TO`; returns the revision.
    pub fn copy(&self, from: &str, to: &str, msg: &str) -> u64 {
        let (f, t) = (
            format!("{}/{from}", self.url()),
            format!("{}/{to}", self.url()),
        );
        let rev = committed(&svn(&["copy", "-m", msg, &f, &t]));
        svn(&["update", "-q", &self.wc.to_string_lossy()]);
        rev
    }

    /// `svn delete ^/PATH`; returns the revision.
    pub fn delete(&self, path: &str, msg: &str) -> u64 {
        let u = format!("{}/{path}", self.url());
        let rev = committed(&svn(&["delete", "-m", msg, &u]));
        svn(&["update", "-q", &self.wc.to_string_lossy()]);
        rev
    }

    /// svnserve lets `user` in with `password` only (no anonymous reading).
    pub fn require_login(&self, user: &str, password: &str) {
        std::fs::write(
            self.dir.join("conf/svnserve.conf"),
            "[general]\nanon-access = none\nauth-access = write\npassword-db = passwd\nrealm = kha-test\n",
        )
        .expect("svnserve.conf");
        std::fs::write(
            self.dir.join("conf/passwd"),
            format!("[users]\n{user} = {password}\n"),
        )
        .expect("passwd");
    }

    /// Installs `deploy/svn/post-commit` with the variables it reads.
    pub fn install_hook(&self, vars: &[(&str, &str)]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/svn/post-commit");
        let hook = self.dir.join("hooks/post-commit");
        std::fs::copy(&script, &hook).expect("install the post-commit hook");
        let mut env = String::from("[default]\n");
        for (k, v) in vars {
            env.push_str(&format!("{k} = {v}\n"));
        }
        std::fs::write(self.dir.join("conf/hooks-env"), env).expect("hooks-env");
    }
}

/// `svnserve` serving the repositories under `root` on a loopback port.
pub struct Svnserve {
    pub proc: Proc,
    pub port: u16,
}

impl Svnserve {
    /// svnserve cannot say which port it got: random ports are tried until
    /// one binds.
    pub fn start(root: &Path) -> Svnserve {
        for _ in 0..20 {
            let port = 20000
                + (std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
                    % 12000) as u16;
            let log = root.join(format!("svnserve-{port}.log"));
            let mut cmd = Command::new("svnserve");
            cmd.args(["-d", "--foreground", "--listen-host", "127.0.0.1"])
                .args(["--listen-port", &port.to_string()])
                .arg("-r")
                .arg(root);
            let mut proc = Proc::spawn(&mut cmd, log);
            let up = wait_for("svnserve to listen", Duration::from_secs(10), || {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(true);
                }
                // It exits when the port is taken.
                matches!(proc.child.try_wait(), Ok(Some(_))).then_some(false)
            });
            if up {
                return Svnserve { proc, port };
            }
            eprintln!("svnserve on port {port}: {}", proc.log_text());
        }
        panic!("svnserve found no free port in 20 tries");
    }

    /// The svn:// URL of the repository `root/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("svn://127.0.0.1:{}/{name}", self.port)
    }
}

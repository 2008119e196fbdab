//! Git repositories the tests make: a working tree with commits, served to
//! the control node by `file://` URL, by path, or by a git server.

use std::path::PathBuf;
use std::process::Command;

/// A git repository on `master`, committed to as `kha test`.
pub struct Repo {
    pub dir: PathBuf,
    /// Removed with the repository when it has a temp dir of its own.
    _temp: Option<tempfile::TempDir>,
}

impl Repo {
    /// A repository in `dir` (made if missing).
    pub fn new(dir: PathBuf) -> Repo {
        Repo::init(dir, None)
    }

    /// A repository in a temp dir of its own (0755, so that lxc containers
    /// can read it), removed when dropped.
    pub fn temp() -> Repo {
        let t = crate::process::test_dir("kha-e2e-repo-");
        Repo::init(t.path().to_path_buf(), Some(t))
    }

    /// A repository in a temp dir whose one commit holds `travis_yml` as
    /// its `.travis.yml`.
    pub fn with_travis_yml(travis_yml: &str) -> Repo {
        let r = Repo::temp();
        r.commit(&[(".travis.yml", travis_yml)], "first");
        r
    }

    fn init(dir: PathBuf, temp: Option<tempfile::TempDir>) -> Repo {
        std::fs::create_dir_all(&dir).expect("repo dir");
        let r = Repo { dir, _temp: temp };
        r.git(&["init", "-q", "-b", "master"]);
        r.git(&["config", "user.email", "test@example.com"]);
        r.git(&["config", "user.name", "kha test"]);
        r
    }

    pub fn git(&self, args: &[&str]) -> String {
        let o = Command::new("git")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Writes files and commits them; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], msg: &str) -> String {
        for (p, text) in files {
            let path = self.dir.join(p);
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).expect("dir");
            }
            std::fs::write(path, text).expect("write");
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

//! CVS repositories the tests make: `cvs init`, a module imported, and a
//! working copy to commit through (on HEAD or on a branch tag made with
//! `cvs tag -b`), served to the control node and builders as a local
//! CVSROOT.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A CVS repository with one module.
pub struct CvsRepo {
    pub root: PathBuf,
    pub module: String,
    /// The working copy commits are made in.
    wc: PathBuf,
    _temp: tempfile::TempDir,
}

impl CvsRepo {
    /// A repository in a temp dir of its own whose module `module` is
    /// imported from `files`; the working copy is on HEAD.
    pub fn new(module: &str, files: &[(&str, &str)]) -> CvsRepo {
        let t = crate::process::test_dir("kha-e2e-cvs-");
        let root = t.path().join("root");
        let r = CvsRepo {
            root,
            module: module.into(),
            wc: t.path().join("wc"),
            _temp: t,
        };
        r.cvs(t_path(&r), &["init"]);
        let import = t_path(&r).join("import");
        write(&import, files);
        r.cvs(
            &import,
            &["import", "-m", "initial import", module, "vendor", "start"],
        );
        r.cvs(t_path(&r), &["checkout", "-d", "wc", module]);
        r
    }

    /// The CVSROOT as kha is given it (`:local:` makes it detected as CVS).
    pub fn url(&self) -> String {
        format!(":local:{}", self.root.display())
    }

    /// Runs `cvs -f -d ROOT -q args` in `dir`; its output.
    pub fn cvs(&self, dir: &Path, args: &[&str]) -> String {
        let o = Command::new("cvs")
            .current_dir(dir)
            .args(["-f", "-d", &self.root.to_string_lossy(), "-q"])
            .args(args)
            .output()
            .expect("the cvs client (deploy/common.sh installs it)");
        assert!(
            o.status.success(),
            "cvs {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Writes files (new ones are added) and commits them on the branch
    /// the working copy is on. Waits past the second first: CVS dates are
    /// seconds, and a build is pinned to one.
    pub fn commit(&self, files: &[(&str, &str)], msg: &str) {
        std::thread::sleep(Duration::from_millis(1100));
        for (p, _) in files {
            if !self.wc.join(p).exists() {
                write(&self.wc, &[(p, "")]);
                self.cvs(&self.wc, &["add", p]);
            }
        }
        write(&self.wc, files);
        self.cvs(&self.wc, &["commit", "-m", msg]);
    }

    /// Makes a branch tag at the working copy's revisions and moves the
    /// working copy onto it.
    pub fn branch(&self, name: &str) {
        self.cvs(&self.wc, &["tag", "-b", name]);
        self.switch(name);
    }

    /// Moves the working copy onto a branch tag, or "HEAD".
    pub fn switch(&self, name: &str) {
        if name == "HEAD" {
            self.cvs(&self.wc, &["update", "-A"]);
        } else {
            self.cvs(&self.wc, &["update", "-r", name]);
        }
    }

    /// Removes a branch tag.
    pub fn delete_branch(&self, name: &str) {
        self.cvs(&self.wc, &["rtag", "-d", "-B", name, &self.module]);
    }
}

fn t_path(r: &CvsRepo) -> &Path {
    r._temp.path()
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (p, text) in files {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(path, text).expect("write");
    }
}

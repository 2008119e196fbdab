//! Workspaces: checking a job's revision out into the directory the job
//! runs in. The version control system is a seam ([`Vcs`]) with git
//! (`git.rs`) as its one implementation; whatever the system, the
//! workspace holds the checkout and nothing of the credentials used to
//! fetch it. Blocking: run checkouts on the blocking pool.

pub mod cvs;
pub mod git;
pub mod svn;
pub mod tmpfs;

pub use git::Git;

use kha_core::spec::VcsKind;
use kha_core::Secret;
use std::fmt;
use std::path::Path;

/// Credentials for a private repository (from the job's grant). Used for
/// fetching only: never written into the workspace, passed to the job, or
/// logged (the password is a [`Secret`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, {:?})", self.username, self.password)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("cannot fetch {url}: {msg}")]
    Fetch { url: String, msg: String },
    #[error("commit {0} is not in the repository")]
    NoRevision(String),
    /// Any other failure of the version control system.
    #[error("{vcs}: {msg}")]
    Vcs { vcs: &'static str, msg: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A version control system a job's code can come from.
pub trait Vcs: Send + Sync + 'static {
    /// Its name ("git").
    fn kind(&self) -> &'static str;

    /// Fetches `src.revision` (a commit id, a revision number: whatever
    /// names one exact state in this system) and checks it out into
    /// `dest`, which must not exist. `creds` are for a private repository.
    /// Blocking.
    fn checkout(
        &self,
        src: &Source,
        dest: &Path,
        creds: Option<&Credentials>,
    ) -> Result<(), CheckoutError>;

    /// A line for the job's log once `src` is checked out, for systems
    /// whose revision alone does not say what exactly was (Subversion: the
    /// path and revision; CVS: module, branch, time).
    fn describe(&self, _src: &Source) -> Option<String> {
        None
    }
}

/// What to check out, from the job's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The repository (git, svn: its URL; cvs: the CVSROOT).
    pub url: String,
    /// The branch the build is of (svn: mapped to a path by the layout;
    /// cvs: the branch tag, or HEAD).
    pub branch: String,
    /// The one exact state: a commit id, a revision number, a timestamp.
    pub revision: String,
    /// svn: the branch's path in the repository; cvs: the module.
    pub module: String,
}

impl Source {
    pub fn of(spec: &kha_core::JobSpec) -> Source {
        Source {
            url: spec.repo_url.clone(),
            branch: spec.branch.clone(),
            revision: spec.commit.clone(),
            module: spec.module.clone(),
        }
    }
}

/// The version control systems this builder checks out from, by kind.
pub struct Systems {
    git: std::sync::Arc<dyn Vcs>,
    svn: std::sync::Arc<dyn Vcs>,
}

impl Systems {
    /// Keeps their caches under `data_dir`.
    pub fn new(data_dir: &Path) -> Systems {
        Systems {
            git: std::sync::Arc::new(Git::new(data_dir.join("mirrors"))),
            svn: std::sync::Arc::new(svn::Svn::default()),
        }
    }

    /// The system a job's spec names.
    pub fn get(&self, kind: VcsKind) -> std::sync::Arc<dyn Vcs> {
        match kind {
            VcsKind::Git => self.git.clone(),
            VcsKind::Cvs => std::sync::Arc::new(cvs::Cvs),
            VcsKind::Svn => self.svn.clone(),
        }
    }
}

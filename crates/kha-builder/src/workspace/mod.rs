//! Workspaces: checking a job's revision out into the directory the job
//! runs in. The version control system is a seam ([`Vcs`]) with git
//! (`git.rs`) as its one implementation; whatever the system, the
//! workspace holds the checkout and nothing of the credentials used to
//! fetch it. Blocking: run checkouts on the blocking pool.

pub mod git;

pub use git::Git;

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

    /// Fetches `revision` (a commit id, a revision number: whatever names
    /// one exact state in this system) of the repository at `url` and
    /// checks it out into `dest`, which must not exist. `creds` are for a
    /// private repository. Blocking.
    fn checkout(
        &self,
        url: &str,
        revision: &str,
        dest: &Path,
        creds: Option<&Credentials>,
    ) -> Result<(), CheckoutError>;
}

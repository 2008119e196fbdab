//! git, through git2: a bare mirror per repository URL is kept as a cache
//! and fetched before each job; the workspace is a local clone of it,
//! detached at the job's commit, with the real URL as `origin`.

use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{Cred, FetchOptions, Oid, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{CheckoutError, Credentials, Source, Vcs};

/// Checkouts from git repositories, through a mirror per URL.
pub struct Git {
    mirrors: PathBuf,
    /// Fetches into one mirror must not overlap.
    lock: Mutex<()>,
}

impl Git {
    /// Keeps its mirrors under `mirrors`.
    pub fn new(mirrors: PathBuf) -> Git {
        Git {
            mirrors,
            lock: Mutex::new(()),
        }
    }

    fn mirror_path(&self, url: &str) -> PathBuf {
        let h = hex::encode(Sha256::digest(url.as_bytes()));
        self.mirrors.join(format!("{}.git", &h[..16]))
    }

    /// Brings the mirror of `url` up to date enough to contain `commit`.
    fn mirror(
        &self,
        url: &str,
        commit: Oid,
        creds: Option<&Credentials>,
    ) -> Result<PathBuf, CheckoutError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.mirror_path(url);
        let repo = match Repository::open_bare(&path) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&path)?;
                Repository::init_bare(&path)?
            }
        };
        if repo.find_commit(commit).is_ok() {
            return Ok(path);
        }
        let mut remote = repo.remote_anonymous(url)?;
        let mut opts = FetchOptions::new();
        opts.prune(git2::FetchPrune::On)
            .remote_callbacks(callbacks(creds));
        remote
            .fetch(
                &[
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                    "+refs/pull/*/head:refs/pull/*/head",
                ],
                Some(&mut opts),
                None,
            )
            .map_err(|e| CheckoutError::Fetch {
                url: url.into(),
                msg: e.message().into(),
            })?;
        if repo.find_commit(commit).is_err() {
            // Not on any branch (e.g. force-pushed away): ask for it by id.
            let spec = format!("+{commit}:refs/kha/{commit}");
            let mut opts = FetchOptions::new();
            opts.remote_callbacks(callbacks(creds));
            let by_id = remote.fetch(&[spec.as_str()], Some(&mut opts), None);
            if repo.find_commit(commit).is_err() {
                if let Err(e) = by_id {
                    tracing::debug!(url, %commit, error = %e.message(), "fetching the commit by id failed");
                }
                return Err(CheckoutError::NoRevision(commit.to_string()));
            }
        }
        Ok(path)
    }
}

impl Vcs for Git {
    fn kind(&self) -> &'static str {
        "git"
    }

    fn checkout(
        &self,
        src: &Source,
        dest: &Path,
        creds: Option<&Credentials>,
    ) -> Result<(), CheckoutError> {
        let (url, commit) = (src.url.as_str(), src.revision.as_str());
        let oid = Oid::from_str(commit).map_err(|_| CheckoutError::NoRevision(commit.into()))?;
        let mirror = self.mirror(url, oid, creds)?;
        let mirror_url = mirror.to_string_lossy().to_string();
        let repo = RepoBuilder::new()
            // Copies, not hard links: the workspace is handed to the
            // container's root, and a linked pack would let a job write
            // into the mirror later jobs check out from.
            .clone_local(git2::build::CloneLocal::NoLinks)
            .bare(false)
            .with_checkout(CheckoutBuilder::new())
            .clone(&mirror_url, dest);
        let repo = match repo {
            Ok(r) => r,
            // An empty mirror (no branches) cannot be cloned: start empty.
            Err(_) => Repository::init(dest)?,
        };
        // The commit may be reachable only from refs/kha/*: fetch it locally.
        if repo.find_commit(oid).is_err() {
            let mut origin = repo.remote_anonymous(&mirror_url)?;
            let spec = format!("+refs/kha/{oid}:refs/kha/{oid}");
            origin.fetch(&[spec.as_str()], None, None)?;
        }
        let c = repo
            .find_commit(oid)
            .map_err(|_| CheckoutError::NoRevision(commit.into()))?;
        repo.checkout_tree(c.as_object(), Some(CheckoutBuilder::new().force()))?;
        repo.set_head_detached(oid)?;
        repo.remote_set_url("origin", url)
            .or_else(|_| repo.remote("origin", url).map(|_| ()))?;
        // The driver script lives in .kha/: keep it out of `git status`.
        let exclude = dest.join(".git/info/exclude");
        if let Some(parent) = exclude.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut ex = std::fs::read_to_string(&exclude).unwrap_or_default();
        ex.push_str("/.kha/\n");
        std::fs::write(exclude, ex)?;
        Ok(())
    }
}

/// Answers a remote's request for credentials, once.
fn callbacks(creds: Option<&Credentials>) -> RemoteCallbacks<'static> {
    let mut cb = RemoteCallbacks::new();
    if let Some(Credentials {
        username: user,
        password,
    }) = creds.cloned()
    {
        let mut tries = 0;
        cb.credentials(move |_url, _user, _allowed| {
            tries += 1;
            if tries > 1 {
                return Err(git2::Error::from_str(
                    "the repository refused the credentials",
                ));
            }
            Cred::userpass_plaintext(&user, password.expose())
        });
    }
    cb
}

impl From<git2::Error> for CheckoutError {
    fn from(e: git2::Error) -> CheckoutError {
        CheckoutError::Vcs {
            vcs: "git",
            msg: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with one commit holding `file`; returns its id.
    fn repo_with_commit(dir: &Path) -> String {
        let repo = Repository::init(dir).unwrap();
        std::fs::write(dir.join("file"), "hello\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("file")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "one", &tree, &[])
            .unwrap()
            .to_string()
    }

    #[test]
    fn checks_a_commit_out_through_the_vcs_seam() {
        let d = tempfile::tempdir().unwrap();
        let origin = d.path().join("origin");
        let commit = repo_with_commit(&origin);
        let url = origin.to_string_lossy().to_string();
        let vcs: &dyn Vcs = &Git::new(d.path().join("mirrors"));
        assert_eq!(vcs.kind(), "git");

        let dest = d.path().join("ws");
        let src = |revision: &str| Source {
            url: url.clone(),
            revision: revision.into(),
            ..Source::default()
        };
        vcs.checkout(&src(&commit), &dest, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("file")).unwrap(),
            "hello\n"
        );
        let ws = Repository::open(&dest).unwrap();
        assert!(ws.head_detached().unwrap());
        assert_eq!(ws.head().unwrap().target().unwrap().to_string(), commit);
        assert_eq!(ws.find_remote("origin").unwrap().url(), Some(url.as_str()));

        let missing = "0123456789012345678901234567890123456789";
        let err = vcs
            .checkout(&src(missing), &d.path().join("ws2"), None)
            .unwrap_err();
        assert!(
            matches!(err, CheckoutError::NoRevision(ref c) if c == missing),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("commit {missing} is not in the repository")
        );
    }
}

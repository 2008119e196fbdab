//! git, through git2: a bare mirror per repository URL is kept as a cache
//! and fetched before each job; the workspace is a new repository holding
//! a copy of its objects, detached at the job's commit, with the real URL
//! as `origin`.

use git2::build::CheckoutBuilder;
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

    /// Brings the mirror of `url` up to date enough to contain `commit`;
    /// returns it, opened, and its path.
    fn mirror(
        &self,
        url: &str,
        commit: Oid,
        creds: Option<&Credentials>,
    ) -> Result<(Repository, PathBuf), CheckoutError> {
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
            return Ok((repo, path));
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
        drop(remote);
        Ok((repo, path))
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
        let (repo, mirror) = self.mirror(url, oid, creds)?;
        // Listed from the repository the fetch opened: opening a
        // repository reads its config files and probes its directories.
        let refs = workspace_refs(&repo, &src.branch)?;
        drop(repo);
        write_git_dir(&mirror, dest, url, oid, &refs)?;
        let repo = Repository::open(dest)?;
        let c = repo
            .find_commit(oid)
            .map_err(|_| CheckoutError::NoRevision(commit.into()))?;
        repo.checkout_tree(c.as_object(), Some(CheckoutBuilder::new().force()))?;
        Ok(())
    }
}

/// The refs a workspace gets, as a clone of the mirror would have them:
/// the mirror's branches as `origin`'s, its tags, and the build's branch
/// as a local branch; sorted by name, as `packed-refs` wants them.
fn workspace_refs(repo: &Repository, branch: &str) -> Result<Vec<(String, Oid)>, CheckoutError> {
    let mut refs = Vec::new();
    for r in repo.references()? {
        let r = r?;
        let (Some(name), Some(target)) = (r.name(), r.target()) else {
            continue; // symbolic, or not UTF-8
        };
        if let Some(b) = name.strip_prefix("refs/heads/") {
            refs.push((format!("refs/remotes/origin/{b}"), target));
            if b == branch {
                refs.push((name.to_string(), target));
            }
        } else if name.starts_with("refs/tags/") {
            refs.push((name.to_string(), target));
        }
    }
    refs.sort();
    Ok(refs)
}

/// Writes a new repository at `dest` (which must not exist) holding a
/// copy of the mirror's objects, `refs`, HEAD detached at `commit` and
/// `url` as `origin`: each file written once, as a clone would leave
/// them but without its lock files, reflogs, hooks directory and second
/// checkout (per job, these were most of the checkout's cost: file
/// creations and deletions). Copies, never hard links: the workspace is
/// handed to the container's root, and a linked pack would let a job
/// write into the mirror later jobs check out from.
fn write_git_dir(
    mirror: &Path,
    dest: &Path,
    url: &str,
    commit: Oid,
    refs: &[(String, Oid)],
) -> Result<(), CheckoutError> {
    let git = dest.join(".git");
    std::fs::create_dir_all(&git)?;
    for d in ["objects", "objects/pack", "refs", "info"] {
        std::fs::create_dir(git.join(d))?;
    }
    copy_objects(&mirror.join("objects"), &git.join("objects"))?;
    let mut packed = String::from("# pack-refs with: sorted \n");
    for (name, oid) in refs {
        packed.push_str(&format!("{oid} {name}\n"));
    }
    std::fs::write(git.join("packed-refs"), packed)?;
    std::fs::write(git.join("HEAD"), format!("{commit}\n"))?;
    std::fs::write(git.join("config"), config_text(url))?;
    // The driver script lives in .kha/: keep it out of `git status`.
    std::fs::write(git.join("info/exclude"), "/.kha/\n")?;
    Ok(())
}

/// Copies the mirror's packs (each `.pack` before its `.idx`, so a copy
/// never indexes a pack it lacks) and any loose objects. Packs in a
/// mirror are only ever added (fetches rename them into place), so this
/// needs no lock against a concurrent fetch.
fn copy_objects(from: &Path, to: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(from.join("pack"))? {
        let name = e?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".idx")) else {
            continue;
        };
        let pack = format!("{stem}.pack");
        std::fs::copy(from.join("pack").join(&pack), to.join("pack").join(&pack))?;
        std::fs::copy(from.join("pack").join(&name), to.join("pack").join(&name))?;
    }
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        let loose = name.len() == 2
            && name
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_hexdigit()));
        if !loose || !e.file_type()?.is_dir() {
            continue;
        }
        let dir = to.join(&name);
        std::fs::create_dir(&dir)?;
        for o in std::fs::read_dir(e.path())? {
            let o = o?;
            std::fs::copy(o.path(), dir.join(o.file_name()))?;
        }
    }
    Ok(())
}

/// A new repository's config with `url` as `origin`, in git's syntax (the
/// URL quoted and escaped). A URL git cannot hold (a control character)
/// leaves the repository without `origin`.
fn config_text(url: &str) -> String {
    let mut s = String::from(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n",
    );
    if url.chars().any(|c| c.is_control()) {
        return s;
    }
    let quoted = url.replace('\\', "\\\\").replace('"', "\\\"");
    s.push_str(&format!(
        "[remote \"origin\"]\n\turl = \"{quoted}\"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
    ));
    s
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
pub(in crate::workspace) mod tests {
    use super::*;

    /// A repository with one commit holding `file`; returns its id.
    fn repo_with_commit(dir: &Path) -> String {
        repo_with_file(dir, b"hello\n")
    }

    /// A repository with one commit holding `file` with `data`; returns
    /// its id.
    pub(in crate::workspace) fn repo_with_file(dir: &Path, data: &[u8]) -> String {
        let repo = Repository::init(dir).unwrap();
        std::fs::write(dir.join("file"), data).unwrap();
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
        // The index matches the checkout, and origin's branches are there.
        let mut st = git2::StatusOptions::new();
        st.include_untracked(true);
        assert!(ws.statuses(Some(&mut st)).unwrap().is_empty());
        let remote_branches: Vec<String> = ws
            .references_glob("refs/remotes/origin/*")
            .unwrap()
            .map(|r| r.unwrap().target().unwrap().to_string())
            .collect();
        assert_eq!(remote_branches, std::slice::from_ref(&commit));
        // The objects are copies: nothing in the workspace is the mirror's.
        for e in std::fs::read_dir(dest.join(".git/objects/pack")).unwrap() {
            let m = e.unwrap().metadata().unwrap();
            assert_eq!(std::os::unix::fs::MetadataExt::nlink(&m), 1);
        }

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

//! Version control on the control node, behind the [`Vcs`] seam: what a
//! trigger and the poller need of a repository (its heads, a fetch, a
//! commit resolved with its message and `.travis.yml`). [`Systems`] hands
//! out the implementation a project's kind names: git ([`Mirrors`]: a bare
//! mirror per project, fetched before a build is set up), Subversion and
//! CVS. All of it is blocking; callers run it on the blocking pool.

pub mod cvs;
pub mod svn;

use crate::store::records::{Credentials, Project};
use kha_core::spec::VcsKind;
use std::path::Path;
use std::sync::Arc;

use git2::{Cred, Direction, FetchOptions, Oid, RemoteCallbacks, Repository};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum VcsError {
    #[error("cannot fetch {url}: {msg}")]
    Fetch { url: String, msg: String },
    #[error("branch {0:?} does not exist in the repository")]
    NoBranch(String),
    #[error("commit {0:?} does not exist in the repository")]
    NoCommit(String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// Any other failure of a version control system's client.
    #[error("{vcs}: {msg}")]
    Client { vcs: VcsKind, msg: String },
}

/// The version control systems of this control node, by kind.
pub struct Systems {
    git: Arc<Mirrors>,
    /// CVS's per-project polling state.
    cvs_dir: PathBuf,
    /// Subversion's poll states.
    svn: PathBuf,
}

impl Systems {
    /// Keeps their local copies under `data`.
    pub fn new(data: &Path) -> Systems {
        Systems {
            git: Arc::new(Mirrors::new(data.join("mirrors"))),
            cvs_dir: data.join("cvs"),
            svn: data.join("svn"),
        }
    }

    /// The system `kind` (CVS: of `module`).
    pub fn get(&self, kind: VcsKind, module: &str) -> Arc<dyn Vcs> {
        match kind {
            VcsKind::Git => self.git.clone(),
            VcsKind::Cvs => Arc::new(cvs::Cvs::new(self.cvs_dir.clone(), module)),
            VcsKind::Svn => Arc::new(svn::Svn::new(self.svn.clone(), None)),
        }
    }

    /// The system a project's code lives in.
    pub fn for_project(&self, p: &Project) -> Arc<dyn Vcs> {
        match p.vcs {
            // CVS has no local copy: it resolves on the server, so it
            // keeps the project's root and credentials.
            VcsKind::Cvs => Arc::new(cvs::Cvs::new(self.cvs_dir.clone(), &p.module).of_project(
                &p.name,
                &p.repo_url,
                p.credentials.clone(),
            )),
            // Its layout, URL and credentials (resolve_local needs them).
            VcsKind::Svn => Arc::new(svn::Svn::new(self.svn.clone(), Some(p))),
            VcsKind::Git => self.get(p.vcs, &p.module),
        }
    }
}

/// The kind a repository URL names when `--vcs` is not given: `svn://` and
/// `svn+ssh://` are Subversion, a CVSROOT (`:pserver:…`, `:ext:…`,
/// `:local:…`) is CVS, anything else git.
pub fn detect(url: &str) -> VcsKind {
    let url = url.trim();
    if url.starts_with("svn://") || url.starts_with("svn+") {
        VcsKind::Svn
    } else if url.starts_with(':') {
        VcsKind::Cvs
    } else {
        VcsKind::Git
    }
}

/// A CVS module name: a path inside the repository, never an option or a
/// way out of it.
pub fn cvs_module_ok(m: &str) -> Result<(), String> {
    let bad = m.starts_with('-')
        || m.starts_with('/')
        || m.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        || m.chars().any(|c| c.is_control() || c.is_whitespace());
    if bad {
        Err(format!(
            "CVS module {m:?}: give a path inside the repository (no spaces, '..' or leading '-' or '/')"
        ))
    } else {
        Ok(())
    }
}

/// A commit picked for a build.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub commit: String,
    /// The commit message's first line.
    pub message: String,
    /// The whole message (skip markers may be anywhere in it).
    pub full_message: String,
    /// The commit's author (name only).
    pub author: String,
    pub author_email: String,
    pub committer: String,
    pub committer_email: String,
    /// `.travis.yml` at that commit, if it has one.
    pub travis_yml: Option<Vec<u8>>,
    /// Names at the root of the commit's tree (language defaults look at
    /// them: rebar.config, Makefile, …).
    pub root_files: Vec<String>,
    /// Subversion: the branch's (or tag's) path in the repository, which
    /// the job checks out; empty for git.
    pub path: String,
}

/// What kha needs of a version-control system on the control node. Every
/// method blocks.
pub trait Vcs: Send + Sync {
    /// The remote's branch and tag heads (`refs/heads/…`, `refs/tags/…` →
    /// revision), without fetching anything.
    fn list_remote(
        &self,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<BTreeMap<String, String>, VcsError>;
    /// Brings the project's local copy up to date with the remote.
    fn fetch(&self, project: &str, url: &str, creds: Option<&Credentials>) -> Result<(), VcsError>;
    /// The branch a new project builds by default.
    fn default_branch(
        &self,
        project: &str,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, VcsError>;
    /// Fetches, then picks the commit to build: `commit` if given, else the
    /// branch's head.
    fn resolve(
        &self,
        project: &str,
        url: &str,
        branch: &str,
        commit: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<Resolved, VcsError>;
    /// Like `resolve`, from what was fetched already.
    fn resolve_local(
        &self,
        project: &str,
        branch: &str,
        commit: Option<&str>,
    ) -> Result<Resolved, VcsError>;
}

/// Git: a bare mirror per project (git2).
pub struct Mirrors {
    dir: PathBuf,
    /// git2 repositories are not safe to fetch into concurrently.
    lock: Mutex<()>,
}

impl Mirrors {
    pub fn new(dir: PathBuf) -> Mirrors {
        Mirrors {
            dir,
            lock: Mutex::new(()),
        }
    }

    fn path(&self, project: &str) -> PathBuf {
        self.dir.join(format!("{project}.git"))
    }

    /// Fetches every branch and tag of `url` into the project's mirror
    /// (with credentials for a private repository).
    fn fetch_with(
        &self,
        project: &str,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<Repository, VcsError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path(project);
        let repo = match Repository::open_bare(&path) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&path).map_err(|e| VcsError::Fetch {
                    url: url.into(),
                    msg: e.to_string(),
                })?;
                Repository::init_bare(&path)?
            }
        };
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
            .map_err(|e| VcsError::Fetch {
                url: url.into(),
                msg: e.message().to_string(),
            })?;
        drop(remote);
        Ok(repo)
    }
}

impl Vcs for Mirrors {
    /// The remote's branch and tag heads (`refs/heads/…`, `refs/tags/…` →
    /// commit id; annotated tags peeled), without fetching anything.
    fn list_remote(
        &self,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<BTreeMap<String, String>, VcsError> {
        let mut remote = git2::Remote::create_detached(url)?;
        let fail = |e: git2::Error| VcsError::Fetch {
            url: url.into(),
            msg: e.message().to_string(),
        };
        remote
            .connect_auth(Direction::Fetch, Some(callbacks(creds)), None)
            .map_err(fail)?;
        let mut out = BTreeMap::new();
        for head in remote.list().map_err(fail)? {
            let name = head.name();
            if let Some(tag) = name.strip_suffix("^{}") {
                out.insert(tag.to_string(), head.oid().to_string());
            } else if name.starts_with("refs/heads/") || name.starts_with("refs/tags/") {
                out.entry(name.to_string())
                    .or_insert_with(|| head.oid().to_string());
            }
        }
        Ok(out)
    }

    /// The branch a new project builds by default: `master` or `main` if the
    /// repository has one, else its first branch.
    fn default_branch(
        &self,
        project: &str,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, VcsError> {
        let repo = self.fetch_with(project, url, creds)?;
        let mut names = Vec::new();
        for b in repo.branches(Some(git2::BranchType::Local))? {
            let (b, _) = b?;
            if let Some(n) = b.name()? {
                names.push(n.to_string());
            }
        }
        for want in ["master", "main"] {
            if names.iter().any(|n| n == want) {
                return Ok(want.into());
            }
        }
        names.sort();
        names
            .into_iter()
            .next()
            .ok_or_else(|| VcsError::NoBranch("(the repository has no branches)".into()))
    }

    /// Fetches, then picks `commit` (full or abbreviated id, or any
    /// revision) or else the head of `branch`, and reads `.travis.yml` there.
    fn resolve(
        &self,
        project: &str,
        url: &str,
        branch: &str,
        commit: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<Resolved, VcsError> {
        let repo = self.fetch_with(project, url, creds)?;
        resolve_in(&repo, branch, commit)
    }

    /// Like `resolve`, without fetching (the caller just did).
    fn resolve_local(
        &self,
        project: &str,
        branch: &str,
        commit: Option<&str>,
    ) -> Result<Resolved, VcsError> {
        let repo = Repository::open_bare(self.path(project))?;
        resolve_in(&repo, branch, commit)
    }

    fn fetch(&self, project: &str, url: &str, creds: Option<&Credentials>) -> Result<(), VcsError> {
        self.fetch_with(project, url, creds).map(|_| ())
    }
}

fn resolve_in(repo: &Repository, branch: &str, commit: Option<&str>) -> Result<Resolved, VcsError> {
    {
        let c = match commit {
            Some(c) => {
                let obj = repo
                    .revparse_single(c)
                    .map_err(|_| VcsError::NoCommit(c.into()))?;
                obj.peel_to_commit()
                    .map_err(|_| VcsError::NoCommit(c.into()))?
            }
            None => {
                let r = repo
                    .find_reference(&format!("refs/heads/{branch}"))
                    .or_else(|_| repo.find_reference(&format!("refs/tags/{branch}")))
                    .map_err(|_| VcsError::NoBranch(branch.into()))?;
                r.peel_to_commit()?
            }
        };
        let tree = c.tree()?;
        let travis_yml = match tree.get_name(".travis.yml") {
            Some(entry) => {
                let blob = repo.find_blob(entry.id())?;
                Some(blob.content().to_vec())
            }
            None => None,
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (who, by) = (c.author(), c.committer());
        Ok(Resolved {
            commit: c.id().to_string(),
            message: c.summary().unwrap_or("").to_string(),
            full_message: c.message().unwrap_or("").to_string(),
            author: text(who.name_bytes()),
            author_email: text(who.email_bytes()),
            committer: text(by.name_bytes()),
            committer_email: text(by.email_bytes()),
            travis_yml,
            root_files: tree
                .iter()
                .filter_map(|e| e.name().map(str::to_string))
                .collect(),
            path: String::new(),
        })
    }
}

/// Answers a remote's request for credentials (HTTPS user and token).
fn callbacks(creds: Option<&Credentials>) -> RemoteCallbacks<'static> {
    let mut cb = RemoteCallbacks::new();
    if let Some(c) = creds.cloned() {
        let mut tries = 0;
        cb.credentials(move |_url, _user, _allowed| {
            // libgit2 asks again after a refusal: give up instead of looping.
            tries += 1;
            if tries > 1 {
                return Err(git2::Error::from_str(
                    "the repository refused the project's credentials",
                ));
            }
            Cred::userpass_plaintext(&c.username, c.password.expose())
        });
    }
    cb
}

/// Is `s` a plausible full commit id?
pub fn is_full_oid(s: &str) -> bool {
    s.len() == 40 && Oid::from_str(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_detected_from_urls() {
        for (url, kind) in [
            ("svn://127.0.0.1/repo", VcsKind::Svn),
            ("svn+ssh://host/repo", VcsKind::Svn),
            (":pserver:anon@cvs.example.org:/cvsroot", VcsKind::Cvs),
            (":local:/srv/cvs", VcsKind::Cvs),
            ("https://github.com/o/r.git", VcsKind::Git),
            ("/srv/git/r.git", VcsKind::Git),
        ] {
            assert_eq!(detect(url), kind, "{url}");
        }
    }

    #[test]
    fn cvs_modules() {
        for ok in ["mod", "a/b", "a-b_c.d"] {
            assert!(cvs_module_ok(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-d", "/etc", "a/../b", "a b", "a//b", "."] {
            assert!(cvs_module_ok(bad).is_err(), "{bad}");
        }
    }
}

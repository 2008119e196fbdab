//! Subversion on the control node, through the `svn` client
//! (`client.rs`; answers read as XML in `xml.rs`). Nothing is mirrored: a
//! repository is asked what it has when it is polled or a build is set up.
//!
//! - Branches are directories, named by the project's [`Layout`]
//!   (`layout.rs`): `trunk` is kha's branch `trunk`, `branches/X` branch X,
//!   `tags/T` tag T. A branch's head is the revision its directory last
//!   changed in, and a build's commit is that revision's number.
//! - Polling asks `svn info` for the youngest revision; when it moved, `svn
//!   log -v` since the last one seen says which branches changed, appeared
//!   or went (`state.rs`, kept in a small JSON file per repository and
//!   layout under the control node's `svn/` directory); only a change of
//!   the layout's own directories, or no state yet, lists every branch.

mod client;
pub mod layout;
mod state;
mod xml;

pub use layout::Layout;

use super::{Resolved, Vcs, VcsError};
use crate::store::records::{Credentials, Project};
use client::{Client, Failure};
use kha_core::spec::VcsKind;
use sha2::{Digest, Sha256};
use state::PollState;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A project's Subversion repository.
pub struct Svn {
    /// Where poll states are kept.
    dir: PathBuf,
    /// The layout as the project gives it, and read.
    layout_text: String,
    layout: Result<Layout, String>,
    /// The project's URL and credentials, for `resolve_local`, whose
    /// caller gives neither (Subversion has no local copy to resolve in).
    url: String,
    creds: Option<Credentials>,
}

impl Svn {
    /// For `project`, or (`None`) for a repository not yet a project's,
    /// with the standard layout.
    pub fn new(dir: PathBuf, project: Option<&Project>) -> Svn {
        let layout_text = project.map(|p| p.layout.clone()).unwrap_or_default();
        Svn {
            dir,
            layout: Layout::parse(&layout_text),
            layout_text,
            url: project.map(|p| p.repo_url.clone()).unwrap_or_default(),
            creds: project.and_then(|p| p.credentials.clone()),
        }
    }

    fn layout(&self) -> Result<&Layout, VcsError> {
        self.layout.as_ref().map_err(|e| fail(e.clone()))
    }

    fn client<'a>(&self, creds: Option<&'a Credentials>) -> Client<'a> {
        Client {
            creds,
            timeout: Duration::from_secs(kha_core::limits::VCS_QUERY_TIMEOUT_SECS),
        }
    }

    fn state_path(&self, url: &str) -> PathBuf {
        let key = format!("{url}\n{}", self.layout_text);
        let h = hex::encode(Sha256::digest(key.as_bytes()));
        self.dir.join(format!("{}.json", &h[..16]))
    }

    fn load(&self, url: &str) -> Option<PollState> {
        let bytes = std::fs::read(self.state_path(url)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Written whole or not at all. A lost write only makes the next poll
    /// read more of the log.
    fn save(&self, url: &str, s: &PollState) {
        let path = self.state_path(url);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let res = std::fs::create_dir_all(&self.dir)
            .and_then(|_| std::fs::write(&tmp, serde_json::to_vec(s).unwrap_or_default()))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = res {
            tracing::warn!(url, error = %e, "cannot keep the Subversion poll state");
        }
    }

    /// Every branch and tag with the revision it last changed in, at
    /// revision `at`.
    fn scan(&self, c: &Client<'_>, url: &str, at: u64) -> Result<BTreeMap<String, u64>, VcsError> {
        let layout = self.layout()?;
        let mut heads = BTreeMap::new();
        match info(c, &target(url, &layout.trunk, at)) {
            Ok(i) => {
                heads.insert(format!("refs/heads/{}", layout::TRUNK), i.last_changed);
            }
            Err(Failure::Missing(_)) => {}
            Err(Failure::Other(m)) => return Err(fail(m)),
        }
        for (dir, tag) in [(&layout.branches, false), (&layout.tags, true)] {
            let Some(dir) = dir else { continue };
            let listed = c
                .text(&["ls", "--xml", &target(url, dir, at)])
                .and_then(|x| xml::list(&x).map_err(Failure::Other));
            let entries = match listed {
                Ok(e) => e,
                Err(Failure::Missing(_)) => continue,
                Err(Failure::Other(m)) => return Err(fail(m)),
            };
            for e in entries.into_iter().filter(|e| e.dir) {
                if layout.path(&e.name, tag).is_some() {
                    let kind = if tag { "tags" } else { "heads" };
                    heads.insert(format!("refs/{kind}/{}", e.name), e.last_changed);
                }
            }
        }
        Ok(heads)
    }

    /// The heads now, from the state of the last poll and the log since.
    fn heads(&self, url: &str, creds: Option<&Credentials>) -> Result<PollState, VcsError> {
        let c = self.client(creds);
        let now = info(&c, url).map_err(|e| fail(e.text().to_string()))?;
        let old = self
            .load(url)
            .filter(|s| s.usable(url, &self.layout_text, &now.uuid, now.revision));
        if let Some(old) = &old {
            if old.youngest == now.revision {
                return Ok(old.clone());
            }
            let range = format!("{}:{}", old.youngest + 1, now.revision);
            let log = c
                .text(&["log", "-v", "--xml", "-r", &range, &at(url, now.revision)])
                .map_err(|e| fail(e.text().to_string()))?;
            let log = xml::log(&log).map_err(fail)?;
            let prefix = prefix(&now);
            if let Some(s) = state::advance(old, self.layout()?, &prefix, &log, now.revision) {
                tracing::debug!(
                    url,
                    from = old.youngest,
                    to = now.revision,
                    "svn heads from the log"
                );
                self.save(url, &s);
                return Ok(s);
            }
        }
        let s = PollState {
            url: url.to_string(),
            layout: self.layout_text.clone(),
            uuid: now.uuid.clone(),
            youngest: now.revision,
            heads: self.scan(&c, url, now.revision)?,
        };
        self.save(url, &s);
        Ok(s)
    }

    fn resolve_in(
        &self,
        url: &str,
        branch: &str,
        commit: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<Resolved, VcsError> {
        let layout = self.layout()?;
        let c = self.client(creds);
        let rev = match commit {
            Some(s) => Some(revision(s).ok_or_else(|| VcsError::NoCommit(s.to_string()))?),
            None => None,
        };
        let peg = rev.map_or("HEAD".to_string(), |r| r.to_string());
        // A branch of that name, else a tag (as git's resolve does).
        let mut found = None;
        for path in [layout.path(branch, false), layout.path(branch, true)]
            .into_iter()
            .flatten()
        {
            match info(&c, &format!("{}@{peg}", join(url, &path))) {
                Ok(i) => {
                    found = Some((path, i));
                    break;
                }
                Err(Failure::Missing(_)) => {}
                Err(Failure::Other(m)) => return Err(fail(m)),
            }
        }
        let Some((path, i)) = found else {
            return Err(match commit {
                Some(s) => VcsError::NoCommit(format!("{s} of {branch}")),
                None => VcsError::NoBranch(branch.to_string()),
            });
        };
        // The revision the branch last changed in, so that any revision
        // with the same content is one build.
        let rev = i.last_changed;
        let here = target(url, &path, rev);
        let r = rev.to_string();
        let log = c
            .text(&["log", "--xml", "-r", &r, &here])
            .map_err(|e| fail(e.text().to_string()))?;
        let entry = xml::log(&log)
            .map_err(fail)?
            .into_iter()
            .next()
            .unwrap_or_default();
        let listed = c
            .text(&["ls", "--xml", &here])
            .map_err(|e| fail(e.text().to_string()))?;
        let root_files: Vec<String> = xml::list(&listed)
            .map_err(fail)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        let travis_yml = if root_files.iter().any(|f| f == ".travis.yml") {
            let file = format!("{}/.travis.yml@{rev}", join(url, &path));
            Some(
                c.run(&["cat", &file])
                    .map_err(|e| fail(e.text().to_string()))?,
            )
        } else {
            None
        };
        Ok(Resolved {
            commit: r,
            message: entry.message.lines().next().unwrap_or("").to_string(),
            full_message: entry.message,
            committer: entry.author.clone(),
            author: entry.author,
            // Subversion knows a user name only.
            author_email: String::new(),
            committer_email: String::new(),
            travis_yml,
            root_files,
            path,
        })
    }
}

impl Vcs for Svn {
    fn list_remote(
        &self,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<BTreeMap<String, String>, VcsError> {
        Ok(self
            .heads(url, creds)?
            .heads
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect())
    }

    /// Nothing to fetch: every question goes to the repository.
    fn fetch(&self, _p: &str, _url: &str, _c: Option<&Credentials>) -> Result<(), VcsError> {
        Ok(())
    }

    /// `trunk`, whatever the layout calls it, once the repository answers.
    fn default_branch(
        &self,
        _p: &str,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, VcsError> {
        info(&self.client(creds), url).map_err(|e| VcsError::Fetch {
            url: url.to_string(),
            msg: e.text().to_string(),
        })?;
        Ok(layout::TRUNK.to_string())
    }

    fn resolve(
        &self,
        _p: &str,
        url: &str,
        branch: &str,
        commit: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<Resolved, VcsError> {
        self.resolve_in(url, branch, commit, creds)
    }

    fn resolve_local(
        &self,
        _p: &str,
        branch: &str,
        commit: Option<&str>,
    ) -> Result<Resolved, VcsError> {
        if self.url.is_empty() {
            return Err(fail("no project's repository to resolve in".into()));
        }
        self.resolve_in(&self.url, branch, commit, self.creds.as_ref())
    }
}

fn fail(msg: String) -> VcsError {
    VcsError::Client {
        vcs: VcsKind::Svn,
        msg,
    }
}

fn info(c: &Client<'_>, target: &str) -> Result<xml::Info, Failure> {
    let x = c.text(&["info", "--xml", target])?;
    xml::info(&x).map_err(Failure::Other)
}

/// A revision as given: `42` or `r42`.
pub fn revision(s: &str) -> Option<u64> {
    let s = s.trim();
    s.strip_prefix('r').unwrap_or(s).parse().ok()
}

fn join(url: &str, path: &str) -> String {
    let url = url.trim_end_matches('/');
    if path.is_empty() {
        url.to_string()
    } else {
        format!("{url}/{}", kha_core::spec::svn_url_path(path))
    }
}

/// `URL@REV`: that path as it was at that revision (a peg revision, so a
/// path later deleted or replaced is still found).
fn at(url: &str, rev: u64) -> String {
    format!("{url}@{rev}")
}

fn target(url: &str, path: &str, rev: u64) -> String {
    at(&join(url, path), rev)
}

/// The project URL's path inside its repository ("" at the root), as the
/// log names paths (decoded).
fn prefix(i: &xml::Info) -> String {
    let rest = i.url.strip_prefix(&i.root).unwrap_or("");
    percent_encoding::percent_decode_str(rest)
        .decode_utf8_lossy()
        .trim_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_and_urls() {
        assert_eq!(revision("42"), Some(42));
        assert_eq!(revision("r7"), Some(7));
        assert_eq!(revision("abc"), None);
        assert_eq!(revision("-1"), None);
        assert_eq!(
            target("svn://h/r/", "branches/x", 3),
            "svn://h/r/branches/x@3"
        );
        assert_eq!(target("file:///r", "", 3), "file:///r@3");
        let i = |url: &str, root: &str| xml::Info {
            revision: 1,
            last_changed: 1,
            url: url.into(),
            root: root.into(),
            uuid: String::new(),
        };
        assert_eq!(prefix(&i("svn://h/r", "svn://h/r")), "");
        assert_eq!(prefix(&i("svn://h/r/my%20proj", "svn://h/r")), "my proj");
    }
}

//! CVS on the control node: a project is a CVSROOT and a module. Its
//! branches are HEAD (the trunk) and every branch tag; a branch's "commit"
//! is the UTC second of its latest change (`kha_core::cvs::parse_time`),
//! which pins a build: `cvs checkout -D T` gets the same files every time.
//!
//! There is no local copy: the server is asked (`cvs rlog`, `rls`,
//! `checkout -p`). Polling asks only for the changes since the newest one
//! seen (`rlog -d ">=T"`); what was seen is kept per project in
//! `<data>/cvs/<project>.json`, a cache: a missing or stale file costs one
//! full `rlog`.

mod client;
pub mod rlog;

use crate::store::records::Credentials;
use crate::vcs::{Resolved, Vcs, VcsError};
use client::{fail, Client};
use kha_core::cvs::{parse_time, TRUNK};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One module of a CVS repository (a project: `for_project` also knows
/// its name, root and credentials).
pub struct Cvs {
    /// Where the per-project state files live.
    dir: PathBuf,
    module: String,
    project: Option<Remote>,
}

/// What `resolve_local` needs, as CVS has no local copy to resolve in.
struct Remote {
    name: String,
    url: String,
    creds: Option<Credentials>,
}

/// What polling saw last, per project.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Seen {
    url: String,
    module: String,
    /// Branch → its latest change.
    heads: BTreeMap<String, String>,
}

impl Seen {
    /// Where the next poll starts: the newest change seen (inclusive, so a
    /// commit in that same second after the poll is not missed).
    fn since(&self) -> Option<&String> {
        self.heads.values().max()
    }
}

impl Cvs {
    pub fn new(dir: PathBuf, module: &str) -> Cvs {
        Cvs {
            dir,
            module: module.to_string(),
            project: None,
        }
    }

    /// This module as project `name`'s, at `url`.
    pub fn of_project(mut self, name: &str, url: &str, creds: Option<Credentials>) -> Cvs {
        self.project = Some(Remote {
            name: name.into(),
            url: url.into(),
            creds,
        });
        self
    }

    fn state_path(&self) -> Option<PathBuf> {
        self.project
            .as_ref()
            .map(|p| self.dir.join(format!("{}.json", p.name)))
    }

    fn load(&self, url: &str) -> Seen {
        let seen: Option<Seen> = self
            .state_path()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        // A project whose root or module changed starts over.
        seen.filter(|s| s.url == url && s.module == self.module)
            .unwrap_or_default()
    }

    fn save(&self, seen: &Seen) {
        let Some(path) = self.state_path() else {
            return;
        };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(seen)?)?;
            std::fs::rename(tmp, &path)
        };
        // Only a cache: the next poll reads the whole history instead.
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep what CVS polling saw");
        }
    }

    /// Every branch and its latest change: the changes since the last
    /// poll, or the whole history the first time and whenever a branch tag
    /// appears (its branch point may be older than the last poll).
    fn heads(&self, cvs: &Client, url: &str) -> Result<BTreeMap<String, String>, VcsError> {
        let mut seen = self.load(url);
        let module = self.module.as_str();
        let mut heads = None;
        if let Some(since) = seen.since().cloned() {
            let d = format!(">={since}");
            let files = rlog::parse(&text(cvs.run(&["rlog", "-d", &d, module])?));
            let names = rlog::branch_names(&files);
            if names.iter().all(|n| seen.heads.contains_key(n)) {
                let mut changed = rlog::heads(&files);
                let mut h: BTreeMap<String, String> = BTreeMap::new();
                for n in names {
                    let newer = changed.remove(&n);
                    let old = seen.heads.get(&n).cloned().unwrap_or_default();
                    h.insert(n, newer.filter(|t| *t > old).unwrap_or(old));
                }
                heads = Some(h);
            }
        }
        let heads = match heads {
            Some(h) => h,
            None => rlog::heads(&rlog::parse(&text(cvs.run(&["rlog", module])?))),
        };
        seen.url = url.to_string();
        seen.module = self.module.clone();
        seen.heads = heads.clone();
        self.save(&seen);
        Ok(heads)
    }

    /// `-r BRANCH` for a branch tag; nothing for the trunk.
    fn branch_args(branch: &str) -> Vec<&str> {
        if branch == TRUNK {
            vec![]
        } else {
            vec!["-r", branch]
        }
    }

    fn resolve_with(
        &self,
        url: &str,
        branch: &str,
        commit: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<Resolved, VcsError> {
        let cvs = Client::new(url, creds)?;
        let heads = self.heads(&cvs, url)?;
        let head = heads
            .get(branch)
            .ok_or_else(|| VcsError::NoBranch(branch.into()))?;
        let time = match commit {
            // A time past the branch's last change is that change: the
            // same files, the same build, and not a checkout that a later
            // commit would change (canonical times sort as they fall).
            Some(c) => match parse_time(c).ok_or_else(|| VcsError::NoCommit(c.into()))? {
                t if t > *head => head.clone(),
                t => t,
            },
            None => head.clone(),
        };
        let module = self.module.as_str();
        let d = format!("{time}<={time}");
        let files = rlog::parse(&text(cvs.run(&["rlog", "-S", "-d", &d, module])?));
        let change = rlog::change_at(&files, branch, &time)
            .cloned()
            .unwrap_or_default();
        let mut rls = vec!["rls", "-D", &time];
        rls.extend(Self::branch_args(branch));
        rls.push(module);
        let root_files: Vec<String> = text(cvs.run(&rls)?)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let travis_yml = if root_files.iter().any(|f| f == ".travis.yml") {
            let path = format!("{module}/.travis.yml");
            let mut co = vec!["checkout", "-p", "-D", &time];
            co.extend(Self::branch_args(branch));
            co.push(&path);
            Some(cvs.run(&co)?)
        } else {
            None
        };
        Ok(Resolved {
            commit: time,
            message: change.message.lines().next().unwrap_or("").to_string(),
            full_message: change.message.clone(),
            author: change.author.clone(),
            author_email: String::new(),
            committer: change.author,
            committer_email: String::new(),
            travis_yml,
            root_files,
            // The job checks the project's module out (trigger/build.rs).
            path: String::new(),
        })
    }
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8_lossy(&b).into_owned()
}

impl Vcs for Cvs {
    /// `refs/heads/<branch>` → the time of its latest change.
    fn list_remote(
        &self,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<BTreeMap<String, String>, VcsError> {
        let cvs = Client::new(url, creds)?;
        Ok(self
            .heads(&cvs, url)?
            .into_iter()
            .map(|(b, t)| (format!("refs/heads/{b}"), t))
            .collect())
    }

    /// Nothing to fetch: builds are resolved on the server.
    fn fetch(&self, _p: &str, _url: &str, _c: Option<&Credentials>) -> Result<(), VcsError> {
        Ok(())
    }

    /// HEAD, once the module is found on the server.
    fn default_branch(
        &self,
        _project: &str,
        url: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, VcsError> {
        let cvs = Client::new(url, creds)?;
        cvs.run(&["rls", &self.module])?;
        Ok(TRUNK.to_string())
    }

    fn resolve(
        &self,
        _project: &str,
        url: &str,
        branch: &str,
        commit: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<Resolved, VcsError> {
        self.resolve_with(url, branch, commit, creds)
    }

    fn resolve_local(
        &self,
        _project: &str,
        branch: &str,
        commit: Option<&str>,
    ) -> Result<Resolved, VcsError> {
        let p = self.project.as_ref().ok_or_else(|| {
            fail("a CVS module is resolved on its server: the project is unknown")
        })?;
        self.resolve_with(&p.url, branch, commit, p.creds.as_ref())
    }
}

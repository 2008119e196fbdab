//! What the poller remembers of a Subversion repository between polls:
//! the youngest revision it has seen and each branch's head (the revision
//! its directory last changed in). A newer youngest revision is read as a
//! log of the revisions since, and only the branches those touched move;
//! anything that changes the layout's own directories calls for a full
//! listing again.

use super::layout::{Layout, Place};
use super::xml::LogEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollState {
    /// What this state is of: a changed URL or layout starts afresh.
    pub url: String,
    pub layout: String,
    /// The repository's UUID (empty in states from before it was kept).
    #[serde(default)]
    pub uuid: String,
    pub youngest: u64,
    /// `refs/heads/X`, `refs/tags/T` → the revision it last changed in.
    pub heads: BTreeMap<String, u64>,
}

impl PollState {
    /// Does it describe `url` with `layout`, of the repository `uuid`, no
    /// newer than `youngest`? (A repository replaced by another, or by an
    /// older backup of itself, needs a full listing.)
    pub fn usable(&self, url: &str, layout: &str, uuid: &str, youngest: u64) -> bool {
        self.url == url && self.layout == layout && self.uuid == uuid && self.youngest <= youngest
    }
}

/// The heads after the revisions of `log` (all of them after
/// `old.youngest`, up to `youngest`), or `None` if they changed the
/// layout's directories and only a full listing can tell. `prefix`: the
/// project URL's path inside the repository ("" at its root), which the
/// log's absolute paths start with.
pub fn advance(
    old: &PollState,
    layout: &Layout,
    prefix: &str,
    log: &[LogEntry],
    youngest: u64,
) -> Option<PollState> {
    let prefix = prefix.trim_matches('/');
    let mut heads = old.heads.clone();
    let mut log: Vec<&LogEntry> = log.iter().collect();
    log.sort_by_key(|e| e.revision);
    for e in log {
        for c in &e.paths {
            let path = c.path.trim_matches('/');
            let structural = matches!(c.action, 'A' | 'D' | 'R');
            let rel = if prefix.is_empty() {
                path
            } else if path == prefix {
                ""
            } else if let Some(r) = path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
                r
            } else {
                // Outside the project, unless a directory above it moved.
                if structural && prefix.starts_with(&format!("{path}/")) {
                    return None;
                }
                continue;
            };
            match layout.locate(rel) {
                Place::Ref { name, root: true } if c.action == 'D' => {
                    heads.remove(&name);
                }
                Place::Ref { name, .. } => {
                    heads.insert(name, e.revision);
                }
                Place::Container if structural => return None,
                Place::Container | Place::Outside => {}
            }
        }
    }
    Some(PollState {
        url: old.url.clone(),
        layout: old.layout.clone(),
        uuid: old.uuid.clone(),
        youngest,
        heads,
    })
}

#[cfg(test)]
mod tests {
    use super::super::xml::Changed;
    use super::*;

    fn entry(revision: u64, paths: &[(char, &str)]) -> LogEntry {
        LogEntry {
            revision,
            paths: paths
                .iter()
                .map(|(a, p)| Changed {
                    action: *a,
                    path: p.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn state(youngest: u64, heads: &[(&str, u64)]) -> PollState {
        PollState {
            url: "svn://h/r".into(),
            layout: String::new(),
            uuid: "u1".into(),
            youngest,
            heads: heads.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn logs_move_only_the_branches_they_touch() {
        let std = Layout::default();
        let start = state(5, &[("refs/heads/trunk", 3), ("refs/heads/old", 4)]);
        for (what, prefix, log, want) in [
            (
                "nothing new",
                "",
                vec![],
                Some(state(5, &[("refs/heads/trunk", 3), ("refs/heads/old", 4)])),
            ),
            (
                "a commit on trunk",
                "",
                vec![entry(6, &[('M', "/trunk/a.c"), ('A', "/trunk/b.c")])],
                Some(state(6, &[("refs/heads/trunk", 6), ("refs/heads/old", 4)])),
            ),
            (
                "a branch made, a branch deleted",
                "",
                vec![
                    entry(6, &[('A', "/branches/new")]),
                    entry(7, &[('D', "/branches/old")]),
                ],
                Some(state(7, &[("refs/heads/trunk", 3), ("refs/heads/new", 6)])),
            ),
            (
                "a file deleted on a branch is a change",
                "",
                vec![entry(6, &[('D', "/branches/old/x")])],
                Some(state(6, &[("refs/heads/trunk", 3), ("refs/heads/old", 6)])),
            ),
            (
                "a branch renamed",
                "",
                vec![entry(
                    6,
                    &[('A', "/branches/renamed"), ('D', "/branches/old")],
                )],
                Some(state(
                    6,
                    &[("refs/heads/trunk", 3), ("refs/heads/renamed", 6)],
                )),
            ),
            (
                "a tag",
                "",
                vec![entry(6, &[('A', "/tags/v1")])],
                Some(state(
                    6,
                    &[
                        ("refs/heads/trunk", 3),
                        ("refs/heads/old", 4),
                        ("refs/tags/v1", 6),
                    ],
                )),
            ),
            (
                "out of order, and outside the layout",
                "",
                vec![
                    entry(7, &[('M', "/trunk/a")]),
                    entry(6, &[('M', "/trunk/a"), ('A', "/notes/x")]),
                ],
                Some(state(7, &[("refs/heads/trunk", 7), ("refs/heads/old", 4)])),
            ),
            (
                "the branches directory replaced",
                "",
                vec![entry(6, &[('R', "/branches")])],
                None,
            ),
            (
                "a property of the branches directory",
                "",
                vec![entry(6, &[('M', "/branches")])],
                Some(state(6, &[("refs/heads/trunk", 3), ("refs/heads/old", 4)])),
            ),
            (
                "a project below the repository's root",
                "proj",
                vec![entry(6, &[('M', "/proj/trunk/a"), ('M', "/other/trunk/a")])],
                Some(state(6, &[("refs/heads/trunk", 6), ("refs/heads/old", 4)])),
            ),
            (
                "the project's directory moved",
                "proj/x",
                vec![entry(6, &[('D', "/proj")])],
                None,
            ),
        ] {
            assert_eq!(
                advance(
                    &start,
                    &std,
                    prefix,
                    &log,
                    log.iter().map(|e| e.revision).max().unwrap_or(5)
                ),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn states_are_for_one_url_and_layout() {
        let s = state(5, &[]);
        assert!(s.usable("svn://h/r", "", "u1", 5));
        assert!(s.usable("svn://h/r", "", "u1", 9));
        assert!(
            !s.usable("svn://h/r", "", "u1", 4),
            "a repository restored from an older backup"
        );
        assert!(
            !s.usable("svn://h/r", "", "u2", 9),
            "another repository at the same URL"
        );
        assert!(!s.usable("svn://h/other", "", "u1", 9));
        assert!(!s.usable("svn://h/r", "single", "u1", 9));
    }
}
